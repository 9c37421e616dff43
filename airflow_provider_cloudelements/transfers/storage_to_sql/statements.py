"""The SQL statements of the storage → SQL load (history mode: :mod:`.history`).

Nothing here opens a file or a database; :mod:`.load` does the I/O. Every statement is built here so
that SQLite and PostgreSQL share one code path and differ only by a :class:`~.dialect.SqlDialect`.

Target table (one per ``(element_key, resource)``, e.g. ``ce_quickbooks_invoices``)::

    instance_id BIGINT   NOT NULL   -- Cloud Elements element instance id
    record_id   TEXT     NOT NULL   -- the record's id (QBO ``id`` without ``|syncToken``, QBE ListID/TxnID)
    updated_at  TEXT     NULL       -- u: ISO-8601 UTC, fixed width ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (sorts as text)
    is_deleted  INTEGER  NOT NULL   -- 1 = soft-deleted at the source, or a deletion (deleted_at set)
    data        TEXT     NOT NULL   -- canonical JSON of the record as Cloud Elements served it;
                                    --   ``null`` for a tombstone row (an id deleted before we saw it)
    synced_at   TEXT     NOT NULL   -- ISO-8601 UTC time of the load that last wrote the row
    version_num BIGINT   NULL       -- n: the element's version (QBO syncToken, QBE EditSequence)
    observed_at TEXT     NULL       -- K = max(u, snapshot_at): when this version was known to exist
    deleted_at  TEXT     NULL       -- d: set iff the row is a deletion (tombstone or full-refresh absence)
    PRIMARY KEY (instance_id, record_id)

Ordering (docs/reliability.md "Semantics"; SQL predicates in :mod:`.ordering`): of two versions the higher
``version_num`` wins when both have one and they differ, else the higher ``observed_at`` (to the second when
either has no milliseconds), else the higher ``updated_at``; a full tie
keeps the stored row, and a version with the stored ``data`` is the stored version seen again (never
rewritten; it keeps the earlier ``observed_at``). A deletion at ``d`` beats a version iff
``d >= observed_at``; of two deletions the later ``d`` is kept. Per record the table keeps the best
version seen and the latest deletion, and shows the deletion iff it is not older than that version,
so the result does not depend on the order in which manifests are loaded, and reloading a manifest
writes nothing.

Side table ``<table>__snapshots`` (``instance_id``, ``snapshot_at``, ``synced_at``): the latest
*complete* snapshot loaded per instance. Every id it lacked was gone at its ``snapshot_at``, so an
older extract loaded later cannot create or restore such an id, and deletions older than it take
its time.

History mode (``history=True``, off by default; docs/typed-tables.md "History mode"): side tables
``<table>__versions`` (every version and deletion ever staged, :func:`versions_table`),
``<table>__snapshot_ids`` (ids of each complete snapshot) and ``<table>__history`` (``valid_from`` /
``valid_to`` per version, :func:`derive_history`), written in the same transaction.

Load algorithm (one transaction per manifest, under a per-table lock):

1. create the table, or add the columns an older loader did not create (:func:`migrate_table_sql`,
   :func:`old_deletions_sql`); create the snapshots table;
2. stream the NDJSON file into a temp staging table (``STAGE_TABLE``), one row per id (best version wins);
3. stream the tombstones file into the same table (``deleted_at``, the latest per id);
4. on a complete full refresh, stage a deletion at ``snapshot_at`` for every row the file lacks
   (:func:`full_refresh_sql`) and record the snapshot;
5. :func:`resolve_sql` joins the stage to the target and writes, into ``FINAL_TABLE``, the rows whose
   resolved state differs from what is stored; :func:`count_sql` counts them;
6. :func:`merge_sql` upserts ``FINAL_TABLE``: unchanged rows are never written (a rerun writes nothing).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import (
    SqlDialect,
    quote_identifier,
    sanitize_identifier,
)
from airflow_provider_cloudelements.transfers.storage_to_sql.ordering import absence_proves, beats
from airflow_provider_cloudelements.transfers.storage_to_sql.rows import TOMBSTONE_DATA

#: Temp tables used during one load; dropped before the transaction commits.
STAGE_TABLE = "ce_stage_records"
FINAL_TABLE = "ce_stage_resolved"

# --------------------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------------------

#: Marker in parameter tuples replaced by the manifest's instance id at execution time.
INSTANCE = object()


def _added_columns(dialect: SqlDialect) -> tuple[tuple[str, str], ...]:
    """Columns added after the first release, in order, with their types: migrated by ADD COLUMN."""
    key = dialect.key_text_type
    return (("version_num", "BIGINT"), ("observed_at", key), ("deleted_at", key))


def create_table_sql(dialect: SqlDialect, table: str) -> str:
    """Idempotent DDL of a target table (see the module docstring for the columns)."""
    key = dialect.key_text_type
    added = "".join(f"{name} {kind}, " for name, kind in _added_columns(dialect))
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(table)} ("
        f"instance_id BIGINT NOT NULL, "
        f"record_id {key} NOT NULL, "
        f"updated_at {key}, "
        f"is_deleted INTEGER NOT NULL DEFAULT 0, "
        f"data TEXT NOT NULL, "
        f"synced_at TEXT NOT NULL, "
        f"{added}"
        f"PRIMARY KEY (instance_id, record_id))"
    )


def columns_probe_sql(table: str) -> str:
    """A query returning no row whose cursor ``description`` names the table's columns (both drivers)."""
    return f"SELECT * FROM {quote_identifier(table)} WHERE 1 = 0"


