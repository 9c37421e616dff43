"""Issue 11, loader side: what a load may delete, how versions are ordered, late and repeated loads.

Every test writes the NDJSON files and the manifest an extract lands (manifest v2 with
``snapshot_at``/``complete`` unless it says v1) and asserts the table rows, on SQLite and (when
``CLOUDELEMENTS_TEST_POSTGRES_URI`` is set) PostgreSQL. Times are on 2026-12-01 UTC unless noted.
"""

from __future__ import annotations

import itertools
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsDataError
from airflow_provider_cloudelements.models.timestamps import format_utc
from airflow_provider_cloudelements.transfers.storage_to_sql import dialect as sql_dialect
from airflow_provider_cloudelements.transfers.storage_to_sql import rows as sql_rows
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator

from .conftest import (
    Backend,
    counts,
    fb_invoice,
    make_manifest,
    qbe_customer,
    qbo_customer,
    qbo_invoice,
    run,
    run_at,
    write_ndjson,
)

DAY = datetime(2026, 12, 1, tzinfo=timezone.utc)


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


def ms(hour: int, minute: int = 0) -> int:
    """QBO ``metaData.lastUpdatedTime`` (epoch milliseconds)."""
    return int(at(hour, minute).timestamp() * 1000)


def iso(hour: int, minute: int = 0) -> str:
    """The loader's fixed-width UTC form (also what ``snapshot_at``/``deleted_at`` are compared as)."""
    return format_utc(at(hour, minute))


