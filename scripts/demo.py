"""`make demo`: the finance sync, end to end, against the embedded Cloud Elements emulator.

1. starts the emulator on a free loopback port (deterministic QBO, QBE and FreshBooks data);
2. runs ``airflow dags test cloudelements_finance_sync`` — the first run is a full load;
3. simulates activity in the emulator (creates, updates, deletes in every synced resource);
4. runs the DAG again for an interval covering that activity (incremental);
5. prints, per element and resource, the emulator's live records vs the database's live rows and what
   the second run inserted/updated/deleted, and the typed tables (``ce_typed_*``, loaded with
   ``typed=True``, docs/typed-tables.md): parent rows and child-table line counts, every typed value
   compared with the emulator's ground truth (``GET /_emulator/instances/{id}/records/{resource}``);
6. asks one finance question per element of the typed tables in SQL (QBO: top 5 customers by open
   balance; QBE: invoice lines per item; FreshBooks: invoiced amount per status) and prints the answer
   next to the same figure computed from the emulator's ground truth;

and exits 0 only if every pair matches (ids and values, not only counts) and no secret appears in any log.

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
    from cloudelements_emulator import EmulatorServer  # noqa: F401  (type only)

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
            "CLOUDELEMENTS_TYPED_TABLES": "1",  # the example DAG's load task then runs with typed=True
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
    from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import table_name
    from airflow_provider_cloudelements.utils.elements import ELEMENTS

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


def _truth(emu: Any, instance_id: int, resource: str) -> list[dict[str, Any]]:
    """The emulator's live records of a resource, as served (``GET /_emulator/.../records/{resource}``)."""
    import requests

    url = f"{emu.url}/_emulator/instances/{instance_id}/records/{resource}"
    resp = requests.get(url, timeout=30)
    resp.raise_for_status()
    return list(resp.json())


