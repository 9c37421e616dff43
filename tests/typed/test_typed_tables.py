"""Typed parent and child tables projected from raw loads, on SQLite, PostgreSQL and DuckDB."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.typed import child_table_name, project
from airflow_provider_cloudelements.utils.records import record_id
from tests.typed.conftest import Target, at_path, generated

#: Columns every element's invoices must map to (column -> logical type), from the record shapes of
#: the Cloud Elements Finance hub (QBO camelCase numbers, QBE QBXML strings, FreshBooks v2 numbers).
EXPECTED_TYPES: dict[str, dict[str, str]] = {
    "quickbooks": {
        "id": "text",
        "sync_token": "text",
        "total_amt": "number",
        "customer_ref__value": "text",
        "meta_data__last_updated_time": "integer",
        "sparse": "boolean",
        "txn_date": "text",
    },
    "quickbooksonprem": {
        "txn_id": "text",
        "edit_sequence": "text",
        "total_amount": "text",
        "customer_ref__full_name": "text",
        "is_paid": "boolean",
        "time_modified": "text",
    },
    "freshbooksv2": {"id": "integer", "client_id": "integer", "amount": "number", "updated": "text"},
    "freshbooks": {"id": "text", "client_id": "integer", "amount": "number"},
}
EXPECTED_CHILD: dict[str, tuple[str, dict[str, str]]] = {
    "quickbooks": ("line", {"amount": "number", "sales_item_line_detail__qty": "integer", "line_num": "integer"}),
    "quickbooksonprem": ("InvoiceLineRet", {"amount": "text", "item_ref__full_name": "text", "quantity": "text"}),
    "freshbooksv2": ("lines", {"unit_cost": "number", "quantity": "integer", "name": "text"}),
    "freshbooks": ("lines", {"unit_cost": "number", "quantity": "integer"}),
}
ARRAY_OF: dict[str, str] = {k: v[0] for k, v in EXPECTED_CHILD.items()}


def norm(value: Any) -> Any:
    """Compare values across engines: booleans as 0/1, numbers as rounded floats."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return round(float(value), 6)
    return value


def _paths(target: Target, table: str) -> dict[str, str]:
    """``{column: source path}`` recorded for ``table``."""
    rows = target.query(
        "SELECT column_name, source_path FROM ce_schema_history WHERE table_name = ? AND change = 'add_column'",
        (table,),
    )
    return {column: path for column, path in rows}


def assert_typed_matches(
    target: Target, element_key: str, resource: str, records: list[dict[str, Any]], *, instance_id: int = 12
) -> None:
    """Typed parent and child rows equal ``records`` field by field (paths navigated independently)."""
    parent = target.table(f"typed_{element_key}_{resource}")
    columns = _paths(target, parent)
    names = sorted(columns)
    select = ", ".join(f'"{c}"' for c in names)
    got = {
        row[0]: dict(zip(names, row[2:], strict=True)) | {"_deleted": row[1]}
        for row in target.query(
            f'SELECT record_id, is_deleted, {select} FROM "{parent}" WHERE instance_id = ? ORDER BY record_id',
            (instance_id,),
        )
    }
    by_id = {record_id(r, element_key): r for r in records}
    assert set(got) == set(by_id)
    for rid, record in by_id.items():
        row = got[rid]
        for column, path in columns.items():
            expected = at_path(record, path)
            if isinstance(expected, list):
                expected = None if expected and all(isinstance(i, dict) for i in expected) else expected
                expected = json.dumps(expected, separators=(",", ":")) if expected else None
            if isinstance(expected, dict):
                expected = None
            assert norm(row[column]) == norm(expected), (rid, column, row[column], expected)
    array = ARRAY_OF[element_key]
    child = child_table_name(parent, array)
    child_columns = _paths(target, child)
    child_names = sorted(child_columns)
    child_select = ", ".join(f'"{c}"' for c in child_names)
    rows = target.query(
        f'SELECT parent_id, position, {child_select} FROM "{child}" WHERE instance_id = ? ORDER BY parent_id, position',
        (instance_id,),
    )
    lines: dict[str, list[dict[str, Any]]] = {}
    for parent_id, position, *values in rows:
        assert position == len(lines.setdefault(parent_id, []))
        lines[parent_id].append(dict(zip(child_names, values, strict=True)))
    for rid, record in by_id.items():
        items = record.get(array) or []
        assert len(lines.get(rid, [])) == len(items), rid
        for item, line in zip(items, lines.get(rid, []), strict=True):
            for column, path in child_columns.items():
                assert norm(line[column]) == norm(at_path(item, path)), (rid, column)