def migrate_table_sql(dialect: SqlDialect, table: str, present: set[str]) -> list[str]:
    """Return ``ALTER TABLE … ADD COLUMN`` for each column of :func:`create_table_sql` missing from ``present``.

    ``present`` holds the lower-case names of a table created by an older loader. The statements include
    the backfill that makes old rows follow the ordering rule: ``observed_at`` = ``updated_at`` (what the
    old loader compared).

    Deletions of the old loader are converted by the caller (:func:`old_deletions_sql`): telling a
    tombstoned row from a soft-deleted one needs the element's soft-delete field, read in Python.
    Idempotent: nothing is returned for an up-to-date table.
    """
    tgt = quote_identifier(table)
    statements = [
        f"ALTER TABLE {tgt} ADD COLUMN {name} {kind}" for name, kind in _added_columns(dialect) if name not in present
    ]
    if "observed_at" not in present:
        statements.append(f"UPDATE {tgt} SET observed_at = updated_at")
    return statements


def old_deletions_sql(dialect: SqlDialect, table: str) -> tuple[str, str]:
    """``(select, update)`` converting an old loader's deletions into deletion rows.

    ``select`` lists ``(instance_id, record_id, data)`` of rows with ``is_deleted = 1``; for those
    whose data is not soft-deleted at the source (a tombstone or a full-refresh absence), ``update``
    (params: ``load_time, instance_id, record_id``) sets ``deleted_at`` to the row's ``updated_at``
    (the old loader moved it to the tombstone's time), or the migration time when it has none.
    """
    p = dialect.placeholder
    tgt = quote_identifier(table)
    return (
        f"SELECT instance_id, record_id, data FROM {tgt} WHERE is_deleted = 1",
        f"UPDATE {tgt} SET deleted_at = COALESCE(updated_at, {p}) WHERE instance_id = {p} AND record_id = {p}",
    )


def create_stage_sql(dialect: SqlDialect) -> list[str]:
    """DDL of the temp staging tables (dropped first, in case a previous load left them).

    ``STAGE_TABLE``: per id the best version in the file (``data`` NULL when the file has none) and the
    latest deletion (``deleted_at``); ``FINAL_TABLE``: the resolved rows that differ from the target.
    """
    key = dialect.key_text_type
    version = (
        f"updated_at {key}, version_num BIGINT, observed_at {key}, is_deleted INTEGER, data TEXT, deleted_at {key}"
    )
    return [
        *drop_stage_sql(),
        f"CREATE TEMP TABLE {STAGE_TABLE} (record_id {key} PRIMARY KEY, from_file INTEGER NOT NULL, {version})",
        f"CREATE TEMP TABLE {FINAL_TABLE} (record_id {key} PRIMARY KEY, existed INTEGER NOT NULL, "
        f"from_file INTEGER NOT NULL, data_changed INTEGER NOT NULL, was_deleted INTEGER, {version})",
    ]


