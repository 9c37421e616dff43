"""Sync latency under a real scheduler + triggerer (issue 16): wall time of the demo-sized finance sync vs
the sum of the emulator's bulk job times.

    .venv/bin/python benchmarks/latency_bench.py                       # this checkout's code
    .venv/bin/python benchmarks/latency_bench.py --code /tmp/main-src  # another checkout (e.g. "before")
    .venv/bin/python benchmarks/latency_bench.py --records 300 --bulk-seconds 3 --poll-interval 30

What runs: the emulator (``--records`` records per resource, every bulk job held RUNNING at least
``--bulk-seconds``), then a multi-process Airflow (``airflow db migrate``, api-server, scheduler,
dag-processor, triggerer: :mod:`tests.deployment.airflow_stack`, LocalExecutor on SQLite) and one run of
``cloudelements_finance_sync`` for QuickBooks Online, QuickBooks Enterprise and FreshBooks (17 mapped
bulk extracts, deferrable) with the example DAG's default ``poll_interval`` (30 s), triggered through
the REST API. ``--code DIR`` puts DIR first on the Airflow processes' ``PYTHONPATH`` so an older copy of
``airflow_provider_cloudelements`` (``git archive main | tar -x -C DIR``) can be measured for the
"before" figure.

Reported: the run's wall time (REST ``start_date`` → ``end_date``), the sum and the maximum of the
emulator's job times (``createdDate`` → ``completion_time`` of every bulk job), the ratio wall / sum,
and whether the target holds (within 2x of the sum and under 60 s). Exit 1 if the run failed or landed
nothing; the target is reported, not asserted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.deployment.airflow_stack import AirflowDeployment  # noqa: E402

DAG_ID = "cloudelements_finance_sync"
ELEMENTS = "quickbooks,quickbooksonprem,freshbooksv2"
APP_SECRET = "latency-bench-app-secret-9f3K"


def _iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def job_seconds(emu: Any) -> list[float]:
    """Seconds from ``createdDate`` to ``completion_time`` of every finished emulator bulk job."""
    jobs = emu.state.bulk._all()  # the emulator's own job table (ground truth, not what the client saw)
    return [
        (_iso(j["completion_time"]) - _iso(j["createdDate"])).total_seconds()
        for j in jobs
        if j.get("completion_time") and j.get("createdDate")
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    work = Path(tempfile.mkdtemp(prefix="ce-latency-bench-"))
    config = EmulatorConfig(seed=16, records_per_resource=args.records, bulk_min_seconds=args.bulk_seconds)
    with EmulatorServer(config) as emu:
        env = {
            "CLOUDELEMENTS_SYNC_ELEMENTS": ELEMENTS,
            "CLOUDELEMENTS_POLL_INTERVAL": str(args.poll_interval),
            "CLOUDELEMENTS_OUTPUT_BASE": f"file://{work / 'landing'}",
            "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT": json.dumps(
                {
                    "conn_type": "cloudelements",
                    "host": emu.base_url,
                    "extra": {"user_secret": emu.user_secret, "organization_secret": emu.organization_secret},
                }
            ),
            "AIRFLOW_CONN_CLOUDELEMENTS_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(work / "wh.db")}),
        }
        for key in ELEMENTS.split(","):
            env[f"AIRFLOW_CONN_CLOUDELEMENTS_{key.upper()}_APP"] = json.dumps(
                {"conn_type": "generic", "extra": {"oauth.api.key": f"{key}-id", "oauth.api.secret": APP_SECRET}}
            )
        if args.code:
            env["PYTHONPATH"] = str(Path(args.code).resolve())
        stack = AirflowDeployment(
            home=work / "airflow",
            dags_folder=Path(args.code or ROOT).resolve() / "dags_examples",
            extra_env=env,
            secrets=[emu.user_secret, emu.organization_secret, APP_SECRET],
        )
        try:
            stack.run_cli("db", "migrate")
            stack.start()
            stack.wait_healthy(timeout=180)
            run_path = stack.trigger_run(DAG_ID, "latency", timeout=180)
            started = time.monotonic()
            state = stack.wait_for(
                "the DAG run to finish",
                lambda: (s := stack.api_json("GET", run_path)["state"]) in ("success", "failed") and s,
                timeout=args.run_timeout,
                interval=0.5,
            )
            observed = time.monotonic() - started
            dag_run = stack.api_json("GET", run_path)
            tis = stack.api_json("GET", f"{run_path}/taskInstances", params={"limit": 200})["task_instances"]
        finally:
            stack.stop()
        jobs = job_seconds(emu)
    wall = (_iso(dag_run["end_date"]) - _iso(dag_run["start_date"])).total_seconds()
    extracts = [t for t in tis if t["task_id"] == "extract"]
    total = sum(jobs)
    return {
        "code": str(args.code or ROOT),
        "state": state,
        "records_per_resource": args.records,
        "bulk_seconds": args.bulk_seconds,
        "poll_interval": args.poll_interval,
        "extracts": len(extracts),
        "bulk_jobs": len(jobs),
        "run_wall_seconds": round(wall, 1),
        "observed_seconds": round(observed, 1),
        "job_seconds_sum": round(total, 1),
        "job_seconds_max": round(max(jobs, default=0.0), 1),
        "ratio_wall_to_job_sum": round(wall / total, 2) if total else None,
        "target_met": bool(total) and wall <= 2 * total and wall < 60,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=300, help="records per resource (default 300)")
    parser.add_argument("--bulk-seconds", type=float, default=3.0, help="emulator job time floor, s (default 3)")
    parser.add_argument("--poll-interval", type=float, default=30.0, help="the DAG's poll_interval, s (default 30)")
    parser.add_argument("--code", help="directory whose airflow_provider_cloudelements the Airflow processes import")
    parser.add_argument("--run-timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = run(args)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["state"] == "success" and result["bulk_jobs"] else 1


if __name__ == "__main__":
    sys.exit(main())
