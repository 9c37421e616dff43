"""Fixtures of the typed-table tests: one database per engine, the real raw loader, realistic records.

Every test taking ``target`` runs on SQLite (a file in ``tmp_path``), on PostgreSQL when
``CLOUDELEMENTS_TEST_POSTGRES_URI`` is set (``eval "$(bash scripts/ci_postgres.sh start)"``; marker
``postgres``) and on DuckDB when the ``duckdb`` package is installed. Raw tables are always written
by the production raw loader (:func:`airflow_provider_cloudelements.transfers.storage_to_sql.load.load_manifest`)
from NDJSON files, exactly as the SQL upsert operator does; the typed tables are then projected.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cloudelements_emulator import generator
from cloudelements_emulator.elements import ELEMENTS as EMULATED

from airflow_provider_cloudelements.transfers.storage_to_sql import dialect as sql_dialect
from airflow_provider_cloudelements.transfers.storage_to_sql import rows as sql_rows
from airflow_provider_cloudelements.transfers.storage_to_sql.load import load_manifest
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import prepare_connection
from airflow_provider_cloudelements.typed import project
from tests.operators.conftest import conn, emu, out  # noqa: F401  (emulator fixtures of the end-to-end test)
from tests.sql.conftest import make_manifest, write_ndjson

POSTGRES_URI_ENV = "CLOUDELEMENTS_TEST_POSTGRES_URI"
#: the emulator's anchor for generated data (2026-09-21)
ANCHOR_MS = 1_790_000_000_000


@dataclass
class Target:
    """A database the raw loader and :func:`project` write to.

    :param name: ``sqlite``, ``postgres`` or ``duckdb``.
    :param conn: connection given to :func:`project` (and, wrapped for DuckDB, to the raw loader).
    :param dialect: the raw loader's dialect.
    :param prefix: table prefix unique to the test (PostgreSQL is shared between tests).
    """

    name: str
    conn: Any
    loader_conn: Any
    dialect: sql_dialect.SqlDialect
    prefix: str
    tmp: Path
    connect: Any = None
    files: list[int] = field(default_factory=lambda: [0])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one read statement (``?`` markers) and return plain tuples (Decimal -> float)."""
        if self.name == "postgres":
            sql = sql.replace("?", "%s")
        cur = self.loader_conn.cursor()
        try:
            cur.execute(sql, tuple(params))
            fetched = cur.fetchall() if cur.description else []
            rows = [tuple(float(v) if isinstance(v, Decimal) else v for v in r) for r in fetched]
        finally:
            cur.close()
        self.loader_conn.commit()
        return rows

    def table(self, suffix: str) -> str:
        """``ce_typed_quickbooks_invoices`` with this test's prefix."""
        return f"{self.prefix}{suffix}"

    def load(
        self,
        element_key: str,
        resource: str,
        records: Sequence[dict[str, Any]],
        *,
        instance_id: int = 12,
        tombstones: Sequence[dict[str, Any]] | None = None,
        full_refresh: bool = False,
    ) -> dict[str, Any]:
        """Land ``records`` as NDJSON and load them with the production raw loader."""
        self.files[0] += 1
        uri = write_ndjson(self.tmp / f"{resource}.{self.files[0]}.ndjson", records)
        deleted = None
        if tombstones:
            deleted = write_ndjson(self.tmp / f"{resource}.{self.files[0]}.deleted.ndjson", tombstones)
        manifest = make_manifest(
            element_key,
            resource,
            uri,
            len(records),
            instance_id=instance_id,
            deleted_path=deleted,
            full_refresh=full_refresh,
        )
        return load_manifest(
            self.loader_conn, self.dialect, sql_rows.loadable_manifest(manifest), table_prefix=self.prefix
        )

    def project(self, element_key: str, resource: str, *, instance_id: int = 12, **kwargs: Any) -> dict[str, Any]:
        return project(
            self.conn,
            self.dialect,
            element_key=element_key,
            resource=resource,
            instance_id=instance_id,
            table_prefix=self.prefix,
            **kwargs,
        )

    def sync(self, element_key: str, resource: str, records: Sequence[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        """Raw load then projection (what ``typed=True`` on the operator does)."""
        instance_id = kwargs.pop("instance_id", 12)
        self.load(element_key, resource, records, instance_id=instance_id, **kwargs)
        return self.project(element_key, resource, instance_id=instance_id)

    def history(self, table: str) -> list[tuple[Any, ...]]:
        return self.query(
            "SELECT column_name, source_path, change, old_type, new_type FROM ce_schema_history "
            "WHERE table_name = ? ORDER BY changed_at, change, column_name",
            (table,),
        )

    def column_types(self, table: str) -> dict[str, str]:
        """``{column: logical type}`` as recorded in ``ce_schema_history`` (widest wins)."""
        rank = {"boolean": 0, "integer": 1, "number": 2, "text": 3}
        types: dict[str, str] = {}
        for column, _path, change, _old, new in self.history(table):
            if change == "create_table":
                continue
            if column not in types or rank[new] > rank[types[column]]:
                types[column] = new
        return types


def _drop_prefixed(target: Target, tables: list[str]) -> None:
    for name in tables:
        target.query(f'DROP TABLE IF EXISTS "{name}"')
    target.query("DELETE FROM ce_schema_history WHERE table_name LIKE ?", (target.prefix + "%",))


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "duckdb"],
)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A database per engine (see the module docstring)."""
    prefix = f"ce_{uuid.uuid4().hex[:8]}_"
    if request.param == "sqlite":
        import sqlite3

        def connect_sqlite() -> Any:
            new = sqlite3.connect(tmp_path / "typed.db", check_same_thread=False)
            prepare_connection(new, sql_dialect.SQLITE)
            return new

        conn = connect_sqlite()
        yield Target("sqlite", conn, conn, sql_dialect.SQLITE, prefix, tmp_path, connect_sqlite)
        conn.close()
        return
    if request.param == "duckdb":
        pytest.importorskip("duckdb")
        from airflow_provider_cloudelements.typed.duck import DUCKDB_DIALECT, DuckDBConnection

        wrapped = DuckDBConnection.connect(str(tmp_path / "typed.duckdb"))
        yield Target("duckdb", wrapped, wrapped, DUCKDB_DIALECT, prefix, tmp_path)
        wrapped.close()
        return
    uri = os.environ.get(POSTGRES_URI_ENV)
    if not uri:
        pytest.skip(f"{POSTGRES_URI_ENV} not set (start a server with scripts/ci_postgres.sh)")
    import psycopg

    dialect = sql_dialect.POSTGRES

    def connect_pg() -> Any:
        new = psycopg.connect(uri)
        prepare_connection(new, dialect)
        return new

    conn = connect_pg()
    pg = Target("postgres", conn, conn, dialect, prefix, tmp_path, connect_pg)
    try:
        yield pg
    finally:
        conn.rollback()
        names = [r[0] for r in pg.query("SELECT tablename FROM pg_tables WHERE tablename LIKE ?", (prefix + "%",))]
        _drop_prefixed(pg, names)
        conn.close()


def generated(element_key: str, resource: str, count: int, *, instance_id: int = 12, seed: int = 7) -> list[dict]:
    """Realistic records of the emulator's generator (the same the emulator serves), oldest first."""
    element = EMULATED[element_key]
    return [rec for *_, rec in generator.generate(element, resource, instance_id, seed, count, ANCHOR_MS)]


def at_path(record: Any, path: str) -> Any:
    """The value at a dotted path, navigated independently of the flattener (``None`` when absent)."""
    value = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
