"""CEQL ``where`` expressions (reference §3.4), parsed with sqlglot and compiled to predicates.

Supported: ``= != <> < > <= >= LIKE IN (...) IS [NOT] NULL AND OR NOT``, parentheses, single-quoted
strings with ``''`` escapes, numbers, ``true``/``false``, backtick identifiers and dotted paths into
nested objects (`` `metaData.lastUpdatedTime` `` or ``metaData.lastUpdatedTime``).

Comparison rules: when the field is one of the ``date_fields`` both sides are converted to epoch ms
(:func:`timefmt.parse_instant`: epoch numbers, ISO-8601 with ``Z``/offset, ``yyyy-MM-dd``,
``yyyy-MM-dd HH:mm:ss``); otherwise numbers compare numerically (also numeric strings such as QBE
amounts), booleans against ``true``/``false``, everything else as strings. A missing field matches
only ``IS NULL``.

Errors raise :class:`CeqlError` (→ 400 ``Error parsing query ...``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from cloudelements_emulator import timefmt

Predicate = Callable[[dict], bool]
_MISSING = object()


class CeqlError(ValueError):
    """Invalid CEQL; ``provider_message`` mimics the provider's text when there is one."""

    def __init__(self, message: str, provider_message: str | None = None) -> None:
        super().__init__(message)
        self.provider_message = provider_message


@dataclass(frozen=True)
class Query:
    """A compiled ``where``: the predicate plus the parsed tree (for push-down analysis)."""

    predicate: Predicate
    tree: exp.Expression | None
    fields: frozenset[str]


def field_path(node: exp.Expression) -> str:
    """Dotted field name of a column node (backticked names keep their dots)."""
    if isinstance(node, exp.Column):
        return ".".join(part.name for part in node.parts)
    if isinstance(node, (exp.Identifier, exp.Var)):
        return node.name
    raise CeqlError(f"Error parsing query: expected a field name, got '{node.sql()}'")


def lookup(record: dict, path: str) -> Any:
    """Value at dotted ``path`` (exact key first, so keys containing dots also work)."""
    if path in record:
        return record[path]
    cur: Any = record
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


def _literal(node: exp.Expression) -> Any:
    if isinstance(node, exp.Literal):
        if node.is_string:
            return node.this
        text = node.this
        return float(text) if any(ch in text for ch in ".eE") else int(text)
    if isinstance(node, exp.Neg):
        return -_literal(node.this)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Paren):
        return _literal(node.this)
    raise CeqlError(f"Error parsing query: expected a literal value, got '{node.sql()}'")


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip()):
        return float(value)
    return None


def _coerce(value: Any, literal: Any, is_date: bool) -> tuple[Any, Any] | None:
    """Bring a record value and a literal to comparable types; ``None`` if incomparable."""
    if is_date:
        a, b = timefmt.parse_instant(value), timefmt.parse_instant(literal)
        return None if a is None or b is None else (a, b)
    if isinstance(value, bool) or isinstance(literal, bool):

        def as_bool(v: Any) -> Any:
            return v if isinstance(v, bool) else {"true": True, "false": False}.get(str(v).lower(), v)

        return as_bool(value), as_bool(literal)
    a_num, b_num = _as_number(value), _as_number(literal)
    if a_num is not None and b_num is not None:
        return a_num, b_num
    if isinstance(value, (dict, list)):
        return None
    return str(value), str(literal)


_CMP: dict[type, Callable[[Any, Any], bool]] = {
    exp.EQ: lambda a, b: a == b,
    exp.NEQ: lambda a, b: a != b,
    exp.LT: lambda a, b: a < b,
    exp.GT: lambda a, b: a > b,
    exp.LTE: lambda a, b: a <= b,
    exp.GTE: lambda a, b: a >= b,
}


def _like_regex(pattern: str) -> re.Pattern[str]:
    out = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern)
    return re.compile(f"^{out}$", re.IGNORECASE | re.DOTALL)


