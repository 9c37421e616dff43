"""Multi-tenant scale benchmark (issue 17): the ``cloudelements_multi_tenant_sync`` DAG over N instances.

    .venv/bin/python benchmarks/scale_bench.py                 # N = 10, 50
    .venv/bin/python benchmarks/scale_bench.py --sizes 10,50,200 --records 40
    .venv/bin/python benchmarks/scale_bench.py --deployment --sizes 50   # real scheduler + triggerer

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

``--deployment`` runs the same DAG through a real multi-process Airflow instead of ``dag.test()``
(:mod:`tests.deployment.airflow_stack`: api-server, scheduler with the LocalExecutor, dag-processor and
one triggerer as subprocesses, SQLite metadata DB), with emulated bulk jobs of ``--bulk-seconds`` (3 s by
default, so extracts defer to the triggerer). Wall time is trigger → run finished; CPU seconds and peak
RSS are reported per component, sampled every second over each component's process tree (the
scheduler's includes the LocalExecutor workers and task processes). Results go to
``benchmarks/scale_results_deployment.json``.
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
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ELEMENTS = ["quickbooks", "quickbooksonprem", "freshbooksv2"]
TAG = "scale-bench"
DAG_ID = "cloudelements_multi_tenant_sync"


def _table_counts(db: str) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return {n: conn.execute(f'select count(*) from "{n}"').fetchone()[0] for n in names}


def _counting_emulator(
    n: int, records: int, bulk_seconds: float
) -> tuple[Any, list[dict[str, Any]], dict[int, list[float]]]:
    """A started emulator with ``n`` tagged instances and a per-instance log of hub request times."""
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    emu = EmulatorServer(
        EmulatorConfig(seed=1700 + n, records_per_resource=records, bulk_min_seconds=bulk_seconds)
    ).__enter__()
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
    return emu, insts, hits


def _dag_env(emu: Any, work: str) -> dict[str, str]:
    from tests.conftest import connection_json

    return {
        "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT": connection_json(emu.base_url, emu.user_secret, emu.organization_secret),
        "AIRFLOW_CONN_CLOUDELEMENTS_WAREHOUSE": json.dumps(
            {"conn_type": "sqlite", "host": os.path.join(work, "warehouse.db")}
        ),
        "CLOUDELEMENTS_OUTPUT_BASE": f"file://{work}/landing",
        "CLOUDELEMENTS_POLL_INTERVAL": "0.2",
        "CLOUDELEMENTS_TENANT_TAG": TAG,
        "CLOUDELEMENTS_RETRIES": "0",
    }


def _compare_with_truth(emu: Any, insts: list[dict[str, Any]], work: str) -> dict[str, Any]:
    """Records landed vs the emulator's truth (ids and content) for every (instance, resource) of the DAG."""
    import importlib.util
    import sqlite3

    from airflow_provider_cloudelements.utils.records import record_id

    spec = importlib.util.spec_from_file_location("_mt_dag", os.path.join(ROOT, "dags_examples", f"{DAG_ID}.py"))
    assert spec is not None and spec.loader is not None
    dag_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dag_module)  # the DAG's own resource table, so the truth follows the DAG
    landed = expected = 0
    mismatched: list[str] = []
    with sqlite3.connect(os.path.join(work, "warehouse.db")) as conn:
        for inst in insts:
            key = inst["element"]["key"]
            for res in dag_module.SELECTED_RESOURCES[key]:
                truth = {record_id(r, key): r for r in emu.state.records(inst["id"], res)}
                table = f"ce_{key}_{res}".replace("-", "_")
                try:
                    got = {
                        str(rid): json.loads(data)
                        for rid, data in conn.execute(
                            f'select record_id, data from "{table}" where instance_id = ? and is_deleted = 0',
                            (inst["id"],),
                        )
                    }
                except sqlite3.OperationalError:  # no table: nothing of that resource was loaded
                    got = {}
                expected += len(truth)
                landed += len(got)
                if got != truth:
                    mismatched.append(f"{inst['id']}/{res}")
    return {
        "records_expected": expected,
        "records_landed": landed,
        "exact": not mismatched and landed == expected,
        "mismatched": mismatched[:10],
    }