def drop_stage_sql() -> list[str]:
    """Drop the staging tables (run before commit so nothing outlives the transaction)."""
    return [f"DROP TABLE IF EXISTS {STAGE_TABLE}", f"DROP TABLE IF EXISTS {FINAL_TABLE}"]


def _later_deletion(table: str) -> str:
    """ON CONFLICT condition keeping the later deletion time in the staging table."""
    return f"{table}.deleted_at IS NULL OR excluded.deleted_at > {table}.deleted_at"


#: Parameters of one staged file record (:meth:`StagedRow.as_params`).
STAGE_PARAMS = 6


def stage_rows_per_statement(dialect: SqlDialect) -> int:
    """Most file records one :func:`stage_insert_sql` statement may carry in ``dialect``."""
    return max(1, dialect.max_params // STAGE_PARAMS)


def stage_insert_sql(dialect: SqlDialect, rows: int = 1) -> str:
    """Insert ``rows`` file records into the staging table; an id already staged keeps the winning version.

    The ids of one statement must be distinct (PostgreSQL cannot update a row twice in one ``ON CONFLICT``
    statement): a repeated id goes into the next statement, so the result is the one of inserting the
    records one by one in file order.

    Parameters: ``rows`` times ``(record_id, updated_at, version_num, observed_at, is_deleted, data)``
    (:meth:`StagedRow.as_params`), at most :func:`stage_rows_per_statement` rows.
    """
    p = dialect.placeholder
    values = ", ".join([f"({p}, 1, {p}, {p}, {p}, {p}, {p})"] * rows)
    return (
        f"INSERT INTO {STAGE_TABLE} (record_id, from_file, updated_at, version_num, observed_at, is_deleted, data) "
        f"VALUES {values} "
        f"ON CONFLICT (record_id) DO UPDATE SET updated_at = excluded.updated_at, "
        f"version_num = excluded.version_num, observed_at = excluded.observed_at, "
        f"is_deleted = excluded.is_deleted, data = excluded.data "
        f"WHERE {beats('excluded', STAGE_TABLE)}"
    )


def tombstone_insert_sql(dialect: SqlDialect) -> str:
    """Stage one deletion (after the file's records); a duplicate id keeps the latest ``deleted_at``.

    Parameters: ``(record_id, deleted_at)`` (``deleted_at`` never ``None``: see
    :func:`default_deletion_time`).
    """
    p = dialect.placeholder
    return (
        f"INSERT INTO {STAGE_TABLE} (record_id, from_file, deleted_at) VALUES ({p}, 0, {p}) "
        f"ON CONFLICT (record_id) DO UPDATE SET deleted_at = excluded.deleted_at WHERE {_later_deletion(STAGE_TABLE)}"
    )


def full_refresh_sql(
    dialect: SqlDialect,
    table: str,
    *,
    snapshot_at: str | None,
    window_end: str | None,
    load_time: str,
) -> tuple[str, tuple[Any, ...]]:
    """Stage a deletion for every row of the instance that a complete full-refresh file lacks.

    Only call it for a manifest whose :attr:`LoadManifest.deletes_by_absence` is true. The deletion time d is
    ``snapshot_at`` (s); rows whose version was observed after s (``observed_at > s``: edited or created after the
    snapshot, loaded earlier from a later extract), or whose K cannot order them before s
    (:func:`~.ordering.absence_proves`: whole-second times in the snapshot's own second), keep their version, and rows
    already deleted before s get the later time. A v1 manifest (no ``snapshot_at``) uses its window end as d for rows
    observed strictly before it, as the old loader did; without a window end, d is each row's own ``observed_at``
    (``load_time`` when it has none), so any newer version restores it.
    """
    p = dialect.placeholder
    head = f"INSERT INTO {STAGE_TABLE} (record_id, from_file, deleted_at) SELECT p.record_id, 0, "
    tail = (
        f" FROM {quote_identifier(table)} p WHERE p.instance_id = {p} AND ({{cond}}) "
        f"AND NOT EXISTS (SELECT 1 FROM {STAGE_TABLE} s WHERE s.record_id = p.record_id AND s.from_file = 1) "
        f"ON CONFLICT (record_id) DO UPDATE SET deleted_at = excluded.deleted_at WHERE {_later_deletion(STAGE_TABLE)}"
    )
    bound = snapshot_at or window_end
    if bound is None:
        sql = head + f"COALESCE(p.observed_at, CAST({p} AS TEXT))" + tail.format(cond="p.deleted_at IS NULL")
        return sql, (load_time, INSTANCE)
    if snapshot_at is None:
        cond = (
            f"(p.deleted_at IS NOT NULL AND p.deleted_at < {p}) "
            f"OR (p.deleted_at IS NULL AND COALESCE(p.observed_at, '') < {p})"
        )
        return head + f"CAST({p} AS TEXT)" + tail.format(cond=cond), (bound, INSTANCE, bound, bound)
    cond = (
        f"(p.deleted_at IS NOT NULL AND p.deleted_at < {p}) "
        f"OR (p.deleted_at IS NULL AND {absence_proves('p.observed_at', 'p.updated_at', p)})"
    )
    return head + f"CAST({p} AS TEXT)" + tail.format(cond=cond), (bound, INSTANCE, bound, bound, bound)


def kept_absent_sql(dialect: SqlDialect, table: str) -> str:
    """Count the live rows of the instance a full-refresh file lacks (param: instance id).

    That is what an incomplete full refresh did not delete.
    """
    return (
        f"SELECT COUNT(*) FROM {quote_identifier(table)} p WHERE p.instance_id = {dialect.placeholder} "
        f"AND p.is_deleted = 0 AND NOT EXISTS (SELECT 1 FROM {STAGE_TABLE} s WHERE s.record_id = p.record_id "
        f"AND s.from_file = 1)"
    )


def snapshots_table(table: str) -> str:
    """Name of the side table keeping, per instance, the latest complete snapshot loaded into ``table``."""
    return sanitize_identifier(f"{table}__snapshots")


def create_snapshots_sql(dialect: SqlDialect, table: str) -> str:
    """Idempotent DDL of :func:`snapshots_table` (``instance_id``, ``snapshot_at``, ``synced_at``)."""
    key = dialect.key_text_type
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(snapshots_table(table))} (instance_id BIGINT NOT NULL "
        f"PRIMARY KEY, snapshot_at {key} NOT NULL, synced_at TEXT NOT NULL)"
    )


