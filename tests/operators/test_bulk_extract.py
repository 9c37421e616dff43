"""CloudElementsBulkExtractOperator + CloudElementsBulkJobTrigger in sync and deferrable modes."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_cloudelements.exceptions import (
    CloudElementsBulkJobError,
    CloudElementsConfigError,
    CloudElementsConnectionError,
    CloudElementsRecordFailuresError,
    CloudElementsTimeoutError,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.operators.links import INSTANCE_URL_KEY
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import (
    STATE_KEY,
    CloudElementsBulkExtractOperator,
)
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger
from tests.operators.conftest import Ctx, files_under, first_event, roundtrip, run_operator, wait_for

END = datetime(2026, 1, 1, tzinfo=timezone.utc)
MANIFEST_KEYS = {
    "element_key",
    "instance_id",
    "resource",
    "mode",
    "path",
    "format",
    "records",
    "bytes",
    "job_id",
    "failed_records",
    "errors_path",
    "deleted_path",
    "deleted",
    "window",
    "full_refresh",
    "manifest_path",
    "manifest_version",
    "snapshot_at",
    "complete",
    "naive_timezone",
}
#: Keys that differ between two runs of one interval (run-unique file names, snapshot time).
PER_RUN_KEYS = {"job_id", "path", "snapshot_at"}


def bulk_op(instance_id: int, **kwargs: Any) -> CloudElementsBulkExtractOperator:
    kwargs.setdefault("resource", "invoices")
    kwargs.setdefault("poll_interval", 0.1)
    kwargs.setdefault("timeout", 30)
    kwargs.setdefault("full_refresh", True)
    return CloudElementsBulkExtractOperator(task_id="extract", instance_id=instance_id, **kwargs)


def jobs_created(emu: Any, instance_id: int) -> int:
    return int(emu.state.stats()["bulk_jobs_created"].get(instance_id, 0))


def job_status(conn: str, instance_id: int, job_id: str) -> str:
    return CloudElementsHook(conn, instance_id=instance_id).get_bulk_status(job_id)["status"]


def ids_in(path: str | Path) -> list[str]:
    text = Path(str(path).removeprefix("file://")).read_text()
    return [json.loads(line)["id"] for line in text.splitlines() if line.strip()]


def no_temp_files(root: Path) -> bool:
    return not [p for p in files_under(root) if p.name.endswith(".part")] if root.exists() else True


# ---------------------------------------------------------------------------------------- 1
def test_deferrable_and_sync_return_the_same_manifest(emu: Any, conn: str, out: Path) -> None:
    inst = emu.state.create_instance("quickbooks", "defer-vs-sync")
    truth = {r["id"] for r in emu.state.records(inst["id"], "invoices")}

    sync = run_operator(bulk_op(inst["id"], deferrable=False), Ctx(data_interval_end=END), expect_defer=False)
    sync_bytes = Path(sync["path"].removeprefix("file://")).read_bytes()

    ctx = Ctx(data_interval_end=END)
    op = bulk_op(inst["id"], deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx.context)
    # the job id is on XCom before deferring, and the trigger carries ids and numbers only
    job_id = ctx.ti.xcoms["bulk_job_id"]
    assert not any(key.startswith("cloudelements_bulk") for key in ctx.ti.xcoms), "no link to an API URL (401)"
    assert ctx.ti.xcoms[INSTANCE_URL_KEY].endswith(f"/instances/{inst['id']}")
    saved = ctx.store.get(STATE_KEY)
    assert {k: saved[k] for k in ("job_id", "landed")} == {"job_id": job_id, "landed": False}
    assert saved["plan"]["window"] == {"start": None, "end": END.isoformat(), "full_refresh": True}
    trigger = deferred.value.trigger
    assert isinstance(trigger, CloudElementsBulkJobTrigger)
    assert deferred.value.timeout is None
    _classpath, kwargs = trigger.serialize()
    blob = json.dumps(kwargs)
    for secret in (emu.user_secret, emu.organization_secret, inst["token"]):
        assert secret not in blob
    assert kwargs["job_id"] == job_id and kwargs["end_time"] > datetime.now().timestamp()
    event = first_event(roundtrip(trigger))
    assert event["status"] == "success" and event["job_id"] == job_id
    deferred_manifest = op.execute_complete(ctx.context, event)

    assert set(sync) == set(deferred_manifest) == MANIFEST_KEYS
    for key in MANIFEST_KEYS - PER_RUN_KEYS:
        assert sync[key] == deferred_manifest[key], key
    assert deferred_manifest["job_id"] == job_id != sync["job_id"]
    assert deferred_manifest["complete"] is True and deferred_manifest["manifest_version"] == 2
    assert deferred_manifest["snapshot_at"] >= sync["snapshot_at"]
    # the second run replaced the first's manifest and removed its file: the folder holds one pair
    folder = Path(deferred_manifest["path"].removeprefix("file://")).parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(["_manifest.json", folder_name(deferred_manifest)])
    assert deferred_manifest["records"] == len(truth) == 30
    assert set(ids_in(deferred_manifest["path"])) == truth
    assert Path(deferred_manifest["path"].removeprefix("file://")).read_bytes() == sync_bytes
    assert {k: ctx.store.get(STATE_KEY)[k] for k in ("job_id", "landed")} == {"job_id": job_id, "landed": True}
    manifest_file = json.loads(Path(deferred_manifest["manifest_path"].removeprefix("file://")).read_text())
    assert manifest_file == json.loads(json.dumps(deferred_manifest))
    assert jobs_created(emu, inst["id"]) == 2


def test_completed_job_from_earlier_try_costs_no_deferral(emu: Any, conn: str, out: Path) -> None:
    """Terminal-before-defer + re-attach: a COMPLETED, never-landed job is downloaded at once."""
    inst = emu.state.create_instance("quickbooks", "terminal-first")
    hook = CloudElementsHook(conn, instance_id=inst["id"])
    ctx = Ctx(data_interval_end=END)
    with pytest.raises(TaskDeferred):  # try 1 submitted and deferred, then its worker died
        bulk_op(inst["id"], deferrable=True).execute(ctx.context)
    job_id = ctx.store.get(STATE_KEY)["job_id"]
    wait_for(lambda: hook.get_bulk_status(job_id)["status"] == "COMPLETED", what="job completed")
    manifest = run_operator(bulk_op(inst["id"], deferrable=True), ctx, expect_defer=False)
    assert manifest["job_id"] == job_id and manifest["records"] == 30
    assert jobs_created(emu, inst["id"]) == 1


# ---------------------------------------------------------------------------------------- 3
def test_retry_reattaches_resubmits_after_failure_and_after_landing(emu: Any, conn: str, out: Path) -> None:
    inst = emu.state.create_instance("quickbooks", "retry")
    ctx = Ctx(data_interval_end=END)
    # try 1: submitted, deferred, then the worker "died" (the trigger never ran)
    with pytest.raises(TaskDeferred):
        bulk_op(inst["id"], deferrable=True).execute(ctx.context)
    first_job = ctx.store.get(STATE_KEY)["job_id"]
    assert jobs_created(emu, inst["id"]) == 1
    # try 2 (fresh operator, same task state store): re-attaches, no new job, lands the data
    manifest = run_operator(bulk_op(inst["id"], deferrable=True), ctx)
    assert manifest["job_id"] == first_job
    assert jobs_created(emu, inst["id"]) == 1
    assert set(ids_in(manifest["path"])) == {r["id"] for r in emu.state.records(inst["id"], "invoices")}
    # try 3 after a landed job: a new job (fresh data)
    again = run_operator(bulk_op(inst["id"], deferrable=False), ctx)
    assert again["job_id"] != first_job and jobs_created(emu, inst["id"]) == 2

    # a previous try whose job FAILED: resubmit
    emu.state.set_faults(bulk_fail=True)
    hook = CloudElementsHook(conn, instance_id=inst["id"])
    failed_job = hook.start_bulk_query("invoices")
    wait_for(lambda: hook.get_bulk_status(failed_job)["status"] == "FAILED", what="job failed")
    emu.state.reset_faults()
    ctx.store.set(STATE_KEY, {"job_id": failed_job, "landed": False, "plan": ctx.store.get(STATE_KEY)["plan"]})
    manifest = run_operator(bulk_op(inst["id"], deferrable=True), ctx)
    assert manifest["job_id"] not in (failed_job, first_job, again["job_id"])
    assert jobs_created(emu, inst["id"]) == 4 and manifest["records"] == 30


# ---------------------------------------------------------------------------------------- 5
@pytest.mark.parametrize("deferrable", [False, True])
def test_failed_records_policy(emu: Any, conn: str, out: Path, deferrable: bool) -> None:
    """Failed records: over the limit the task fails (errors saved, no data); under it the file lands
    with ``complete: false`` (the loader must not delete the failed, live records); a clean rerun
    removes the earlier runs' error files."""
    inst = emu.state.create_instance("quickbooks", f"failed-records-{deferrable}")
    emu.state.set_faults(bulk_failed_records=3)
    with pytest.raises(CloudElementsRecordFailuresError, match="3 failed records"):
        run_operator(bulk_op(inst["id"], deferrable=deferrable, max_failed_records=2), Ctx(data_interval_end=END))
    folder = next(out.rglob("window=*"))
    first_errors = list(folder.glob("invoices.*.errors.ndjson"))
    assert len(first_errors) == 1 and len(first_errors[0].read_text().splitlines()) == 3
    assert not [p for p in folder.iterdir() if not p.name.endswith(".errors.ndjson")] and no_temp_files(out)

    manifest = run_operator(
        bulk_op(inst["id"], deferrable=deferrable, max_failed_records=3), Ctx(data_interval_end=END)
    )
    assert manifest["failed_records"] == 3 and manifest["records"] == 27
    assert manifest["full_refresh"] is True and manifest["complete"] is False
    assert manifest["errors_path"].startswith(folder_uri(folder) + "/invoices.")
    assert Path(manifest["errors_path"].removeprefix("file://")).exists()
    assert len(ids_in(manifest["path"])) == 27
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["_manifest.json", folder_name(manifest), folder_name(manifest, "errors_path")]
    ), "the failed run's errors file was not cleaned"

    emu.state.reset_faults()
    clean = run_operator(bulk_op(inst["id"], deferrable=deferrable), Ctx(data_interval_end=END))
    assert clean["failed_records"] == 0 and clean["errors_path"] is None and clean["complete"] is True
    assert sorted(p.name for p in folder.iterdir()) == sorted(["_manifest.json", folder_name(clean)])
    assert set(ids_in(clean["path"])) == {r["id"] for r in emu.state.records(inst["id"], "invoices")}