def _max_per_minute(hits: dict[int, list[float]]) -> int:
    """The busiest sliding 60-s window of any one instance's hub requests."""
    per_minute = 0
    for times in hits.values():
        times.sort()
        j = 0
        for i, t in enumerate(times):
            while times[j] <= t - 60:
                j += 1
            per_minute = max(per_minute, i - j + 1)
    return per_minute


def _rows_written(before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
    return {
        "metadata_rows_written": sum(after.values()) - sum(before.get(k, 0) for k in after),
        "metadata_rows_by_table": {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v != before.get(k, 0)},
    }


def child(n: int, records: int, work: str) -> dict[str, Any]:
    """Run one N in this (fresh) process with ``dag.test()``; returns the measurements."""
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
    emu, insts, hits = _counting_emulator(n, records, 0.2)
    try:
        os.environ.update(_dag_env(emu, work))
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=os.path.join(ROOT, "dags_examples", f"{DAG_ID}.py"))
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag(DAG_ID)
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
            **_rows_written(rows_before, rows_after),
            "max_requests_per_instance_per_minute": _max_per_minute(hits),
            **_compare_with_truth(emu, insts, work),
        }
    finally:
        emu.__exit__(None, None, None)


class _TreeSampler:
    """Samples CPU seconds and RSS of each component's process tree (psutil) once a second in a thread."""

    def __init__(self, procs: dict[str, Any]) -> None:
        import threading

        self.procs = procs
        self.cpu: dict[str, dict[int, float]] = {name: {} for name in procs}
        self.peak_rss: dict[str, float] = dict.fromkeys(procs, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            self.sample()

    def sample(self) -> None:
        import psutil

        for name, popen in self.procs.items():
            try:
                root = psutil.Process(popen.pid)
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            rss = 0.0
            for proc in tree:
                try:
                    times = proc.cpu_times()
                    self.cpu[name][proc.pid] = max(self.cpu[name].get(proc.pid, 0.0), times.user + times.system)
                    rss += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_rss[name] = max(self.peak_rss[name], rss / 2**20)

    def stop(self) -> dict[str, dict[str, float]]:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
        return {
            name: {"cpu_s": round(sum(self.cpu[name].values()), 1), "peak_rss_mb": round(self.peak_rss[name], 1)}
            for name in self.procs
        }


def deployment_child(n: int, records: int, work: str, bulk_seconds: float) -> dict[str, Any]:
    """Run one N through a real scheduler + triggerer (LocalExecutor); returns the measurements."""
    import shutil
    from datetime import datetime

    sys.path.insert(0, ROOT)
    from tests.deployment.airflow_stack import AirflowDeployment

    dags = os.path.join(work, "dags")
    os.makedirs(dags)
    shutil.copy(os.path.join(ROOT, "dags_examples", f"{DAG_ID}.py"), dags)
    emu, insts, hits = _counting_emulator(n, records, bulk_seconds)
    stack = AirflowDeployment(
        home=Path(work) / "airflow",
        dags_folder=Path(dags),
        # retries: Airflow 3.3's defer/resume race (apache/airflow#72716) on a loaded machine; counted below
        extra_env={
            **_dag_env(emu, work),
            "CLOUDELEMENTS_POLL_INTERVAL": "1",
            "CLOUDELEMENTS_RETRIES": "2",
            "CLOUDELEMENTS_RETRY_DELAY": "1",
        },
        secrets=[emu.user_secret, emu.organization_secret],
    )
    try:
        stack.run_cli("db", "migrate")
        stack.start()
        stack.wait_healthy(timeout=300)
        db = str(stack.home / "airflow.db")
        rows_before = _table_counts(db)
        sampler = _TreeSampler({k: v for k, v in stack.procs.items() if k in ("scheduler", "triggerer")})
        t0 = time.monotonic()
        run_path = stack.trigger_run(DAG_ID, "scale", timeout=300)

        def finished() -> str | None:
            state = str(stack.api_json("GET", run_path)["state"])
            return state if state in ("success", "failed") else None

        state = stack.wait_for("the DAG run to finish", finished, timeout=3600, interval=2.0)
        wall = time.monotonic() - t0
        components = sampler.stop()
        tis: list[dict[str, Any]] = []
        while True:
            page = stack.api_json("GET", f"{run_path}/taskInstances", params={"limit": 100, "offset": len(tis)})[
                "task_instances"
            ]
            tis += page
            if len(page) < 100:
                break
        rows_after = _table_counts(db)
    finally:
        stack.stop()
    try:

        def seconds(ti: dict[str, Any]) -> float:
            start, end = ti.get("start_date"), ti.get("end_date")
            if not start or not end:
                return 0.0
            return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()

        return {
            "n": n,
            "resources": 5,
            "records_per_resource": records,
            "bulk_seconds": bulk_seconds,
            "mode": "deployment",
            "state": state,
            "task_instances": len(tis),
            "task_states": {s: sum(t["state"] == s for t in tis) for s in sorted({str(t["state"]) for t in tis})},
            "retried_task_instances": sum(int(t.get("try_number") or 1) > 1 for t in tis),
            "wall_s": round(wall, 1),
            "job_time_s": round(sum(seconds(t) for t in tis), 1),
            "scheduler": components["scheduler"],
            "triggerer": components["triggerer"],
            **_rows_written(rows_before, rows_after),
            "max_requests_per_instance_per_minute": _max_per_minute(hits),
            **_compare_with_truth(emu, insts, work),
        }
    finally:
        emu.__exit__(None, None, None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,50", help="comma list of instance counts (default 10,50)")
    parser.add_argument("--records", type=int, default=40, help="records per (instance, resource) (default 40)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--deployment", action="store_true", help="a real scheduler + triggerer instead of dag.test()")
    parser.add_argument("--bulk-seconds", type=float, default=3.0, help="--deployment: emulated bulk job time")
    parser.add_argument("--out", help="results file (default benchmarks/scale_results[_deployment].json)")
    args = parser.parse_args()
    if args.child is not None:
        if args.deployment:
            result = deployment_child(args.child, args.records, args.work, args.bulk_seconds)
        else:
            result = child(args.child, args.records, args.work)
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    out = args.out or os.path.join(HERE, "scale_results_deployment.json" if args.deployment else "scale_results.json")
    results = []
    for n in [int(x) for x in args.sizes.split(",") if x.strip()]:
        with tempfile.TemporaryDirectory(prefix=f"ce-scale-{n}-") as work:
            env = {**os.environ, "PYTHONPATH": ROOT}
            cmd = [sys.executable, __file__, "--child", str(n), "--records", str(args.records), "--work", work]
            if args.deployment:
                cmd += ["--deployment", "--bulk-seconds", str(args.bulk_seconds)]
            t0 = time.monotonic()
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                print(proc.stdout[-3000:], proc.stderr[-5000:], file=sys.stderr)
                return 1
            res = json.loads(line[len("RESULT ") :])
            res["process_s"] = round(time.monotonic() - t0, 1)
            results.append(res)
            cost = (
                f"cpu={res['cpu_s']} s rss={res['peak_rss_mb']} MB"
                if "cpu_s" in res
                else f"scheduler={res['scheduler']} triggerer={res['triggerer']}"
            )
            print(
                f"N={n:>4}: state={res['state']} TIs={res['task_instances']} wall={res['wall_s']} s "
                f"job={res['job_time_s']} s {cost} "
                f"db_rows={res['metadata_rows_written']} "
                f"max_req/inst/min={res['max_requests_per_instance_per_minute']} "
                f"records {res['records_landed']}/{res['records_expected']} exact={res['exact']}",
                flush=True,
            )
    with open(out, "w") as fh:
        json.dump(results, fh, indent=2)
    return 0 if all(r["exact"] and r["state"] == "success" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
