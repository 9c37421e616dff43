"""Pure logic of the SQL loader: names, timestamps, soft deletes, ids, manifest validation, dialects."""

from __future__ import annotations

import json

import pytest

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsDataError
from airflow_provider_cloudelements.transfers.storage_to_sql import dialect as sql_dialect
from airflow_provider_cloudelements.transfers.storage_to_sql import rows as sql_rows
from airflow_provider_cloudelements.transfers.storage_to_sql import statements as sql_statements
from airflow_provider_cloudelements.utils.elements import get_element

from .conftest import fb_invoice, make_manifest, qbe_customer, qbe_invoice, qbo_customer, qbo_invoice


class TestNames:
    def test_table_name_sanitizes(self) -> None:
        assert sql_dialect.table_name("ce_", "quickbooks", "bill-payments") == "ce_quickbooks_bill_payments"
        assert (
            sql_dialect.table_name("CE-", "quickbooksonprem", "journal-entries")
            == "ce_quickbooksonprem_journal_entries"
        )
        assert (
            sql_dialect.table_name("", "freshbooksv2", "Invoices; DROP TABLE x") == "freshbooksv2_invoices_drop_table_x"
        )

    def test_long_names_stay_distinct_and_bounded(self) -> None:
        a = sql_dialect.table_name("ce_", "quickbooks", "r" * 80 + "a")
        b = sql_dialect.table_name("ce_", "quickbooks", "r" * 80 + "b")
        assert a != b
        assert len(a) == len(b) == sql_dialect.MAX_IDENTIFIER_LENGTH

    def test_leading_digit_and_empty(self) -> None:
        assert sql_dialect.sanitize_identifier("1abc") == "t_1abc"
        with pytest.raises(CloudElementsConfigError):
            sql_dialect.sanitize_identifier("--")

    def test_quote_refuses_unsanitized(self) -> None:
        assert sql_dialect.quote_identifier("ce_x") == '"ce_x"'
        with pytest.raises(CloudElementsConfigError):
            sql_dialect.quote_identifier('x"; drop')


class TestTimestamps:
    @pytest.mark.parametrize(
        ("value", "tz", "expected"),
        [
            (1415131437000, "UTC", "2014-11-04T20:03:57.000Z"),  # QBO epoch ms (number)
            ("1415131437123", "UTC", "2014-11-04T20:03:57.123Z"),  # epoch ms as a string
            ("2016-12-30T00:00:00Z", "UTC", "2016-12-30T00:00:00.000Z"),  # QBO ISO
            ("2017-01-20T16:33:37-08:00", "UTC", "2017-01-21T00:33:37.000Z"),  # QBE ISO with offset
            ("2017-01-20T16:33:37.5+01:00", "UTC", "2017-01-20T15:33:37.500Z"),
            ("2024-01-15 09:30:00", "America/New_York", "2024-01-15T14:30:00.000Z"),  # FreshBooks, EST
            ("2024-07-15 09:30:00", "America/New_York", "2024-07-15T13:30:00.000Z"),  # FreshBooks, EDT
            ("2024-07-15", "UTC", "2024-07-15T00:00:00.000Z"),
        ],
    )
    def test_normalize(self, value: object, tz: str, expected: str) -> None:
        assert sql_rows.normalize_timestamp(value, naive_tz=tz) == expected

    def test_fixed_width_sorts_as_text(self) -> None:
        early = sql_rows.normalize_timestamp(1_000_000_000_000)
        late = sql_rows.normalize_timestamp("2030-01-01T00:00:00Z")
        assert early is not None and late is not None
        assert len(early) == len(late) and early < late

    @pytest.mark.parametrize("value", ["yesterday", "2024-13-45", True, {"a": 1}])
    def test_unparseable(self, value: object) -> None:
        with pytest.raises(CloudElementsConfigError):
            sql_rows.normalize_timestamp(value)

    def test_missing_is_none_and_bad_zone(self) -> None:
        assert sql_rows.normalize_timestamp(None) is None
        assert sql_rows.normalize_timestamp("") is None
        with pytest.raises(CloudElementsConfigError, match="time zone"):
            sql_rows.normalize_timestamp("2024-01-01 00:00:00", naive_tz="Mars/Olympus")


