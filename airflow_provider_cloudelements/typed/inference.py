"""Logical types of typed-table columns: the lattice, inference from JSON values, declared hints.

Types (logical -> SQLite / PostgreSQL / DuckDB)
    ``boolean`` (BOOLEAN, stored 0/1 on SQLite) < ``integer`` (BIGINT) < ``number`` (SQLite FLOAT,
    PostgreSQL NUMERIC, DuckDB DOUBLE) < ``text`` (TEXT / VARCHAR). A column's type is the least
    type that holds every value seen so far (JSON ``true`` -> boolean, ``3`` -> integer, ``1.5`` ->
    number, a string -> text; an integer outside 64 bits -> text; an array of scalars -> its JSON
    text). Dates and date-times stay TEXT exactly as the element serves them (QBO ``txnDate``
    ``2026-01-31``, QBE ``TimeModified`` with offset, FreshBooks local ``yyyy-MM-dd HH:mm:ss``) on
    every engine: their zones differ per element and per field, so a timestamp type would have to
    guess; the first-class ``updated_at`` column is normalised to fixed-width ISO-8601 UTC text
    (``2026-01-31T10:00:00.000Z``, sorts as text, ``CAST(updated_at AS TIMESTAMP)`` works on all three).
    Object metadata (``GET /hubs/finance/objects/{name}/metadata``) may declare ``number``,
    ``integer`` or ``boolean`` for a field: its column then starts at that type and string values
    that parse as such are stored typed (QBE serves amounts as strings such as ``"15.00"``);
    ``string``/``date`` declarations never override a JSON boolean or number (the JSON value is
    more precise). A value that does not fit widens the column up the lattice (never down).

Per page, :func:`scan` records the Python types seen per path (checking strings against a non-text
column or hint once per record shape), :func:`needed_type` picks the least type holding them and
:func:`converter` turns values into what a column of that type binds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError

if TYPE_CHECKING:
    from airflow_provider_cloudelements.typed.projection import _Table


#: Logical types, narrowest first (the widening order).
BOOLEAN, INTEGER, NUMBER, TEXT = "boolean", "integer", "number", "text"
LATTICE: tuple[str, ...] = (BOOLEAN, INTEGER, NUMBER, TEXT)
_RANK = {name: i for i, name in enumerate(LATTICE)}

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1

#: Python types a column of each logical type takes without conversion.
NATIVE: dict[str, frozenset[type]] = {
    BOOLEAN: frozenset({bool}),
    INTEGER: frozenset({int}),
    NUMBER: frozenset({int, float}),
    TEXT: frozenset({str}),
}
_PY_TYPE = {bool: BOOLEAN, float: NUMBER, str: TEXT}


def widen(a: str, b: str) -> str:
    """The least logical type holding both ``a`` and ``b`` (``widen("integer", "number") == "number"``)."""
    return a if _RANK[a] >= _RANK[b] else b


def value_type(value: Any) -> str:
    """Logical type of one scalar JSON value (``None`` is not asked: it fits every column)."""
    kind = type(value)
    if kind is bool:
        return BOOLEAN
    if kind is int:
        return INTEGER if _INT64_MIN <= value <= _INT64_MAX else TEXT
    if kind is float:
        return NUMBER
    return TEXT


_INTEGER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)")
_NUMBER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def string_fits(text: str, logical: str) -> bool:
    """Whether a JSON string can be stored as ``logical`` (declared or inferred) without losing anything.

    ``"true"``/``"false"`` fit ``boolean``; canonical integers (no leading zero, no ``+``, 64 bits) fit
    ``integer``; decimal literals (``"15.00"``, ``"-3"``, ``"1e3"``; again no leading zero) fit
    ``number``; every string fits ``text``. ``"007"`` fits only ``text``.
    """
    if logical == TEXT:
        return True
    if logical == BOOLEAN:
        return text in ("true", "false")
    if logical == INTEGER:
        return _INTEGER_TEXT.fullmatch(text) is not None and _INT64_MIN <= int(text) <= _INT64_MAX
    return _NUMBER_TEXT.fullmatch(text) is not None


_METADATA_TYPES = {
    "boolean": BOOLEAN,
    "bool": BOOLEAN,
    "integer": INTEGER,
    "int": INTEGER,
    "long": INTEGER,
    "number": NUMBER,
    "double": NUMBER,
    "float": NUMBER,
    "decimal": NUMBER,
    "currency": NUMBER,
}
_ARRAY_MARK = re.compile(r"\[\*?\]")


@dataclass(frozen=True)
class FieldHints:
    """Declared types from object metadata: ``{(array_path or "", field path): logical type}``.

    Only ``boolean``/``integer``/``number`` declarations are kept (see the module docstring).
    """

    types: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def get(self, array_path: str, path: str) -> str | None:
        return self.types.get((array_path, path))


def hints_from_metadata(metadata: Mapping[str, Any] | None) -> FieldHints:
    """Parse the body of ``GET /hubs/finance/objects/{name}/metadata`` into :class:`FieldHints`.

    Shape: ``{"fields": [{"vendorPath": "customerRef.value", "type": "string", ...}, ...]}``. A path
    into an array of objects is written ``line[*].amount`` (``[]`` is accepted too); such a field is a
    column of the child table ``line``.

    :raises CloudElementsConfigError: ``metadata`` is not a mapping with a ``fields`` list.
    """
    if metadata is None:
        return FieldHints()
    fields = metadata.get("fields") if isinstance(metadata, Mapping) else None
    if not isinstance(fields, list):
        raise CloudElementsConfigError("object metadata must be a dict with a 'fields' list")
    types: dict[tuple[str, str], str] = {}
    for item in fields:
        if not isinstance(item, Mapping):
            continue
        path = item.get("vendorPath") or item.get("path")
        logical = _METADATA_TYPES.get(str(item.get("type") or "").lower())
        if not path or logical is None:
            continue
        pieces = _ARRAY_MARK.split(str(path), maxsplit=1)
        if len(pieces) == 2:
            types[(pieces[0].rstrip("."), pieces[1].lstrip("."))] = logical
        else:
            types[("", str(path))] = logical
    return FieldHints(types)


@dataclass
class Batch:
    """Scan state of one table for one page.

    :ivar seen: python types seen per path.
    :ivar forced_text: paths that got a value only ``text`` can hold.
    :ivar checks: per record *shape* (keys and value types), the ``(path, target type)`` pairs whose
        string values must be checked against a non-text column or hint; records of one resource have
        few shapes, so most records cost one tuple build and one dict lookup.
    """

    seen: dict[str, set[type]] = field(default_factory=dict)
    forced_text: set[str] = field(default_factory=set)
    checks: dict[tuple[Any, ...], list[tuple[str, str]]] = field(default_factory=dict)


def scan(batch: Batch, table: _Table, flat: Mapping[str, Any], shape: tuple[Any, ...] | None = None) -> None:
    """Record the types of one flattened record (``{path: scalar}``) of ``table`` in ``batch``.

    ``shape`` is the record's key/type tuple when the compiled flattener computed it (else built here).
    """
    if shape is None:
        shape = (*flat, *map(type, flat.values()))
    checks = batch.checks.get(shape)
    if checks is None:
        checks = batch.checks[shape] = _new_shape(batch, table, flat)
    for path, target in checks:
        if not string_fits(flat[path], target):
            batch.forced_text.add(path)


def _new_shape(batch: Batch, table: _Table, flat: Mapping[str, Any]) -> list[tuple[str, str]]:
    seen = batch.seen
    paths = table.schema.paths
    columns = table.schema.columns
    checks: list[tuple[str, str]] = []
    for path, value in flat.items():
        kind = type(value)
        kinds = seen.get(path)
        if kinds is None:
            seen[path] = {kind}
        else:
            kinds.add(kind)
        if kind is str:
            column = paths.get(path)
            target = columns[column] if column is not None else table.hints.get(path)
            if target is not None and target != TEXT:
                checks.append((path, target))
        elif kind is int and value_type(value) == TEXT:
            batch.forced_text.add(path)  # beyond 64 bits (checked once per shape)
    return checks


def needed_type(current: str | None, kinds: set[type], forced_text: bool) -> str:
    """The least logical type holding the column's ``current`` type and the Python ``kinds`` seen."""
    if forced_text:
        return TEXT
    result = current
    for kind in kinds:
        if kind is str:
            logical = current if current is not None else TEXT  # strings that fit were checked by scan
        else:
            logical = _PY_TYPE.get(kind, INTEGER)
        result = logical if result is None else widen(result, logical)
    return result or TEXT


def _to_text(value: Any) -> Any:
    if value is None or type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    return str(value)


def converter(logical: str, decimal_numbers: bool) -> Callable[[Any], Any]:
    """Return the function turning a JSON scalar into what a ``logical`` column binds (``None`` is not passed)."""
    if logical == TEXT:
        return _to_text
    if logical == BOOLEAN:
        return lambda v: v == "true" if type(v) is str else v
    if logical == INTEGER:
        return lambda v: int(v) if type(v) in (bool, str) else v
    if decimal_numbers:
        return lambda v: Decimal(v) if type(v) is str else (int(v) if type(v) is bool else v)
    return lambda v: float(v) if type(v) is str else (int(v) if type(v) is bool else v)
