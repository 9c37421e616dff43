"""Typed-table schemas: column naming, the type lattice, object metadata, and DDL per engine.

Pure logic (no I/O). :mod:`airflow_provider_cloudelements.typed.projection` reads the raw table and calls
this module to decide which columns exist and which SQL statements create, extend or widen them.

Column names
    A record path (``customerRef.value``) becomes ``customer_ref__value``: every key is snake-cased
    (``InvoiceLineRet`` -> ``invoice_line_ret``, ``TxnID`` -> ``txn_id``), keys are joined with ``__``
    (:data:`SEPARATOR`) and the result is sanitized and length-capped by
    :func:`~airflow_provider_cloudelements.transfers.storage_to_sql.dialect.sanitize_identifier` (63 bytes,
    SHA-1 suffix).
    Two paths that end up with the same name (or a name of a system column) get ``_2``, ``_3``, ...
    in the order they were first seen; the mapping is stored in ``ce_schema_history`` so that it
    never changes afterwards.

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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import BigInteger, Boolean, Column, Float, Integer, MetaData, Numeric, Table, Text, insert
from sqlalchemy.dialects import postgresql as sa_postgresql
from sqlalchemy.dialects import sqlite as sa_sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateTable
from sqlalchemy.sql import bindparam, select
from sqlalchemy.sql import column as sa_column
from sqlalchemy.sql import table as sa_table
from sqlalchemy.types import TypeEngine

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import (
    POSTGRES,
    SQLITE,
    SqlDialect,
    sanitize_identifier,
)

#: Joins the keys of a nested path in a column name (``customer_ref__value``).
SEPARATOR = "__"

#: Logical types, narrowest first (the widening order).
BOOLEAN, INTEGER, NUMBER, TEXT = "boolean", "integer", "number", "text"
LATTICE: tuple[str, ...] = (BOOLEAN, INTEGER, NUMBER, TEXT)
_RANK = {name: i for i, name in enumerate(LATTICE)}

#: System columns of a typed parent table, in table order.
PARENT_SYSTEM_COLUMNS: tuple[str, ...] = (
    "instance_id",
    "record_id",
    "version_num",
    "updated_at",
    "is_deleted",
    "deleted_at",
    "synced_at",
)
#: System columns of a child table (its primary key), in table order.
CHILD_SYSTEM_COLUMNS: tuple[str, ...] = ("instance_id", "parent_id", "position")

#: The schema-history table (one per database, shared by every typed table).
HISTORY_TABLE = "ce_schema_history"

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_CAMEL_1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")


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


@lru_cache(maxsize=65536)
def snake_case(key: str) -> str:
    """``customerRef`` -> ``customer_ref``, ``InvoiceLineRet`` -> ``invoice_line_ret``, ``TxnID`` -> ``txn_id``."""
    return _CAMEL_2.sub(r"\1_\2", _CAMEL_1.sub(r"\1_\2", key)).lower()


@lru_cache(maxsize=65536)
def column_name(path: str) -> str:
    """Natural column name of a dotted record path (``metaData.lastUpdatedTime`` -> ``meta_data__last_updated_time``).

    :raises CloudElementsConfigError: nothing usable is left (a key made of punctuation only).
    """
    parts = [_IDENT_RUN.sub("_", snake_case(part)).strip("_") for part in path.split(".")]
    return sanitize_identifier(SEPARATOR.join(p for p in parts if p) or path)


_IDENT_RUN = re.compile(r"[^a-z0-9]+")


def child_table_name(parent_table: str, array_path: str) -> str:
    """Child table of an array of objects: ``ce_typed_quickbooks_invoices`` + ``line`` -> ``…_invoices__line``."""
    return sanitize_identifier(f"{parent_table}{SEPARATOR}{column_name(array_path)}")


# --------------------------------------------------------------------------------------------------
# Object metadata
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# Table schemas
# --------------------------------------------------------------------------------------------------


@dataclass
class TableSchema:
    """The field columns of one typed table (system columns are implicit).

    :param name: table name.
    :param array_path: ``""`` for a parent table, the record path of the array for a child table.
    :param columns: ``{column name: logical type}`` in creation order.
    :param paths: ``{source path: column name}`` (path relative to the array element for children).
    :param exists: whether the table was created (recorded in the history).
    """

    name: str
    array_path: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    exists: bool = False

    @property
    def system_columns(self) -> tuple[str, ...]:
        return CHILD_SYSTEM_COLUMNS if self.array_path else PARENT_SYSTEM_COLUMNS

    def allocate(self, path: str) -> str:
        """Column name for a new ``path``: its natural name, or with ``_2``... when that is taken."""
        base = column_name(path)
        taken = set(self.columns) | set(self.system_columns)
        candidate, n = base, 1
        while candidate in taken:
            n += 1
            suffix = f"_{n}"
            candidate = sanitize_identifier(base[: 63 - len(suffix)] + suffix)
        return candidate


# --------------------------------------------------------------------------------------------------
# Engines
# --------------------------------------------------------------------------------------------------


#: The raw loader's dialect for DuckDB (``?`` markers, ``IS DISTINCT FROM``, explicit ``BEGIN``); see
#: :mod:`airflow_provider_cloudelements.typed.duck` for the connection adapter the loader needs.
DUCKDB_DIALECT = SqlDialect(
    name="duckdb",
    placeholder="?",
    key_text_type="TEXT",
    distinct_op="IS DISTINCT FROM",
    begin_sql="BEGIN TRANSACTION",
)


@dataclass(frozen=True)
class Engine:
    """What differs between the engines typed tables are built on.

    :param name: ``sqlite``, ``postgres`` or ``duckdb``.
    :param sql: the raw loader's :class:`SqlDialect` of the engine (parameter marker, ``BEGIN``, lock).
    :param sa_dialect: the SQLAlchemy dialect DDL and upserts are compiled with (DuckDB speaks the
        PostgreSQL dialect with ``?`` markers).
    :param number_type: SQLAlchemy type of ``number`` columns.
    :param decimal_numbers: whether ``number`` values parsed from strings are bound as ``Decimal``.
    """

    name: str
    sql: SqlDialect
    sa_dialect: Dialect
    number_type: TypeEngine[Any]
    decimal_numbers: bool = False

    @property
    def placeholder(self) -> str:
        return self.sql.placeholder

    @property
    def begin_sql(self) -> str | None:
        """Statement opening our transaction (``None``: the driver opens it implicitly)."""
        return self.sql.begin_sql

    @property
    def lock_sql(self) -> str | None:
        """Per-table lock for the transaction (one text parameter), or ``None``."""
        return self.sql.lock_sql

    def sa_type(self, logical: str) -> TypeEngine[Any]:
        if logical == BOOLEAN:
            return Boolean(create_constraint=False)
        if logical == INTEGER:
            return BigInteger()
        if logical == NUMBER:
            return self.number_type
        return Text()

    def type_sql(self, logical: str) -> str:
        """The column type as this engine spells it (``BIGINT``, ``NUMERIC``, ``TEXT``...)."""
        return str(self.sa_type(logical).compile(dialect=self.sa_dialect))

    def quote(self, ident: str) -> str:
        return str(self.sa_dialect.identifier_preparer.quote(ident))


SQLITE_ENGINE = Engine("sqlite", SQLITE, sa_sqlite.dialect(paramstyle="qmark"), Float())
POSTGRES_ENGINE = Engine(
    "postgres", POSTGRES, sa_postgresql.dialect(paramstyle="format"), Numeric(), decimal_numbers=True
)
DUCKDB_ENGINE = Engine("duckdb", DUCKDB_DIALECT, sa_postgresql.dialect(paramstyle="qmark"), Float(precision=53))
ENGINES: dict[str, Engine] = {
    "sqlite": SQLITE_ENGINE,
    "postgres": POSTGRES_ENGINE,
    "postgresql": POSTGRES_ENGINE,
    "duckdb": DUCKDB_ENGINE,
}


def get_engine(name: str) -> Engine:
    """:raises CloudElementsConfigError: an engine other than sqlite, postgres(ql) or duckdb."""
    try:
        return ENGINES[name.lower()]
    except (KeyError, AttributeError):
        raise CloudElementsConfigError(
            f"Typed tables support the engines {', '.join(sorted(ENGINES))}; got {name!r}"
        ) from None


def _sa_table(engine: Engine, schema: TableSchema) -> Table:
    meta = MetaData()
    cols: list[Column[Any]] = []
    if schema.array_path:
        cols += [
            Column("instance_id", BigInteger(), primary_key=True, nullable=False, autoincrement=False),
            Column("parent_id", Text(), primary_key=True, nullable=False),
            Column("position", Integer(), primary_key=True, nullable=False, autoincrement=False),
        ]
    else:
        cols += [
            Column("instance_id", BigInteger(), primary_key=True, nullable=False, autoincrement=False),
            Column("record_id", Text(), primary_key=True, nullable=False),
            Column("version_num", BigInteger()),
            Column("updated_at", Text()),
            Column("is_deleted", Integer(), nullable=False),
            Column("deleted_at", Text()),
            Column("synced_at", Text(), nullable=False),
        ]
    cols += [Column(name, engine.sa_type(logical)) for name, logical in schema.columns.items()]
    # SQLite: one B-tree keyed by the primary key instead of a rowid table plus a key index (fewer writes)
    return Table(schema.name, meta, *cols, sqlite_with_rowid=False)


def create_table_sql(engine: Engine, schema: TableSchema) -> str:
    """``CREATE TABLE IF NOT EXISTS`` of a typed table with its current columns (SQLAlchemy Core)."""
    return str(CreateTable(_sa_table(engine, schema), if_not_exists=True).compile(dialect=engine.sa_dialect)).strip()


def add_column_sql(engine: Engine, table: str, column: str, logical: str) -> str:
    """``ALTER TABLE … ADD COLUMN`` (a catalog change on all three engines: no table rewrite)."""
    return f"ALTER TABLE {engine.quote(table)} ADD COLUMN {engine.quote(column)} {engine.type_sql(logical)}"


def widen_column_sql(engine: Engine, table: str, column: str, old: str, new: str) -> list[str]:
    """Statements changing a column from ``old`` to the wider ``new`` type, keeping every stored value.

    PostgreSQL and DuckDB: ``ALTER COLUMN … TYPE … USING`` (booleans become ``true``/``false`` text, or
    1/0 via ``INTEGER``). SQLite cannot change a declared type in place: a new column is added, filled
    with the old values cast to the new type, the old one dropped and the new one renamed (SQLite >=
    3.35; a rewrite of that column only), so the column's affinity matches its type (an
    INTEGER-affinity column would turn the text ``"007"`` into ``7``).
    """
    tbl, col = engine.quote(table), engine.quote(column)
    type_sql = engine.type_sql(new)
    if old == BOOLEAN and new == TEXT:
        value = f"CASE WHEN {col} IS NULL THEN NULL WHEN {col} THEN 'true' ELSE 'false' END"
    elif old == BOOLEAN:
        value = f"CAST(CAST({col} AS INTEGER) AS {type_sql})"
    else:
        value = f"CAST({col} AS {type_sql})"
    if engine.name == "sqlite":
        tmp = engine.quote(sanitize_identifier(f"{column[:50]}_widen_tmp"))
        return [
            f"ALTER TABLE {tbl} ADD COLUMN {tmp} {type_sql}",
            f"UPDATE {tbl} SET {tmp} = {value}",
            f"ALTER TABLE {tbl} DROP COLUMN {col}",
            f"ALTER TABLE {tbl} RENAME COLUMN {tmp} TO {col}",
        ]
    return [f"ALTER TABLE {tbl} ALTER COLUMN {col} TYPE {type_sql} USING {value}"]


def upsert_sql(engine: Engine, schema: TableSchema, *, source: str | None = None) -> tuple[str, tuple[str, ...]]:
    """Row upsert of a parent table, or plain insert of a child table, compiled by SQLAlchemy Core.

    :param source: when given, rows come from ``SELECT <columns> FROM <source>`` (a registered Arrow
        batch on DuckDB) instead of one row of positional parameters.
    :returns: ``(sql, column order of the positional parameters, or of the source's columns)``.
    """
    table = _sa_table(engine, schema)
    names = [c.name for c in table.columns]
    if source is None:
        values: dict[str, Any] = {name: bindparam(name) for name in names}
        make = lambda ins: ins.values(values)  # noqa: E731
    else:
        batch = sa_table(source, *(sa_column(name) for name in names))
        make = lambda ins: ins.from_select(names, select(*batch.columns))  # noqa: E731
    if schema.array_path:
        stmt: Any = make(insert(table))
    else:
        dialect_insert = sa_sqlite.insert if engine.name == "sqlite" else sa_postgresql.insert
        ins = make(dialect_insert(table))
        keys = {"instance_id", "record_id"}
        stmt = ins.on_conflict_do_update(
            index_elements=sorted(keys),
            set_={c.name: ins.excluded[c.name] for c in table.columns if c.name not in keys},
        )
    compiled = stmt.compile(dialect=engine.sa_dialect)
    return str(compiled), tuple(compiled.positiontup or names) if source is None else tuple(names)


def arrow_types(schema: TableSchema) -> list[Any]:
    """Return the Arrow types of a table's columns in table order (system columns first), for Arrow batches."""
    import pyarrow as pa

    by_logical = {BOOLEAN: pa.bool_(), INTEGER: pa.int64(), NUMBER: pa.float64(), TEXT: pa.string()}
    system = (
        [pa.int64(), pa.string(), pa.int64()]
        if schema.array_path
        else [pa.int64(), pa.string(), pa.int64(), pa.string(), pa.int64(), pa.string(), pa.string()]
    )
    return system + [by_logical[logical] for logical in schema.columns.values()]


def delete_children_sql(engine: Engine, child_table: str) -> str:
    """Delete one parent's children (params: instance id, parent id)."""
    p = engine.placeholder
    return f"DELETE FROM {engine.quote(child_table)} WHERE instance_id = {p} AND parent_id = {p}"


# --------------------------------------------------------------------------------------------------
# Schema history
# --------------------------------------------------------------------------------------------------

#: Columns of ``ce_schema_history``.
HISTORY_COLUMNS: tuple[str, ...] = (
    "table_name",
    "parent_table",
    "array_path",
    "column_name",
    "source_path",
    "change",
    "old_type",
    "new_type",
    "changed_at",
)


def history_ddl(engine: Engine) -> str:
    """``CREATE TABLE IF NOT EXISTS ce_schema_history`` (every column TEXT).

    One row per change: ``change`` is ``create_table`` (``column_name`` NULL), ``add_column`` or
    ``widen`` (``old_type`` -> ``new_type``); ``changed_at`` is the projection's ``synced_at``.
    """
    meta = MetaData()
    table = Table(HISTORY_TABLE, meta, *(Column(name, Text()) for name in HISTORY_COLUMNS))
    return str(CreateTable(table, if_not_exists=True).compile(dialect=engine.sa_dialect)).strip()


def history_select_sql(engine: Engine) -> str:
    """History rows of one parent table and its children (params: the parent table name twice)."""
    p = engine.placeholder
    cols = ", ".join(HISTORY_COLUMNS)
    return f"SELECT {cols} FROM {HISTORY_TABLE} WHERE table_name = {p} OR parent_table = {p}"


def history_insert_sql(engine: Engine) -> str:
    p = engine.placeholder
    return (
        f"INSERT INTO {HISTORY_TABLE} ({', '.join(HISTORY_COLUMNS)}) VALUES ({', '.join([p] * len(HISTORY_COLUMNS))})"
    )


def schemas_from_history(parent_table: str, rows: Iterable[Sequence[Any]]) -> dict[str, TableSchema]:
    """Rebuild ``{array_path: TableSchema}`` (``""`` = the parent) from ``ce_schema_history`` rows.

    Order-independent: a column's type is the widest type recorded for it (widening is monotone), and
    columns keep the order of their ``changed_at``.
    """
    schemas: dict[str, TableSchema] = {}
    ordered = sorted(rows, key=lambda r: (str(r[8] or ""), 0 if r[5] == "create_table" else 1))
    for table_name, _parent, array_path, column, source_path, change, _old, new_type, _at in ordered:
        key = "" if table_name == parent_table else str(array_path or "")
        schema = schemas.setdefault(key, TableSchema(name=str(table_name), array_path=key))
        if change == "create_table":
            schema.exists = True
            continue
        if not column:
            continue
        logical = str(new_type) if new_type in _RANK else TEXT
        previous = schema.columns.get(str(column))
        schema.columns[str(column)] = logical if previous is None else widen(previous, logical)
        if source_path is not None:
            schema.paths[str(source_path)] = str(column)
    return schemas