class TestRows:
    def test_qbo_row(self) -> None:
        rec = qbo_invoice(130, updated_ms=1415131437000, sync=3)
        row = sql_rows.build_row(rec, get_element("quickbooks"), naive_tz="UTC", where="f:1")
        assert row.record_id == "130"  # sync token dropped: it changes on every update
        assert row.updated_at == "2014-11-04T20:03:57.000Z"
        assert row.is_deleted == 0
        assert row.data == sql_rows.canonical_json(rec)
        assert row.data.startswith('{"balance":100.0,"currencyRef":{"value":"USD"},"customerRef":{"name"')
        assert row.data.endswith('"sparse":false,"syncToken":"3","totalAmt":100.0}')

    @pytest.mark.parametrize(
        ("element", "record", "deleted"),
        [
            ("quickbooks", qbo_customer(1, updated_ms=1, active=False), 1),
            ("quickbooks", qbo_customer(1, updated_ms=1, active=True), 0),
            (
                "quickbooksonprem",
                qbe_customer("80000001-1", modified="2017-01-20T16:33:37-08:00", active="false"),
                1,
            ),
            ("quickbooksonprem", qbe_customer("80000001-1", modified="2017-01-20T16:33:37-08:00"), 0),
            ("quickbooksonprem", qbe_invoice("16D1-1", modified="2017-01-20T16:33:37-08:00"), 0),
            ("freshbooksv2", fb_invoice(1, updated="2024-01-01 00:00:00", vis_state=1), 1),
            ("freshbooksv2", fb_invoice(1, updated="2024-01-01 00:00:00", vis_state=2), 0),  # archived: live
            ("freshbooks", {**fb_invoice(1, updated="2024-01-01 00:00:00"), "vis_state": "1"}, 1),
        ],
    )
    def test_soft_delete(self, element: str, record: dict, deleted: int) -> None:
        row = sql_rows.build_row(record, get_element(element), naive_tz="UTC", where="f:1")
        assert row.is_deleted == deleted

    def test_qbe_ids(self) -> None:
        spec = get_element("quickbooksonprem")
        lst = sql_rows.build_row(
            qbe_customer("80000001-1484948017", modified="2017-01-20T16:33:37-08:00"),
            spec,
            naive_tz="UTC",
            where="f:1",
        )
        txn = sql_rows.build_row(
            qbe_invoice("16D1-1484948017", modified="2017-01-20T16:33:37-08:00"),
            spec,
            naive_tz="UTC",
            where="f:2",
        )
        assert (lst.record_id, txn.record_id) == ("80000001-1484948017", "16D1-1484948017")

    def test_record_without_id(self) -> None:
        with pytest.raises(CloudElementsDataError, match="f:7: record has no id") as info:
            sql_rows.build_row({"displayName": "x"}, get_element("quickbooks"), naive_tz="UTC", where="f:7")
        assert isinstance(info.value, CloudElementsConfigError)

    def test_bad_updated_value(self) -> None:
        rec = qbe_invoice("1-1", modified="not a date")
        with pytest.raises(CloudElementsDataError, match="TimeModified"):
            sql_rows.build_row(rec, get_element("quickbooksonprem"), naive_tz="UTC", where="f:1")

    @pytest.mark.parametrize("line", ['{"id": 1', "[1, 2]", '"text"', b"\xff\xfe"])
    def test_bad_lines(self, line: str | bytes) -> None:
        with pytest.raises(CloudElementsDataError, match="f:3"):
            sql_rows.parse_json_line(line, where="f:3")

    def test_blank_line_is_skipped(self) -> None:
        assert sql_rows.parse_json_line(b"  \n", where="f:1") is None

    def test_tombstones(self) -> None:
        spec = get_element("quickbooks")
        assert sql_rows.build_tombstone({"id": "7|2", "deleted_at": "2024-01-01T00:00:00Z"}, spec, where="d:1") == (
            "7",
            "2024-01-01T00:00:00.000Z",
        )
        assert sql_rows.build_tombstone({"TxnID": "9-9"}, get_element("quickbooksonprem"), where="d:1") == (
            "9-9",
            None,
        )
        with pytest.raises(CloudElementsDataError, match="no id"):
            sql_rows.build_tombstone({"deleted_at": "2024-01-01T00:00:00Z"}, spec, where="d:1")


