"""History mode of the storage → SQL load (``history=True``): every version kept, ``valid_from``/``valid_to`` derived.

See docs/typed-tables.md "History mode". Statements only; :mod:`.load` runs them.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Sequence
from typing import Any

from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import (
    SqlDialect,
    quote_identifier,
    sanitize_identifier,
)
from airflow_provider_cloudelements.transfers.storage_to_sql.ordering import absence_proves
from airflow_provider_cloudelements.transfers.storage_to_sql.statements import FINAL_TABLE, STAGE_TABLE

# --------------------------------------------------------------------------------------------------
# History mode (opt-in: ``history=True``): every version kept, valid_from / valid_to derived
# --------------------------------------------------------------------------------------------------

#: Temp tables of one history-mode load (dropped before commit).
_STAGE_VERSIONS = "ce_stage_versions"
_TOUCHED = "ce_stage_history_ids"


def versions_table(table: str) -> str:
    """``<table>__versions``: every version and deletion the loader ever staged for ``table``.

    Columns: ``instance_id``, ``record_id``, ``version_key`` (``v:`` + SHA-256 of the canonical JSON
    for a version, ``d:`` + ``deleted_at`` for a deletion), ``version_num`` (n), ``updated_at`` (u),
    ``observed_at`` (K = max(u, snapshot_at), the earliest over every extract that held the version),
    ``is_deleted`` (the record's own soft-delete flag; 1 for a deletion), ``deleted_at`` (d, deletions
    only), ``data`` (canonical JSON; NULL for a deletion), ``synced_at`` (the load that first stored the row).
    Primary key ``(instance_id, record_id, version_key)``.
    """
    return sanitize_identifier(f"{table}__versions")


def history_table(table: str) -> str:
    """Create ``<table>__history``: one row per version of a record with ``valid_from`` / ``valid_to``.

    The rows come from :func:`derive_history`. Primary key ``(instance_id, record_id, seq)``.
    """
    return sanitize_identifier(f"{table}__history")


#: Columns of a versions row after ``instance_id, record_id`` (also the staging table's, in order).
VERSION_COLUMNS = ("version_key", "version_num", "updated_at", "observed_at", "is_deleted", "deleted_at", "data")
#: Columns of a history row after ``instance_id, record_id`` (``synced_at`` last, not compared).
HISTORY_COLUMNS = (
    "seq",
    "valid_from",
    "valid_to",
    "is_deleted",
    "version_num",
    "updated_at",
    "observed_at",
    "deleted_at",
    "data",
)


def snapshot_ids_table(table: str) -> str:
    """Create ``<table>__snapshot_ids``: the record ids of every complete snapshot loaded in history mode.

    Columns ``instance_id, snapshot_at, record_id``, with one marker row with ``record_id`` = ``''`` per
    snapshot, so that a version loaded after a snapshot that lacked its record is closed at that snapshot.
    """
    return sanitize_identifier(f"{table}__snapshot_ids")


def create_versions_sql(dialect: SqlDialect, table: str) -> list[str]:
    """Idempotent DDL of :func:`versions_table`, :func:`history_table` and :func:`snapshot_ids_table`."""
    key = dialect.key_text_type
    return [
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(snapshot_ids_table(table))} (instance_id BIGINT NOT NULL, "
        f"snapshot_at {key} NOT NULL, record_id {key} NOT NULL, PRIMARY KEY (instance_id, snapshot_at, record_id))",
        # finds an instance's snapshot markers (record_id '') without scanning its ids
        f"CREATE INDEX IF NOT EXISTS {quote_identifier(sanitize_identifier(f'{table}__snapshot_ids_by_id'))} "
        f"ON {quote_identifier(snapshot_ids_table(table))} (instance_id, record_id)",
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(versions_table(table))} (instance_id BIGINT NOT NULL, "
        f"record_id {key} NOT NULL, version_key {key} NOT NULL, version_num BIGINT, updated_at {key}, "
        f"observed_at {key}, is_deleted INTEGER NOT NULL, deleted_at {key}, data TEXT, synced_at TEXT NOT NULL, "
        f"PRIMARY KEY (instance_id, record_id, version_key))",
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(history_table(table))} (instance_id BIGINT NOT NULL, "
        f"record_id {key} NOT NULL, seq INTEGER NOT NULL, valid_from {key} NOT NULL, valid_to {key}, "
        f"is_deleted INTEGER NOT NULL, version_num BIGINT, updated_at {key}, observed_at {key}, deleted_at {key}, "
        f"data TEXT, synced_at TEXT NOT NULL, PRIMARY KEY (instance_id, record_id, seq))",
    ]


def create_stage_versions_sql(dialect: SqlDialect) -> list[str]:
    """Create the temp tables of a history-mode load.

    One holds the versions this manifest stages, the other the record ids whose versions changed (their
    history is derived again).
    """
    key = dialect.key_text_type
    return [
        *drop_stage_versions_sql(),
        f"CREATE TEMP TABLE {_STAGE_VERSIONS} (record_id {key} NOT NULL, version_key {key} NOT NULL, "
        f"version_num BIGINT, updated_at {key}, observed_at {key}, is_deleted INTEGER NOT NULL, deleted_at {key}, "
        f"data TEXT, PRIMARY KEY (record_id, version_key))",
        f"CREATE TEMP TABLE {_TOUCHED} (record_id {key} PRIMARY KEY)",
    ]


def drop_stage_versions_sql() -> list[str]:
    """Drop the history-mode temp tables."""
    return [f"DROP TABLE IF EXISTS {_STAGE_VERSIONS}", f"DROP TABLE IF EXISTS {_TOUCHED}"]


def _earlier_observed(new: str, old: str) -> str:
    """Condition: ``new.observed_at`` is an earlier (non-NULL) observation than ``old.observed_at``."""
    return f"{new}.observed_at IS NOT NULL AND ({old}.observed_at IS NULL OR {new}.observed_at < {old}.observed_at)"


def version_key(data: str) -> str:
    """``version_key`` of a version: ``v:`` + SHA-256 hex of its canonical JSON (same content = same version)."""
    return "v:" + hashlib.sha256(data.encode("utf-8")).hexdigest()


def stage_version_sql(dialect: SqlDialect) -> str:
    """Stage one file record as a version (params: :func:`version_params`).

    The same content seen twice keeps its earliest observed time.
    """
    p = dialect.placeholder
    return (
        f"INSERT INTO {_STAGE_VERSIONS} (record_id, {', '.join(VERSION_COLUMNS)}) "
        f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, NULL, {p}) "
        f"ON CONFLICT (record_id, version_key) DO UPDATE SET observed_at = excluded.observed_at "
        f"WHERE {_earlier_observed('excluded', _STAGE_VERSIONS)}"
    )


def version_params(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Return the parameters of :func:`stage_version_sql` from :meth:`StagedRow.as_params`.

    The input order is ``(record_id, updated_at, version_num, observed_at, is_deleted, data)``.
    """
    rid, updated, version, observed, deleted, data = row
    return (rid, version_key(data), version, updated, observed, deleted, data)


