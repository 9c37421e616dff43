"""`make demo`: the finance sync, end to end, against the embedded Cloud Elements emulator.

1. starts the emulator on a free loopback port (deterministic QBO, QBE and FreshBooks data);
2. runs ``airflow dags test cloudelements_finance_sync`` — the first run is a full load;
3. simulates activity in the emulator (creates, updates, deletes in every synced resource);
4. runs the DAG again for an interval covering that activity (incremental);
5. prints, per element and resource, the emulator's live records vs the database's live rows and what
   the second run inserted/updated/deleted, and exits 0 only if every pair matches (ids, not only
   counts) and no secret appears in any log.

Everything lives in ``.demo/`` (removed at the start of each run).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".demo"
DAG_ID = "cloudelements_finance_sync"
RECORDS_PER_RESOURCE = int(os.environ.get("DEMO_RECORDS", "150"))
ACTIVITY = {"creates": 3, "updates": 4, "deletes": 2}


def _env(emu: Any) -> dict[str, str]:
    from airflow_provider_cloudelements.emulator import EmulatorServer  # noqa: F401  (type only)

    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    app_secret = "demo-app-client-secret-" + "x7Qp2L"
    env.update(
        {
            "AIRFLOW_HOME": str(WORK / "airflow"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags_examples"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            "CLOUDELEMENTS_OUTPUT_BASE": f"file://{WORK / 'landing'}",
            "CLOUDELEMENTS_POLL_INTERVAL": "0.5",
            "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT": json.dumps(
                {
                    "conn_type": "cloudelements",
                    "host": emu.base_url,
                    "extra": {"user_secret": emu.user_secret, "organization_secret": emu.organization_secret},
                }
            ),
            "AIRFLOW_CONN_CLOUDELEMENTS_WAREHOUSE": json.dumps(
                {"conn_type": "sqlite", "host": str(WORK / "warehouse.db")}
            ),
        }
    )
    for key in ("quickbooks", "quickbooksonprem", "freshbooksv2"):
        env[f"AIRFLOW_CONN_CLOUDELEMENTS_{key.upper()}_APP"] = json.dumps(
            {
                "conn_type": "generic",
                "extra": {"oauth.api.key": f"demo-{key}-client-id", "oauth.api.secret": app_secret},
            }
        )
    return env


def _secrets(emu: Any) -> list[str]:
    """Every secret of the run: account secrets, the app secret and each instance's element token
    (read through the platform API, as a user would: ``GET /instances/{id}`` includes ``token``)."""
    import requests

    auth = {"Authorization": f"User {emu.user_secret}, Organization {emu.organization_secret}"}
    ids = [inst["id"] for inst in requests.get(f"{emu.base_url}/instances", headers=auth, timeout=10).json()]
    tokens = [requests.get(f"{emu.base_url}/instances/{i}", headers=auth, timeout=10).json().get("token") for i in ids]
    values = [emu.user_secret, emu.organization_secret, "demo-app-client-secret-x7Qp2L", *tokens]
    return [v for v in values if v]


def _run(cmd: list[str], env: dict[str, str], log: Path) -> int:
    started = time.monotonic()
    with log.open("w") as out:
        proc = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
    print(
        f"  $ {' '.join(cmd[1:] if cmd[0].endswith('python') else cmd)}  → exit {proc.returncode} "
        f"in {time.monotonic() - started:.1f}s (log: {log.relative_to(ROOT)})"
    )
    return proc.returncode


def _db_rows(db: Path) -> dict[tuple[str, int, str], dict[str, tuple[str | None, int, Any]]]:
    """{(element_key, instance_id, resource): {record_id: (updated_at, is_deleted, record)}}."""
    from airflow_provider_cloudelements.utils.elements import ELEMENTS
    from airflow_provider_cloudelements.utils.sqlsync import table_name

    tables = {table_name("ce_", key, res): (key, res) for key, spec in ELEMENTS.items() for res in spec.resources}
    rows: dict[tuple[str, int, str], dict[str, tuple[str | None, int, Any]]] = {}
    if not db.exists():
        return rows
    with sqlite3.connect(db) as conn:
        for (table,) in conn.execute("select name from sqlite_master where type='table'"):
            if table not in tables:
                continue
            key, resource = tables[table]
            query = f'select instance_id, record_id, updated_at, is_deleted, data from "{table}"'
            for instance_id, rid, updated, deleted, data in conn.execute(query):
                if data == "null":  # a tombstone row: an id deleted before any version of it was loaded
                    continue
                rows.setdefault((key, int(instance_id), resource), {})[str(rid)] = (
                    updated,
                    int(deleted),
                    json.loads(data),
                )
    return rows


def main() -> int:
    from airflow_provider_cloudelements.emulator import EmulatorConfig, EmulatorServer
    from airflow_provider_cloudelements.utils.records import is_soft_deleted, record_id

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "logs").mkdir(parents=True)
    python = sys.executable
    airflow = [python, "-m", "airflow"]
    import logging

    logging.getLogger("airflow_provider_cloudelements.emulator").setLevel(logging.WARNING)  # keep the console short
    config = EmulatorConfig(seed=42, records_per_resource=RECORDS_PER_RESOURCE, bulk_min_seconds=0.3)
    print(f"Cloud Elements finance sync demo ({RECORDS_PER_RESOURCE} records per resource)")
    with EmulatorServer(config) as emu:
        print(f"  emulator listening on {emu.base_url}")
        env = _env(emu)
        if _run([*airflow, "db", "migrate"], env, WORK / "logs" / "db-migrate.log"):
            return 1
        first = datetime.now(timezone.utc).replace(microsecond=0)
        print("Run 1: full load")
        if _run([*airflow, "dags", "test", DAG_ID, first.isoformat()], env, WORK / "logs" / "run1.log"):
            print("Run 1 failed; see the log")
            return 1
        before = _db_rows(WORK / "warehouse.db")

        print(
            "Simulating activity in the emulator:", ", ".join(f"{v} {k}" for k, v in ACTIVITY.items()), "per resource"
        )
        changes: dict[tuple[int, str], dict[str, list[str]]] = {}
        synced = sorted({(key, inst) for key, inst, _ in before})
        for _key, instance_id in synced:
            for resource, summary in emu.state.simulate_activity(
                instance_id, resources=sorted({r for k, i, r in before if i == instance_id}), **ACTIVITY
            ).items():
                changes[(instance_id, resource)] = summary
        second = max(
            datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1), first + timedelta(seconds=1)
        )
        time.sleep(
            max((second - datetime.now(timezone.utc)).total_seconds(), 0)
        )  # the interval must end after the activity
        print("Run 2: incremental")
        if _run([*airflow, "dags", "test", DAG_ID, second.isoformat()], env, WORK / "logs" / "run2.log"):
            print("Run 2 failed; see the log")
            return 1
        after = _db_rows(WORK / "warehouse.db")

        ok = True
        header = (
            f"{'element':<17} {'resource':<16} {'emulator':>8} {'db live':>8} {'inserted':>8} "
            f"{'updated':>8} {'deleted':>8}  match"
        )
        print()
        print(header)
        print("-" * len(header))
        for key, instance_id, resource in sorted(after):
            truth = {
                record_id(r, key): r for r in emu.state.records(instance_id, resource) if not is_soft_deleted(r, key)
            }
            rows = after[(key, instance_id, resource)]
            live = {rid: rec for rid, (_, deleted, rec) in rows.items() if not deleted}
            old = before.get((key, instance_id, resource), {})
            inserted = set(rows) - set(old)
            updated = {rid for rid, v in rows.items() if rid in old and old[rid][0] != v[0] and not v[1]}
            deleted = {rid for rid, v in rows.items() if v[1] and not (old.get(rid) or (None, 0))[1]}
            expected = changes.get((instance_id, resource), {})
            created_ids = set(map(str, expected.get("created", [])))
            removed_ids = set(map(str, expected.get("deleted", [])))
            # a record created and deleted within one interval never reaches the database
            match = live == truth and inserted == created_ids - removed_ids and deleted == removed_ids - created_ids
            ok &= match
            print(
                f"{key:<17} {resource:<16} {len(truth):>8} {len(live):>8} {len(inserted):>8} "
                f"{len(updated):>8} {len(deleted):>8}  {'yes' if match else 'NO'}"
            )
        if not after:
            print("No tables were loaded")
            ok = False

        leaked = _scan_for_secrets(_secrets(emu))
        if leaked:
            ok = False
            print(f"\nSECRET LEAK: a secret value appears in {', '.join(leaked)}")
        else:
            print("\nNo secret value appears in any demo or task log.")
    print("RESULT:", "every count matches" if ok else "MISMATCH")
    return 0 if ok else 1


def _scan_for_secrets(secrets: list[str]) -> list[str]:
    leaked: list[str] = []
    for path in WORK.rglob("*"):
        if path.is_file() and path.suffix in {".log", ".json", ".txt", ""} and path.stat().st_size < 50_000_000:
            text = path.read_text(errors="replace")
            if any(secret in text for secret in secrets):
                leaked.append(str(path.relative_to(ROOT)))
    return leaked


if __name__ == "__main__":
    sys.exit(main())