def snapshot_select_sql(dialect: SqlDialect, table: str) -> str:
    """The instance's latest complete snapshot time (param: instance id; no row when none)."""
    return (
        f"SELECT snapshot_at FROM {quote_identifier(snapshots_table(table))} WHERE instance_id = {dialect.placeholder}"
    )


def snapshot_upsert_sql(dialect: SqlDialect, table: str) -> str:
    """Record a complete snapshot if later than the stored one (params: instance id, snapshot_at, synced_at).

    Only manifests with ``snapshot_at`` (v2, open-ended) are recorded: a v1 full refresh was bounded by its
    window end, so it does not prove that ids it lacks were gone.
    """
    p = dialect.placeholder
    snaps = quote_identifier(snapshots_table(table))
    return (
        f"INSERT INTO {snaps} (instance_id, snapshot_at, synced_at) VALUES ({p}, {p}, {p}) "
        f"ON CONFLICT (instance_id) DO UPDATE SET snapshot_at = excluded.snapshot_at, "
        f"synced_at = excluded.synced_at WHERE excluded.snapshot_at > {snaps}.snapshot_at"
    )


def resolve_sql(dialect: SqlDialect, table: str) -> str:
    """Resolve each staged id against its stored row into ``FINAL_TABLE``, keeping only rows that change.

    Params: ``snap``, the instance's latest complete snapshot time, ``None`` when there is none or when
    this manifest is that snapshot; ``snap_all``, the same including this manifest's; instance id.

    Per id: the best version of (stored, staged) by :func:`~.ordering.beats` (``took`` = 1 when it is the staged
    one; a tombstone row's empty version always loses; a staged version with the stored ``data`` is the
    stored version seen again: never rewritten, it only lowers ``observed_at`` to the earlier of the
    two), and the later deletion of the two. A staged
    version that would create or restore the row although it was observed no later than the instance's
    latest complete snapshot (:func:`snapshot_select_sql`) and ordered before it
    (:func:`~.ordering.absence_proves`) is deleted at that snapshot: the snapshot
    held every live record and did not hold it (the same ``d >= observed_at`` rule as the absence
    deletions :func:`full_refresh_sql` stages when that snapshot was loaded). The row is a deletion
    (``is_deleted`` = 1, ``deleted_at`` = d, data of the best version, or ``null``) iff there is a
    deletion and d >= the best version's ``observed_at``, and then d is at least ``snap_all`` (an id
    deleted before a complete snapshot is absent from it); otherwise the best version (``deleted_at``
    NULL). Rows equal to the stored row in every column are not written.
    """
    p = dialect.placeholder
    ne = dialect.distinct_op
    pick = (
        "CASE WHEN s.data IS NOT NULL AND (p.record_id IS NULL OR p.data = "
        f"'{TOMBSTONE_DATA}' OR (p.data <> s.data AND {beats('s', 'p')})) THEN 1 ELSE 0 END"
    )
    joined = (
        f"SELECT CAST({p} AS TEXT) AS snap, CAST({p} AS TEXT) AS snap_all, "
        f"s.record_id AS record_id, s.from_file AS from_file, "
        f"CASE WHEN p.record_id IS NULL THEN 0 ELSE 1 END AS existed, {pick} AS took, "
        f"CASE WHEN p.data = s.data THEN 1 ELSE 0 END AS same, "
        f"s.updated_at AS s_u, s.version_num AS s_n, s.observed_at AS s_k, s.is_deleted AS s_f, "
        f"s.data AS s_data, s.deleted_at AS s_d, p.updated_at AS p_u, p.version_num AS p_n, "
        f"p.observed_at AS p_k, p.is_deleted AS p_f, p.data AS p_data, p.deleted_at AS p_d "
        f"FROM {STAGE_TABLE} s LEFT JOIN {quote_identifier(table)} p "
        f"ON p.instance_id = {p} AND p.record_id = s.record_id"
    )

    def best(column: str) -> str:
        return f"CASE WHEN j.took = 1 THEN j.s_{column} ELSE j.p_{column} END AS b_{column}"

    # the same content seen again keeps its earliest observed time (so load order does not matter)
    observed = (
        "CASE WHEN j.took = 1 THEN j.s_k WHEN j.same = 1 AND j.s_k IS NOT NULL AND (j.p_k IS NULL OR "
        "j.s_k < j.p_k) THEN j.s_k ELSE j.p_k END AS b_k"
    )
    merged = (
        f"SELECT j.*, {best('u')}, {best('n')}, {observed}, {best('f')}, {best('data')}, "
        f"CASE WHEN j.s_d IS NULL THEN j.p_d WHEN j.p_d IS NULL OR j.s_d > j.p_d THEN j.s_d ELSE j.p_d END AS del0 "
        f"FROM ({joined}) j"
    )
    snapped = (
        "SELECT m.*, CASE WHEN m.snap IS NOT NULL AND m.took = 1 AND (m.existed = 0 OR m.p_d IS NOT NULL) "
        f"AND {absence_proves('m.b_k', 'm.b_u', 'm.snap')} "
        "AND (m.del0 IS NULL OR m.snap > m.del0) THEN m.snap ELSE m.del0 END "
        f"AS del FROM ({merged}) m"
    )
    gone = (
        "SELECT n.*, CASE WHEN n.del IS NOT NULL AND COALESCE(n.b_k, '') <= n.del THEN 1 ELSE 0 END AS gone "
        f"FROM ({snapped}) n"
    )
    # a deletion older than the latest complete snapshot is known to hold at that snapshot too
    gone = (
        "SELECT o.*, CASE WHEN o.gone = 1 AND o.snap_all IS NOT NULL AND o.del < o.snap_all THEN o.snap_all "
        f"ELSE o.del END AS del_at FROM ({gone}) o"
    )
    final = (
        f"SELECT g.record_id, g.existed, g.from_file, "
        f"CASE WHEN g.existed = 1 AND g.took = 1 AND g.b_data <> g.p_data THEN 1 ELSE 0 END AS data_changed, "
        f"g.p_f AS was_deleted, g.b_u AS updated_at, g.b_n AS version_num, g.b_k AS observed_at, "
        f"CASE WHEN g.gone = 1 THEN 1 ELSE g.b_f END AS is_deleted, "
        f"CASE WHEN g.gone = 1 THEN g.del_at ELSE NULL END AS deleted_at, "
        f"COALESCE(g.b_data, '{TOMBSTONE_DATA}') AS data, g.p_u, g.p_n, g.p_k, g.p_f, g.p_data, g.p_d "
        f"FROM ({gone}) g"
    )
    columns = (
        "record_id, existed, from_file, data_changed, was_deleted, "
        "updated_at, version_num, observed_at, is_deleted, deleted_at, data"
    )
    changed = (
        f"x.existed = 0 OR x.data <> x.p_data OR x.is_deleted <> x.p_f OR x.updated_at {ne} x.p_u "
        f"OR x.version_num {ne} x.p_n OR x.observed_at {ne} x.p_k OR x.deleted_at {ne} x.p_d"
    )
    return f"INSERT INTO {FINAL_TABLE} ({columns}) SELECT {columns} FROM ({final}) x WHERE {changed}"