def stage_deletions_sql() -> list[str]:
    """Stage every deletion of this load as a version; no parameter.

    The deletions are the staged tombstones and full-refresh absences, and the deletions the resolution
    decided (a late version older than the latest complete snapshot). Run after :func:`resolve_sql`, before
    :func:`drop_stage_sql`.
    """
    head = f"INSERT INTO {_STAGE_VERSIONS} (record_id, version_key, is_deleted, deleted_at) "
    tail = " ON CONFLICT (record_id, version_key) DO NOTHING"
    return [
        head
        + f"SELECT record_id, 'd:' || deleted_at, 1, deleted_at FROM {STAGE_TABLE} WHERE deleted_at IS NOT NULL"
        + tail,
        head + f"SELECT record_id, 'd:' || deleted_at, 1, deleted_at FROM {FINAL_TABLE} "
        f"WHERE is_deleted = 1 AND deleted_at IS NOT NULL" + tail,
    ]


def stage_absence_versions_sql(dialect: SqlDialect, table: str) -> str:
    """For a complete snapshot at s, stage a deletion at s of every known record the file lacks.

    Every record the versions table knows a version of, proven gone by s (:func:`~.ordering.absence_proves`), that the
    file lacks (params: s, s, instance id, s, s). Unlike :func:`full_refresh_sql`, which looks at the stored row only,
    this closes an older version although a newer one (observed after s, loaded earlier) is what the raw table holds, so
    the history does not depend on the load order.
    """
    p = dialect.placeholder
    return (
        f"INSERT INTO {_STAGE_VERSIONS} (record_id, version_key, is_deleted, deleted_at) "
        f"SELECT DISTINCT v.record_id, 'd:' || CAST({p} AS TEXT), 1, CAST({p} AS TEXT) "
        f"FROM {quote_identifier(versions_table(table))} v WHERE v.instance_id = {p} AND v.data IS NOT NULL "
        f"AND {absence_proves('v.observed_at', 'v.updated_at', p)} "
        f"AND NOT EXISTS (SELECT 1 FROM {STAGE_TABLE} s WHERE s.record_id = v.record_id AND s.from_file = 1) "
        f"ON CONFLICT (record_id, version_key) DO NOTHING"
    )


