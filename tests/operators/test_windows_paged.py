"""Incremental windows (explicit, data intervals, zero-width chains, lookback, full_refresh) and the
paged extract, bulk and paged, for QuickBooks Online, QuickBooks Enterprise and FreshBooks."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.models.window import DEFAULT_LOOKBACK
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator
from airflow_provider_cloudelements.utils.records import record_id, stable_id, updated_at
from tests.operators.conftest import Ctx, files_under, run_operator
from tests.operators.test_bulk_extract import MANIFEST_KEYS

ELEMENTS = ["quickbooks", "quickbooksonprem", "freshbooksv2"]
DAY = timedelta(days=1)


def make_op(mode: str, instance_id: int, **kwargs: Any) -> Any:
    kwargs.setdefault("resource", "invoices")
    if mode == "bulk":
        return CloudElementsBulkExtractOperator(
            task_id="extract", instance_id=instance_id, poll_interval=0.1, timeout=30, deferrable=False, **kwargs
        )
    return CloudElementsPagedExtractOperator(task_id="extract", instance_id=instance_id, page_size=7, **kwargs)


def landed(manifest: dict[str, Any], element: str) -> list[str]:
    text = Path(manifest["path"].removeprefix("file://")).read_text()
    return [record_id(json.loads(line), element) for line in text.splitlines() if line.strip()]


def truth_between(
    emu: Any, iid: int, element: str, start: datetime | None, end: datetime | None, tz: str | None = None
) -> set[str]:
    """Ids of the emulator's invoices updated in ``[start, end)`` (naive times read in ``tz``)."""
    out = set()
    for rec in emu.state.records(iid, "invoices"):
        when = updated_at(rec, element, naive_tz=tz)
        if (start is None or when >= start) and (end is None or when < end):
            out.add(record_id(rec, element))
    return out