@pytest.mark.parametrize("element_key", sorted(EXPECTED_TYPES))
def test_type_mapping_per_element(target: Target, element_key: str) -> None:
    records = generated(element_key, "invoices", 50)
    summary = target.sync(element_key, "invoices", records)
    assert summary["projected"] == 50
    assert summary["child_rows"] == sum(len(r[ARRAY_OF[element_key]]) for r in records)
    parent = target.table(f"typed_{element_key}_invoices")
    types = target.column_types(parent)
    for column, logical in EXPECTED_TYPES[element_key].items():
        assert types.get(column) == logical, (column, types.get(column))
    array, child_types = EXPECTED_CHILD[element_key]
    got_child = target.column_types(child_table_name(parent, array))
    for column, logical in child_types.items():
        assert got_child.get(column) == logical, (column, got_child.get(column))
    assert_typed_matches(target, element_key, "invoices", records)
    versions = dict(target.query(f'SELECT record_id, version_num FROM "{parent}"'))
    field = {"quickbooks": "syncToken", "quickbooksonprem": "EditSequence"}.get(element_key)
    for rec in records:
        assert versions[record_id(rec, element_key)] == (int(rec[field]) if field else None)


def test_rerun_projects_nothing_and_changes_nothing(target: Target) -> None:
    records = generated("quickbooks", "invoices", 30)
    target.sync("quickbooks", "invoices", records)
    parent = target.table("typed_quickbooks_invoices")
    before = target.query(f'SELECT * FROM "{parent}" ORDER BY record_id')
    lines_before = target.query(f'SELECT * FROM "{parent}__line" ORDER BY parent_id, position')
    again = target.sync("quickbooks", "invoices", records)
    assert again["projected"] == 0 and again["schema_changes"] == []
    assert target.query(f'SELECT * FROM "{parent}" ORDER BY record_id') == before
    assert target.query(f'SELECT * FROM "{parent}__line" ORDER BY parent_id, position') == lines_before


def _bumped(record: dict[str, Any], *, ms: int = 60_000, **changes: Any) -> dict[str, Any]:
    """A later QBO version of ``record`` (syncToken + 1, lastUpdatedTime + ms)."""
    newer = copy.deepcopy(record)
    newer["syncToken"] = str(int(record["syncToken"]) + 1)
    newer["metaData"]["lastUpdatedTime"] = record["metaData"]["lastUpdatedTime"] + ms
    newer.update(changes)
    return newer


def test_child_rows_replaced_on_update_and_removed_on_delete(target: Target) -> None:
    records = generated("quickbooks", "invoices", 6)
    target.sync("quickbooks", "invoices", records)
    first, second = records[0], records[1]
    one_line = [dict(first["line"][0], amount=12.5, description="Replaced line")]
    updated = _bumped(first, line=one_line, totalAmt=12.5)
    summary = target.sync("quickbooks", "invoices", [updated])
    assert summary["projected"] == 1
    current = [updated, *records[1:]]
    assert_typed_matches(target, "quickbooks", "invoices", current)
    parent = target.table("typed_quickbooks_invoices")
    assert target.query(f'SELECT amount, description FROM "{parent}__line" WHERE parent_id = ?', (first["id"],)) == [
        (12.5, "Replaced line")
    ]

    tomb = [{"id": second["id"], "deleted_at": "2030-01-01T00:00:00.000Z"}]
    target.load("quickbooks", "invoices", [], tombstones=tomb)
    summary = target.project("quickbooks", "invoices")
    assert summary["projected"] == 1 and summary["deleted"] == 1
    assert target.query(f'SELECT is_deleted FROM "{parent}" WHERE record_id = ?', (second["id"],)) == [(1,)]
    assert target.query(f'SELECT COUNT(*) FROM "{parent}__line" WHERE parent_id = ?', (second["id"],)) == [(0,)]
    live = {r[0]: r[1] for r in target.query(f'SELECT parent_id, COUNT(*) FROM "{parent}__line" GROUP BY parent_id')}
    assert live == {r["id"]: len(r["line"]) for r in current if r is not second}