class TestManifests:
    def test_valid(self) -> None:
        m = sql_rows.loadable_manifest(
            make_manifest("quickbooks", "invoices", "file:///x.ndjson", 4, window_end="2024-01-31T00:00:00+00:00")
        )
        assert (m.element_key, m.instance_id, m.records, m.full_refresh) == ("quickbooks", 12, 4, False)
        assert m.window_end == "2024-01-31T00:00:00.000Z"

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"path": None}, "missing required key"),
            ({"element_key": "xero"}, "Unknown element key"),
            ({"format": "parquet"}, "only NDJSON"),
            ({"instance_id": "twelve"}, "instance_id must be an integer"),
            ({"records": "many"}, "records must be an integer"),
            ({"full_refresh": "maybe"}, "full_refresh must be a boolean"),
            ({"window": {"end": "soon"}}, "Unparseable"),
        ],
    )
    def test_invalid(self, change: dict, message: str) -> None:
        manifest = {**make_manifest("quickbooks", "invoices", "file:///x.ndjson", 1), **change}
        with pytest.raises(CloudElementsConfigError, match=message):
            sql_rows.loadable_manifest(manifest)

    def test_v1_and_v2(self) -> None:
        v1 = sql_rows.loadable_manifest(
            make_manifest("quickbooks", "invoices", "file:///x.ndjson", 1, full_refresh=True)
        )
        assert (v1.manifest_version, v1.snapshot_at, v1.complete, v1.naive_timezone) == (1, None, True, None)
        assert v1.deletes_by_absence
        failed = make_manifest("quickbooks", "invoices", "file:///x.ndjson", 1, full_refresh=True, failed_records=1)
        assert not sql_rows.loadable_manifest(failed).deletes_by_absence
        v2 = sql_rows.loadable_manifest(
            make_manifest(
                "freshbooksv2",
                "invoices",
                "file:///x.ndjson",
                1,
                full_refresh=True,
                snapshot_at="2026-12-01T10:00:00Z",
                complete=False,
                naive_timezone="America/New_York",
            )
        )
        assert (v2.manifest_version, v2.snapshot_at, v2.complete) == (2, "2026-12-01T10:00:00.000Z", False)
        assert v2.naive_timezone == "America/New_York" and not v2.deletes_by_absence
        assert sql_rows.resolve_naive_timezone(None, v2) == "America/New_York"
        assert sql_rows.resolve_naive_timezone("UTC", v2) == "UTC"
        assert sql_rows.resolve_naive_timezone(None, v1) == "UTC"  # ElementSpec.naive_timezone
        no_key = make_manifest("quickbooks", "invoices", "file:///x.ndjson", 1, full_refresh=True, snapshot_at="x")
        del no_key["complete"]
        no_key["snapshot_at"] = "2026-12-01T10:00:00Z"
        assert not sql_rows.loadable_manifest(no_key).complete  # v2 without "complete": never complete

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            ({"snapshot_at": "soon"}, "manifest snapshot_at: Unparseable"),
            ({"complete": "perhaps"}, "complete must be a boolean"),
            ({"naive_timezone": "Mars/Olympus"}, "manifest naive_timezone: unknown time zone"),
            ({"naive_timezone": 5}, "naive_timezone must be an IANA time zone name"),
        ],
    )
    def test_invalid_v2(self, change: dict, message: str) -> None:
        manifest = {**make_manifest("quickbooks", "invoices", "file:///x.ndjson", 1), **change}
        with pytest.raises(CloudElementsConfigError, match=message):
            sql_rows.loadable_manifest(manifest)

    def test_observed_time(self) -> None:
        assert sql_rows.observed_time("2026-12-01T09:00:00.000Z", "2026-12-01T10:00:00.000Z") == (
            "2026-12-01T10:00:00.000Z"
        )
        assert sql_rows.observed_time("2026-12-01T11:00:00.000Z", "2026-12-01T10:00:00.000Z") == (
            "2026-12-01T11:00:00.000Z"
        )
        assert sql_rows.observed_time(None, "2026-12-01T10:00:00.000Z") == "2026-12-01T10:00:00.000Z"
        assert sql_rows.observed_time("2026-12-01T09:00:00.000Z", None) == "2026-12-01T09:00:00.000Z"
        assert sql_rows.observed_time(None, None) is None

    def test_deep_nesting_is_a_data_error(self) -> None:
        line = '{"id": 1, "x": ' + "[" * 3000 + "]" * 3000 + "}"
        with pytest.raises(CloudElementsDataError, match="f:9: JSON nested too deeply"):
            sql_rows.parse_json_line(line, where="f:9")

    def test_missing_key_entirely(self) -> None:
        manifest = make_manifest("quickbooks", "invoices", "file:///x.ndjson", 1)
        del manifest["resource"]
        with pytest.raises(CloudElementsConfigError, match="resource"):
            sql_rows.loadable_manifest(manifest)

    def test_coerce(self) -> None:
        one = make_manifest("quickbooks", "invoices", "file:///x.ndjson", 1)
        assert sql_rows.coerce_manifests(one) == ([one], True)
        assert sql_rows.coerce_manifests([one, None, one]) == ([one, one], False)
        # issue 12: no string parsing of XCom (the loader used to ast.literal_eval a Jinja-rendered repr)
        for text in (str(one), json.dumps(one)):
            with pytest.raises(CloudElementsDataError, match="manifest is text"):
                sql_rows.coerce_manifests(text)
        for bad in (None, 3, "not a manifest"):
            with pytest.raises(CloudElementsConfigError):
                sql_rows.coerce_manifests(bad)
        with pytest.raises(CloudElementsConfigError, match="must be a dict"):
            sql_rows.loadable_manifest("x")