def extract(
    tmp_path: Path,
    name: str,
    element: str,
    resource: str,
    records: list[dict[str, Any]],
    *,
    snapshot: str | None,
    tombstones: list[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Land ``records`` (and tombstones) as ``<name>.ndjson`` and return the extract's manifest."""
    deleted = write_ndjson(tmp_path / f"{name}.deleted.ndjson", tombstones) if tombstones else None
    return make_manifest(
        element,
        resource,
        write_ndjson(tmp_path / f"{name}.ndjson", records),
        len(records),
        snapshot_at=snapshot,
        deleted_path=deleted,
        **kwargs,
    )


def invoices(tmp_path: Path, name: str, records: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """:func:`extract` of QuickBooks Online invoices."""
    return extract(tmp_path, name, "quickbooks", "invoices", records, **kwargs)


def state(db: Backend, table: str, instance_id: int) -> dict[str, tuple[Any, ...]]:
    """Every column but ``synced_at`` of one instance's rows (to compare instances loaded differently)."""
    return {
        rid: (r["updated_at"], r["is_deleted"], r["raw"], r["version_num"], r["observed_at"], r["deleted_at"])
        for rid, r in db.rows(table, instance_id).items()
    }


# ---- #2 / #15: a full refresh deletes by absence only what its complete snapshot proves ------------


def test_late_full_refresh_deletes_only_what_its_snapshot_proves(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    inc1 = invoices(
        tmp_path,
        "inc1",
        [qbo_invoice(i, updated_ms=ms(7)) for i in (1, 2, 3, 4)],
        snapshot=iso(8),
    )
    # 10:00 open-ended full refresh: 3 and 4 were hard-deleted before it; 2 is its 07:00 version
    full = invoices(
        tmp_path,
        "full",
        [qbo_invoice(1, updated_ms=ms(7)), qbo_invoice(2, updated_ms=ms(7))],
        snapshot=iso(10),
        full_refresh=True,
    )
    # 11:00 incremental, loaded BEFORE the full refresh: 2 edited at 10:30, 5 created at 10:40
    edited = qbo_invoice(2, updated_ms=ms(10, 30), sync=1, total=222.0)
    created = qbo_invoice(5, updated_ms=ms(10, 40))
    inc2 = invoices(tmp_path, "inc2", [edited, created], snapshot=iso(11))
    run(db, inc1)
    run(db, inc2)

    summary = run(db, full)  # loaded late
    assert counts(summary) == (0, 0, 2, 2, 3, 5)
    rows = db.rows(table, 12)
    assert db.live(table, 12) == {"1": rows["1"]["data"], "2": edited, "5": created}
    assert rows["1"]["data"] == qbo_invoice(1, updated_ms=ms(7))
    for rid in ("3", "4"):  # deleted at the snapshot's time; the version keeps its own updated time
        assert (rows[rid]["is_deleted"], rows[rid]["deleted_at"], rows[rid]["updated_at"]) == (1, iso(10), iso(7))

    # an older extract loaded after all this resurrects nothing and regresses nothing
    assert counts(run(db, inc1)) == (0, 0, 4, 0, 3, 5)
    # an extract taken before the snapshot, naming an id the table never held and the snapshot lacked
    old = invoices(tmp_path, "old", [qbo_invoice(6, updated_ms=ms(5))], snapshot=iso(6))
    summary = run(db, old)
    assert (summary["inserted"], summary["deleted"], summary["rows_live"]) == (1, 1, 3)
    assert (db.rows(table, 12)["6"]["is_deleted"], db.rows(table, 12)["6"]["deleted_at"]) == (1, iso(10))
    assert db.live(table, 12) == {"1": rows["1"]["data"], "2": edited, "5": created}


def test_v1_full_refresh_keeps_the_window_end_rule(db: Backend, tmp_path: Path) -> None:
    """A manifest without snapshot_at (an old XCom) still loads: its full refresh deletes absent rows
    updated before its window end (deleted_at = the window end), and nothing when records failed."""
    table = f"{db.prefix}quickbooks_invoices"
    run(
        db,
        invoices(
            tmp_path,
            "v1inc",
            [qbo_invoice(1, updated_ms=ms(7)), qbo_invoice(2, updated_ms=ms(7)), qbo_invoice(3, updated_ms=ms(11))],
            snapshot=None,
        ),
    )
    full = invoices(
        tmp_path,
        "v1full",
        [qbo_invoice(1, updated_ms=ms(7))],
        snapshot=None,
        full_refresh=True,
        window_end=at(10).isoformat(),
    )
    assert counts(run(db, full)) == (0, 0, 1, 1, 2, 3)
    rows = db.rows(table, 12)
    assert (rows["2"]["is_deleted"], rows["2"]["deleted_at"]) == (1, iso(10))
    assert rows["3"]["is_deleted"] == 0  # updated after the window end: the bounded file could not hold it
    assert rows["1"]["observed_at"] == iso(7)  # v1: observed time = updated time


# ---- #3: failed records (or an incomplete snapshot) are never deletions -----------------------------


@pytest.mark.parametrize(
    ("snapshot", "extra"),
    [
        pytest.param(iso(10), {"failed_records": 2}, id="v2 with failed records"),
        pytest.param(iso(10), {"complete": False}, id="v2 not complete (user where)"),
        pytest.param(iso(10), {"complete": True, "failed_records": 2}, id="v2 complete but failed records"),
        pytest.param(None, {"failed_records": 2}, id="v1 with failed records"),
    ],
)
def test_failed_records_are_never_deletions(
    db: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture, snapshot: str | None, extra: dict[str, Any]
) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    everything = [qbo_invoice(i, updated_ms=ms(7)) for i in range(1, 6)]
    run(db, invoices(tmp_path, "inc", everything, snapshot=iso(8)))
    # 4 and 5 failed to export: absent from the file, live at the source
    full = extract(
        tmp_path, "full", "quickbooks", "invoices", everything[:3], snapshot=snapshot, full_refresh=True, **extra
    )
    with caplog.at_level(logging.WARNING, logger="airflow_provider_cloudelements.transfers.storage_to_sql.load"):
        summary = run(db, full)
    assert counts(summary) == (0, 0, 3, 0, 5, 5)
    assert db.live(table, 12) == {str(i): r for i, r in enumerate(everything, start=1)}
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "not complete" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert f"failed_records={extra.get('failed_records', 0)}" in warnings[0]
    assert "2 live row(s) absent from the file were kept" in warnings[0]


# ---- #4: an old tombstone never beats a newer live version ------------------------------------------


def test_old_tombstone_never_beats_a_restore(db: Backend, tmp_path: Path) -> None:
    """Customer 7 soft-deleted at 09:00 (DELETED event), restored at 09:30."""
    table = f"{db.prefix}quickbooks_customers"
    deleted = {**qbo_customer(7, updated_ms=ms(9), active=False), "syncToken": "1"}
    restored = {**qbo_customer(7, updated_ms=ms(9, 30), active=True), "syncToken": "2"}
    tomb = [{"id": "7", "deleted_at": iso(9)}]
    one = extract(
        tmp_path, "one", "quickbooks", "customers", [restored], snapshot=iso(10), tombstones=tomb, instance_id=12
    )
    first = extract(tmp_path, "m1", "quickbooks", "customers", [deleted], snapshot=iso(9, 15), tombstones=tomb)
    second = extract(tmp_path, "m2", "quickbooks", "customers", [restored], snapshot=iso(10))

    assert counts(run(db, one)) == (1, 0, 0, 0, 1, 1)  # both in one manifest
    for iid, order in ((13, (second, first)), (14, (first, second))):  # out of order, in order
        for manifest in order:
            run(db, {**manifest, "instance_id": iid})
    for iid in (12, 13, 14):
        row = db.rows(table, iid)["7"]
        assert (row["is_deleted"], row["deleted_at"], row["data"]) == (0, None, restored), iid
        assert (row["updated_at"], row["version_num"]) == (iso(9, 30), 2)
    assert state(db, table, 13) == state(db, table, 14)


def test_deletion_keeps_its_own_time(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    run(db, invoices(tmp_path, "a", [qbo_invoice(8, updated_ms=ms(7))], snapshot=iso(8)))
    run(
        db,
        invoices(
            tmp_path,
            "b",
            [],
            snapshot=iso(10),
            tombstones=[{"id": "8", "deleted_at": iso(9, 1)}],
        ),
    )
    row = db.rows(table, 12)["8"]
    assert (row["is_deleted"], row["deleted_at"], row["updated_at"], row["observed_at"]) == (
        1,
        iso(9, 1),
        iso(7),
        iso(8),
    )
    assert row["data"] == qbo_invoice(8, updated_ms=ms(7))  # the last known content is kept


# ---- #6: ordering ties and gaps ---------------------------------------------------------------------


def test_version_without_updated_field_no_longer_wins(db: Backend, tmp_path: Path) -> None:
    fb_table = f"{db.prefix}freshbooksv2_invoices"
    stored = fb_invoice(5, updated="2026-12-01 09:00:00", amount="50.00")
    run(db, extract(tmp_path, "fb", "freshbooksv2", "invoices", [stored], snapshot=iso(10)))
    timeless = {k: v for k, v in fb_invoice(5, updated="", amount="99.00").items() if k != "updated"}
    assert counts(run(db, extract(tmp_path, "fb1", "freshbooksv2", "invoices", [timeless], snapshot=None))) == (
        0,
        0,
        1,
        0,
        1,
        1,
    )
    assert db.rows(fb_table, 12)["5"]["data"] == stored

    qbo_table = f"{db.prefix}quickbooks_invoices"
    newer = qbo_invoice(9, updated_ms=ms(9), sync=3, total=30.0)
    older = qbo_invoice(9, updated_ms=ms(8), sync=2, total=20.0)
    del older["metaData"]["lastUpdatedTime"]
    run(db, invoices(tmp_path, "q1", [newer], snapshot=iso(10)))
    assert counts(run(db, invoices(tmp_path, "q2", [older], snapshot=iso(11)))) == (
        0,
        0,
        1,
        0,
        1,
        1,
    )  # a later snapshot of an older syncToken: the syncToken decides
    assert db.rows(qbo_table, 12)["9"]["data"] == newer


def test_same_second_qbe_edit_loaded_last_with_older_content_loses(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooksonprem_customers"
    old = qbe_customer("80000001-1", modified="2026-12-01T04:00:00-05:00", edit_sequence="1796101200")
    new = {
        **qbe_customer("80000001-1", modified="2026-12-01T04:00:00-05:00", edit_sequence="1796101201"),
        "Balance": "99.00",
    }
    # the newer edit reached an earlier-started extract; the older content is in a later snapshot
    run(db, extract(tmp_path, "new", "quickbooksonprem", "customers", [new], snapshot=iso(9, 30)))
    summary = run(db, extract(tmp_path, "old", "quickbooksonprem", "customers", [old], snapshot=iso(10)))
    assert counts(summary) == (0, 0, 1, 0, 1, 1)
    row = db.rows(table, 12)["80000001-1"]
    assert (row["data"], row["version_num"], row["observed_at"]) == (new, 1796101201, iso(9, 30))


def test_freshbooks_edits_in_a_repeated_dst_hour_resolve_by_snapshot_time(db: Backend, tmp_path: Path) -> None:
    """2026-11-01 01:00-02:00 happens twice in New York: 01:30 EDT (05:30Z), then 01:10 EST (06:10Z).
    Naive ``updated`` reads both as EDT, so the later edit looks 20 minutes older."""
    table = f"{db.prefix}freshbooksv2_invoices"
    first = fb_invoice(3, updated="2026-11-01 01:30:00", amount="10.00")
    second = fb_invoice(3, updated="2026-11-01 01:10:00", amount="20.00")
    ex1 = extract(
        tmp_path,
        "ex1",
        "freshbooksv2",
        "invoices",
        [first],
        snapshot="2026-11-01T05:40:00.000Z",
        naive_timezone="America/New_York",
    )
    ex2 = extract(
        tmp_path,
        "ex2",
        "freshbooksv2",
        "invoices",
        [second],
        snapshot="2026-11-01T06:20:00.000Z",
        naive_timezone="America/New_York",
    )
    for iid, order in ((12, (ex1, ex2)), (13, (ex2, ex1))):
        for manifest in order:
            run(db, {**manifest, "instance_id": iid})
        row = db.rows(table, iid)["3"]
        assert row["data"]["amount"]["amount"] == "20.00", iid
        assert (row["updated_at"], row["observed_at"]) == ("2026-11-01T05:10:00.000Z", "2026-11-01T06:20:00.000Z")


# ---- #7: one naive_timezone parameter ----------------------------------------------------------------


def test_naive_timezone_comes_from_the_manifest_unless_set(
    db: Backend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = f"{db.prefix}freshbooksv2_invoices"
    records = [fb_invoice(1, updated="2026-07-15 09:30:00")]
    ny = extract(
        tmp_path, "ny", "freshbooksv2", "invoices", records, snapshot=iso(10), naive_timezone="America/New_York"
    )
    run(db, ny)
    assert db.rows(table, 12)["1"]["updated_at"] == "2026-07-15T13:30:00.000Z"  # the extract's zone (EDT)
    with caplog.at_level(logging.WARNING, logger="airflow_provider_cloudelements.transfers.storage_to_sql.load"):
        run(db, {**ny, "instance_id": 13}, naive_timezone="UTC")  # explicit parameter wins, with a warning
    assert db.rows(table, 13)["1"]["updated_at"] == "2026-07-15T09:30:00.000Z"
    assert any("although its extract used America/New_York" in r.getMessage() for r in caplog.records)
    run(db, extract(tmp_path, "v1", "freshbooksv2", "invoices", records, snapshot=None, instance_id=14))
    assert db.rows(table, 14)["1"]["updated_at"] == "2026-07-15T09:30:00.000Z"  # element default: UTC
    with pytest.deprecated_call():
        run(db, {**ny, "instance_id": 15}, source_timezone="Europe/Paris")
    assert db.rows(table, 15)["1"]["updated_at"] == "2026-07-15T07:30:00.000Z"


def test_bad_naive_timezone_fails_before_the_database(db: Backend, tmp_path: Path) -> None:
    manifest = extract(
        tmp_path,
        "x",
        "freshbooksv2",
        "invoices",
        [fb_invoice(1, updated="2026-07-15 09:30:00")],
        snapshot=iso(10),
        naive_timezone="Mars/Olympus",
    )
    with pytest.raises(CloudElementsConfigError, match="manifest naive_timezone: unknown time zone 'Mars/Olympus'"):
        run(db, manifest)
    assert not db.table_exists(f"{db.prefix}freshbooksv2_invoices")
    with pytest.raises(CloudElementsConfigError, match="naive_timezone: unknown time zone"):
        CloudElementsSqlUpsertOperator(task_id="t", manifest=manifest, naive_timezone="Mars/Olympus")


# ---- #8: deep nesting is a typed error naming file and line -----------------------------------------


def test_deeply_nested_record_is_a_typed_error(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    run(db, invoices(tmp_path, "ok", [qbo_invoice(1, updated_ms=ms(7))], snapshot=iso(8)))
    before = db.dump(table)
    nested = json.dumps({"id": "2|0", "metaData": {"lastUpdatedTime": ms(9)}, "line": []})
    nested = nested[:-3] + "[" * 3000 + "]" * 3000 + "]}"
    path = write_ndjson(tmp_path / "deep.ndjson", [qbo_invoice(3, updated_ms=ms(9))], raw_lines={1: nested})
    with pytest.raises(CloudElementsDataError, match=r"deep\.ndjson:2: JSON nested too deeply to load"):
        run(db, make_manifest("quickbooks", "invoices", path, 2, snapshot_at=iso(10)))
    assert db.dump(table) == before


# ---- #15: tombstones for ids the table does not hold yet ---------------------------------------------


def test_tombstone_for_unknown_id_stops_a_late_older_extract(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    taken_before = extract(
        tmp_path, "old", "quickbooks", "invoices", [qbo_invoice(50, updated_ms=ms(7))], snapshot=iso(8)
    )
    deletes = invoices(
        tmp_path,
        "del",
        [],
        snapshot=iso(10),
        tombstones=[{"id": "50|0", "deleted_at": iso(9)}],
    )
    summary = run(db, deletes)
    assert (summary["new_tombstones"], summary["deleted"], summary["rows_live"], summary["rows_total"]) == (1, 0, 0, 1)
    row = db.rows(table, 12)["50"]
    assert (row["data"], row["is_deleted"], row["deleted_at"], row["updated_at"]) == (None, 1, iso(9), None)

    run(db, taken_before)  # the extract taken before the delete, loaded after it
    assert db.live(table, 12) == {}
    row = db.rows(table, 12)["50"]
    assert (row["is_deleted"], row["deleted_at"], row["data"]) == (1, iso(9), qbo_invoice(50, updated_ms=ms(7)))


def test_full_refresh_deletion_survives_late_older_extracts(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooksonprem_customers"
    a = qbe_customer("80000060-1", modified="2026-12-01T02:00:00-05:00")
    b = qbe_customer("80000061-1", modified="2026-12-01T02:00:00-05:00")
    inc = extract(tmp_path, "inc", "quickbooksonprem", "customers", [a, b], snapshot=iso(8))
    full = extract(tmp_path, "full", "quickbooksonprem", "customers", [a], snapshot=iso(10), full_refresh=True)
    run(db, inc)
    assert counts(run(db, full)) == (0, 0, 1, 1, 1, 2)
    assert counts(run(db, inc)) == (0, 0, 2, 0, 1, 2)  # late rerun of the older extract: 61 stays deleted
    row = db.rows(table, 12)["80000061-1"]
    assert (row["is_deleted"], row["deleted_at"], row["updated_at"]) == (1, iso(10), iso(7))


# ---- reruns and load order ---------------------------------------------------------------------------


def _history(tmp_path: Path) -> list[dict[str, Any]]:
    """Extracts of one QBO invoice table over a day (created, edited, soft/hard deleted, restored)."""
    return [
        invoices(
            tmp_path,
            "h1",
            [qbo_invoice(i, updated_ms=ms(6)) for i in (1, 2, 3, 4)],
            snapshot=iso(7),
            full_refresh=True,
        ),
        invoices(
            tmp_path,
            "h2",
            [qbo_invoice(2, updated_ms=ms(8), sync=1, total=2.5), qbo_invoice(5, updated_ms=ms(8))],
            snapshot=iso(9),
            tombstones=[{"id": "3", "deleted_at": iso(8, 30)}, {"id": "77", "deleted_at": iso(8, 45)}],
        ),
        invoices(
            tmp_path,
            "h3",
            [
                qbo_invoice(1, updated_ms=ms(6)),
                qbo_invoice(2, updated_ms=ms(8), sync=1, total=2.5),
                qbo_invoice(5, updated_ms=ms(8)),
            ],
            snapshot=iso(11),
            full_refresh=True,
        ),
        invoices(
            tmp_path,
            "h4",
            [qbo_invoice(4, updated_ms=ms(11, 30), sync=2, total=4.5), qbo_invoice(6, updated_ms=ms(12))],
            snapshot=iso(13),
        ),  # 4 restored after h3 found it gone
        invoices(
            tmp_path,
            "h5",
            [qbo_invoice(2, updated_ms=ms(8), sync=1, total=2.5)],
            snapshot=None,
            window_end=at(9).isoformat(),
        ),  # a v1 XCom
    ]


EXPECTED_LIVE = {"1": 0, "2": 1, "4": 2, "5": 0, "6": 0}  # id -> syncToken


def test_every_manifest_loaded_twice_writes_nothing(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    history = _history(tmp_path)
    for day, manifest in enumerate(history, start=1):
        run_at(db, manifest, DAY + timedelta(days=day))
        before = db.dump(table)
        again = run_at(db, manifest, DAY + timedelta(days=day, hours=12))
        assert db.dump(table) == before, manifest["path"]  # every column, synced_at included
        assert (again["inserted"], again["updated"], again["deleted"], again["new_tombstones"]) == (0, 0, 0, 0)
    final = db.dump(table)
    for manifest in reversed(history):  # all of them again, late and out of order
        run_at(db, manifest, DAY + timedelta(days=30))
    assert db.dump(table) == final
    live = db.live(table, 12)
    assert {rid: int(data["syncToken"]) for rid, data in live.items()} == EXPECTED_LIVE
    assert db.rows(table, 12)["77"]["data"] is None  # tombstone row


def test_load_order_does_not_change_the_result(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    history = _history(tmp_path)[:4]
    results = []
    for iid, order in enumerate(itertools.permutations(history), start=100):
        for manifest in order:
            run(db, {**manifest, "instance_id": iid})
        results.append(state(db, table, iid))
        assert {rid: int(d["syncToken"]) for rid, d in db.live(table, iid).items()} == EXPECTED_LIVE, iid
    for i, r in enumerate(results):
        assert r == results[0], (i, {k: (v, results[0].get(k)) for k, v in r.items() if v != results[0].get(k)})


# ---- schema migration ----------------------------------------------------------------------------------


def test_table_of_the_old_loader_is_migrated_in_place(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_customers"
    key = sql_dialect.POSTGRES.key_text_type if db.name == "postgres" else "TEXT"
    db.query(  # exactly what the previous release created
        f'CREATE TABLE "{table}" (instance_id BIGINT NOT NULL, record_id {key} NOT NULL, updated_at {key}, '
        "is_deleted INTEGER NOT NULL DEFAULT 0, data TEXT NOT NULL, synced_at TEXT NOT NULL, "
        "PRIMARY KEY (instance_id, record_id))"
    )
    old_rows = {
        "1": (iso(7), 0, qbo_customer(1, updated_ms=ms(7))),  # live
        "2": (iso(7), 1, qbo_customer(2, updated_ms=ms(7), active=False)),  # soft-deleted at the source
        "3": (iso(9), 1, qbo_customer(3, updated_ms=ms(7))),  # tombstoned: updated_at moved to 09:00
    }
    p = "%s" if db.name == "postgres" else "?"
    for rid, (updated, deleted, data) in old_rows.items():
        db.query(
            f'INSERT INTO "{table}" VALUES (12, {p}, {p}, {p}, {p}, {p})',
            (rid, updated, deleted, sql_rows.canonical_json(data), iso(10)),
        )

    newer = qbo_customer(1, updated_ms=ms(11))
    manifest = extract(tmp_path, "m", "quickbooks", "customers", [newer], snapshot=iso(12))
    assert counts(run_at(db, manifest, DAY + timedelta(days=1))) == (0, 1, 0, 0, 1, 3)
    # an extract taken before the old loader's tombstone, loaded late: must not resurrect 3
    late = extract(tmp_path, "late", "quickbooks", "customers", [qbo_customer(3, updated_ms=ms(7))], snapshot=iso(8))
    assert counts(run_at(db, late, DAY + timedelta(days=1))) == (0, 0, 1, 0, 1, 3)
    rows = db.rows(table, 12)
    assert (rows["1"]["data"], rows["1"]["observed_at"], rows["1"]["deleted_at"]) == (newer, iso(12), None)
    assert (rows["2"]["is_deleted"], rows["2"]["deleted_at"], rows["2"]["observed_at"]) == (1, None, iso(7))
    assert (rows["3"]["is_deleted"], rows["3"]["deleted_at"]) == (1, iso(9))  # old tombstone kept its time

    before = db.dump(table)
    assert counts(run_at(db, manifest, DAY + timedelta(days=2))) == (0, 0, 1, 0, 1, 3)  # migrated once
    assert db.dump(table) == before


def test_re_extract_with_a_later_snapshot_writes_nothing(db: Backend, tmp_path: Path) -> None:
    """A cleared and rerun DAG run extracts the same records again with a later snapshot_at: identical
    content is the same version, so no row is rewritten (it keeps its first observed time)."""
    table = f"{db.prefix}quickbooks_invoices"
    records = [qbo_invoice(i, updated_ms=ms(7) + i) for i in range(1, 6)]
    first = invoices(tmp_path, "r1", records, snapshot=iso(10), full_refresh=True)
    again = invoices(tmp_path, "r2", records, snapshot=iso(12), full_refresh=True)
    run_at(db, first, DAY + timedelta(days=1))
    before = db.dump(table)
    assert counts(run_at(db, again, DAY + timedelta(days=2))) == (0, 0, 5, 0, 5, 5)
    assert db.dump(table) == before
    assert {r["observed_at"] for r in db.rows(table, 12).values()} == {iso(10)}
