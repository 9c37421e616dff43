"""Per-instance cap of the multi-tenant DAG in a real deployment (issue 17): scheduler + LocalExecutor
workers + a separate triggerer, so extracts of different tenants really run at the same time.

Three tagged QuickBooks Online instances x 5 resources, ``CLOUDELEMENTS_MAX_EXTRACTS_PER_INSTANCE=2``,
emulated bulk jobs of 8 s (every extract defers to the triggerer). From the emulator's own bulk-job log
(created → completed, per instance) the test shows that

* at no instant did one instance have more than 2 bulk jobs running (the cap holds across workers and
  the triggerer), and each lane's next job started only after the previous one of that lane completed;
* the deployment did run extracts in parallel (more than 2 jobs at once over all instances), so the cap,
  not a serial executor, is what bounded each tenant;
* the run succeeded and the warehouse holds exactly the emulator's records of every tenant.

``dag.test()`` runs one task at a time, so it cannot show any of this.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.models.timestamps import parse_timestamp
from airflow_provider_cloudelements.utils.records import record_id
from tests.deployment.airflow_stack import AirflowDeployment
from tests.deployment.conftest import register_deployment

ROOT = Path(__file__).resolve().parents[2]
DAG_ID = "cloudelements_multi_tenant_sync"
TAG = "caps-check"
LANES = 2
INSTANCES = 3
BULK_SECONDS = 8.0  # long enough to defer and to make overlaps visible (see test_real_deployment.BULK_SECONDS)
STARTUP_TIMEOUT = 150.0
RUN_TIMEOUT = 420.0

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(RUN_TIMEOUT + 2 * STARTUP_TIMEOUT + 120)]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """Most intervals ``[start, end]`` open at one instant (an end at the same instant as a start: closed first)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals], key=lambda e: e[:2])
    best = current = 0
    for _, step in edges:
        current += step
        best = max(best, current)
    return best


def test_max_overlap_counts_open_intervals() -> None:
    assert max_overlap([(0, 2), (1, 3), (2.5, 4)]) == 2
    assert max_overlap([(0, 1), (1, 2), (2, 3)]) == 1
    assert max_overlap([(0, 9), (1, 8), (2, 7)]) == 3


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(seed=5, records_per_resource=6, bulk_min_seconds=BULK_SECONDS)) as server:
        yield server


@pytest.fixture(scope="module")
def finished(emu: Any, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("caps")
    dags = tmp / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "dags_examples" / f"{DAG_ID}.py", dags / f"{DAG_ID}.py")
    instances = [emu.state.create_instance("quickbooks", f"caps-{i}", tags=[TAG])["id"] for i in range(INSTANCES)]
    warehouse = tmp / "warehouse.db"
    env = {
        "CLOUDELEMENTS_TENANT_TAG": TAG,
        "CLOUDELEMENTS_SYNC_ELEMENTS": "quickbooks",
        "CLOUDELEMENTS_MAX_EXTRACTS_PER_INSTANCE": str(LANES),
        "CLOUDELEMENTS_POLL_INTERVAL": "1",
        # Airflow 3.3's defer/resume race (apache/airflow#72716) can fail a resumed extract on a loaded
        # machine; a retry reattaches to the same bulk job (task state store), so the job log stays exact
        "CLOUDELEMENTS_RETRIES": "2",
        "CLOUDELEMENTS_RETRY_DELAY": "1",
        "CLOUDELEMENTS_OUTPUT_BASE": f"file://{tmp / 'landing'}",
        "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT": json.dumps(
            {
                "conn_type": "cloudelements",
                "host": emu.base_url,
                "extra": {"user_secret": emu.user_secret, "organization_secret": emu.organization_secret},
            }
        ),
        "AIRFLOW_CONN_CLOUDELEMENTS_WAREHOUSE": json.dumps({"conn_type": "sqlite", "host": str(warehouse)}),
    }
    stack = AirflowDeployment(
        home=tmp / "airflow", dags_folder=dags, extra_env=env, secrets=[emu.user_secret, emu.organization_secret]
    )
    register_deployment(request.config, stack)
    try:
        stack.run_cli("db", "migrate")
        stack.start()
        stack.wait_healthy(timeout=STARTUP_TIMEOUT)
        run_path = stack.trigger_run(DAG_ID, "caps", timeout=STARTUP_TIMEOUT)

        def done() -> str | None:
            state = str(stack.api_json("GET", run_path)["state"])
            return state if state in ("success", "failed") else None

        state = stack.wait_for(f"DAG run {run_path} to finish", done, timeout=RUN_TIMEOUT, interval=1.0)
        tis = stack.api_json("GET", f"{run_path}/taskInstances", params={"limit": 200})["task_instances"]
        failures = [failure_details(stack, t) for t in tis if t["state"] == "failed"]
    finally:
        stack.stop()
    return {"state": state, "tis": tis, "instances": instances, "warehouse": warehouse, "failures": failures}


