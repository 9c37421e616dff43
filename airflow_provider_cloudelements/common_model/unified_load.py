"""The unified tables as a projection of the loader: one manifest, its raw table and its unified rows, one transaction.

:func:`load_and_project` loads a manifest of a common resource with
:func:`~airflow_provider_cloudelements.transfers.storage_to_sql.load.load_manifest` into its raw table
(``<prefix><element>_<resource>``, e.g. ``ce_freshbooksv2_common_invoices``), which applies every ordering rule of
docs/reliability.md ("Semantics"), and then, before that load commits, :class:`UnifiedProjection` rewrites the rows of
the unified table (``common_invoices``) of the manifest's ``(source_element, instance_id)`` that are stale: no row yet,
or a ``synced_at`` other than the raw row's (the raw loader writes its load time to every row it changes, and only to
those). So a rerun writes nothing, the unified table never disagrees with the raw one, and a unified table that was
dropped (or a raw table loaded by ``CloudElementsSqlUpsertOperator`` meanwhile) is brought up to date by the next load.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from airflow_provider_cloudelements.exceptions import CloudElementsDataError
from airflow_provider_cloudelements.models.manifest import ExtractManifest
from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import SqlDialect, quote_identifier
from airflow_provider_cloudelements.transfers.storage_to_sql.load import load_manifest
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import prepare_connection

log = logging.getLogger(__name__)

#: Raw rows projected per page (memory bound: one page of records).
PAGE_SIZE = 1000

#: A raw row's record (``None`` for a tombstone row) → ``{column: value}`` of the common columns.
RowBuilder = Callable[[Any], dict[str, Any]]


def quote(name: str) -> str:
    """Double-quote an identifier of a unified table (model field names are not sanitized)."""
    return '"' + name.replace('"', '""') + '"'


class UnifiedProjection:
    """Rewrites the stale unified rows of one ``(source_element, instance_id)`` from its raw table.

    Runs inside the caller's open transaction (:meth:`run`, given the DB-API connection) and counts what changed:
    ``upserted`` (rows live after the load that are new or whose values changed) and ``deleted`` (rows that became
    deleted, or tombstone rows added).

    :param dialect: the connection's loader dialect.
    :param raw: the raw table (sanitized name).
    :param unified: the unified table's name; ``columns``: its common columns (key and bookkeeping columns excluded).
    :param build: turns a raw row's record into the common columns.
    """

    def __init__(
        self,
        dialect: SqlDialect,
        *,
        raw: str,
        unified: str,
        columns: Sequence[str],
        element: str,
        instance_id: int,
        build: RowBuilder,
    ) -> None:
        self.dialect, self.raw, self.unified, self.columns = dialect, raw, unified, list(columns)
        self.element, self.instance_id, self.build = element, instance_id, build
        self.upserted = self.deleted = 0
        # PostgreSQL: the raw key is TEXT COLLATE "C"; compare the unified id in that collation too
        self._collate = dialect.key_text_type.removeprefix("TEXT")

    def _page_sql(self, after: str) -> str:
        """Return the query of one page of stale raw rows in id order.

        Params: element, instance id, id bound, limit; ``after`` is ``>``, or ``>=`` for the first page (from ``''``).
        """
        p, uni, raw = self.dialect.placeholder, quote(self.unified), quote_identifier(self.raw)
        old = ", ".join(f"u.{quote(c)}" for c in self.columns)
        return (
            f"SELECT r.record_id, r.is_deleted, r.data, r.observed_at, r.deleted_at, r.synced_at, "
            f"CASE WHEN u.id IS NULL THEN 0 ELSE 1 END, u.is_deleted"
            f"{', ' + old if old else ''} "
            f"FROM {raw} r LEFT JOIN {uni} u ON u.source_element = {p} AND u.instance_id = r.instance_id "
            f"AND u.id{self._collate} = r.record_id "
            f"WHERE r.instance_id = {p} AND r.record_id {after} {p} "
            f"AND (u.id IS NULL OR u.synced_at IS NULL OR u.synced_at <> r.synced_at) "
            f"ORDER BY r.record_id LIMIT {p}"
        )

    def _orphans_sql(self) -> str:
        p = self.dialect.placeholder
        return (
            f"SELECT COUNT(*) FROM {quote(self.unified)} u WHERE u.source_element = {p} AND u.instance_id = {p} "
            f"AND NOT EXISTS (SELECT 1 FROM {quote_identifier(self.raw)} r WHERE r.instance_id = u.instance_id "
            f"AND r.record_id = u.id{self._collate})"
        )

    def run(self, conn: Any) -> None:
        """Project the stale rows, in ``conn``'s open transaction (the raw load's, before it commits).

        :raises CloudElementsDataError: the unified table holds rows of this instance the raw table does not (rows
            of the unreleased first unified loader, a dropped raw table, another ``table_prefix``): they could
            never be ordered against a later version, so nothing is loaded until they are removed.
        """
        p, uni = self.dialect.placeholder, quote(self.unified)
        cur = conn.cursor()
        try:
            if self.dialect.lock_sql:  # the unified table is shared by every element's loads
                cur.execute(self.dialect.lock_sql, (self.unified,))
            cur.execute(self._orphans_sql(), (self.element, self.instance_id))
            orphans = int(cur.fetchone()[0])
            if orphans:
                raise CloudElementsDataError(
                    f"{self.unified} holds {orphans} row(s) of {self.element} instance {self.instance_id} that its "
                    f"raw table {self.raw} does not hold (loaded by an earlier unified loader, or under another "
                    f"table_prefix?); nothing was loaded. Delete them (DELETE FROM {self.unified} WHERE "
                    f"source_element = '{self.element}' AND instance_id = {self.instance_id}) and load a complete "
                    "full refresh of the instance"
                )
            names = ["source_element", "instance_id", "id", *self.columns, "is_deleted", "deleted_at", "observed_at"]
            insert = (
                f"INSERT INTO {uni} ({', '.join(quote(n) for n in [*names, 'synced_at'])}) "
                f"VALUES ({', '.join([p] * (len(names) + 1))})"
            )
            delete = f"DELETE FROM {uni} WHERE source_element = {p} AND instance_id = {p} AND id = {p}"
            page, last = self._page_sql(">="), ""
            while True:
                cur.execute(page, (self.element, self.instance_id, last, PAGE_SIZE))
                page = self._page_sql(">")
                rows = cur.fetchall()
                if not rows:
                    break
                removed, added = self._rows(rows)
                if removed:
                    cur.executemany(delete, removed)
                cur.executemany(insert, added)
                last = str(rows[-1][0])
                if len(rows) < PAGE_SIZE:
                    break
        finally:
            cur.close()

    def _rows(self, rows: list[Any]) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
        """The ``(delete, insert)`` parameters of one page of stale raw rows; counts what changes."""
        removed: list[tuple[Any, ...]] = []
        added: list[tuple[Any, ...]] = []
        key = (self.element, self.instance_id)
        for rid, is_deleted, data, observed, deleted_at, synced, existed, was_deleted, *before in rows:
            rid, gone = str(rid), bool(is_deleted)
            common = self.build(json.loads(data))
            values = [common.get(c) for c in self.columns]
            if existed:
                removed.append((*key, rid))
            if gone and (not existed or not was_deleted):
                self.deleted += 1
            elif not gone and (not existed or bool(was_deleted) or list(before) != values):
                self.upserted += 1
            added.append((*key, rid, *values, gone, deleted_at, observed, synced))
        return removed, added


def load_and_project(
    engine: sa.Engine,
    dialect: SqlDialect,
    manifest: ExtractManifest,
    projection: UnifiedProjection,
    *,
    table_prefix: str,
) -> dict[str, Any]:
    """Load ``manifest`` into its raw table and run ``projection`` in the same transaction.

    The DB-API connection comes from ``engine``'s pool, prepared as the SQL operator prepares its own
    (:func:`~airflow_provider_cloudelements.transfers.storage_to_sql.operator.prepare_connection`) and given back
    in the transaction mode it had.

    :returns: :func:`load_manifest`'s summary of the raw load.
    """
    pooled = engine.raw_connection()
    try:
        conn = pooled.driver_connection
        mode = "isolation_level" if dialect.name == "sqlite" else "autocommit"
        saved = getattr(conn, mode, None)
        prepare_connection(conn, dialect)
        try:
            return load_manifest(conn, dialect, manifest, table_prefix=table_prefix, before_commit=projection.run)
        finally:
            try:
                setattr(conn, mode, saved)
            except Exception:  # a broken connection: never hand it back to the pool
                pooled.invalidate()
    finally:
        pooled.close()