def _at(value: Any, path: str | None) -> Any:
    """The value at a dotted record path (``customerRef.value``), ``None`` when absent."""
    for key in (path or "").split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _norm(value: Any) -> Any:
    """Typed column value and record value in one form: booleans 0/1, numbers rounded floats, arrays of
    scalars as their compact JSON, objects and empty arrays as NULL (they add no column)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return round(float(value), 6)
    if isinstance(value, list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False) if value else None
    return None if isinstance(value, dict) else value


def _typed_check(
    conn: sqlite3.Connection, key: str, instance_id: int, resource: str, live: dict[str, dict[str, Any]]
) -> tuple[list[str], int, int]:
    """Compare the typed parent and child tables of one resource with the emulator's live records.

    :param live: ``{record id: record}`` of the emulator's live records.
    :returns: ``(problems, typed live rows, child rows of live parents)``; no problem = a match of ids,
        every typed value (each column against its ``ce_schema_history`` source path) and line counts.
    """
    from airflow_provider_cloudelements.typed import HISTORY_TABLE, typed_table_name

    parent = typed_table_name("ce_", key, resource)
    history = conn.execute(
        f"SELECT table_name, parent_table, array_path, column_name, source_path, change FROM {HISTORY_TABLE} "
        "WHERE table_name = ? OR parent_table = ?",
        (parent, parent),
    ).fetchall()
    if not history:
        return [f"no typed table {parent}"], 0, 0
    problems: list[str] = []

    def compare(table: str, keys: tuple[str, ...], expected: dict[tuple[Any, ...], Any], where: str = "") -> int:
        paths = {col: path for name, _, _, col, path, change in history if name == table and change == "add_column"}
        names = sorted(paths)
        select = ", ".join([*keys, *(f'"{c}"' for c in names)])
        query = f'SELECT {select} FROM "{table}" WHERE instance_id = ?{where}'
        got = {tuple(row[: len(keys)]): row[len(keys) :] for row in conn.execute(query, (instance_id,))}
        if set(got) != set(expected):
            missing, extra = len(set(expected) - set(got)), len(set(got) - set(expected))
            problems.append(f"{table}: {missing} row(s) missing, {extra} unexpected")
        for ident in sorted(set(got) & set(expected)):
            for column, value in zip(names, got[ident], strict=True):
                want = _norm(_at(expected[ident], paths[column]))
                if _norm(value) != want:
                    problems.append(f"{table} {ident} {column}: {value!r} != {want!r}")
        return len(got)

    rows = compare(parent, ("record_id",), {(rid,): rec for rid, rec in live.items()}, " AND is_deleted = 0")
    child_rows = 0  # every line of every live parent; a deleted parent has none (they would be unexpected rows)
    for name, _, array_path, _, _, change in history:
        if change == "create_table" and array_path:
            items = {
                (rid, position): item
                for rid, rec in live.items()
                for position, item in enumerate(_at(rec, array_path) or [])
            }
            child_rows += compare(name, ("parent_id", "position"), items)
    return problems, rows, child_rows


def _money(value: Any) -> float:
    return round(float(value or 0), 2)


def _questions() -> list[tuple[str, str, str, tuple[str, ...], str]]:
    """``(element key, resource, question, column headers, SQL on the typed tables)``; the SQL takes the
    instance id and returns rows of (label, figures...) in the order of the headers."""
    from airflow_provider_cloudelements.typed import child_table_name, typed_table_name

    qbo = typed_table_name("ce_", "quickbooks", "invoices")
    qbe = typed_table_name("ce_", "quickbooksonprem", "invoices")
    qbe_lines = child_table_name(qbe, "InvoiceLineRet")
    fb = typed_table_name("ce_", "freshbooksv2", "invoices")
    return [
        (
            "quickbooks",
            "invoices",
            "top 5 customers by open balance",
            ("customer", "open balance"),
            f"SELECT customer_ref__name, ROUND(SUM(balance), 2) FROM {qbo} WHERE instance_id = ? AND is_deleted = 0 "
            "GROUP BY customer_ref__name HAVING SUM(balance) > 0 ORDER BY 2 DESC, 1 LIMIT 5",
        ),
        (
            "quickbooksonprem",
            "invoices",
            "invoice lines per item (top 5 by amount)",
            ("item", "lines", "amount"),
            f"SELECT l.item_ref__full_name, COUNT(*), ROUND(SUM(CAST(l.amount AS REAL)), 2) FROM {qbe_lines} l "
            f"JOIN {qbe} i ON i.instance_id = l.instance_id AND i.record_id = l.parent_id "
            "WHERE i.instance_id = ? AND i.is_deleted = 0 GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT 5",
        ),
        (
            "freshbooksv2",
            "invoices",
            "invoiced amount per status",
            ("status", "invoices", "amount"),
            f"SELECT status, COUNT(*), ROUND(SUM(amount), 2) FROM {fb} WHERE instance_id = ? AND is_deleted = 0 "
            "GROUP BY status ORDER BY status",
        ),
    ]


def _expected(key: str, records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The figure of :func:`_questions` for ``key`` computed in Python from the emulator's live records."""
    from collections import defaultdict

    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    if key == "quickbooks":
        for rec in records:
            sums[_at(rec, "customerRef.name")] += float(rec.get("balance") or 0)
        top = sorted(((name, _money(total)) for name, total in sums.items() if total > 0), key=lambda r: (-r[1], r[0]))
        return top[:5]
    if key == "quickbooksonprem":
        for rec in records:
            for line in rec.get("InvoiceLineRet") or []:
                item = _at(line, "ItemRef.FullName")
                counts[item] += 1
                sums[item] += float(line.get("Amount") or 0)
        rows = sorted(((i, counts[i], _money(sums[i])) for i in counts), key=lambda r: (-r[2], r[0]))
        return rows[:5]
    for rec in records:
        status = str(rec.get("status"))
        counts[status] += 1
        sums[status] += float(rec.get("amount") or 0)
    return sorted((s, counts[s], _money(sums[s])) for s in counts)