def test_deletes_and_updates_stay_within_their_instance(target: Target) -> None:
    records = generated("quickbooks", "invoices", 4)
    target.sync("quickbooks", "invoices", records, instance_id=12)
    target.sync("quickbooks", "invoices", records, instance_id=13)
    target.load("quickbooks", "invoices", [], instance_id=12, tombstones=[{"id": records[0]["id"]}])
    target.project("quickbooks", "invoices", instance_id=12)
    assert_typed_matches(target, "quickbooks", "invoices", records, instance_id=13)
    parent = target.table("typed_quickbooks_invoices")
    counts = dict(target.query(f'SELECT instance_id, COUNT(*) FROM "{parent}__line" GROUP BY instance_id'))
    assert counts[13] == sum(len(r["line"]) for r in records)
    assert counts[12] == counts[13] - len(records[0]["line"])


def test_new_field_mid_history_adds_columns(target: Target) -> None:
    records = generated("quickbooks", "invoices", 5)
    target.sync("quickbooks", "invoices", records)
    parent = target.table("typed_quickbooks_invoices")
    before = {row[1] for row in target.query(f'PRAGMA table_info("{parent}")')} if target.name == "sqlite" else None
    custom = {"definitionId": "1", "name": "PO number", "stringValue": "PO-77"}
    line = [dict(records[2]["line"][0], discountRate=2.5)]
    newer = _bumped(records[2], customField=custom, line=line)
    summary = target.sync("quickbooks", "invoices", [newer])
    added = {(c["table_name"], c["column_name"], c["change"]) for c in summary["schema_changes"]}
    assert added == {
        (parent, "custom_field__definition_id", "add_column"),
        (parent, "custom_field__name", "add_column"),
        (parent, "custom_field__string_value", "add_column"),
        (f"{parent}__line", "discount_rate", "add_column"),
    }
    rows = dict(target.query(f'SELECT record_id, custom_field__string_value FROM "{parent}"'))
    assert rows == {r["id"]: ("PO-77" if r is records[2] else None) for r in records}
    assert target.column_types(f"{parent}__line")["discount_rate"] == "number"
    assert_typed_matches(target, "quickbooks", "invoices", [newer if r is records[2] else r for r in records])
    if before is not None:  # columns were added in place, none dropped
        after = [row[1] for row in target.query(f'PRAGMA table_info("{parent}")')]
        assert before <= set(after)


def test_conflicting_types_widen_and_keep_values(target: Target) -> None:
    records = generated("quickbooks", "invoices", 3)
    base = [dict(r, score=i + 1, flag=True) for i, r in enumerate(records)]
    target.sync("quickbooks", "invoices", base)
    parent = target.table("typed_quickbooks_invoices")
    assert target.column_types(parent)["score"] == "integer"
    assert target.column_types(parent)["flag"] == "boolean"

    step2 = _bumped(base[1], score=2.5)
    target.sync("quickbooks", "invoices", [step2])
    assert target.column_types(parent)["score"] == "number"
    step3 = _bumped(base[2], score="007", flag="yes")
    summary = target.sync("quickbooks", "invoices", [step3])
    widened = {(c["column_name"], c["old_type"], c["new_type"]) for c in summary["schema_changes"]}
    assert widened == {("score", "number", "text"), ("flag", "boolean", "text")}
    rows = {r[0]: (r[1], r[2]) for r in target.query(f'SELECT record_id, score, flag FROM "{parent}"')}
    assert rows[step3["id"]] == ("007", "yes")  # text kept verbatim, not read as the number 7
    assert float(rows[step2["id"]][0]) == 2.5 and rows[step2["id"]][1] == "true"
    assert float(rows[base[0]["id"]][0]) == 1.0 and rows[base[0]["id"]][1] == "true"
    history = [(c, ch, old, new) for c, _p, ch, old, new in target.history(parent) if c == "score"]
    assert history == [
        ("score", "add_column", None, "integer"),
        ("score", "widen", "integer", "number"),
        ("score", "widen", "number", "text"),
    ]


