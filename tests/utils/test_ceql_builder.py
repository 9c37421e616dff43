"""CEQL builder/validator (utils/ceql.py)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlglot
from hypothesis import given
from hypothesis import strategies as st
from sqlglot import exp

from airflow_provider_cloudelements.exceptions import CloudElementsCEQLError, CloudElementsConfigError
from airflow_provider_cloudelements.utils.ceql import (
    CEQLDialect,
    build_where,
    condition,
    format_date,
    quote_identifier,
    quote_value,
    select_query,
    validate_where,
    window_clause,
)

T0 = datetime(2024, 1, 31, 10, 0, 0, 123456, tzinfo=timezone.utc)


def test_quote_value():
    assert quote_value("Bruce's Office Machines") == "'Bruce''s Office Machines'"
    assert quote_value(True) == "true" and quote_value(False) == "false"
    assert quote_value(5) == "5" and quote_value(Decimal("1.50")) == "1.50" and quote_value(2.5) == "2.5"
    assert quote_value(T0) == "'2024-01-31T10:00:00.123Z'"
    assert quote_value(date(2024, 1, 2)) == "'2024-01-02'"
    for bad in (None, float("nan"), float("inf"), Decimal("NaN"), object(), "a\x00b", b"x"):
        with pytest.raises(CloudElementsCEQLError):
            quote_value(bad)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
def test_quoted_strings_round_trip_through_a_sql_parser(value):
    tree = sqlglot.parse_one(f"SELECT * FROM t WHERE name = {quote_value(value)}", read=CEQLDialect)
    literal = tree.find(exp.Literal)
    assert literal is not None and literal.this == value
    assert tree.find(exp.Or) is None  # no injection: the value never becomes syntax


def test_identifiers_and_conditions():
    assert quote_identifier("totalAmt") == "totalAmt"
    assert quote_identifier("metaData.lastUpdatedTime") == "`metaData.lastUpdatedTime`"
    for bad in ("", "a`b", "a'b"):
        with pytest.raises(CloudElementsCEQLError):
            quote_identifier(bad)
    assert condition("x", "in", [1, "a"]) == "x IN (1, 'a')"
    assert condition("x", "is not null") == "x IS NOT NULL"
    assert condition("name", "like", "%a%") == "name LIKE '%a%'"
    with pytest.raises(CloudElementsCEQLError):
        condition("x", "IN", [])
    with pytest.raises(CloudElementsCEQLError):
        condition("x", "<>", 1)


def test_build_where():
    assert build_where(None) is None and build_where({}) is None
    assert build_where({"a": 1, "b": ["x", "y"], "c": None}) == "a = 1 AND b IN ('x', 'y') AND c IS NULL"
    assert build_where([("a", ">=", 2), ("b", "IS NULL")], raw="c = 1") == "a >= 2 AND b IS NULL AND (c = 1)"
    with pytest.raises(CloudElementsCEQLError):
        build_where({"a": 1}, raw="b = 1 OR c = 2", element_key="quickbooks")
    assert "OR" in build_where({"a": 1}, raw="b = 1 OR c = 2", element_key="quickbooksonprem")


def test_format_date_per_element():
    assert format_date(T0, "quickbooks") == "2024-01-31T10:00:00.123Z"
    assert format_date(T0, "quickbooksonprem") == "2024-01-31T10:00:00+00:00"
    assert format_date(T0, "freshbooksv2") == "2024-01-31"
    plus_two = datetime(2024, 1, 31, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert format_date(plus_two, "quickbooks") == "2024-01-31T10:00:00.000Z"
    assert format_date("2024-01-31T10:00:00Z", "quickbooks") == "2024-01-31T10:00:00.000Z"
    with pytest.raises(CloudElementsConfigError):
        format_date("yesterday-ish", "quickbooks")
    with pytest.raises(CloudElementsConfigError):
        format_date(T0, "salesforce")


def test_window_clause():
    start, end = datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 2, tzinfo=timezone.utc)
    assert window_clause("quickbooks", start, end) == (
        "`metaData.lastUpdatedTime` >= '2024-01-01T00:00:00.000Z' AND "
        "`metaData.lastUpdatedTime` < '2024-01-02T00:00:00.000Z'"
    )
    assert window_clause("quickbooksonprem", start, None) == "TimeModified >= '2024-01-01T00:00:00+00:00'"
    # day precision: the end is rounded up so the window is a superset
    assert window_clause("freshbooksv2", start, end + timedelta(hours=5)) == (
        "updated >= '2024-01-01' AND updated < '2024-01-03'"
    )
    assert window_clause("quickbooks", None, None) is None
    with pytest.raises(CloudElementsConfigError):
        window_clause("quickbooks", end, start)
    validate_where(window_clause("quickbooks", start, end), "quickbooks")


@pytest.mark.parametrize(
    "where",
    [
        "totalAmt='1'",
        "`metaData.lastUpdateTime` > '2015-01-06T09:31:38-07:00'",
        "CompanyName = 'Bruce''s Office Machines'",
        "Active IN (true,false)",
        "email IS NULL",
        "name LIKE '%a%' AND x != 'or'",
        "compound = 0",
        "name = 'a OR b'",
        "path = 'C:\\dir\\' AND b = 1",
    ],
)
def test_valid_qbo_clauses(where):
    assert validate_where(where, "quickbooks") == where


@pytest.mark.parametrize(
    "where", ["a = 1 OR b = 2", "(a = 1 or b = 2) AND c = 3", "a = 1 || b = 2", "NOT (a = 1 OR b = 2)"]
)
def test_or_rejected_for_qbo_only(where):
    with pytest.raises(CloudElementsCEQLError, match="does not support OR"):
        validate_where(where, "quickbooks")
    assert validate_where(where, "quickbooksonprem") == where


@pytest.mark.parametrize("where", ["", "  ", "a = 'x", "a=1; DELETE FROM x", "a=1 ORDER BY b", "a=(select 1)"])
def test_invalid_clauses(where):
    with pytest.raises(CloudElementsCEQLError):
        validate_where(where)


def test_select_query():
    assert select_query("invoices") == "select * from invoices"
    assert select_query("invoices", " a = 1 ") == "select * from invoices where a = 1"
