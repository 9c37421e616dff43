"""Finance-ready typed tables projected from the raw SQL tables (docs/typed-tables.md).

:func:`project` turns the raw loader's ``ce_<element>_<resource>`` rows into a typed parent table (one
column per scalar field) and child tables (one per array of objects), with schema evolution recorded
in ``ce_schema_history``; SQLite, PostgreSQL and DuckDB share the code path.

Modules: :mod:`.projection` (the projection), :mod:`.flatten` (records to paths), :mod:`.schema` (table and
column names, table schemas), :mod:`.inference` (column types), :mod:`.statements` (engines and SQL),
:mod:`.history` (``ce_schema_history``), :mod:`.duck` (DuckDB adapter).
"""

from airflow_provider_cloudelements.typed.flatten import flatten
from airflow_provider_cloudelements.typed.history import HISTORY_TABLE
from airflow_provider_cloudelements.typed.inference import LATTICE, hints_from_metadata
from airflow_provider_cloudelements.typed.projection import project
from airflow_provider_cloudelements.typed.schema import SEPARATOR, child_table_name, column_name, typed_table_name
from airflow_provider_cloudelements.typed.statements import get_engine

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