def test_metadata_declares_numbers_for_string_amounts(target: Target) -> None:
    records = generated("quickbooksonprem", "invoices", 20)
    target.load("quickbooksonprem", "invoices", records)
    metadata = {
        "fields": [
            {"vendorPath": "TotalAmount", "type": "number"},
            {"vendorPath": "InvoiceLineRet[*].Amount", "type": "number"},
            {"vendorPath": "InvoiceLineRet[*].Quantity", "type": "integer"},
            {"vendorPath": "RefNumber", "type": "string"},
        ]
    }
    target.project("quickbooksonprem", "invoices", metadata=metadata)
    parent = target.table("typed_quickbooksonprem_invoices")
    child = child_table_name(parent, "InvoiceLineRet")
    assert target.column_types(parent)["total_amount"] == "number"
    assert target.column_types(parent)["ref_number"] == "text"
    assert target.column_types(child)["amount"] == "number"
    assert target.column_types(child)["quantity"] == "integer"
    totals = dict(target.query(f'SELECT record_id, total_amount FROM "{parent}"'))
    assert totals == {r["TxnID"]: float(r["TotalAmount"]) for r in records}
    sums = dict(target.query(f'SELECT parent_id, SUM(amount) FROM "{child}" GROUP BY parent_id'))
    for r in records:
        assert round(sums[r["TxnID"]], 2) == round(sum(float(x["Amount"]) for x in r["InvoiceLineRet"]), 2)


def test_loads_without_projection_are_caught_up(target: Target) -> None:
    records = generated("quickbooks", "invoices", 5)
    target.load("quickbooks", "invoices", records)
    newer = _bumped(records[0], totalAmt=1.25)
    target.load("quickbooks", "invoices", [newer])
    summary = target.project("quickbooks", "invoices")
    assert summary["projected"] == 5
    assert_typed_matches(target, "quickbooks", "invoices", [newer, *records[1:]])
    target.load("quickbooks", "invoices", [records[0]])  # an older extract arriving late: raw keeps newer
    assert target.project("quickbooks", "invoices")["projected"] == 0
    assert_typed_matches(target, "quickbooks", "invoices", [newer, *records[1:]])


def test_projection_inside_the_callers_transaction_rolls_back_with_it(target: Target) -> None:
    if target.name == "duckdb":
        pytest.skip("covered on SQLite and PostgreSQL; DuckDB uses the same code path")
    records = generated("quickbooks", "invoices", 3)
    target.load("quickbooks", "invoices", records)
    cur = target.conn.cursor()
    if target.dialect.begin_sql:
        cur.execute(target.dialect.begin_sql)
    target.project("quickbooks", "invoices", manage_transaction=False)
    parent = target.table("typed_quickbooks_invoices")
    cur.execute(f'SELECT COUNT(*) FROM "{parent}"')
    assert cur.fetchone()[0] == 3
    target.conn.rollback()
    cur.close()
    summary = target.project("quickbooks", "invoices")
    assert summary["projected"] == 3
    assert_typed_matches(target, "quickbooks", "invoices", records)


def test_missing_raw_table_is_a_config_error(target: Target) -> None:
    with pytest.raises(CloudElementsConfigError, match="does not exist"):
        target.project("quickbooks", "vendors")
    with pytest.raises(CloudElementsConfigError, match="Unknown element key"):
        project(target.conn, target.dialect, element_key="xero", resource="invoices", instance_id=1)


def test_concurrent_projections_of_one_table_serialise(target: Target) -> None:
    """Mapped load tasks project in parallel: writers of one typed table wait for each other, none fails."""
    if target.connect is None:
        pytest.skip("DuckDB allows one writing process; its connection is not shared between threads")
    from concurrent.futures import ThreadPoolExecutor

    records = generated("quickbooks", "invoices", 40)
    for iid in range(1, 5):
        target.load("quickbooks", "invoices", records, instance_id=iid)

    def run(iid: int) -> dict[str, Any]:
        conn = target.connect()
        try:
            return project(
                conn,
                target.dialect,
                element_key="quickbooks",
                resource="invoices",
                instance_id=iid,
                table_prefix=target.prefix,
            )
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        summaries = list(pool.map(run, range(1, 5)))
    assert [s["projected"] for s in summaries] == [40] * 4
    for iid in range(1, 5):
        assert_typed_matches(target, "quickbooks", "invoices", records, instance_id=iid)
    created = target.query(
        "SELECT COUNT(*) FROM ce_schema_history WHERE table_name = ? AND change = 'create_table'",
        (target.table("typed_quickbooks_invoices"),),
    )
    assert created == [(1,)]