def count_sql() -> str:
    """Count what the merge will do, after :func:`resolve_sql` (no parameter).

    Columns: ``file_ids`` (distinct record ids in the file), ``inserted`` (file records new to the
    table), ``updated`` (file records whose version replaced different stored data), ``deleted``
    (rows live before, or new file records, that end deleted: soft-delete flag, tombstone or
    full-refresh absence), ``new_tombstones`` (deletions stored for ids the table did not hold).
    ``unchanged`` = ``file_ids - inserted - updated`` (identical, older, or only seen again later).
    """

    def total(condition: str) -> str:
        return f"(SELECT COUNT(*) FROM {FINAL_TABLE} WHERE {condition})"

    return (
        f"SELECT (SELECT COUNT(*) FROM {STAGE_TABLE} WHERE from_file = 1), "
        f"{total('from_file = 1 AND existed = 0')}, "
        f"{total('from_file = 1 AND existed = 1 AND data_changed = 1')}, "
        f"{total('is_deleted = 1 AND ((existed = 1 AND was_deleted = 0) OR (existed = 0 AND from_file = 1))')}, "
        f"{total('existed = 0 AND from_file = 0')}"
    )


def merge_sql(dialect: SqlDialect, table: str) -> str:
    """Upsert ``FINAL_TABLE`` (only changed rows) into the target (params: instance id, synced_at)."""
    p = dialect.placeholder
    tgt = quote_identifier(table)
    cols = ("updated_at", "is_deleted", "data", "synced_at", "version_num", "observed_at", "deleted_at")
    return (
        f"INSERT INTO {tgt} (instance_id, record_id, {', '.join(cols)}) "
        f"SELECT CAST({p} AS BIGINT), record_id, updated_at, is_deleted, data, CAST({p} AS TEXT), "
        f"version_num, observed_at, deleted_at "
        f"FROM {FINAL_TABLE} WHERE 1 = 1 "  # WHERE: SQLite needs it to parse ON CONFLICT after a SELECT
        f"ON CONFLICT (instance_id, record_id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in cols)}"
    )


def rows_count_sql(dialect: SqlDialect, table: str) -> str:
    """Rows of one instance in the table: ``(rows_total, rows_live)`` (param: instance id)."""
    return (
        f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN is_deleted = 0 THEN 1 ELSE 0 END), 0) "
        f"FROM {quote_identifier(table)} WHERE instance_id = {dialect.placeholder}"
    )


def bind(params: tuple[Any, ...], instance_id: int) -> tuple[Any, ...]:
    """Replace the :data:`INSTANCE` marker in ``params`` by ``instance_id``."""
    return tuple(instance_id if value is INSTANCE else value for value in params)