def _ask(conn: sqlite3.Connection, truths: dict[tuple[str, int, str], list[dict[str, Any]]]) -> bool:
    """Print one typed SQL answer per element next to the emulator's figure; ``False`` if any differs."""
    from airflow_provider_cloudelements.utils.records import is_soft_deleted

    ok = True
    for key, resource, question, headers, sql in _questions():
        for (k, instance_id, res), records in sorted(truths.items()):
            if (k, res) != (key, resource):
                continue
            got = [tuple(row) for row in conn.execute(sql, (instance_id,))]
            want = _expected(key, [r for r in records if not is_soft_deleted(r, key)])
            same = len(got) == len(want) and all(
                g[:-1] == w[:-1] and abs(_money(g[-1]) - w[-1]) < 0.011 for g, w in zip(got, want, strict=True)
            )
            ok &= same
            print(f"\n{key} {resource}: {question}  [typed SQL | emulator: {'match' if same else 'MISMATCH'}]")
            print(f"  {headers[0]:<28}" + "".join(f" {h:>24}" for h in headers[1:]))
            for index in range(max(len(got), len(want))):
                g = got[index] if index < len(got) else ("-",) * len(headers)
                w = want[index] if index < len(want) else ("-",) * len(headers)
                label = str(g[0]) if g[0] == w[0] else f"{g[0]} / {w[0]}"
                cells = "".join(f" {_pair(a, b):>24}" for a, b in zip(g[1:], w[1:], strict=True))
                print(f"  {label[:28]:<28}{cells}")
    return ok


def _pair(typed: Any, truth: Any) -> str:
    """``typed | emulator`` as one cell (amounts with two decimals)."""

    def fmt(value: Any) -> str:
        return f"{value:,.2f}" if isinstance(value, float) else str(value)

    return f"{fmt(typed)} | {fmt(truth)}"


def main() -> int:
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    from airflow_provider_cloudelements.utils.records import is_soft_deleted, record_id, stable_id

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "logs").mkdir(parents=True)
    python = sys.executable
    airflow = [python, "-m", "airflow"]
    import logging

    logging.getLogger("cloudelements_emulator").setLevel(logging.WARNING)  # keep the console short
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
            f"{'updated':>8} {'deleted':>8} {'typed':>6} {'lines':>6}  match"
        )
        problems: list[str] = []
        truths: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
        warehouse = sqlite3.connect(WORK / "warehouse.db")
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
            # QBO ids are served as "<id>|<syncToken>": the warehouse keys by the stable id
            created_ids = {stable_id(i, key) for i in expected.get("created", [])}
            removed_ids = {stable_id(i, key) for i in expected.get("deleted", [])}
            # a record created and deleted within one interval never reaches the database
            match = live == truth and inserted == created_ids - removed_ids and deleted == removed_ids - created_ids
            # the typed tables against the emulator's ground truth read over its admin API
            served = truths[(key, instance_id, resource)] = _truth(emu, instance_id, resource)
            served_live = {record_id(r, key): r for r in served if not is_soft_deleted(r, key)}
            typed_problems, typed_rows, line_rows = _typed_check(warehouse, key, instance_id, resource, served_live)
            problems += [f"{key}/{resource}: {p}" for p in typed_problems]
            match &= not typed_problems and served_live.keys() == truth.keys()
            ok &= match
            print(
                f"{key:<17} {resource:<16} {len(truth):>8} {len(live):>8} {len(inserted):>8} "
                f"{len(updated):>8} {len(deleted):>8} {typed_rows:>6} {line_rows:>6}  {'yes' if match else 'NO'}"
            )
        if not after:
            print("No tables were loaded")
            ok = False
        print("(typed = live rows of ce_typed_<element>_<resource>, every typed value checked; lines = child rows)")
        for problem in problems[:10]:
            print(f"  TYPED MISMATCH {problem}")
        ok &= _ask(warehouse, truths)
        warehouse.close()
        # the unified finance sync: one table per common resource across the three systems (issue 15)
        from unified_demo import run_unified  # scripts/unified_demo.py (this script's folder is on sys.path)

        ok &= run_unified(emu, env, airflow, WORK)

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
