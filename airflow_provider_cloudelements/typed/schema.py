"""Typed-table schemas: table and column naming, and the field columns of one typed table.

Pure logic (no I/O). Column types are in :mod:`.inference`, the SQL per engine in :mod:`.statements`,
the schema history in :mod:`.history`; :mod:`airflow_provider_cloudelements.typed.projection` ties
them together.

Column names
    A record path (``customerRef.value``) becomes ``customer_ref__value``: every key is snake-cased
    (``InvoiceLineRet`` -> ``invoice_line_ret``, ``TxnID`` -> ``txn_id``), keys are joined with ``__``
    (:data:`SEPARATOR`) and the result is sanitized and length-capped by
    :func:`~airflow_provider_cloudelements.transfers.storage_to_sql.dialect.sanitize_identifier` (63 bytes,
    SHA-1 suffix).
    Two paths that end up with the same name (or a name of a system column) get ``_2``, ``_3``, ...
    in the order they were first seen; the mapping is stored in ``ce_schema_history`` so that it
    never changes afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import sanitize_identifier, table_name
from airflow_provider_cloudelements.typed.inference import (
    BOOLEAN,
    INTEGER,
    LATTICE,
    NUMBER,
    TEXT,
    FieldHints,
    hints_from_metadata,
    string_fits,
    value_type,
    widen,
)

# the type names live in .inference; re-exported for imports of this module
__all__ = [
    "BOOLEAN",
    "CHILD_SYSTEM_COLUMNS",
    "INTEGER",
    "LATTICE",
    "NUMBER",
    "PARENT_SYSTEM_COLUMNS",
    "SEPARATOR",
    "TEXT",
    "FieldHints",
    "TableSchema",
    "child_table_name",
    "column_name",
    "hints_from_metadata",
    "snake_case",
    "string_fits",
    "typed_table_name",
    "value_type",
    "widen",
]


#: Joins the keys of a nested path in a column name (``customer_ref__value``).
SEPARATOR = "__"

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

_CAMEL_1 = re.compile(r"([A-Z]+)([A-Z][a-z])")
_CAMEL_2 = re.compile(r"([a-z0-9])([A-Z])")


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


def typed_table_name(table_prefix: str, element_key: str, resource: str) -> str:
    """Parent typed table: ``ce_`` + ``quickbooks`` + ``invoices`` -> ``ce_typed_quickbooks_invoices``."""
    return table_name(f"{table_prefix}typed_", element_key, resource)


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