def failure_details(stack: AirflowDeployment, ti: dict[str, Any]) -> str:
    """The error and warning events of a failed task's logs (redacted), to say why it failed."""
    folder = stack.home / "logs" / f"dag_id={DAG_ID}"
    lines = [f"{ti['task_id']}[{ti['map_index']}]:"]
    for path in sorted(folder.glob(f"run_id=*/task_id={ti['task_id']}/map_index={ti['map_index']}/attempt=*.log")):
        for raw in path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if event.get("level") in ("error", "critical", "warning"):
                lines.append(f"  {path.name}: {event.get('event')} {event.get('error_detail') or ''}"[:800])
    scheduler = (stack.logs / "scheduler.log").read_text(errors="replace")
    if "but the task instance's state attribute is running" in scheduler:
        lines.append("  scheduler.log: the defer/resume race of Airflow 3.3 (apache/airflow#72716)")
    return stack.redact("\n".join(lines[-12:]))


def test_run_succeeds_and_lands_every_tenant_exactly(finished: dict[str, Any], emu: Any) -> None:
    bad = [(t["task_id"], t["map_index"], t["state"]) for t in finished["tis"] if t["state"] != "success"]
    assert finished["state"] == "success", (bad, "\n".join(finished["failures"]))
    extracts = [t for t in finished["tis"] if t["task_id"].startswith("tenant.extract_")]
    assert len(extracts) == INSTANCES * 5
    with sqlite3.connect(finished["warehouse"]) as conn:
        for resource in ("customers", "invoices", "payments", "vendors", "bills"):
            for iid in finished["instances"]:
                rows = conn.execute(
                    f'select record_id, data from "ce_quickbooks_{resource}" where instance_id = ? and is_deleted = 0',
                    (iid,),
                )
                landed = {rid: json.loads(data) for rid, data in rows}
                truth = {record_id(r, "quickbooks"): r for r in emu.state.records(iid, resource)}
                assert landed == truth and truth, (resource, iid)


def test_no_instance_ever_had_more_bulk_jobs_in_flight_than_its_cap(finished: dict[str, Any], emu: Any) -> None:
    every: list[tuple[float, float]] = []
    for iid in finished["instances"]:
        jobs = emu.state.bulk.jobs(emu.state.instances.get(iid))
        assert len(jobs) == 5, f"instance {iid}: one bulk job per resource"
        spans = []
        for job in jobs:
            start, end = (
                parse_timestamp(job["createdDate"], strict=False),
                parse_timestamp(job["completion_time"], strict=False),
            )
            assert start and end, job
            spans.append((start.timestamp(), end.timestamp()))
        assert max_overlap(spans) <= LANES, f"instance {iid}: more than {LANES} bulk jobs at once: {sorted(spans)}"
        every += spans
    # the executor did overlap extracts of different tenants: the cap, not a serial run, bounded each one
    assert max_overlap(every) > LANES, f"no parallelism to bound: {sorted(every)}"