class _Compiler:
    def __init__(
        self,
        date_fields: frozenset[str],
        allow_or: bool,
        or_error: CeqlError | None,
        aliases: dict[str, tuple[str, type]] | None = None,
    ) -> None:
        self.aliases = aliases or {}
        self.date_fields = date_fields
        self.allow_or = allow_or
        self.or_error = or_error
        self.fields: set[str] = set()

    def compile(self, node: exp.Expression) -> Predicate:
        if isinstance(node, exp.Paren):
            return self.compile(node.this)
        if isinstance(node, exp.And):
            left, right = self.compile(node.this), self.compile(node.expression)
            return lambda r: left(r) and right(r)
        if isinstance(node, exp.Or):
            if not self.allow_or:
                raise self.or_error or CeqlError("Error parsing query: OR is not supported")
            left, right = self.compile(node.this), self.compile(node.expression)
            return lambda r: left(r) or right(r)
        if isinstance(node, exp.Not):
            inner = self.compile(node.this)
            return lambda r: not inner(r)
        if isinstance(node, exp.Is):
            path = self._field(node.this)
            if not isinstance(node.expression, exp.Null):
                raise CeqlError("Error parsing query: only IS NULL / IS NOT NULL are supported")
            return lambda r: lookup(r, path) in (_MISSING, None)
        if type(node) in _CMP:
            return self._comparison(node)
        if isinstance(node, exp.Like):
            path = self._field(node.this)
            regex = _like_regex(str(_literal(node.expression)))
            return lambda r: (v := lookup(r, path)) is not _MISSING and v is not None and bool(regex.match(str(v)))
        if isinstance(node, exp.In):
            path = self._field(node.this)
            values = [_literal(v) for v in node.expressions]
            is_date = path in self.date_fields
            if not values:
                raise CeqlError("Error parsing query: IN needs at least one value")

            def in_pred(r: dict) -> bool:
                v = lookup(r, path)
                if v is _MISSING or v is None:
                    return False
                return any((c := _coerce(v, lit, is_date)) is not None and c[0] == c[1] for lit in values)

            return in_pred
        raise CeqlError(f"Error parsing query: unsupported expression '{node.sql()}'")

    def _field(self, node: exp.Expression) -> str:
        path = field_path(node)
        self.fields.add(path)
        return path

    def _comparison(self, node: exp.Expression) -> Predicate:
        op = _CMP[type(node)]
        left, right = node.this, node.expression
        if not isinstance(left, (exp.Column, exp.Identifier)) and isinstance(right, (exp.Column, exp.Identifier)):
            left, right = right, left
            flip: dict[type, type] = {exp.LT: exp.GT, exp.GT: exp.LT, exp.LTE: exp.GTE, exp.GTE: exp.LTE}
            op = _CMP[flip.get(type(node), type(node))]
        path = self._field(left)
        if path in self.aliases and isinstance(node, exp.EQ):
            path, alias_op = self.aliases[path]  # provider filter, e.g. FreshBooks updated_from
            op = _CMP[alias_op]
        literal = _literal(right)
        is_date = path in self.date_fields
        if literal is None:
            raise CeqlError("Error parsing query: use IS NULL to compare with null")
        if is_date and timefmt.parse_instant(literal) is None:
            raise CeqlError(f"Error parsing query: invalid date value '{literal}' for {path}")

        def cmp(r: dict) -> bool:
            v = lookup(r, path)
            if v is _MISSING or v is None:
                return False
            pair = _coerce(v, literal, is_date)
            if pair is None:
                return False
            try:
                return op(*pair)
            except TypeError:
                return False

        return cmp


def compile_where(
    where: str | None,
    date_fields: frozenset[str] = frozenset(),
    allow_or: bool = True,
    or_error: CeqlError | None = None,
    aliases: dict[str, tuple[str, type]] | None = None,
) -> Query:
    """Compile a CEQL ``where`` (``None``/blank → match everything).

    ``aliases`` maps provider filter names used with ``=`` to a (field, operator) pair, e.g.
    FreshBooks ``updated_from='2016-05-15'`` → ``updated >= '2016-05-15'`` (reference §3.4).

    :raises CeqlError: on syntax errors, unsupported constructs, or ``OR`` when ``allow_or`` is False
        (``or_error`` is raised then).
    """
    if where is None or not where.strip():
        return Query(lambda r: True, None, frozenset())
    try:
        tree = sqlglot.parse_one(f"SELECT * FROM t WHERE {where}", read="mysql")
    except SqlglotError as err:
        raise CeqlError(f"Error parsing query: {where}", provider_message=str(err).splitlines()[0]) from None
    where_node = tree.args.get("where") if isinstance(tree, exp.Select) else None
    if where_node is None or any(tree.args.get(k) for k in ("group", "order", "limit", "having", "joins")):
        raise CeqlError(f"Error parsing query: {where}")
    compiler = _Compiler(date_fields, allow_or, or_error, aliases)
    predicate = compiler.compile(where_node.this)
    return Query(predicate, where_node.this, frozenset(compiler.fields))


def date_window(tree: exp.Expression | None, date_field: str) -> tuple[int | None, int | None]:
    """Conservative push-down: bounds on ``date_field`` implied by top-level AND conjuncts.

    Returns ``(lo, hi)`` epoch ms, both inclusive (the exact predicate is still applied afterwards).
    """
    lo: int | None = None
    hi: int | None = None
    stack = [tree] if tree is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, exp.Paren):
            stack.append(node.this)
        elif isinstance(node, exp.And):
            stack.extend([node.this, node.expression])
        elif type(node) in (exp.GT, exp.GTE, exp.LT, exp.LTE, exp.EQ) and isinstance(node.this, exp.Column):
            try:
                if field_path(node.this) != date_field:
                    continue
                ms = timefmt.parse_instant(_literal(node.expression))
            except CeqlError:
                continue
            if ms is None:
                continue
            if type(node) in (exp.GT, exp.GTE, exp.EQ):
                lo = ms if lo is None else max(lo, ms)
            if type(node) in (exp.LT, exp.LTE, exp.EQ):
                hi = ms if hi is None else min(hi, ms)
    return lo, hi