def folder_uri(folder: Path) -> str:
    return f"file://{folder}"


def folder_name(manifest: dict[str, Any], key: str = "path") -> str:
    return str(manifest[key]).rsplit("/", 1)[-1]


# ---------------------------------------------------------------------------------------- 6
def test_dropped_download_is_retried_to_an_identical_file(emu: Any, conn: str, out: Path) -> None:
    inst = emu.state.create_instance("quickbooks", "drop-transient")
    clean = run_operator(bulk_op(inst["id"], deferrable=False), Ctx(data_interval_end=END))
    clean_bytes = Path(clean["path"].removeprefix("file://")).read_bytes()
    assert len(clean_bytes) > 4000

    route = "GET /elements/api-v2/hubs/{hub}/bulk/{job_id}/{object_name}"
    before = emu.state.stats()["requests"].get(route, 0)
    from cloudelements_emulator import FaultConfig

    if "drop_download_times" in FaultConfig.field_names():  # the connection drops once, then heals
        emu.state.set_faults(drop_download_after_bytes=4000, drop_download_times=1)
        manifest = run_operator(bulk_op(inst["id"], deferrable=True), Ctx(data_interval_end=END))
    else:  # older emulator: heal the network once the first (dropped) download has started
        emu.state.set_faults(drop_download_after_bytes=4000)

        def heal() -> None:
            wait_for(lambda: emu.state.stats()["requests"].get(route, 0) > before, what="first download")
            emu.state.reset_faults()

        healer = threading.Thread(target=heal)
        healer.start()
        try:
            manifest = run_operator(bulk_op(inst["id"], deferrable=True), Ctx(data_interval_end=END))
        finally:
            healer.join()
    # the first download was cut off (stats are counted when a response ends: wait for both)
    wait_for(lambda: emu.state.stats()["requests"].get(route, 0) >= before + 2, what="two downloads")
    assert manifest["manifest_path"] == clean["manifest_path"] and manifest["path"] != clean["path"]
    assert Path(manifest["path"].removeprefix("file://")).read_bytes() == clean_bytes
    assert not Path(clean["path"].removeprefix("file://")).exists()  # the replaced run's file is gone
    assert no_temp_files(out)


