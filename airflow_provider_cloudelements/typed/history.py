"""The schema history of typed tables: ``ce_schema_history`` and the schemas rebuilt from it.

Every schema change of a projection (``create_table``, ``add_column``, ``widen``) is one row; the
column names and types of a typed table are rebuilt from its rows at the start of each projection,
so a name once allocated to a path never changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Column, MetaData, Table, Text
from sqlalchemy.schema import CreateTable

from airflow_provider_cloudelements.typed.inference import LATTICE, TEXT, widen
from airflow_provider_cloudelements.typed.schema import TableSchema
from airflow_provider_cloudelements.typed.statements import Engine

#: The schema-history table (one per database, shared by every typed table).
HISTORY_TABLE = "ce_schema_history"

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
        logical = str(new_type) if new_type in LATTICE else TEXT
        previous = schema.columns.get(str(column))
        schema.columns[str(column)] = logical if previous is None else widen(previous, logical)
        if source_path is not None:
            schema.paths[str(source_path)] = str(column)
    return schemas
