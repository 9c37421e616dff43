"""SQL dialects (SQLite, PostgreSQL) and identifiers of the storage → SQL load.

This is the only place the two databases differ (placeholder, column types, locking, null-safe
inequality).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError

# --------------------------------------------------------------------------------------------------
# Dialects
# --------------------------------------------------------------------------------------------------

#: PostgreSQL truncates identifiers to 63 bytes (NAMEDATALEN - 1); we stay within it for both dialects.
MAX_IDENTIFIER_LENGTH = 63


@dataclass(frozen=True)
class SqlDialect:
    """What differs between the SQL engines we load into.

    :param name: ``"sqlite"`` or ``"postgres"``.
    :param placeholder: DB-API parameter marker (``?`` for sqlite3, ``%s`` for psycopg).
    :param key_text_type: column type of ``record_id``/``updated_at``; PostgreSQL uses the ``"C"``
        collation so that text comparison of ISO timestamps is bytewise whatever the database locale.
    :param distinct_op: null-safe inequality operator (SQLite ``IS NOT``, PostgreSQL ``IS DISTINCT FROM``).
    :param session_sql: statements run once on a fresh connection, outside any transaction.
    :param begin_sql: statements that open the load transaction (``None`` when the driver opens it
        implicitly, as psycopg does).
    :param lock_sql: statement taking a per-table lock for the transaction, with one text parameter
        (the table name); ``None`` where ``begin_sql`` already serialises writers.
    :param max_params: parameters allowed in one statement (SQLite before 3.32: 999; psycopg 3
        binds at most 65,535), which bounds the rows of one multi-row ``VALUES`` insert.
    """

    name: str
    placeholder: str
    key_text_type: str
    distinct_op: str
    session_sql: tuple[str, ...] = ()
    begin_sql: str | None = None
    lock_sql: str | None = None
    max_params: int = 999


SQLITE = SqlDialect(
    name="sqlite",
    placeholder="?",
    key_text_type="TEXT",
    distinct_op="IS NOT",
    # several mapped load tasks may share one SQLite file: wait for the writer lock (ms) instead of failing
    session_sql=("PRAGMA busy_timeout = 60000",),
    # IMMEDIATE takes the write lock up front, so two loaders never deadlock upgrading a read lock
    begin_sql="BEGIN IMMEDIATE",
)

POSTGRES = SqlDialect(
    name="postgres",
    placeholder="%s",
    key_text_type='TEXT COLLATE "C"',
    distinct_op="IS DISTINCT FROM",
    # serialises loaders of the same table (and concurrent CREATE TABLE IF NOT EXISTS, which can race)
    lock_sql="SELECT pg_advisory_xact_lock(hashtext(%s))",
    max_params=30_000,
)

_DIALECTS_BY_CONN_TYPE: dict[str, SqlDialect] = {
    "sqlite": SQLITE,
    "postgres": POSTGRES,
    "postgresql": POSTGRES,
}


def dialect_for_conn_type(conn_type: str | None, placeholder: str | None = None) -> SqlDialect:
    """Return the dialect for an Airflow connection type.

    :param conn_type: ``Connection.conn_type`` (``sqlite``, ``postgres``; ``postgresql`` is accepted).
    :param placeholder: the hook's own placeholder (``DbApiHook.placeholder``), overriding the default.
    :raises CloudElementsConfigError: for any other connection type (e.g. MySQL has no ``ON CONFLICT``).
    """
    dialect = _DIALECTS_BY_CONN_TYPE.get((conn_type or "").lower())
    if dialect is None:
        raise CloudElementsConfigError(
            f"Connection type {conn_type!r} is not supported by the SQL upsert operator; "
            f"use one of: {', '.join(sorted(_DIALECTS_BY_CONN_TYPE))}"
        )
    if placeholder and placeholder != dialect.placeholder:
        dialect = SqlDialect(**{**dialect.__dict__, "placeholder": placeholder})
    return dialect


# --------------------------------------------------------------------------------------------------
# Identifiers
# --------------------------------------------------------------------------------------------------

_IDENT_BAD = re.compile(r"[^a-z0-9_]+")


def sanitize_identifier(name: str) -> str:
    """Lower-case ``name`` and replace every run of characters outside ``[a-z0-9_]`` by ``_``.

    Names longer than :data:`MAX_IDENTIFIER_LENGTH` are cut and suffixed with 8 hex digits of their
    SHA-1, so that two long names stay distinct. A name starting with a digit gets a ``t_`` prefix.

    :raises CloudElementsConfigError: if nothing usable is left (empty name).
    """
    ident = _IDENT_BAD.sub("_", str(name).strip().lower()).strip("_")
    if not ident:
        raise CloudElementsConfigError(f"Cannot build an SQL identifier from {name!r}")
    if ident[0].isdigit():
        ident = f"t_{ident}"
    if len(ident) > MAX_IDENTIFIER_LENGTH:
        digest = hashlib.sha1(ident.encode(), usedforsecurity=False).hexdigest()[:8]
        ident = f"{ident[: MAX_IDENTIFIER_LENGTH - 9]}_{digest}"
    return ident


def table_name(table_prefix: str, element_key: str, resource: str) -> str:
    """Return the sanitized table name for ``(element_key, resource)``.

    >>> table_name("ce_", "quickbooks", "bill-payments")
    'ce_quickbooks_bill_payments'
    """
    prefix = _IDENT_BAD.sub("_", (table_prefix or "").lower())
    return sanitize_identifier(f"{prefix}{element_key}_{resource}")


def quote_identifier(ident: str) -> str:
    """Double-quote an identifier produced by :func:`sanitize_identifier` (valid in both dialects)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", ident):
        raise CloudElementsConfigError(f"Refusing to quote unsanitized identifier {ident!r}")
    return f'"{ident}"'