def middle_record(emu: Any, iid: int, element: str) -> tuple[str, datetime]:
    recs = sorted(emu.state.records(iid, "invoices"), key=lambda r: updated_at(r, element))
    rec = recs[len(recs) // 2]
    return record_id(rec, element), updated_at(rec, element)


@pytest.mark.parametrize("mode", ["bulk", "paged"])
@pytest.mark.parametrize("element", ELEMENTS)
def test_explicit_windows_tile_at_a_record_boundary(emu: Any, conn: str, out: Path, element: str, mode: str) -> None:
    iid = emu.state.create_instance(element, f"tile-{element}-{mode}")["id"]
    rid, x = middle_record(emu, iid, element)
    lo, hi = x - 120 * DAY, x + 120 * DAY
    a = run_operator(
        make_op(mode, iid, full_refresh=False, window_start=lo.isoformat(), window_end=x.isoformat()), Ctx()
    )
    b = run_operator(
        make_op(mode, iid, full_refresh=False, window_start=x.isoformat(), window_end=hi.isoformat()), Ctx()
    )
    ids_a, ids_b = landed(a, element), landed(b, element)
    assert len(ids_a) == len(set(ids_a)) and len(ids_b) == len(set(ids_b))
    assert set(ids_a) == truth_between(emu, iid, element, lo, x)
    assert set(ids_b) == truth_between(emu, iid, element, x, hi)
    assert rid in ids_b and rid not in ids_a  # exactly at the boundary: the later window only
    assert ids_a and len(ids_b) > 1
    assert a["window"] == {"start": lo.isoformat(), "end": x.isoformat(), "full_refresh": False}
    assert a["path"] != b["path"] and a["records"] == len(ids_a)


@pytest.mark.parametrize("mode", ["bulk", "paged"])
@pytest.mark.parametrize("element", ["quickbooks", "freshbooksv2"])
def test_consecutive_data_intervals_and_zero_width_chain(
    emu: Any, conn: str, out: Path, element: str, mode: str
) -> None:
    iid = emu.state.create_instance(element, f"intervals-{element}-{mode}")["id"]
    _, x = middle_record(emu, iid, element)
    lo, hi = x - 100 * DAY, x + 100 * DAY
    everything = truth_between(emu, iid, element, None, None)
    assert truth_between(emu, iid, element, x, None), "records after the first interval's end"
    # first run (auto): an open-ended full refresh, also the records updated after the interval end
    first = run_operator(make_op(mode, iid), Ctx(data_interval_start=lo, data_interval_end=x))
    assert first["full_refresh"] is True and first["window"]["start"] is None and first["complete"] is True
    assert sorted(landed(first, element)) == sorted(everything)
    # later runs (a previous success exists): exactly their interval (lookback=0: exact tiling)
    second = run_operator(make_op(mode, iid, lookback=0), Ctx(x, hi, prev_start_success=lo, prev_end_success=x))
    assert second["full_refresh"] is False and second["complete"] is False
    assert set(landed(second, element)) == truth_between(emu, iid, element, x, hi)
    # zero-width intervals (manual runs) chain from the previous successful run's end
    third = run_operator(
        make_op(mode, iid, lookback=0),
        Ctx(hi + 400 * DAY, hi + 400 * DAY, prev_start_success=hi, prev_end_success=hi),
    )
    assert third["window"]["start"] == hi.isoformat()
    union = landed(second, element) + landed(third, element)
    assert sorted(union) == sorted(truth_between(emu, iid, element, x, None))  # no gap, no duplicate


@pytest.mark.parametrize("element", ["quickbooks", "freshbooksv2"])
def test_records_changed_now_land_in_exactly_one_window(emu: Any, conn: str, out: Path, element: str) -> None:
    """Real-clock changes through the emulator's hub (simulate_activity): the boundary is the change time."""
    iid = emu.state.create_instance(element, f"now-{element}")["id"]
    emu.state.records(iid, "invoices")
    changed = emu.state.simulate_activity(iid, resources=["invoices"], creates=2, updates=2, deletes=0)["invoices"]
    by_id = {record_id(r, element): r for r in emu.state.records(iid, "invoices")}
    # QBO serves ids as "<id>|<syncToken>" and an update bumps the token: compare stable ids
    touched = [stable_id(i, element) for i in changed["created"] + changed["updated"]]
    boundary = min(updated_at(by_id[t], element) for t in touched)
    before, after = boundary - 400 * DAY, boundary + DAY
    for mode in ("bulk", "paged"):
        a = run_operator(make_op(mode, iid, full_refresh=False, window_start=before, window_end=boundary), Ctx())
        b = run_operator(make_op(mode, iid, full_refresh=False, window_start=boundary, window_end=after), Ctx())
        ids_a, ids_b = set(landed(a, element)), set(landed(b, element))
        assert set(touched) <= ids_b and not set(touched) & ids_a, mode
        assert ids_a | ids_b == truth_between(emu, iid, element, before, after)


@pytest.mark.parametrize("mode", ["bulk", "paged"])
def test_lookback_and_full_refresh_modes(emu: Any, conn: str, out: Path, mode: str) -> None:
    element = "quickbooks"
    iid = emu.state.create_instance(element, f"lookback-{mode}")["id"]
    _, x = middle_record(emu, iid, element)
    hi = x + 100 * DAY
    looked = run_operator(make_op(mode, iid, lookback=timedelta(days=30)), Ctx(x, hi, prev_start_success=x))
    assert looked["window"]["start"] == (x - 30 * DAY).isoformat()
    assert set(landed(looked, element)) == truth_between(emu, iid, element, x - 30 * DAY, hi)
    # full_refresh=True ignores the interval (open-ended); False stays incremental even on a first run
    full = run_operator(make_op(mode, iid, full_refresh=True), Ctx(x, hi, prev_start_success=x))
    assert full["full_refresh"] is True and full["window"]["end"] == hi.isoformat()
    assert set(landed(full, element)) == truth_between(emu, iid, element, None, None)
    assert truth_between(emu, iid, element, hi, None), "records updated after the interval end exist"
    # no lookback given: the default overlap (10 minutes) on a window from the data interval
    incr = run_operator(make_op(mode, iid, full_refresh=False), Ctx(x, hi))
    assert incr["window"]["start"] == (x - DEFAULT_LOOKBACK).isoformat()
    assert set(landed(incr, element)) == truth_between(emu, iid, element, x - DEFAULT_LOOKBACK, hi)


@pytest.mark.parametrize("mode", ["bulk", "paged"])
def test_rerunning_an_interval_replaces_its_files(emu: Any, conn: str, out: Path, mode: str) -> None:
    iid = emu.state.create_instance("quickbooks", f"rerun-{mode}")["id"]
    _, x = middle_record(emu, iid, "quickbooks")
    ctx = dict(data_interval_start=x - 200 * DAY, data_interval_end=x, prev_start_success=x - 300 * DAY)
    first = run_operator(make_op(mode, iid), Ctx(**ctx))
    folder = Path(first["path"].removeprefix("file://")).parent
    snapshot = {p.name: p.read_bytes() for p in files_under(folder)}
    second = run_operator(make_op(mode, iid), Ctx(**ctx))
    assert second["manifest_path"] == first["manifest_path"] and second["path"] != first["path"]
    after = {p.name: p.read_bytes() for p in files_under(folder)}
    names = {n(second["path"]), n(second["deleted_path"])}
    assert set(snapshot) == {n(first["path"]), n(first["deleted_path"]), "_manifest.json"}
    assert set(after) == names | {"_manifest.json"}, "the replaced run's files are still there"
    assert after[n(second["path"])] == snapshot[n(first["path"])]
    assert after[n(second["deleted_path"])] == snapshot[n(first["deleted_path"])]
    assert json.loads(after["_manifest.json"]) == json.loads(json.dumps(second))


def n(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def test_paged_extract_interface_reconcile_and_parquet(emu: Any, conn: str, out: Path) -> None:
    import pyarrow.parquet as pq

    end = datetime(2026, 1, 1, tzinfo=timezone.utc)
    iid = emu.state.create_instance("quickbooks", "paged")["id"]
    truth = truth_between(emu, iid, "quickbooks", None, None)
    manifest = run_operator(make_op("paged", iid, reconcile_total=True), Ctx(data_interval_end=end))
    assert set(manifest) == MANIFEST_KEYS
    assert manifest["mode"] == "paged" and manifest["job_id"] is None and manifest["records"] == len(truth)
    assert sorted(landed(manifest, "quickbooks")) == sorted(truth)
    pq_manifest = run_operator(
        make_op("paged", iid, output_format="parquet", resource="invoices"), Ctx(data_interval_end=end)
    )
    table = pq.read_table(pq_manifest["path"].removeprefix("file://"))
    assert n(pq_manifest["path"]).startswith("invoices.") and pq_manifest["path"].endswith(".parquet")
    assert table.num_rows == pq_manifest["records"] == len(truth)
    assert {stable_id(i, "quickbooks") for i in table.column("id").to_pylist()} == truth
