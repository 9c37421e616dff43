"""Compatibility smoke run (`make compat`): the provider on another Airflow minor, in its own venv.

Run with the interpreter of a venv holding that Airflow (``make compat`` builds one per minor from
``constraints-airflow-<minor>.txt`` and installs this package with ``--no-deps``). Three checks, each
against the embedded Cloud Elements emulator over real HTTP on 127.0.0.1:

1. every module of ``airflow_provider_cloudelements`` imports (the failure that 3.1.x users hit:
   ``cannot import name 'conf' from 'airflow.sdk'``);
2. the flagship example DAG ``cloudelements_finance_sync`` runs end to end with ``dag.test()`` and
   every landed file holds exactly the emulator's record ids for its instance and resource;
3. the connection test: ``CloudElementsHook.test_connection()`` is ``(True, …)`` for the emulator and
   ``(False, "…refused…")`` for a closed port, within seconds.

Prints one line per check with its wall time and exits 0 only if all pass. No pytest needed.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME = Path(tempfile.mkdtemp(prefix="ce-compat-airflow-home-"))
# Before anything imports airflow (see tests/conftest.py).
os.environ["AIRFLOW_HOME"] = str(HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags_examples")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{HOME}/airflow.db"
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

DAG_ID = "cloudelements_finance_sync"


def _step(name: str, started: float, ok: bool, detail: str = "") -> bool:
    print(f"[{'ok' if ok else 'FAIL'}] {name} ({time.monotonic() - started:.1f} s){': ' + detail if detail else ''}")
    return ok


def check_imports() -> bool:
    import importlib
    import pkgutil

    import airflow

    import airflow_provider_cloudelements as pkg

    started = time.monotonic()
    failures = []
    names = [m.name for m in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}.")]
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as err:  # report every broken module, not only the first
            failures.append(f"{name}: {type(err).__name__}: {err}")
    detail = f"Airflow {airflow.__version__}, {len(names)} modules" + ("; " + "; ".join(failures) if failures else "")
    return _step("import every module", started, not failures, detail)


def _load_dag(dag_id: str):  # type: ignore[no-untyped-def]
    try:  # Airflow >= 3.2
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(ROOT / "dags_examples" / f"{dag_id}.py"))  # examples off: LOAD_EXAMPLES=False
    if bag.import_errors:
        raise RuntimeError(f"import errors: {bag.import_errors}")
    return bag.get_dag(dag_id)


def check_demo_dag(emu, work: Path) -> bool:  # type: ignore[no-untyped-def]
    from datetime import datetime, timezone

    from airflow_provider_cloudelements.utils.records import record_id

    started = time.monotonic()
    landing = work / "landing"
    os.environ["AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT"] = json.dumps(
        {
            "conn_type": "cloudelements",
            "host": emu.base_url,
            "extra": {"user_secret": emu.user_secret, "organization_secret": emu.organization_secret},
        }
    )
    os.environ["AIRFLOW_CONN_CLOUDELEMENTS_WAREHOUSE"] = json.dumps(
        {"conn_type": "sqlite", "host": str(work / "warehouse.db")}
    )
    for key in ("quickbooks", "quickbooksonprem", "freshbooksv2"):
        os.environ[f"AIRFLOW_CONN_CLOUDELEMENTS_{key.upper()}_APP"] = json.dumps(
            {"conn_type": "generic", "extra": {"oauth.api.key": f"{key}-id", "oauth.api.secret": "compat-app-secret"}}
        )
    os.environ["CLOUDELEMENTS_OUTPUT_BASE"] = f"file://{landing}"
    os.environ["CLOUDELEMENTS_POLL_INTERVAL"] = "0.5"

    dag = _load_dag(DAG_ID)
    run = dag.test(logical_date=datetime.now(timezone.utc).replace(microsecond=0))
    state = str(getattr(run, "state", None))
    if state != "success":
        return _step("demo DAG with dag.test()", started, False, f"run state {state}")
    files = [p for p in landing.glob("*/instance=*/*/window=*/*.ndjson") if not p.name.endswith(".errors.ndjson")]
    mismatches = []
    for path in files:
        element, instance_id, resource = path.parts[-5], int(path.parts[-4].split("=", 1)[1]), path.parts[-3]
        with path.open() as handle:
            got = sorted(record_id(json.loads(line), element) for line in handle if line.strip())
        truth = sorted(record_id(r, element) for r in emu.state.records(instance_id, resource))
        if got != truth:
            mismatches.append(f"{path.relative_to(landing)}: {len(got)} landed vs {len(truth)} in the emulator")
    ok = bool(files) and not mismatches
    detail = f"{len(files)} extracts match the emulator" if ok else ("; ".join(mismatches) or "nothing landed")
    return _step("demo DAG with dag.test()", started, ok, detail)


def check_connection_test(emu) -> bool:  # type: ignore[no-untyped-def]
    from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook

    started = time.monotonic()
    ok, message = CloudElementsHook().test_connection()
    if not ok:
        return _step("connection test", started, False, f"emulator: {message}")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    os.environ["AIRFLOW_CONN_CE_COMPAT_CLOSED"] = json.dumps(
        {
            "conn_type": "cloudelements",
            "host": f"http://127.0.0.1:{closed_port}/elements/api-v2",
            "extra": {"user_secret": emu.user_secret, "organization_secret": emu.organization_secret},
        }
    )
    refused_started = time.monotonic()
    bad_ok, bad_message = CloudElementsHook(cloudelements_conn_id="ce_compat_closed").test_connection()
    refused_seconds = time.monotonic() - refused_started
    good = not bad_ok and "refused" in bad_message.lower() and refused_seconds < 10
    return _step(
        "connection test",
        started,
        good,
        f"emulator: {message!r}; closed port: {bad_message!r} in {refused_seconds:.1f} s",
    )


def main() -> int:
    from airflow.utils import db
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    total = time.monotonic()
    results = [check_imports()]
    db.resetdb()
    work = Path(tempfile.mkdtemp(prefix="ce-compat-work-"))
    config = EmulatorConfig(seed=11, records_per_resource=40, bulk_min_seconds=0.2)
    with EmulatorServer(config) as emu:
        results.append(check_demo_dag(emu, work))
        results.append(check_connection_test(emu))
    print(f"compat smoke: {sum(results)}/{len(results)} passed in {time.monotonic() - total:.1f} s")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
