"""CloudElementsSqlUpsertOperator against real databases: SQLite always, PostgreSQL when configured.

Each test runs once per backend through the ``db`` fixture (``tests/sql/conftest.py``).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import (
    CloudElementsConfigError,
    CloudElementsDataError,
    CloudElementsReconciliationError,
)
from airflow_provider_cloudelements.transfers.storage_to_sql.load import SUMMARY_KEYS
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import (
    CloudElementsSqlUpsertOperator,
    get_sql_hook,
)

from .conftest import (
    Backend,
    counts,
    fb_invoice,
    make_manifest,
    qbe_customer,
    qbe_invoice,
    qbo_customer,
    qbo_invoice,
    run,
    run_at,
    write_ndjson,
)

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z in epoch ms
HOUR = 3_600_000


def test_qbo_first_load_then_incremental(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    first = [qbo_invoice(i, updated_ms=T0 + i) for i in (1, 2, 3)]
    s1 = run(db, make_manifest("quickbooks", "invoices", write_ndjson(tmp_path / "a.ndjson", first), 3))
    assert tuple(s1) == SUMMARY_KEYS
    assert s1["table"] == table and s1["instance_id"] == 12 and s1["resource"] == "invoices"
    assert counts(s1) == (3, 0, 0, 0, 3, 3)

    rows = db.rows(table, 12)
    assert sorted(rows) == ["1", "2", "3"]  # "<id>|<syncToken>" stored as the stable id
    assert rows["2"]["updated_at"] == "2024-01-01T00:00:00.002Z"
    assert rows["2"]["raw"] == json.dumps(first[1], sort_keys=True, separators=(",", ":"))
    assert rows["2"]["is_deleted"] == 0
    first_synced = rows["1"]["synced_at"]

    # next window: 2 changed (new sync token, later time), 3 re-sent identical, 4 is new
    second = [
        qbo_invoice(2, updated_ms=T0 + HOUR, sync=1, total=250.0),
        first[2],
        qbo_invoice(4, updated_ms=T0 + HOUR),
    ]
    s2 = run(db, make_manifest("quickbooks", "invoices", write_ndjson(tmp_path / "b.ndjson", second), 3))
    assert counts(s2) == (1, 1, 1, 0, 4, 4)
    rows = db.rows(table, 12)
    assert rows["2"]["data"]["totalAmt"] == 250.0 and rows["2"]["data"]["id"] == "2|1"
    assert rows["2"]["updated_at"] == "2024-01-01T01:00:00.000Z"
    assert rows["3"]["synced_at"] == first_synced  # unchanged rows are not rewritten


def test_rerun_is_byte_identical(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_customers"
    records = [
        qbo_customer(1, updated_ms=T0),
        qbo_customer(2, updated_ms=T0 + 5, active=False),
        qbo_customer(3, updated_ms=T0 + 9),
    ]
    tombs = write_ndjson(tmp_path / "del.ndjson", [{"id": "3", "deleted_at": "2024-02-01T00:00:00Z"}])
    manifest = make_manifest(
        "quickbooks",
        "customers",
        write_ndjson(tmp_path / "c.ndjson", records),
        3,
        full_refresh=True,
        deleted_path=tombs,
    )
    s1 = run_at(db, manifest, datetime(2024, 3, 1, tzinfo=timezone.utc))
    before = db.dump(table)
    assert counts(s1) == (3, 0, 0, 2, 1, 3)  # 2 soft-deleted at the source, 3 tombstoned

    s2 = run_at(db, manifest, datetime(2024, 3, 2, tzinfo=timezone.utc))  # later clock: must write nothing
    assert db.dump(table) == before
    assert counts(s2) == (0, 0, 3, 0, 1, 3)
    assert {r[5] for r in before} == {"2024-03-01T00:00:00.000Z"}


def test_older_update_does_not_regress(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    old = [qbo_invoice(1, updated_ms=T0, total=10.0), qbo_invoice(2, updated_ms=T0, total=20.0)]
    new = [qbo_invoice(1, updated_ms=T0 + HOUR, sync=1, total=11.0)]
    old_manifest = make_manifest("quickbooks", "invoices", write_ndjson(tmp_path / "old.ndjson", old), 2)
    run(db, old_manifest)
    assert counts(run(db, make_manifest("quickbooks", "invoices", write_ndjson(tmp_path / "new.ndjson", new), 1))) == (
        0,
        1,
        0,
        0,
        2,
        2,
    )
    snapshot = db.dump(table)
    # out-of-order rerun of the older manifest: record 1 is older than what is stored, record 2 identical
    assert counts(run(db, old_manifest)) == (0, 0, 2, 0, 2, 2)
    assert db.dump(table) == snapshot
    assert db.rows(table, 12)["1"]["data"]["totalAmt"] == 11.0


def test_same_second_edit_is_decided_by_the_edit_sequence(db: Backend, tmp_path: Path) -> None:
    """QBE has second precision: two edits in one TimeModified second are ordered by EditSequence,
    whichever is loaded last (issue 11 #6: older content loaded last used to win)."""
    table = f"{db.prefix}quickbooksonprem_invoices"
    rid = "16D1-1484948017"
    older = [qbe_invoice(rid, modified="2017-01-20T16:33:37-08:00", amount="15.00", edit_sequence="1484948017")]
    newer = [qbe_invoice(rid, modified="2017-01-20T16:33:37-08:00", amount="16.00", edit_sequence="1484948018")]
    a = make_manifest("quickbooksonprem", "invoices", write_ndjson(tmp_path / "a.ndjson", older), 1)
    b = make_manifest("quickbooksonprem", "invoices", write_ndjson(tmp_path / "b.ndjson", newer), 1)
    assert counts(run(db, a)) == (1, 0, 0, 0, 1, 1)
    assert counts(run(db, b)) == (0, 1, 0, 0, 1, 1)  # in order: the same-second edit lands
    assert counts(run(db, a)) == (0, 0, 1, 0, 1, 1)  # older content loaded last: loses
    row = db.rows(table, 12)[rid]
    assert (row["data"]["InvoiceLineRet"][0]["Amount"], row["version_num"]) == ("16.00", 1484948018)


def test_duplicate_ids_in_one_file_keep_the_newest(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    records = [
        qbo_invoice(1, updated_ms=T0 + 2, sync=2, total=3.0),
        qbo_invoice(1, updated_ms=T0, sync=0, total=1.0),  # older copy later in the file (lookback overlap)
        qbo_invoice(1, updated_ms=T0 + 1, sync=1, total=2.0),
    ]
    s = run(db, make_manifest("quickbooks", "invoices", write_ndjson(tmp_path / "d.ndjson", records), 3))
    assert counts(s) == (1, 0, 0, 0, 1, 1)
    assert db.rows(table, 12)["1"]["data"]["totalAmt"] == 3.0


def test_tombstones_mark_deleted_after_upserts(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    run(
        db,
        make_manifest(
            "quickbooks",
            "invoices",
            write_ndjson(tmp_path / "a.ndjson", [qbo_invoice(i, updated_ms=T0) for i in (1, 2, 3)]),
            3,
        ),
    )
    tombs = write_ndjson(
        tmp_path / "del.ndjson",
        [
            {"id": "1|0", "deleted_at": "2024-01-02T00:00:00Z"},  # in the table, not in this file
            {"id": "4", "deleted_at": "2024-01-02T00:00:00Z"},  # in this file: upserted then deleted
            {"id": "999", "deleted_at": "2024-01-02T00:00:00Z"},  # unknown: stored as a tombstone row
        ],
    )
    file = write_ndjson(tmp_path / "b.ndjson", [qbo_invoice(4, updated_ms=T0 + 1), qbo_invoice(2, updated_ms=T0 + 1)])
    s = run(db, make_manifest("quickbooks", "invoices", file, 2, deleted_path=tombs))
    assert counts(s) == (1, 1, 0, 2, 2, 5) and s["new_tombstones"] == 1
    rows = db.rows(table, 12)
    assert (rows["1"]["is_deleted"], rows["4"]["is_deleted"], rows["2"]["is_deleted"]) == (1, 1, 0)
    # deletions keep their own time; updated_at stays the version's (no longer moved forward)
    assert rows["1"]["deleted_at"] == rows["4"]["deleted_at"] == "2024-01-02T00:00:00.000Z"
    assert rows["1"]["updated_at"] == "2024-01-01T00:00:00.000Z"
    assert rows["4"]["updated_at"] == "2024-01-01T00:00:00.001Z"
    assert rows["1"]["data"]["docNumber"] == "101"  # row kept (soft delete) with its last content
    assert rows["999"]["data"] is None and rows["999"]["is_deleted"] == 1  # tombstone row
    assert rows["999"]["deleted_at"] == "2024-01-02T00:00:00.000Z"
    assert rows["2"]["deleted_at"] is None

    # a later rerun of the first (older) extract must not bring record 1 back
    again = make_manifest("quickbooks", "invoices", str(tmp_path.joinpath("a.ndjson").as_uri()), 3)
    assert run(db, again)["rows_live"] == 2
    assert db.rows(table, 12)["1"]["is_deleted"] == 1


def test_full_refresh_deletes_missing_ids_of_that_instance_only(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}freshbooksv2_invoices"
    base = [fb_invoice(i, updated="2024-01-10 10:00:00") for i in (1, 2, 3, 4)]
    run(db, make_manifest("freshbooksv2", "invoices", write_ndjson(tmp_path / "i12.ndjson", base), 4))
    run(
        db,
        make_manifest("freshbooksv2", "invoices", write_ndjson(tmp_path / "i13.ndjson", base), 4, instance_id=13),
    )
    late = fb_invoice(4, updated="2024-02-20 10:00:00", amount="44.00")  # updated after the full extract's window
    run(db, make_manifest("freshbooksv2", "invoices", write_ndjson(tmp_path / "late.ndjson", [late]), 1))

    full = write_ndjson(tmp_path / "full.ndjson", [base[0], base[2]])  # 2 and 4 absent
    s = run(
        db,
        make_manifest("freshbooksv2", "invoices", full, 2, full_refresh=True, window_end="2024-02-01T00:00:00Z"),
    )
    assert counts(s) == (0, 0, 2, 1, 3, 4)  # only 2 deleted: 4 changed after the window end
    rows = db.rows(table, 12)
    assert {rid: r["is_deleted"] for rid, r in rows.items()} == {"1": 0, "2": 1, "3": 0, "4": 0}
    assert rows["1"]["updated_at"] == "2024-01-10T10:00:00.000Z"  # naive FreshBooks times: UTC by default
    assert all(r["is_deleted"] == 0 for r in db.rows(table, 13).values())

    # without a window end, every row absent from the file goes
    s = run(db, make_manifest("freshbooksv2", "invoices", full, 2, full_refresh=True))
    assert counts(s) == (0, 0, 2, 1, 2, 4)
    assert db.rows(table, 12)["4"]["is_deleted"] == 1


@pytest.mark.parametrize("bad", ['{"id": "9|0", "metaData": ', "not json at all"])
def test_bad_line_in_the_middle_leaves_table_unchanged(db: Backend, tmp_path: Path, bad: str) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    run(
        db,
        make_manifest(
            "quickbooks",
            "invoices",
            write_ndjson(tmp_path / "a.ndjson", [qbo_invoice(i, updated_ms=T0) for i in (1, 2)]),
            2,
        ),
    )
    before = db.dump(table)
    records = [qbo_invoice(i, updated_ms=T0 + HOUR, sync=1, total=999.0) for i in range(1, 8)]
    path = write_ndjson(tmp_path / "bad.ndjson", records, raw_lines={4: bad})
    with pytest.raises(CloudElementsDataError, match=r"bad\.ndjson:5"):
        run(db, make_manifest("quickbooks", "invoices", path, 8), batch_size=2)  # 2 batches staged before
    assert db.dump(table) == before


def test_failure_on_first_load_leaves_no_table(db: Backend, tmp_path: Path) -> None:
    records: list[dict[str, Any]] = [
        qbe_customer("80000001-1", modified="2017-01-20T16:33:37-08:00"),
        {"Name": "no id at all", "TimeModified": "2017-01-20T16:33:37-08:00"},
    ]
    path = write_ndjson(tmp_path / "noid.ndjson", records)
    with pytest.raises(CloudElementsConfigError, match=r"noid\.ndjson:2: record has no id"):
        run(db, make_manifest("quickbooksonprem", "customers", path, 2), batch_size=1)
    assert not db.table_exists(f"{db.prefix}quickbooksonprem_customers")


def test_record_count_mismatch_loads_nothing(db: Backend, tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "a.ndjson", [qbo_invoice(1, updated_ms=T0)])
    with pytest.raises(CloudElementsReconciliationError, match="holds 1 record"):
        run(db, make_manifest("quickbooks", "invoices", path, 2))
    assert db.dump(f"{db.prefix}quickbooks_invoices") == []
    assert run(db, make_manifest("quickbooks", "invoices", path, 2), verify_record_count=False)["inserted"] == 1


def test_qbe_and_freshbooks_shapes(db: Backend, tmp_path: Path) -> None:
    qbe = [
        qbe_customer("80000001-1484948017", modified="2017-01-20T16:33:37-08:00"),
        qbe_customer("80000002-1484948017", modified="2017-01-21T09:00:00+01:00", active="false"),
    ]
    s = run(
        db,
        make_manifest("quickbooksonprem", "customers", write_ndjson(tmp_path / "qbe.ndjson", qbe), 2, instance_id=7),
    )
    assert counts(s) == (2, 0, 0, 1, 1, 2)
    rows = db.rows(f"{db.prefix}quickbooksonprem_customers", 7)
    assert rows["80000001-1484948017"]["updated_at"] == "2017-01-21T00:33:37.000Z"
    assert rows["80000002-1484948017"]["updated_at"] == "2017-01-21T08:00:00.000Z"
    assert rows["80000002-1484948017"]["is_deleted"] == 1

    fb = [
        fb_invoice(1, updated="2024-01-15 09:30:00"),
        fb_invoice(2, updated="2024-07-15 09:30:00", vis_state=1),
        fb_invoice(3, updated="2024-07-15 09:30:00", vis_state=2),
    ]
    s = run(db, make_manifest("freshbooks", "invoices", write_ndjson(tmp_path / "fb.ndjson", fb), 3))
    assert counts(s) == (3, 0, 0, 1, 2, 3)
    rows = db.rows(f"{db.prefix}freshbooks_invoices", 12)
    assert rows["1"]["updated_at"] == "2024-01-15T09:30:00.000Z"  # naive FreshBooks time read as UTC
    assert rows["2"]["updated_at"] == "2024-07-15T09:30:00.000Z"
    assert [rows[k]["is_deleted"] for k in "123"] == [0, 1, 0]

    # an explicit naive_timezone overrides the element default
    fb2 = [fb_invoice(9, updated="2024-01-15 09:30:00")]
    run(
        db,
        make_manifest("freshbooks", "invoices", write_ndjson(tmp_path / "fb2.ndjson", fb2), 1),
        naive_timezone="America/New_York",
    )
    assert db.rows(f"{db.prefix}freshbooks_invoices", 12)["9"]["updated_at"] == "2024-01-15T14:30:00.000Z"


def test_list_of_manifests_returns_list(db: Backend, tmp_path: Path) -> None:
    a = make_manifest("quickbooks", "invoices", write_ndjson(tmp_path / "a.ndjson", [qbo_invoice(1, updated_ms=T0)]), 1)
    b = make_manifest(
        "quickbooks", "customers", write_ndjson(tmp_path / "b.ndjson", [qbo_customer(1, updated_ms=T0)]), 1
    )
    out = run(db, [a, None, b])
    assert [s["table"] for s in out] == [
        f"{db.prefix}quickbooks_invoices",
        f"{db.prefix}quickbooks_customers",
    ]
    assert run(db, []) == []


def test_streams_in_batches(db: Backend, tmp_path: Path) -> None:
    n = 2500
    records = [qbo_invoice(i, updated_ms=T0 + i) for i in range(n)]
    path = write_ndjson(tmp_path / "big.ndjson", records)
    assert counts(run(db, make_manifest("quickbooks", "invoices", path, n), batch_size=300)) == (
        n,
        0,
        0,
        0,
        n,
        n,
    )
    assert counts(run(db, make_manifest("quickbooks", "invoices", path, n), batch_size=300)) == (
        0,
        0,
        n,
        0,
        n,
        n,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"element_key": "xero"}, "Unknown element key"),
        ({"format": "parquet"}, "only NDJSON"),
        ({"path": None}, "missing required key"),
    ],
)
def test_bad_manifest_fails_before_touching_the_database(
    db: Backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict[str, Any], message: str
) -> None:
    import airflow_provider_cloudelements.transfers.storage_to_sql.operator as sql_module

    def no_db(conn_id: str) -> None:
        raise AssertionError("the database was reached")

    monkeypatch.setattr(sql_module, "get_sql_hook", no_db)
    good = make_manifest(
        "quickbooks", "invoices", write_ndjson(tmp_path / "a.ndjson", [qbo_invoice(1, updated_ms=T0)]), 1
    )
    with pytest.raises(CloudElementsConfigError, match=message):
        run(db, [good, {**good, **change}])