def snapshot_ids_insert_sql(dialect: SqlDialect, table: str) -> str:
    """Record the ids of this complete snapshot and its marker row (params: instance id, s, instance id, s)."""
    p = dialect.placeholder
    return (
        f"INSERT INTO {quote_identifier(snapshot_ids_table(table))} (instance_id, snapshot_at, record_id) "
        f"SELECT CAST({p} AS BIGINT), CAST({p} AS TEXT), record_id FROM {STAGE_TABLE} WHERE from_file = 1 "
        f"UNION ALL SELECT CAST({p} AS BIGINT), CAST({p} AS TEXT), '' "
        f"ON CONFLICT (instance_id, snapshot_at, record_id) DO NOTHING"
    )


def stage_late_absence_sql(dialect: SqlDialect, table: str) -> str:
    """Stage deletions of staged versions that later complete snapshots prove gone (params: instance id).

    A deletion at s is staged for every staged version proven gone (:func:`~.ordering.absence_proves`) by a complete
    snapshot s (recorded in :func:`snapshot_ids_table`) that lacked its record: a late, older extract's version is
    closed by the snapshots that prove it gone.
    """
    p = dialect.placeholder
    ids = quote_identifier(snapshot_ids_table(table))
    return (
        f"INSERT INTO {_STAGE_VERSIONS} (record_id, version_key, is_deleted, deleted_at) "
        f"SELECT DISTINCT v.record_id, 'd:' || f.snapshot_at, 1, f.snapshot_at FROM {_STAGE_VERSIONS} v "
        f"JOIN {ids} f ON f.instance_id = {p} AND f.record_id = '' "
        f"AND {absence_proves('v.observed_at', 'v.updated_at', 'f.snapshot_at')} "
        f"WHERE v.data IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {ids} i WHERE i.instance_id = f.instance_id "
        f"AND i.snapshot_at = f.snapshot_at AND i.record_id = v.record_id) "
        f"ON CONFLICT (record_id, version_key) DO NOTHING"
    )


def touched_sql(dialect: SqlDialect, table: str) -> str:
    """Collect the record ids whose versions changed into the touched-ids table (param: instance id).

    Those are ids with a staged version the versions table lacks or holds with a later observed time. A
    rerun collects none.
    """
    v = quote_identifier(versions_table(table))
    return (
        f"INSERT INTO {_TOUCHED} (record_id) SELECT DISTINCT s.record_id FROM {_STAGE_VERSIONS} s "
        f"LEFT JOIN {v} v ON v.instance_id = {dialect.placeholder} AND v.record_id = s.record_id "
        f"AND v.version_key = s.version_key WHERE v.record_id IS NULL OR ({_earlier_observed('s', 'v')})"
    )


def versions_upsert_sql(dialect: SqlDialect, table: str) -> str:
    """Insert the staged versions into :func:`versions_table` (params: instance id, synced_at). Idempotent.

    A known version only takes an earlier observed time.
    """
    p = dialect.placeholder
    v = quote_identifier(versions_table(table))
    cols = ", ".join(VERSION_COLUMNS)
    return (
        f"INSERT INTO {v} (instance_id, record_id, {cols}, synced_at) "
        f"SELECT CAST({p} AS BIGINT), record_id, {cols}, CAST({p} AS TEXT) FROM {_STAGE_VERSIONS} "
        f"WHERE record_id IN (SELECT record_id FROM {_TOUCHED}) "
        f"ON CONFLICT (instance_id, record_id, version_key) DO UPDATE SET observed_at = excluded.observed_at "
        f"WHERE {_earlier_observed('excluded', v)}"
    )


