"""DuckDB as a DB-API target: a connection adapter and the raw loader's dialect for it.

A ``duckdb`` connection's ``cursor()`` opens a *second connection* with its own transaction, so code
written for DB-API (the raw loader: ``cur = conn.cursor(); cur.execute("BEGIN …"); …; conn.commit()``)
would commit nothing. :class:`DuckDBConnection` gives it cursors that share the one connection.
``duckdb`` is an optional dependency (``pip install airflow-provider-cloudelements[duckdb]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.typed.statements import DUCKDB_DIALECT

__all__ = ["DUCKDB_DIALECT", "DuckDBConnection"]


class _Cursor:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        self._conn.execute(sql, list(params))
        return self

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> _Cursor:
        self._conn.executemany(sql, [list(r) for r in rows])
        return self

    def fetchone(self) -> Any:
        return self._conn.fetchone()

    def fetchall(self) -> list[Any]:
        return list(self._conn.fetchall())

    @property
    def description(self) -> Any:
        return self._conn.description

    def close(self) -> None:
        """Nothing to release: the cursor is the shared connection."""


class DuckDBConnection:
    """DB-API view of one ``duckdb.DuckDBPyConnection`` (cursors share its transaction).

    :param conn: an open DuckDB connection; :attr:`raw` gives it back (for :func:`~.projection.project`,
        which uses DuckDB's Arrow registration directly).
    """

    def __init__(self, conn: Any) -> None:
        self.raw = conn

    @classmethod
    def connect(cls, database: str = ":memory:") -> DuckDBConnection:
        """Open a DuckDB database file. :raises CloudElementsConfigError: ``duckdb`` is not installed."""
        try:
            import duckdb
        except ImportError:
            raise CloudElementsConfigError(
                "DuckDB targets need the duckdb package: pip install 'airflow-provider-cloudelements[duckdb]'"
            ) from None
        return cls(duckdb.connect(database))

    def cursor(self) -> _Cursor:
        return _Cursor(self.raw)

    def commit(self) -> None:
        self.raw.commit()

    def rollback(self) -> None:
        self.raw.rollback()

    def close(self) -> None:
        self.raw.close()
