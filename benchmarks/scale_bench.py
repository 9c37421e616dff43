"""Multi-tenant scale benchmark (issue 17): the ``cloudelements_multi_tenant_sync`` DAG over N instances.

    .venv/bin/python benchmarks/scale_bench.py                 # N = 10, 50
    .venv/bin/python benchmarks/scale_bench.py --sizes 10,50,200 --records 40

Each N runs in its own child process with a fresh ``AIRFLOW_HOME`` (SQLite metadata DB) and its own
emulator (in-process thread, so CPU and RSS include it): N tagged instances spread over the three
elements, 5 resources each, ``--records`` records per resource (the demo's 40 by default), one
``dag.test()`` of the example DAG (tasks run serially in the test process, deferred extracts' triggers
inline; no separate scheduler/triggerer here).

Reported per N: wall time of ``dag.test()``, total job time (sum of task instance durations), CPU
seconds and peak RSS of the process, metadata-DB rows written (row counts of every table after minus
before), requests per instance per minute (max over instances of the busiest sliding 60-s window of
hub requests, counted at the emulator), records landed vs the emulator's truth (ids and content,
must be exact). Results: stdout table and ``benchmarks/scale_results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ELEMENTS = ["quickbooks", "quickbooksonprem", "freshbooksv2"]
TAG = "scale-bench"


def _table_counts(db: str) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return {n: conn.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}


def child(n: int, records: int, work: str) -> dict[str, Any]:
    """Run one N in this (fresh) process; returns the measurements."""
    home = os.path.join(work, "airflow")
    os.makedirs(home, exist_ok=True)
    os.environ.update(
        AIRFLOW_HOME=home,
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=os.path.join(ROOT, "dags_examples"),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
    )
    sys.path.insert(0, ROOT)
    from airflow.utils import db

    db.resetdb()

    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    from airflow_provider_cloudelements.utils.records import record_id

    with EmulatorServer(EmulatorConfig(seed=1700 + n, records_per_resource=records, bulk_min_seconds=0.2)) as emu:
        state = emu.state
        insts = [state.create_instance(ELEMENTS[i % 3], f"tenant-{i:04d}", tags=[TAG]) for i in range(n)]
        by_token_id = {i["token"]: i["id"] for i in insts}
        hits: dict[int, list[float]] = {}
        original = state.instance_by_token

        def counting(token: str) -> dict[str, Any]:  # every hub request resolves its token once
            iid = by_token_id.get(token)
            if iid is not None:
                hits.setdefault(iid, []).append(time.monotonic())
            return original(token)

        state.instance_by_token = counting  # type: ignore[method-assign]
        warehouse = os.path.join(work, "warehouse.db")
        from tests.conftest import connection_json

        os.environ.update(
            AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT=connection_json(emu.base_url, emu.user_secret, emu.organization_secret),
            AIRFLOW_CONN_CLOUDELEMENTS_WAREHOUSE=json.dumps({"conn_type": "sqlite", "host": warehouse}),
            CLOUDELEMENTS_OUTPUT_BASE=f"file://{work}/landing",
            CLOUDELEMENTS_POLL_INTERVAL="0.2",
            CLOUDELEMENTS_TENANT_TAG=TAG,
            CLOUDELEMENTS_RETRIES="0",
        )
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=os.path.join(ROOT, "dags_examples", "cloudelements_multi_tenant_sync.py"))
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag("cloudelements_multi_tenant_sync")
        from datetime import datetime, timezone

        rows_before = _table_counts(f"{home}/airflow.db")
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        run = dag.test(logical_date=datetime.now(timezone.utc).replace(microsecond=0))
        wall = time.monotonic() - t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        rows_after = _table_counts(f"{home}/airflow.db")
        tis = run.get_task_instances()
        job_time = sum((ti.end_date - ti.start_date).total_seconds() for ti in tis if ti.start_date and ti.end_date)

        # truth: every (instance, resource) exactly as the emulator serves it
        import importlib.util
        import sqlite3

        spec = importlib.util.spec_from_file_location("_mt_dag", bag.dags[dag.dag_id].fileloc)
        assert spec is not None and spec.loader is not None
        dag_module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(dag_module)  # the DAG's own resource table, so the truth follows the DAG
        resources_for = dag_module.SELECTED_RESOURCES.__getitem__

        landed = expected = 0
        mismatched: list[str] = []
        with sqlite3.connect(warehouse) as conn:
            for inst in insts:
                key = inst["element"]["key"]
                for res in resources_for(key):
                    truth = {record_id(r, key): r for r in state.records(inst["id"], res)}
                    table = f"ce_{key}_{res}".replace("-", "_")
                    got = {
                        str(rid): json.loads(data)
                        for rid, data in conn.execute(
                            f'select record_id, data from "{table}" where instance_id = ? and is_deleted = 0',
                            (inst["id"],),
                        )
                    }
                    expected += len(truth)
                    landed += len(got)
                    if got != truth:
                        mismatched.append(f"{inst['id']}/{res}")
        per_minute = 0
        for times in hits.values():
            times.sort()
            j = 0
            for i, t in enumerate(times):
                while times[j] <= t - 60:
                    j += 1
                per_minute = max(per_minute, i - j + 1)
        return {
            "n": n,
            "resources": 5,
            "records_per_resource": records,
            "state": str(run.state),
            "task_instances": len(tis),
            "wall_s": round(wall, 1),
            "job_time_s": round(job_time, 1),
            "cpu_s": round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 1),
            "peak_rss_mb": round(ru1.ru_maxrss / 1024, 1),
            "metadata_rows_written": sum(rows_after.values()) - sum(rows_before.get(k, 0) for k in rows_after),
            "metadata_rows_by_table": {
                k: v - rows_before.get(k, 0) for k, v in sorted(rows_after.items()) if v != rows_before.get(k, 0)
            },
            "max_requests_per_instance_per_minute": per_minute,
            "records_expected": expected,
            "records_landed": landed,
            "exact": not mismatched and landed == expected,
            "mismatched": mismatched[:10],
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,50", help="comma list of instance counts (default 10,50)")
    parser.add_argument("--records", type=int, default=40, help="records per (instance, resource) (default 40)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=os.path.join(HERE, "scale_results.json"))
    args = parser.parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(child(args.child, args.records, args.work)), flush=True)
        return 0
    results = []
    for n in [int(x) for x in args.sizes.split(",") if x.strip()]:
        with tempfile.TemporaryDirectory(prefix=f"ce-scale-{n}-") as work:
            env = {**os.environ, "PYTHONPATH": ROOT}
            cmd = [sys.executable, __file__, "--child", str(n), "--records", str(args.records), "--work", work]
            t0 = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(proc.stdout[-3000:], proc.stderr[-5000:], file=sys.stderr)
                return 1
            res = json.loads(line[len("RESULT ") :])
            res["process_s"] = round(time.monotonic() - t0, 1)
            results.append(res)
            print(
                f"N={n:>4}: state={res['state']} TIs={res['task_instances']} wall={res['wall_s']} s "
                f"job={res['job_time_s']} s cpu={res['cpu_s']} s rss={res['peak_rss_mb']} MB "
                f"db_rows={res['metadata_rows_written']} "
                f"max_req/inst/min={res['max_requests_per_instance_per_minute']} "
                f"records {res['records_landed']}/{res['records_expected']} exact={res['exact']}",
                flush=True,
            )
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)
    return 0 if all(r["exact"] and r["state"] == "success" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