class TestDialects:
    def test_by_conn_type(self) -> None:
        assert sql_dialect.dialect_for_conn_type("sqlite").placeholder == "?"
        assert sql_dialect.dialect_for_conn_type("postgres").placeholder == "%s"
        assert sql_dialect.dialect_for_conn_type("postgresql") is sql_dialect.POSTGRES
        assert sql_dialect.dialect_for_conn_type("sqlite", "%s").placeholder == "%s"
        with pytest.raises(CloudElementsConfigError, match="mysql"):
            sql_dialect.dialect_for_conn_type("mysql")

    def test_sql_uses_dialect(self) -> None:
        assert "IS DISTINCT FROM" in sql_statements.resolve_sql(sql_dialect.POSTGRES, "ce_t")
        assert "IS NOT " in sql_statements.resolve_sql(sql_dialect.SQLITE, "ce_t")
        assert 'COLLATE "C"' in sql_statements.create_table_sql(sql_dialect.POSTGRES, "ce_t")
        assert "%s" not in sql_statements.stage_insert_sql(sql_dialect.SQLITE)
        end = "2024-01-01T00:00:00.000Z"
        sql, params = sql_statements.full_refresh_sql(
            sql_dialect.SQLITE, "ce_t", snapshot_at=None, window_end=end, load_time="2024-02-01T00:00:00.000Z"
        )
        assert sql.count("?") == 4 and sql_statements.bind(params, 5) == (end, 5, end, end)
        assert "%s" in sql_statements.resolve_sql(
            sql_dialect.POSTGRES, "ce_t"
        ) and "?" not in sql_statements.resolve_sql(sql_dialect.POSTGRES, "ce_t")