@pytest.mark.parametrize("deferrable", [False, True])
def test_persistently_dropped_download_or_failed_job_leaves_nothing(
    emu: Any, conn: str, out: Path, deferrable: bool
) -> None:
    inst = emu.state.create_instance("quickbooks", f"drop-{deferrable}")
    emu.state.set_faults(drop_download_after_bytes=4000)
    with pytest.raises(CloudElementsConnectionError):
        run_operator(bulk_op(inst["id"], deferrable=deferrable), Ctx(data_interval_end=END))
    assert not [p for p in files_under(out) if p.name.startswith("invoices.ndjson")] if out.exists() else True
    assert not list(out.rglob("invoices.ndjson")) and not list(out.rglob("_manifest.json"))
    assert no_temp_files(out)

    emu.state.reset_faults()
    emu.state.set_faults(bulk_fail=True)
    with pytest.raises(CloudElementsBulkJobError, match="FAILED"):
        run_operator(bulk_op(inst["id"], deferrable=deferrable), Ctx(data_interval_end=END))
    assert not list(out.rglob("invoices.ndjson")) and no_temp_files(out)


# ---------------------------------------------------------------------------------------- 8
def test_csv_and_parquet_bulk_output(emu: Any, conn: str, out: Path) -> None:
    import csv

    import pyarrow.parquet as pq

    inst = emu.state.create_instance("quickbooks", "formats")
    truth = {r["id"] for r in emu.state.records(inst["id"], "customers")}
    csv_manifest = run_operator(
        bulk_op(inst["id"], resource="customers", output_format="csv", deferrable=True), Ctx(data_interval_end=END)
    )
    assert csv_manifest["format"] == "csv" and folder_name(csv_manifest).startswith("customers.")
    assert csv_manifest["path"].endswith(".csv")
    with open(csv_manifest["path"].removeprefix("file://"), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["id"] for r in rows} == truth and csv_manifest["records"] == len(truth)

    pq_manifest = run_operator(
        bulk_op(inst["id"], resource="customers", output_format="parquet", deferrable=False),
        Ctx(data_interval_end=END),
    )
    table = pq.read_table(pq_manifest["path"].removeprefix("file://"))
    assert table.num_rows == pq_manifest["records"] == len(truth)
    assert set(table.column("id").to_pylist()) == truth


