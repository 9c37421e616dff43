"""Issue 11, extract side: regression tests at the level a user sees (operators against the emulator over
real HTTP, landed files and warehouse rows compared with the emulator's ground truth).

* resumed deferrals and re-attached retries land exactly the plan resolved at submit time (#1);
* full refreshes are open-ended, ``snapshot_at``/``complete`` follow the manifest v2 contract (#2, #3);
* partition labels keep sub-second windows apart (#5);
* ``naive_timezone`` drives the window of naive-time elements (#7);
* bad bulk status counts end in typed errors, CSV records are counted as records (#8);
* a transient status-poll failure keeps the job for the retry, the last try cancels it (#10);
* the default lookback catches a record stamped by a server clock 120 s behind (#13).
"""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_cloudelements.exceptions import (
    CloudElementsBulkJobError,
    CloudElementsConfigError,
    CloudElementsReconciliationError,
    CloudElementsServerError,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.models.timestamps import format_utc, parse_timestamp
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import (
    STATE_KEY,
    CloudElementsBulkExtractOperator,
)
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator
from airflow_provider_cloudelements.utils.records import record_id, stable_id, updated_at
from tests.hooks.conftest import Req, Resp, ScriptedServer
from tests.operators.conftest import (
    Ctx,
    files_under,
    first_event,
    roundtrip,
    run_operator,
    set_connection,
    wait_for,
)
from tests.operators.test_windows_paged import middle_record as middle
from tests.operators.test_windows_paged import truth_between
from tests.reliability.conftest import compare

DAY = timedelta(days=1)
CANCEL_ROUTE = "PUT /elements/api-v2/hubs/{hub}/bulk/{job_id}/cancel"


def op(mode: str, iid: int, **kwargs: Any) -> Any:
    kwargs.setdefault("resource", "invoices")
    if mode == "bulk":
        kwargs.setdefault("deferrable", False)
        return CloudElementsBulkExtractOperator(
            task_id="extract", instance_id=iid, poll_interval=0.05, timeout=30, **kwargs
        )
    return CloudElementsPagedExtractOperator(task_id="extract", instance_id=iid, page_size=7, **kwargs)


def lines(manifest: dict[str, Any], key: str = "path") -> list[dict[str, Any]]:
    text = Path(manifest[key].removeprefix("file://")).read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def ids(manifest: dict[str, Any], element: str) -> set[str]:
    return {record_id(r, element) for r in lines(manifest)}


def folder_of(manifest: dict[str, Any]) -> Path:
    return Path(manifest["manifest_path"].removeprefix("file://")).parent


def manifest_names_existing_files(manifest_file: Path) -> bool:
    manifest = json.loads(manifest_file.read_text())
    names = [manifest[k] for k in ("path", "deleted_path", "errors_path") if manifest.get(k)]
    return all(Path(n.removeprefix("file://")).exists() for n in names)


class Warehouse:
    """A SQLite warehouse loaded with the project's SQL operator (real load path)."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.db = tmp / "warehouse.db"
        monkeypatch.setenv("AIRFLOW_CONN_CE_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(self.db)}))

    def load(self, manifest: dict[str, Any]) -> None:
        CloudElementsSqlUpsertOperator(task_id="load", manifest=manifest, conn_id="ce_warehouse").execute(Ctx().context)

    def rows(self, table: str) -> dict[str, int]:
        with sqlite3.connect(self.db) as conn:
            return {str(r[0]): int(r[1]) for r in conn.execute(f'select record_id, is_deleted from "{table}"')}


# ------------------------------------------------------------------------------------------------ 1
def test_resumed_deferral_lands_the_incremental_window_it_submitted(
    emu: Any, conn: str, out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The previous run's state changes while the task is deferred (it was cleared): the resumed task
    still lands its incremental window as incremental, and loading it deletes nothing."""
    element = "quickbooks"
    iid = emu.state.create_instance(element, "resume-plan")["id"]
    everything = truth_between(emu, iid, element, None, None)
    _, x = middle(emu, iid, element)
    lo, hi = x - 100 * DAY, x + 60 * DAY
    wh = Warehouse(tmp_path, monkeypatch)
    first = run_operator(op("bulk", iid), Ctx(data_interval_start=lo - 100 * DAY, data_interval_end=lo))
    assert first["full_refresh"] is True and first["complete"] is True
    wh.load(first)

    ctx = Ctx(lo, hi, prev_start_success=lo - 100 * DAY, prev_end_success=lo)
    with pytest.raises(TaskDeferred) as deferred:
        op("bulk", iid, deferrable=True, lookback=0).execute(ctx.context)
    submitted = ctx.store.get(STATE_KEY)["plan"]
    assert submitted["window"] == {"start": lo.isoformat(), "end": hi.isoformat(), "full_refresh": False}
    ctx.prev_start_success = ctx.prev_end_success = None  # the previous run was cleared meanwhile
    event = first_event(roundtrip(deferred.value.trigger))
    resumed = op("bulk", iid, deferrable=True, lookback=0)  # a new worker resumes the task
    manifest = resumed.resume_execution(deferred.value.method_name, {"event": event}, ctx.context)

    assert manifest["full_refresh"] is False and manifest["complete"] is False
    assert manifest["window"] == submitted["window"]
    assert ids(manifest, element) == truth_between(emu, iid, element, lo, hi)
    wh.load(manifest)
    rows = wh.rows("ce_quickbooks_invoices")
    assert set(rows) == everything and not [i for i, deleted in rows.items() if deleted], "live rows marked deleted"

    # the same from the task state store alone (an event without the plan) and on a re-attaching retry
    ctx2 = Ctx(lo, hi, prev_start_success=lo - 100 * DAY, prev_end_success=lo)
    with pytest.raises(TaskDeferred) as deferred2:
        op("bulk", iid, deferrable=True, lookback=0).execute(ctx2.context)
    ctx2.prev_start_success = ctx2.prev_end_success = None
    retried = run_operator(op("bulk", iid, deferrable=True, lookback=0), ctx2)  # try 2 re-attaches
    assert retried["job_id"] == deferred2.value.trigger.job_id
    assert retried["window"] == submitted["window"] and retried["full_refresh"] is False
    event2 = {k: v for k, v in first_event(roundtrip(deferred2.value.trigger)).items() if k != "plan"}
    again = op("bulk", iid, deferrable=True).execute_complete(ctx2.context, event2)
    assert again["window"] == submitted["window"]
    assert ids(again, element) == truth_between(emu, iid, element, lo, hi)


# ------------------------------------------------------------------------------------------------ 2, 3
@pytest.mark.parametrize("mode", ["bulk", "paged"])
def test_full_refresh_is_open_ended_with_snapshot_at_and_complete(emu: Any, conn: str, out: Path, mode: str) -> None:
    """A scheduled full refresh that runs after its interval ended still holds the records edited
    after the interval end; snapshot_at is the job's createdDate (bulk) or the server time before the
    first page (paged); only an unfiltered full refresh is complete."""
    element = "quickbooks"
    iid = emu.state.create_instance(element, f"open-ended-{mode}")["id"]
    _, x = middle(emu, iid, element)
    emu.state.simulate_activity(iid, resources=["invoices"], creates=1, updates=2, deletes=0)
    assert truth_between(emu, iid, element, x, None), "records edited after the interval end"
    before = datetime.now(timezone.utc).replace(microsecond=0)
    manifest = run_operator(op(mode, iid, full_refresh=True), Ctx(data_interval_end=x))
    after = datetime.now(timezone.utc)
    result = compare(lines(manifest), emu.state.records(iid, "invoices"), element)
    assert result.exact, result
    assert manifest["complete"] is True and manifest["window"]["end"] == x.isoformat()
    assert manifest["manifest_version"] == 2 and manifest["naive_timezone"] == "UTC"
    snapshot = parse_timestamp(manifest["snapshot_at"], strict=False)
    assert snapshot is not None and before - timedelta(seconds=1) <= snapshot <= after
    if mode == "bulk":
        created = CloudElementsHook(conn, instance_id=iid).get_bulk_status(manifest["job_id"])["createdDate"]
        assert manifest["snapshot_at"] == format_utc(parse_timestamp(created, strict=False))  # type: ignore[arg-type]
    else:
        assert snapshot.microsecond == 0  # from the Date header, floored to the second

    filtered = run_operator(op(mode, iid, full_refresh=True, where="totalAmt >= 0"), Ctx(data_interval_end=x))
    assert filtered["full_refresh"] is True and filtered["complete"] is False


# ------------------------------------------------------------------------------------------------ 5
@pytest.mark.parametrize("mode", ["bulk", "paged"])
def test_two_windows_inside_one_second_land_in_two_folders(emu: Any, conn: str, out: Path, mode: str) -> None:
    element = "quickbooks"
    iid = emu.state.create_instance(element, f"subsecond-{mode}")["id"]
    emu.state.simulate_activity(iid, resources=["invoices"], creates=3, updates=0, deletes=0)
    rec = next(r for r in emu.state.records(iid, "invoices") if 100 <= updated_at(r, element).microsecond // 1000 < 900)
    second = updated_at(rec, element).replace(microsecond=0)
    a_lo, mid, b_hi = (
        second + timedelta(milliseconds=50),
        updated_at(rec, element),
        second + timedelta(milliseconds=950),
    )
    a = run_operator(op(mode, iid, full_refresh=False, window_start=a_lo, window_end=mid), Ctx())
    b = run_operator(op(mode, iid, full_refresh=False, window_start=mid, window_end=b_hi), Ctx())
    assert folder_of(a) != folder_of(b), "two windows share a partition folder"
    assert ids(b, element) >= {record_id(rec, element)} and record_id(rec, element) not in ids(a, element)
    assert ids(a, element) == truth_between(emu, iid, element, a_lo, mid)
    assert ids(b, element) == truth_between(emu, iid, element, mid, b_hi)
    for m in (a, b):
        assert manifest_names_existing_files(folder_of(m) / "_manifest.json")
        assert json.loads((folder_of(m) / "_manifest.json").read_text())["path"] == m["path"]


# ------------------------------------------------------------------------------------------------ 7
@pytest.mark.parametrize("mode", ["bulk", "paged"])
def test_naive_timezone_drives_the_freshbooks_window(emu: Any, conn: str, out: Path, mode: str) -> None:
    """FreshBooks ``updated`` is naive: read in America/New_York, a record stamped 2 h before the
    boundary in UTC reading is 3 h after it, so it belongs to the later window."""
    element, tz = "freshbooksv2", "America/New_York"
    iid = emu.state.create_instance(element, f"naive-{mode}")["id"]
    rid, utc_reading = middle(emu, iid, element)
    boundary = utc_reading + timedelta(hours=2)
    lo, hi = boundary - 60 * DAY, boundary + 60 * DAY
    kw = dict(full_refresh=False, naive_timezone=tz)
    a = run_operator(op(mode, iid, window_start=lo, window_end=boundary, **kw), Ctx())
    b = run_operator(op(mode, iid, window_start=boundary, window_end=hi, **kw), Ctx())
    assert rid in ids(b, element) and rid not in ids(a, element)
    assert ids(a, element) == truth_between(emu, iid, element, lo, boundary, tz)
    assert ids(b, element) == truth_between(emu, iid, element, boundary, hi, tz)
    assert a["naive_timezone"] == b["naive_timezone"] == tz
    assert a["records"] == len(ids(a, element))
    utc = run_operator(op(mode, iid, full_refresh=False, window_start=lo, window_end=boundary), Ctx())
    assert utc["naive_timezone"] == "UTC" and rid in ids(utc, element)  # the element default: UTC
    with pytest.raises(CloudElementsConfigError, match="time zone"):
        op(mode, iid, naive_timezone="Mars/Olympus")


# ------------------------------------------------------------------------------------------------ 8
@pytest.fixture
def status_proxy(emu: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A loopback proxy in front of the emulator that can rewrite bulk status bodies."""
    server = ScriptedServer().start()
    rewrite: dict[str, Any] = {}

    def forward(req: Req) -> Resp:
        headers = {k: v for k, v in req.headers.items() if k.lower() in ("authorization", "accept", "content-type")}
        resp = httpx.request(
            req.method, emu.base_url + req.path, params=req.query, headers=headers, content=req.body or None, timeout=10
        )
        body: Any = resp.content
        if req.method == "GET" and "/bulk/" in req.path and req.path.endswith("/invoices") and "blank" in rewrite:
            body = body.replace(b"\n", b"\n\n", 3)  # blank lines are no records
        elif req.method == "GET" and req.path.endswith("/status") and rewrite:
            status = resp.json()
            for key, value in rewrite.items():
                if value is None:
                    status.pop(key, None)
                else:
                    status[key] = value
            body = status
        ctype = resp.headers.get("Content-Type", "application/json")
        return Resp(resp.status_code, body, headers={"Content-Type": ctype} if isinstance(body, bytes) else {})

    server.handler = forward
    set_connection(
        monkeypatch,
        type(
            "E",
            (),
            {
                "base_url": server.base_url,
                "user_secret": emu.user_secret,
                "organization_secret": emu.organization_secret,
            },
        )(),
        retry_budget=2,
    )
    yield rewrite
    server.stop()


@pytest.mark.parametrize(
    ("rewrite", "error"),
    [
        ({"recordsCount": None}, CloudElementsReconciliationError),
        ({"recordsCount": "abc"}, CloudElementsReconciliationError),
        ({"recordsCount": -3}, CloudElementsReconciliationError),
        ({"recordsFailedCount": "x"}, CloudElementsBulkJobError),
    ],
    ids=["missing", "abc", "negative", "failed-not-a-number"],
)
def test_bad_record_counts_are_typed_errors_and_land_nothing(
    emu: Any, status_proxy: dict[str, Any], out: Path, rewrite: dict[str, Any], error: type
) -> None:
    iid = emu.state.create_instance("quickbooks", f"bad-count-{next(iter(rewrite.values()))}")["id"]
    status_proxy.update(rewrite)
    with pytest.raises(error) as raised:
        run_operator(
            op("bulk", iid, full_refresh=True), Ctx(data_interval_end=datetime(2026, 1, 1, tzinfo=timezone.utc))
        )
    assert not isinstance(raised.value, ValueError) and next(iter(rewrite)) in str(raised.value)
    assert not [p for p in files_under(out) if not p.name.endswith(".errors.ndjson")] if out.exists() else True


def test_blank_lines_in_a_bulk_file_are_not_records(emu: Any, status_proxy: dict[str, Any], out: Path) -> None:
    iid = emu.state.create_instance("quickbooks", "blank-lines")["id"]
    status_proxy["blank"] = True
    manifest = run_operator(
        op("bulk", iid, full_refresh=True), Ctx(data_interval_end=datetime(2026, 1, 1, tzinfo=timezone.utc))
    )
    truth = emu.state.records(iid, "invoices")
    assert manifest["records"] == len(truth) and compare(lines(manifest), truth, "quickbooks").exact


def test_changed_records_inside_one_second_land_in_two_folders(emu: Any, conn: str, out: Path) -> None:
    """Two event batches whose spans differ only below the second get two partition folders (the
    extract operators' labels), each with its own manifest."""
    from airflow_provider_cloudelements.transfers.cloudelements_to_storage.changes import (
        CloudElementsChangedRecordsOperator,
    )

    iid = emu.state.create_instance("quickbooks", "changes-subsecond")["id"]
    emu.state.records(iid, "invoices")
    hook = CloudElementsHook("cloudelements_default", instance_id=iid)
    for _ in range(5):  # two batches of activity a few ms apart inside one wall-clock second
        wait_for(lambda: datetime.now(timezone.utc).microsecond < 200_000, what="the start of a second")
        since = datetime.now(timezone.utc) - timedelta(milliseconds=1)
        first = emu.state.simulate_activity(iid, resources=["invoices"], creates=2, updates=0, deletes=0)
        mark = datetime.now(timezone.utc)
        wait_for(lambda m=mark: datetime.now(timezone.utc) >= m + timedelta(milliseconds=20), what="20 ms")
        emu.state.simulate_activity(iid, resources=["invoices"], creates=2, updates=0, deletes=0)
        wanted = {stable_id(i, "quickbooks") for i in first["invoices"]["created"]}  # ids read "<id>|<syncToken>"
        events = wait_for(
            lambda t=since: (found := list(hook.iter_events(since=t, object_types=["invoices"])))[3:] and found,
            what="four events",
        )
        events = sorted(events, key=lambda e: e["eventDate"])
        if len({e["eventDate"][:19] for e in events}) == 1:
            break
    assert len({e["eventDate"][:19] for e in events}) == 1 and len({e["eventDate"] for e in events}) > 1
    split = len([e for e in events if stable_id(e["objectId"], "quickbooks") in wanted])
    manifests = [
        CloudElementsChangedRecordsOperator(task_id="c", instance_id=iid, events=batch).execute(Ctx().context)[0]
        for batch in (events[:split], events[split:])
    ]
    assert folder_of(manifests[0]) != folder_of(manifests[1]), "two event spans share a partition folder"
    for m, batch in zip(manifests, (events[:split], events[split:]), strict=True):
        assert ids(m, "quickbooks") == {stable_id(e["objectId"], "quickbooks") for e in batch}
        assert m["manifest_version"] == 2 and m["complete"] is False and m["snapshot_at"]
        assert manifest_names_existing_files(folder_of(m) / "_manifest.json")


def test_csv_with_a_line_break_inside_a_field_lands_exactly_and_reruns(emu: Any, conn: str, out: Path) -> None:
    iid = emu.state.create_instance("quickbooks", "csv-newline")["id"]
    hook = CloudElementsHook(conn, instance_id=iid)
    emu.state.records(iid, "customers")
    created = hook.create_record("customers", {"displayName": 'Line one\nLine two, "quoted"'})
    truth = {str(r["id"]): r for r in emu.state.records(iid, "customers")}
    for _ in range(2):  # the rerun must pass too (it used to fail: "downloaded 32, recordsCount=31")
        manifest = run_operator(
            op("bulk", iid, resource="customers", output_format="csv", full_refresh=True),
            Ctx(data_interval_end=datetime(2026, 1, 1, tzinfo=timezone.utc)),
        )
        with open(manifest["path"].removeprefix("file://"), newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert manifest["records"] == len(rows) == len(truth)
        assert {r["id"] for r in rows} == set(truth)
        assert next(r for r in rows if r["id"] == str(created["id"]))["displayName"] == created["displayName"]


# ------------------------------------------------------------------------------------------------ 10
@pytest.mark.parametrize("retries", [1, 0])
def test_transient_poll_failure_in_the_trigger_keeps_or_cancels_the_job(
    emu: Any, conn: str, out: Path, monkeypatch: pytest.MonkeyPatch, retries: int
) -> None:
    """Every status poll of the trigger answers 503 until its retry budget is spent: with a retry left
    the job is kept and the retry re-attaches to it (one job, exact data); on the last try it is
    cancelled."""
    iid = emu.state.create_instance("quickbooks", f"poll-503-{retries}")["id"]
    monkeypatch.setattr(emu.state.bulk, "min_seconds", 2.0 if retries else 60.0)
    ctx = Ctx(data_interval_end=datetime(2026, 1, 1, tzinfo=timezone.utc))
    with pytest.raises(TaskDeferred) as deferred:
        op("bulk", iid, deferrable=True, full_refresh=True, retries=retries).execute(ctx.context)
    job_id = deferred.value.trigger.job_id
    emu.state.set_faults(rate_5xx=1.0, path_prefix="/elements/api-v2/hubs/finance/bulk", methods="GET")
    event = first_event(roundtrip(deferred.value.trigger))
    emu.state.reset_faults()
    assert event["status"] == "error"
    cancels = emu.state.stats()["requests"].get(CANCEL_ROUTE, 0)
    with pytest.raises(CloudElementsServerError):
        op("bulk", iid, deferrable=True, full_refresh=True, retries=retries).execute_complete(ctx.context, event)
    hook = CloudElementsHook(conn, instance_id=iid)
    if not retries:
        assert hook.get_bulk_status(job_id)["status"] == "CANCELLED"
        return
    assert emu.state.stats()["requests"].get(CANCEL_ROUTE, 0) == cancels, "the job was cancelled"
    jobs = int(emu.state.stats()["bulk_jobs_created"].get(iid, 0))
    monkeypatch.setattr(emu.state.bulk, "min_seconds", 0.1)
    manifest = run_operator(op("bulk", iid, deferrable=True, full_refresh=True, retries=retries), ctx)
    assert manifest["job_id"] == job_id and int(emu.state.stats()["bulk_jobs_created"][iid]) == jobs
    assert compare(lines(manifest), emu.state.records(iid, "invoices"), "quickbooks").exact


# ------------------------------------------------------------------------------------------------ 13
@pytest.mark.parametrize("mode", ["bulk", "paged"])
def test_default_lookback_catches_a_record_from_a_server_clock_120s_behind(
    emu: Any, conn: str, out: Path, mode: str
) -> None:
    """Scheduled runs end on the worker's clock; the server stamps records 120 s earlier than the
    worker would. A record created after run 1 ended is stamped before run 1's end: only the default
    lookback brings it into run 2 (lookback=0 shows the old default losing it)."""
    element = "quickbooks"
    iid = emu.state.create_instance(element, f"skew-{mode}")["id"]
    emu.state.records(iid, "invoices")
    t1 = datetime.now(timezone.utc) + timedelta(seconds=120)  # run 1's interval end, worker clock
    t0, t2 = t1 - timedelta(hours=1), t1 + timedelta(hours=1)
    run1 = run_operator(op(mode, iid), Ctx(t0, t1, prev_start_success=t0 - timedelta(hours=1), prev_end_success=t0))
    new = [
        stable_id(i, element)
        for i in emu.state.simulate_activity(iid, ["invoices"], creates=1, updates=0, deletes=0)["invoices"]["created"]
    ]
    assert new and not set(new) & ids(run1, element)
    ctx2 = dict(data_interval_start=t1, data_interval_end=t2, prev_start_success=t0, prev_end_success=t1)
    run2 = run_operator(op(mode, iid), Ctx(**ctx2))
    assert set(new) <= ids(run2, element), "the default lookback missed a record of a server clock 120 s behind"
    assert run2["window"]["start"] == (t1 - timedelta(minutes=10)).isoformat()
    no_overlap = run_operator(op(mode, iid, lookback=0), Ctx(**ctx2))
    assert not set(new) & ids(no_overlap, element)