def test_missing_file_is_a_typed_error(db: Backend, tmp_path: Path) -> None:
    with pytest.raises(CloudElementsDataError, match="does not exist"):
        run(db, make_manifest("quickbooks", "invoices", (tmp_path / "nope.ndjson").as_uri(), 1))


def test_unsupported_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_CE_HTTP", json.dumps({"conn_type": "http", "host": "example.invalid"}))
    with pytest.raises(CloudElementsConfigError, match="not supported"):
        get_sql_hook("ce_http")


def test_operator_arguments() -> None:
    with pytest.raises(CloudElementsConfigError, match="batch_size"):
        CloudElementsSqlUpsertOperator(task_id="x", manifest={}, batch_size=0)
    op = CloudElementsSqlUpsertOperator(task_id="y", manifest={"a": 1})
    assert op.conn_id == "sqlite_default" and op.table_prefix == "ce_"
    assert set(op.template_fields) == {"manifest", "conn_id", "table_prefix"}


def test_concurrent_loads_into_one_table(db: Backend, tmp_path: Path) -> None:
    """Mapped load tasks run in parallel: writers of one table (one SQLite file) must serialise, not fail."""
    from concurrent.futures import ThreadPoolExecutor

    manifests = [
        make_manifest(
            "quickbooks",
            "invoices",
            write_ndjson(tmp_path / f"i{iid}.ndjson", [qbo_invoice(i, updated_ms=T0 + i) for i in range(200)]),
            200,
            instance_id=iid,
        )
        for iid in range(1, 5)
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        summaries = list(pool.map(lambda m: run(db, m, batch_size=50), manifests))
    assert [counts(s) for s in summaries] == [(200, 0, 0, 0, 200, 200)] * 4
    assert len(db.dump(f"{db.prefix}quickbooks_invoices")) == 800
