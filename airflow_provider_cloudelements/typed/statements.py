"""The engines typed tables are built on, and the SQL statements of a projection, per engine.

Pure logic (no I/O): :class:`Engine` (SQLite, PostgreSQL, DuckDB), the DDL that creates, extends or
widens a typed table, the row upserts (SQLAlchemy Core), the Arrow column types of DuckDB batches and
the selection of the raw rows a projection has to (re)write.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from airflow_provider_cloudelements.typed.inference import BOOLEAN, INTEGER, NUMBER, TEXT
from airflow_provider_cloudelements.typed.schema import TableSchema

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


def resolve_engine(dialect: Engine | SqlDialect | str) -> Engine:
    """The :class:`~.schema.Engine` for an :class:`Engine`, a loader :class:`SqlDialect` or a name."""
    if isinstance(dialect, Engine):
        return dialect
    engine = get_engine(dialect.name if isinstance(dialect, SqlDialect) else str(dialect))
    placeholder = getattr(dialect, "placeholder", None)
    if isinstance(dialect, SqlDialect) and placeholder != engine.placeholder:
        raise CloudElementsConfigError(
            f"Typed tables need the {engine.placeholder!r} parameter marker on {engine.name}"
        )
    return engine


#: Temp table of the record ids to project in this call (``record_id``, ``existing`` 0/1).
TODO_TABLE = "ce_typed_todo"


def todo_sql(engine: Engine, raw: str, typed: str) -> list[str]:
    """Statements collecting the stale record ids in one pass (param of the last: the instance id).

    One anti-join of the raw and typed keys, so every page below is an index lookup whatever the
    planner knows about the (freshly created, unanalysed) typed table.
    """
    p = engine.placeholder
    return [
        f"DROP TABLE IF EXISTS {TODO_TABLE}",
        f"CREATE TEMP TABLE {TODO_TABLE} (record_id {engine.sql.key_text_type} PRIMARY KEY, existing INTEGER NOT NULL)",
        f"INSERT INTO {TODO_TABLE} (record_id, existing) "
        f"SELECT r.record_id, CASE WHEN t.record_id IS NULL THEN 0 ELSE 1 END "
        f"FROM {engine.quote(raw)} r LEFT JOIN {engine.quote(typed)} t "
        f"ON t.instance_id = r.instance_id AND t.record_id = r.record_id "
        f"WHERE r.instance_id = {p} AND (t.record_id IS NULL OR t.synced_at <> r.synced_at)",
    ]


def page_sql(engine: Engine, raw: str, raw_columns: set[str]) -> str:
    """One page of stale raw rows in id order (params: instance id, last id of the previous page, limit)."""
    p = engine.placeholder
    version = "r.version_num" if "version_num" in raw_columns else "NULL"
    deleted_at = "r.deleted_at" if "deleted_at" in raw_columns else "NULL"
    return (
        f"SELECT r.record_id, r.is_deleted, r.updated_at, r.synced_at, r.data, {version}, {deleted_at}, k.existing "
        f"FROM {TODO_TABLE} k JOIN {engine.quote(raw)} r ON r.instance_id = {p} AND r.record_id = k.record_id "
        f"WHERE k.record_id > {p} ORDER BY k.record_id LIMIT {p}"
    )
