"""CEQL (Cloud Elements Query Language) builder and validator, reference §3.4.

CEQL is a SQL ``WHERE`` clause without the word ``WHERE``: single-quoted strings with ``''`` escapes,
backtick-quoted dotted field names, ``= != < > <= >= LIKE IN IS NULL AND OR ()``. QuickBooks Online
rejects ``OR``; :func:`validate_where` catches it before a request is sent, by parsing the clause with
sqlglot (MySQL with ``''`` as the only escape) rather than with regular expressions, so
an ``OR`` inside a quoted value is not a false positive.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.dialects.mysql import MySQL
from sqlglot.errors import ParseError, TokenError

from airflow_provider_cloudelements.exceptions import CloudElementsCEQLError, CloudElementsConfigError
from airflow_provider_cloudelements.models.timestamps import parameter_time
from airflow_provider_cloudelements.utils.elements import get_element

_SIMPLE_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OPERATORS = ("=", "!=", "<", ">", "<=", ">=", "LIKE", "IN", "IS NULL", "IS NOT NULL")


class CEQLDialect(MySQL):
    """sqlglot dialect for CEQL: MySQL's backtick identifiers, but its own quote escaping.

    Quotes are escaped only by doubling them (reference §3.4) and a backslash is an ordinary character
    (``'C:\\dir'`` stays as is).
    """

    class Tokenizer(MySQL.Tokenizer):
        STRING_ESCAPES = ["'"]


def to_datetime(value: datetime | date | str, *, what: str = "date") -> datetime:
    """A required request time as aware UTC (:func:`~airflow_provider_cloudelements.models.timestamps.parameter_time`).

    :raises CloudElementsConfigError: missing or unparseable, naming ``what``.
    """
    return parameter_time(value, what=what, required=True)


def format_date(value: datetime | date | str, element_key: str) -> str:
    """Render a date for a CEQL literal on the element's updated-date field (no quotes).

    * ``iso`` (QuickBooks Online): ``2024-01-31T10:00:00.000Z`` (UTC, milliseconds), reference §3.4;
    * ``iso_offset`` (QuickBooks Enterprise, ``yyyy-MM-dd'T'HH:mm:ssXXX``): ``2024-01-31T10:00:00+00:00``;
    * ``date`` (FreshBooks): ``2024-01-31`` (UTC day; sub-day precision is lost).

    :param value: aware/naive (= UTC) datetime, date or ISO-8601 string.
    :param element_key: ``quickbooks``, ``quickbooksonprem``, ``freshbooksv2`` or ``freshbooks``.
    :raises CloudElementsConfigError: unknown element or unparseable value.
    """
    fmt = get_element(element_key).ceql_date_format
    dt = to_datetime(value)
    if fmt == "iso":
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    if fmt == "iso_offset":
        return dt.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    if fmt == "date":
        return dt.strftime("%Y-%m-%d")
    raise CloudElementsConfigError(f"Unknown CEQL date format {fmt!r} for element {element_key!r}")


def quote_identifier(name: str) -> str:
    """A field name as CEQL wants it: bare when simple, backtick-quoted when dotted (``metaData.x``).

    :raises CloudElementsCEQLError: empty names or names containing a backtick or a quote.
    """
    if not isinstance(name, str) or not name.strip():
        raise CloudElementsCEQLError(f"Invalid CEQL field name {name!r}")
    if "`" in name or "'" in name or any(ord(c) < 32 for c in name):
        raise CloudElementsCEQLError(f"Invalid CEQL field name {name!r}")
    return name if _SIMPLE_IDENTIFIER.match(name) else f"`{name}`"


def quote_value(value: Any) -> str:
    """A Python value as a CEQL literal.

    ``str`` → ``'...'`` with ``'`` doubled (reference §3.4: ``'Bruce''s Office Machines'``);
    ``bool`` → ``true``/``false``; ``int``/``float``/``Decimal`` → bare number;
    ``datetime`` → ``'YYYY-MM-DDTHH:MM:SS.mmmZ'`` (UTC); ``date`` → ``'YYYY-MM-DD'``.

    :raises CloudElementsCEQLError: ``None`` (use ``IS NULL``), NaN/infinite numbers, strings with
        NUL/control characters other than tab/newline, and any other type.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (float, Decimal)):
        if isinstance(value, float) and not math.isfinite(value):
            raise CloudElementsCEQLError(f"Cannot quote non-finite number {value!r}")
        if isinstance(value, Decimal) and not value.is_finite():
            raise CloudElementsCEQLError(f"Cannot quote non-finite number {value!r}")
        return str(value)
    if isinstance(value, datetime):
        dt = to_datetime(value)
        return "'" + dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z'"
    if isinstance(value, date):
        return f"'{value.isoformat()}'"
    if isinstance(value, str):
        if any(ord(c) < 32 and c not in "\t\n\r" for c in value):
            raise CloudElementsCEQLError("Cannot quote a string containing control characters")
        return "'" + value.replace("'", "''") + "'"
    if value is None:
        raise CloudElementsCEQLError("Cannot quote None: use the 'IS NULL' operator")
    raise CloudElementsCEQLError(f"Cannot quote a value of type {type(value).__name__}")