# ------------------------------------------------------------------------- 2 and 4: slow jobs
@pytest.fixture(scope="module")
def slow_emu() -> Any:
    """Bulk jobs stay RUNNING for a minute: timeouts and kills happen while they run."""
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(seed=5, records_per_resource=10, bulk_min_seconds=60)) as server:
        yield server


@pytest.fixture
def slow_conn(slow_emu: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    from tests.operators.conftest import set_connection

    return set_connection(monkeypatch, slow_emu, retry_budget=3)


@pytest.mark.parametrize("deferrable", [False, True])
def test_timeout_cancels_the_job_and_lands_nothing(slow_emu: Any, slow_conn: str, out: Path, deferrable: bool) -> None:
    inst = slow_emu.state.create_instance("quickbooks", f"timeout-{deferrable}")
    ctx = Ctx(data_interval_end=END)
    with pytest.raises(CloudElementsTimeoutError, match="cancelled"):
        run_operator(bulk_op(inst["id"], deferrable=deferrable, timeout=timedelta(seconds=0.8)), ctx)
    job_id = ctx.ti.xcoms["bulk_job_id"]
    assert job_status(slow_conn, inst["id"], job_id) == "CANCELLED"
    assert not list(out.rglob("invoices.ndjson")) and no_temp_files(out)


@pytest.mark.parametrize("cancel_on_kill", [True, False])
def test_operator_and_trigger_on_kill(slow_emu: Any, slow_conn: str, out: Path, cancel_on_kill: bool) -> None:
    inst = slow_emu.state.create_instance("quickbooks", f"kill-{cancel_on_kill}")
    expected = {"CANCELLED"} if cancel_on_kill else {"CREATED", "RUNNING"}

    op = bulk_op(inst["id"], deferrable=True, cancel_on_kill=cancel_on_kill)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(Ctx(data_interval_end=END).context)
    job_id = op.job_id
    op.on_kill()
    assert job_status(slow_conn, inst["id"], job_id) in expected

    # the trigger (rebuilt from its serialized kwargs, as in the triggerer) on a second job
    with pytest.raises(TaskDeferred) as deferred:
        bulk_op(inst["id"], deferrable=True, cancel_on_kill=cancel_on_kill).execute(Ctx(data_interval_end=END).context)
    trigger = roundtrip(deferred.value.trigger)
    assert trigger.cancel_on_kill is cancel_on_kill
    asyncio.run(trigger.on_kill())
    assert job_status(slow_conn, inst["id"], trigger.job_id) in expected
    for job in (job_id, trigger.job_id):  # leave no minute-long job behind
        CloudElementsHook(slow_conn, instance_id=inst["id"]).cancel_bulk_job(job)


def test_download_progress_names_the_share_of_records_count(
    emu: Any, conn: str, out: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The download's summary line gives records landed of the job's ``recordsCount`` as a percentage."""
    inst = emu.state.create_instance("quickbooks", "bulk-progress")
    truth = len(emu.state.records(inst["id"], "invoices"))
    manifest = run_operator(bulk_op(inst["id"], deferrable=False), Ctx(data_interval_end=END), expect_defer=False)
    assert manifest["records"] == truth
    logged = capfd.readouterr()
    lines = [line for line in (logged.out + logged.err).splitlines() if "download:" in line]
    assert any(f"{truth} of {truth} records (100%)" in line for line in lines), lines


def test_parquet_without_pyarrow_fails_before_the_job(emu: Any, conn: str, out: Path, monkeypatch: Any) -> None:
    """``output_format='parquet'`` on a worker without pyarrow: a typed error naming the extra, no bulk job."""
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # ``import pyarrow`` raises ImportError
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    inst = emu.state.create_instance("quickbooks", "bulk-no-pyarrow")
    before = jobs_created(emu, inst["id"])
    op = bulk_op(inst["id"], output_format="parquet", deferrable=False)  # the DAG parses without pyarrow
    with pytest.raises(CloudElementsConfigError, match=r"needs pyarrow.*\[parquet\]"):
        op.execute(Ctx(data_interval_end=END).context)
    assert jobs_created(emu, inst["id"]) == before
    assert files_under(out) == [], "something landed"