def touched_page_sql(dialect: SqlDialect, table: str, which: str) -> str:
    """Select rows of the touched ids in ``(last, upto]`` (params: instance id, last, upto), ordered by record id.

    ``which`` = ``"versions"`` (``record_id`` + :data:`VERSION_COLUMNS`) or ``"history"`` (``record_id`` +
    :data:`HISTORY_COLUMNS`).
    """
    p = dialect.placeholder
    name, cols = (
        (versions_table(table), VERSION_COLUMNS) if which == "versions" else (history_table(table), HISTORY_COLUMNS)
    )
    return (
        f"SELECT x.record_id, {', '.join(f'x.{c}' for c in cols)} FROM {quote_identifier(name)} x "
        f"JOIN {_TOUCHED} t ON t.record_id = x.record_id WHERE x.instance_id = {p} AND x.record_id > {p} "
        f"AND x.record_id <= {p} ORDER BY x.record_id"
    )


def touched_ids_sql(dialect: SqlDialect) -> str:
    """One page of touched ids after ``last`` (params: last, limit)."""
    p = dialect.placeholder
    return f"SELECT record_id FROM {_TOUCHED} WHERE record_id > {p} ORDER BY record_id LIMIT {p}"


def history_delete_sql(dialect: SqlDialect, table: str) -> str:
    """Delete one record's history rows (params: instance id, record id)."""
    p = dialect.placeholder
    return f"DELETE FROM {quote_identifier(history_table(table))} WHERE instance_id = {p} AND record_id = {p}"


def history_insert_sql(dialect: SqlDialect, table: str) -> str:
    """Insert one history row (params: instance id, record id, :data:`HISTORY_COLUMNS`, synced_at)."""
    p = dialect.placeholder
    cols = ("instance_id", "record_id", *HISTORY_COLUMNS, "synced_at")
    return (
        f"INSERT INTO {quote_identifier(history_table(table))} ({', '.join(cols)}) "
        f"VALUES ({', '.join([p] * len(cols))})"
    )


def _version_order(a: Sequence[Any], b: Sequence[Any]) -> int:
    """The ordering rule on two versions rows (:data:`VERSION_COLUMNS` order): -1 when ``a`` is older."""
    _, na, ua, ka, *_ = a
    _, nb, ub, kb, *_ = b
    if na is not None and nb is not None and int(na) != int(nb):
        return -1 if int(na) < int(nb) else 1
    for x, y in ((ka or "", kb or ""), (ua or "", ub or ""), (a[0], b[0])):  # version_key: a stable last resort
        if x != y:
            return -1 if x < y else 1
    return 0


def derive_history(versions: Sequence[Sequence[Any]]) -> list[tuple[Any, ...]]:
    """One record's history from its versions rows (each in :data:`VERSION_COLUMNS` order).

    Versions are ordered by the ordering rule (higher ``version_num`` when both have one and they
    differ, else later ``observed_at``, else later ``updated_at``). A deletion at d follows every version
    with ``observed_at <= d`` (a deletion beats a version iff d >= its observed time) and closes the last
    of them; deletions with no version between them count as one, at the latest d (as the raw table
    keeps the later deletion); deletions before the first version close nothing and are left out.

    ``valid_from`` of a version is its ``updated_at`` (u, when the element says the content came to be;
    ``observed_at`` when the record has no updated time), of a deletion its ``deleted_at``; never earlier
    than the previous row's. ``valid_to`` is the next row's ``valid_from`` (NULL for the last row). All
    times are the loader's fixed-width ISO-8601 UTC text.

    :returns: rows in :data:`HISTORY_COLUMNS` order, ``seq`` 0, 1, ... (a record with only deletions has none).
    """
    live = sorted((v for v in versions if v[6] is not None), key=functools.cmp_to_key(_version_order))
    closing: dict[int, str] = {}  # index of the version a deletion closes -> latest d
    for v in versions:
        if v[6] is None and v[5] is not None:
            d = str(v[5])
            after = [i for i, version in enumerate(live) if (version[3] or "") <= d]
            if after:
                closing[after[-1]] = max(closing.get(after[-1], d), d)
    entries: list[tuple[str, tuple[Any, ...]]] = []
    for index, (_, num, updated, observed, flag, _, data) in enumerate(live):
        entries.append((str(updated or observed or ""), (int(flag), num, updated, observed, None, data)))
        if index in closing:
            entries.append((closing[index], (1, None, None, None, closing[index], None)))
    rows: list[tuple[Any, ...]] = []
    start = ""
    for seq, (moment, fields) in enumerate(entries):
        start = max(start, moment)
        rows.append((seq, start, None, *fields))
    return [(*row[:2], nxt[1], *row[3:]) for row, nxt in itertools.pairwise(rows)] + rows[-1:]