def condition(field: str, op: str, value: Any = None) -> str:
    """One CEQL comparison, e.g. ``condition("totalAmt", ">=", 100)`` → ``totalAmt >= 100``.

    :param field: field name (dotted names are backtick-quoted).
    :param op: one of :data:`OPERATORS` (case-insensitive).
    :param value: the right-hand side; a non-empty iterable for ``IN``; ignored for ``IS [NOT] NULL``.
    :raises CloudElementsCEQLError: unknown operator, empty ``IN`` list, unquotable value.
    """
    op_norm = " ".join(op.strip().upper().split())
    if op_norm not in OPERATORS:
        raise CloudElementsCEQLError(f"Unknown CEQL operator {op!r}; use one of {', '.join(OPERATORS)}")
    ident = quote_identifier(field)
    if op_norm in ("IS NULL", "IS NOT NULL"):
        return f"{ident} {op_norm}"
    if op_norm == "IN":
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise CloudElementsCEQLError("IN needs a list of values")
        items = [quote_value(v) for v in value]
        if not items:
            raise CloudElementsCEQLError(f"IN needs at least one value (field {field!r})")
        return f"{ident} IN ({', '.join(items)})"
    return f"{ident} {op_norm} {quote_value(value)}"


def build_where(
    conditions: Mapping[str, Any] | Iterable[tuple[str, str, Any] | tuple[str, str]] | None = None,
    *,
    raw: str | Iterable[str] | None = None,
    element_key: str | None = None,
) -> str | None:
    """AND together conditions into one CEQL ``where`` clause.

    :param conditions: either a mapping ``{field: value}`` (equality; a list/tuple/set value becomes
        ``IN``; ``None`` becomes ``IS NULL``) or an iterable of ``(field, op, value)`` /
        ``(field, "IS NULL")`` tuples.
    :param raw: extra hand-written clause(s), each wrapped in parentheses.
    :param element_key: when given, the result is checked with :func:`validate_where`.
    :return: the clause, or ``None`` when there is nothing to filter on.
    :raises CloudElementsCEQLError: see :func:`condition` and :func:`validate_where`.
    """
    parts: list[str] = []
    if isinstance(conditions, Mapping):
        for field, value in conditions.items():
            if value is None:
                parts.append(condition(field, "IS NULL"))
            elif isinstance(value, (list, tuple, set, frozenset)):
                parts.append(condition(field, "IN", list(value)))
            else:
                parts.append(condition(field, "=", value))
    elif conditions is not None:
        for item in conditions:
            if len(item) == 2:
                parts.append(condition(item[0], item[1]))
            elif len(item) == 3:
                parts.append(condition(item[0], item[1], item[2]))  # type: ignore[misc]
            else:
                raise CloudElementsCEQLError(f"Condition must be (field, op[, value]), got {item!r}")
    raws = [raw] if isinstance(raw, str) else list(raw or [])
    parts.extend(f"({r.strip()})" for r in raws if r and r.strip())
    if not parts:
        return None
    where = " AND ".join(parts)
    if element_key is not None:
        validate_where(where, element_key)
    return where


