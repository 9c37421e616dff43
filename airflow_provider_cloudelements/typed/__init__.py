"""Finance-ready typed tables projected from the raw SQL tables (docs/typed-tables.md).

:func:`project` turns the raw loader's ``ce_<element>_<resource>`` rows into a typed parent table (one
column per scalar field) and child tables (one per array of objects), with schema evolution recorded
in ``ce_schema_history``; SQLite, PostgreSQL and DuckDB share the code path.
"""

from airflow_provider_cloudelements.typed.flatten import flatten
from airflow_provider_cloudelements.typed.projection import project, typed_table_name
from airflow_provider_cloudelements.typed.schema import (
    HISTORY_TABLE,
    LATTICE,
    SEPARATOR,
    child_table_name,
    column_name,
    get_engine,
    hints_from_metadata,
)

__all__ = [
    "HISTORY_TABLE",
    "LATTICE",
    "SEPARATOR",
    "child_table_name",
    "column_name",
    "flatten",
    "get_engine",
    "hints_from_metadata",
    "project",
    "typed_table_name",
]
