"""Column naming, flattening and the type lattice (pure functions, no database)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.typed import child_table_name, column_name, flatten, hints_from_metadata
from airflow_provider_cloudelements.typed.schema import TableSchema, string_fits, value_type, widen


@pytest.mark.parametrize(
    ("path", "column"),
    [
        ("customerRef.value", "customer_ref__value"),
        ("metaData.lastUpdatedTime", "meta_data__last_updated_time"),
        ("InvoiceLineRet", "invoice_line_ret"),
        ("TxnID", "txn_id"),
        ("ARAccountRef.FullName", "ar_account_ref__full_name"),
        ("vendor1099", "vendor1099"),
        ("p_street1", "p_street1"),
        ("Cust Field-1.$value", "cust_field_1__value"),
        ("1099Amount", "t_1099_amount"),
    ],
)
def test_column_names_are_snake_case_joined_by_double_underscore(path: str, column: str) -> None:
    assert column_name(path) == column


def test_long_names_are_capped_and_stay_distinct() -> None:
    a = column_name("salesItemLineDetail.markupInfo.priceLevelRef.someVeryLongVendorSpecificFieldName.value")
    b = column_name("salesItemLineDetail.markupInfo.priceLevelRef.someVeryLongVendorSpecificFieldName.name")
    assert len(a) <= 63 and len(b) <= 63 and a != b
    assert len(child_table_name("ce_typed_quickbooksonprem_sales_receipts", "SalesReceiptLineGroupRet")) <= 63
    with pytest.raises(CloudElementsConfigError):
        column_name("$.-")


def test_colliding_paths_and_system_names_get_suffixes() -> None:
    schema = TableSchema(name="t")
    first = schema.allocate("customerRef.value")
    schema.paths["customerRef.value"], schema.columns[first] = first, "text"
    second = schema.allocate("customer_ref.value")
    assert (first, second) == ("customer_ref__value", "customer_ref__value_2")
    assert schema.allocate("record_id") == "record_id_2"  # a field named like a system column
    assert TableSchema(name="c", array_path="line").allocate("position") == "position_2"


def test_flatten_splits_scalars_objects_and_arrays() -> None:
    record = {
        "id": "7",
        "customerRef": {"value": "58", "name": "Doe"},
        "empty": {},
        "none": None,
        "tags": ["a", "b"],
        "noItems": [],
        "line": [{"amount": 5, "linkedTxn": [{"txnId": "3"}]}, {"amount": 6.5}],
    }
    arrays: dict = {}
    flat = flatten(record, arrays=arrays)
    assert flat == {"id": "7", "customerRef.value": "58", "customerRef.name": "Doe", "tags": '["a","b"]'}
    assert arrays == {"line": record["line"]}
    # inside a child item, nested arrays of objects stay JSON text (one level of child tables)
    assert flatten(record["line"][0]) == {"amount": 5, "linkedTxn": '[{"txnId":"3"}]'}


def test_lattice_and_string_fit() -> None:
    assert [value_type(v) for v in (True, 3, 2**63, 1.5, "x")] == ["boolean", "integer", "text", "number", "text"]
    assert widen("boolean", "integer") == "integer" and widen("text", "number") == "text"
    assert string_fits("15.00", "number") and string_fits("-3", "integer") and string_fits("true", "boolean")
    assert not string_fits("007", "integer") and not string_fits("007", "number")
    assert not string_fits("1,000.00", "number") and not string_fits("yes", "boolean")


def test_metadata_hints() -> None:
    hints = hints_from_metadata(
        {
            "fields": [
                {"vendorPath": "TotalAmount", "type": "number"},
                {"vendorPath": "InvoiceLineRet[*].Quantity", "type": "integer"},
                {"vendorPath": "line[].amount", "type": "currency"},
                {"vendorPath": "RefNumber", "type": "string"},
                {"vendorPath": "active", "type": "boolean"},
            ]
        }
    )
    assert hints.types == {
        ("", "TotalAmount"): "number",
        ("InvoiceLineRet", "Quantity"): "integer",
        ("line", "amount"): "number",
        ("", "active"): "boolean",
    }
    with pytest.raises(CloudElementsConfigError, match="fields"):
        hints_from_metadata({"objectName": "invoices"})


def test_compiled_flattener_equals_flatten_for_every_shape() -> None:
    """:class:`Flattener` compiles one function per record shape; every record, of a known shape or not
    (a key more or less, another value type, an empty container, a scalar array instead of objects),
    flattens exactly as :func:`flatten` does, arrays included."""
    from airflow_provider_cloudelements.typed.flatten import Flattener

    base: dict[str, Any] = {
        "id": "1",
        "n": 2,
        "ok": True,
        "x": 1.5,
        "ref": {"value": "58", "name": "Doe"},
        "empty": {},
        "tags": ["a", 1],
        "none": None,
        "line": [{"amount": 5, "d": {"q": 1}, "linked": [{"id": 1}]}],
    }
    variants = [
        base,
        {**base, "id": 1},  # another type
        {**base, "ok": 1},  # bool vs int
        {**base, "extra": "y"},  # a key more
        {k: v for k, v in base.items() if k != "x"},  # a key less
        {**base, "x": None},
        {**base, "ref": {"value": "58"}},  # nested key set differs
        {**base, "ref": {"value": "58", "other": "Doe"}},  # same size, other key
        {**base, "empty": {"a": 1}},
        {**base, "tags": []},
        {**base, "line": []},
        {**base, "line": ["scalar"]},  # not objects: JSON text
        {**base, "line": [{"amount": 5}, 3]},  # mixed: JSON text
        {**base, "ref": "flat"},
        base,
    ]
    for with_arrays in (True, False):
        fast = Flattener(with_arrays=with_arrays)
        compiled = []
        for _ in range(2):  # second pass: every shape compiled, none added
            for record in variants:
                want_arrays: dict[str, Any] = {}
                want = flatten(record, arrays=want_arrays if with_arrays else None)
                got_arrays: dict[str, Any] = {}
                got, shape = fast(record, got_arrays if with_arrays else None)
                assert got == want and list(got) == list(want), record
                assert got_arrays == want_arrays, record
                assert shape == (*want, *map(type, want.values()))
            compiled.append(len(fast.shapes))
        assert compiled[0] == compiled[1] >= 10