def window_clause(
    element_key: str,
    start: datetime | date | str | None,
    end: datetime | date | str | None,
    *,
    field: str | None = None,
) -> str | None:
    """Half-open ``[start, end)`` filter on the element's updated-date field.

    QuickBooks Online: ```metaData.lastUpdatedTime` >= '2024-01-01T00:00:00.000Z' AND
    `metaData.lastUpdatedTime` < '2024-01-02T00:00:00.000Z'``.

    For day-precision elements (FreshBooks, ``ceql_date_format == "date"``) ``end`` is rounded **up**
    to the next day when it is not midnight, so the clause selects a superset of the window: the
    caller must filter records on the exact timestamps.

    :param element_key: element key (picks field and date format, ``utils/elements.py``).
    :param start: inclusive lower bound or ``None`` (open).
    :param end: exclusive upper bound or ``None`` (open).
    :param field: override the element's updated-date field.
    :return: the clause, or ``None`` when both bounds are ``None``.
    :raises CloudElementsConfigError: unparseable bounds, ``start >= end``, unknown element.
    """
    spec = get_element(element_key)
    ident = quote_identifier(field or spec.updated_field)
    start_dt = to_datetime(start, what="window start") if start is not None else None
    end_dt = to_datetime(end, what="window end") if end is not None else None
    if start_dt is not None and end_dt is not None and start_dt >= end_dt:
        raise CloudElementsConfigError(f"Empty window: start {start_dt.isoformat()} >= end {end_dt.isoformat()}")
    if end_dt is not None and spec.ceql_date_format == "date" and end_dt.time() != datetime.min.time():
        end_dt = datetime(end_dt.year, end_dt.month, end_dt.day, tzinfo=timezone.utc) + timedelta(days=1)
    parts = []
    if start_dt is not None:
        parts.append(f"{ident} >= '{format_date(start_dt, element_key)}'")
    if end_dt is not None:
        parts.append(f"{ident} < '{format_date(end_dt, element_key)}'")
    return " AND ".join(parts) or None


def parse_where(where: str) -> exp.Expression:
    """Parse a CEQL clause with sqlglot (:class:`CEQLDialect`) and return the condition expression.

    :raises CloudElementsCEQLError: empty clause, unparseable text, more than one statement, or
        anything beyond a plain condition (``ORDER BY``, ``LIMIT``, sub-selects …).
    """
    if not isinstance(where, str) or not where.strip():
        raise CloudElementsCEQLError("Empty CEQL where clause")
    sql = f"SELECT * FROM t WHERE {where}"
    try:
        statements = sqlglot.parse(sql, read=CEQLDialect)
    except (ParseError, TokenError) as exc:
        raise CloudElementsCEQLError(f"CEQL where clause cannot be parsed: {str(exc)[:200]}") from None
    statements = [s for s in statements if s is not None]
    if len(statements) != 1 or not isinstance(statements[0], exp.Select):
        raise CloudElementsCEQLError("CEQL where clause must be a single condition (found extra statements)")
    select = statements[0]
    extra = sorted(k for k, v in select.args.items() if v and k not in ("expressions", "from", "from_", "where"))
    if extra:
        raise CloudElementsCEQLError(f"CEQL where clause must be a plain condition, found: {', '.join(extra)}")
    where_node = select.args.get("where")
    if where_node is None:
        raise CloudElementsCEQLError("CEQL where clause cannot be parsed")
    cond = where_node.this
    if cond.find(exp.Select) is not None:
        raise CloudElementsCEQLError("Sub-queries are not supported in CEQL")
    return cond


def validate_where(where: str, element_key: str | None = None) -> str:
    """Check a CEQL clause before it is sent.

    :param where: the clause.
    :param element_key: when given, element rules apply (QuickBooks Online: no ``OR``, reference §3.4).
    :return: the clause, stripped.
    :raises CloudElementsCEQLError: unparseable clause, or ``OR`` for an element that rejects it.
    :raises CloudElementsConfigError: unknown element key.
    """
    cond = parse_where(where)
    if element_key is not None:
        spec = get_element(element_key)
        if not spec.supports_or and cond.find(exp.Or) is not None:
            raise CloudElementsCEQLError(
                f"{spec.name} ({element_key}) does not support OR in CEQL (reference §3.4); "
                "run one query per alternative or use IN (...)"
            )
    return where.strip()


def select_query(resource: str, where: str | None = None) -> str:
    """Build the bulk ``q`` parameter: ``select * from <resource> [where ...]`` (reference §3.4, §4.1).

    QuickBooks/FreshBooks bulk support ``select *`` only.
    """
    q = f"select * from {resource}"
    return f"{q} where {where.strip()}" if where and where.strip() else q
