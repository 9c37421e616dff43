"""Load one landed extract (NDJSON in object storage) into its SQL table, idempotently, in one transaction.

:func:`load_manifest` streams the records and tombstones files named by an
:class:`~airflow_provider_cloudelements.models.manifest.ExtractManifest` and runs the statements of
:mod:`.statements` (and :mod:`.history`) through a DB-API connection; SQLite and PostgreSQL share this
code, every dialect difference lives in :mod:`.dialect`. The operator is :mod:`.operator`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

from airflow.sdk import ObjectStoragePath

from airflow_provider_cloudelements.exceptions import CloudElementsDataError, CloudElementsReconciliationError
from airflow_provider_cloudelements.models.manifest import ExtractManifest
from airflow_provider_cloudelements.models.timestamps import format_utc
from airflow_provider_cloudelements.transfers.storage_to_sql import history as hist
from airflow_provider_cloudelements.transfers.storage_to_sql import rows as rowmod
from airflow_provider_cloudelements.transfers.storage_to_sql import statements as stmt
from airflow_provider_cloudelements.transfers.storage_to_sql.dialect import (
    SqlDialect,
    table_name,
)
from airflow_provider_cloudelements.utils.records import is_soft_deleted

log = logging.getLogger(__name__)

#: Keys of the summary returned per manifest.
SUMMARY_KEYS: tuple[str, ...] = (
    "table",
    "element_key",
    "instance_id",
    "resource",
    "inserted",
    "updated",
    "unchanged",
    "deleted",
    "new_tombstones",
    "rows_live",
    "rows_total",
)


def _iter_lines(uri: str) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_line)`` of a file in object storage, streaming (never read whole)."""
    path = ObjectStoragePath(uri)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise CloudElementsDataError(f"Landed file {uri} does not exist") from None
    with handle as fh:
        yield from enumerate(fh, start=1)


def check_not_superseded(manifest: ExtractManifest) -> None:
    """Fail clearly when the data file a manifest names was removed by a later run of its interval.

    Reruns of an interval write run-unique files and, once their own ``_manifest.json`` is in place,
    remove the files of the run they replaced (docs/reliability.md "Extract"), so that a partition's
    manifest always describes exactly the files beside it. Loading the replacement instead would not be
    lossless for an incremental window (a record edited since has left it), so the load is refused,
    naming the partition's current manifest to load instead.

    :raises CloudElementsDataError: the data file is gone and the partition holds another run's manifest.
    """
    if not manifest.manifest_path:
        return
    try:
        if ObjectStoragePath(manifest.path).exists():
            return
        current = json.loads(ObjectStoragePath(manifest.manifest_path).read_bytes())
    except (OSError, ValueError):  # no readable current manifest: the plain missing-file error follows
        return
    if isinstance(current, Mapping) and current.get("path") and current.get("path") != manifest.path:
        raise CloudElementsDataError(
            f"Landed file {manifest.path} was replaced by a later run of the same interval "
            f"(snapshot_at {current.get('snapshot_at')}); load the partition's current manifest "
            f"{manifest.manifest_path} instead"
        )


def _batched(rows: Iterable[tuple[Any, ...]], size: int) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Counter:
    """Counts the records an iterator produced (the file's record count, checked against the manifest)."""

    def __init__(self) -> None:
        self.value = 0


def _record_rows(manifest: ExtractManifest, naive_tz: str, counter: _Counter) -> Iterator[tuple[Any, ...]]:
    spec = manifest.spec
    for lineno, line in _iter_lines(manifest.path):
        where = f"{manifest.path}:{lineno}"
        record = rowmod.parse_json_line(line, where=where)
        if record is None:
            continue
        counter.value += 1
        row = rowmod.build_row(record, spec, naive_tz=naive_tz, where=where, snapshot_at=manifest.snapshot_at)
        yield row.as_params()


def _distinct_runs(rows: list[tuple[Any, ...]], limit: int) -> Iterator[list[tuple[Any, ...]]]:
    """Split ``rows`` (record id first) into consecutive runs of distinct ids, at most ``limit`` long."""
    run: list[tuple[Any, ...]] = []
    ids: set[Any] = set()
    for row in rows:
        if row[0] in ids or len(run) >= limit:
            yield run
            run, ids = [], set()
        run.append(row)
        ids.add(row[0])
    if run:
        yield run


def _stage_batch(cur: Any, dialect: SqlDialect, batch: list[tuple[Any, ...]]) -> None:
    """Stage a batch of file records with multi-row inserts (one round trip per run, not per row)."""
    for run in _distinct_runs(batch, stmt.stage_rows_per_statement(dialect)):
        cur.execute(stmt.stage_insert_sql(dialect, len(run)), [value for row in run for value in row])


def _tombstone_rows(manifest: ExtractManifest, load_time: str, counter: _Counter) -> Iterator[tuple[Any, ...]]:
    assert manifest.deleted_path is not None
    spec = manifest.spec
    default = rowmod.default_deletion_time(manifest, load_time)
    for lineno, line in _iter_lines(manifest.deleted_path):
        where = f"{manifest.deleted_path}:{lineno}"
        obj = rowmod.parse_json_line(line, where=where)
        if obj is None:
            continue
        counter.value += 1
        rid, deleted_at = rowmod.build_tombstone(obj, spec, where=where)
        yield rid, deleted_at or default


def _migrate(cur: Any, dialect: SqlDialect, table: str, manifest: ExtractManifest, load_time: str) -> list[str]:
    """Bring a table created by an older loader to the current columns, in place; return the columns added.

    Runs inside the load's transaction, under its lock; returns ``[]`` for an up-to-date table.
    """
    cur.execute(stmt.columns_probe_sql(table))
    present = {str(col[0]).lower() for col in cur.description}
    cur.fetchall()
    statements = stmt.migrate_table_sql(dialect, table, present)
    if not statements:
        return []
    for statement in statements:
        cur.execute(statement)
    if "deleted_at" not in present:
        select, update = stmt.old_deletions_sql(dialect, table)
        cur.execute(select)
        spec = manifest.spec
        converted = []
        for iid, rid, data in cur.fetchall():
            try:
                soft = is_soft_deleted(json.loads(data), spec)
            except (ValueError, TypeError, AttributeError, RecursionError):
                soft = False
            if not soft:
                converted.append((load_time, iid, rid))
        if converted:
            cur.executemany(update, converted)
        log.info("Converted %s deleted row(s) of %s into deletion rows", len(converted), table)
    added = [name for name in ("version_num", "observed_at", "deleted_at") if name not in present]
    log.warning("Migrated table %s created by an older loader: added column(s) %s", table, ", ".join(added))
    return added


class Snapshots(NamedTuple):
    """The complete snapshots :func:`~.statements.resolve_sql` orders against (normalised ISO UTC).

    :param older: the instance's latest complete snapshot, ``None`` when this manifest is that snapshot
        (its absences are staged by :func:`~.statements.full_refresh_sql` instead).
    :param latest: the latest complete snapshot including this manifest's, ``None`` when none.
    """

    older: str | None
    latest: str | None


def _latest_snapshot(cur: Any, dialect: SqlDialect, table: str, manifest: ExtractManifest, load_time: str) -> Snapshots:
    """The :class:`Snapshots` of this load; records this manifest's snapshot when it is the latest."""
    cur.execute(stmt.snapshot_select_sql(dialect, table), (manifest.instance_id,))
    row = cur.fetchone()
    stored = None if row is None else str(row[0])
    mine = manifest.snapshot_at if manifest.deletes_by_absence else None
    if mine is None or (stored is not None and mine < stored):
        return Snapshots(stored, stored)
    if stored is None or mine > stored:
        cur.execute(stmt.snapshot_upsert_sql(dialect, table), (manifest.instance_id, mine, load_time))
    return Snapshots(None, mine)


def _update_history(
    cur: Any, dialect: SqlDialect, table: str, manifest: ExtractManifest, stamp: str, page: int
) -> dict[str, int]:
    """History mode, after the merge: store the staged versions and deletions and derive the history again.

    The versions go to ``<table>__versions``; ``<table>__history`` is derived again for the records whose
    versions changed (none on a rerun). Only records whose derived history differs from the stored one
    are rewritten.

    :returns: ``{"history_records", "history_rows"}``: records rewritten, rows they now have.
    """
    instance_id = manifest.instance_id
    for statement in hist.stage_deletions_sql():
        cur.execute(statement)
    if manifest.deletes_by_absence and manifest.snapshot_at:
        s = manifest.snapshot_at
        cur.execute(hist.snapshot_ids_insert_sql(dialect, table), (instance_id, s, instance_id, s))
        cur.execute(hist.stage_absence_versions_sql(dialect, table), (s, s, instance_id, s, s))
    cur.execute(hist.stage_late_absence_sql(dialect, table), (instance_id,))
    cur.execute(hist.touched_sql(dialect, table), (instance_id,))
    cur.execute(hist.versions_upsert_sql(dialect, table), (instance_id, stamp))
    versions_page = hist.touched_page_sql(dialect, table, "versions")
    history_page = hist.touched_page_sql(dialect, table, "history")
    delete, insert = hist.history_delete_sql(dialect, table), hist.history_insert_sql(dialect, table)
    records = rows = 0
    last = ""
    while True:
        cur.execute(hist.touched_ids_sql(dialect), (last, page))
        ids = [str(r[0]) for r in cur.fetchall()]
        if not ids:
            break
        grouped: dict[str, list[tuple[Any, ...]]] = {}
        stored: dict[str, list[tuple[Any, ...]]] = {}
        for target, sql in ((grouped, versions_page), (stored, history_page)):
            cur.execute(sql, (instance_id, last, ids[-1]))
            for rid, *values in cur.fetchall():
                target.setdefault(rid, []).append(tuple(values))
        removed: list[tuple[Any, ...]] = []
        added: list[tuple[Any, ...]] = []
        for rid in ids:
            derived = hist.derive_history(grouped.get(rid, []))
            if sorted(stored.get(rid, []), key=lambda r: int(r[0])) != derived:
                records += 1
                rows += len(derived)
                removed.append((instance_id, rid))
                added.extend((instance_id, rid, *row, stamp) for row in derived)
        if removed:
            cur.executemany(delete, removed)
        if added:
            cur.executemany(insert, added)
        last = ids[-1]
        if len(ids) < page:
            break
    for statement in hist.drop_stage_versions_sql():
        cur.execute(statement)
    return {"history_records": records, "history_rows": rows}


def load_manifest(
    conn: Any,
    dialect: SqlDialect,
    manifest: ExtractManifest,
    *,
    table_prefix: str = "ce_",
    batch_size: int = 1000,
    naive_timezone: str | None = None,
    verify_record_count: bool = True,
    synced_at: datetime | None = None,
    typed: bool = False,
    history: bool = False,
    before_commit: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Upsert one manifest's files into its table, in one transaction (all or nothing).

    Semantics (docs/reliability.md "Semantics", :mod:`~.statements`):
    versions are ordered by the element's version number, then observed time ``max(updated,
    snapshot_at)``, then updated time; deletions (tombstones, and ids absent from a *complete* full
    refresh) carry their own time and win over versions not observed after it. Loading a manifest
    again writes nothing.

    :param conn: an open DB-API connection prepared by :func:`prepare_connection`.
    :param dialect: the connection's :class:`SqlDialect`.
    :param manifest: a loadable manifest (:func:`~.rows.loadable_manifest`).
    :param table_prefix: prefix of the table name (sanitized).
    :param batch_size: rows per ``executemany`` into the staging table (memory bound: one batch).
    :param naive_timezone: IANA zone of timestamps without an offset (FreshBooks ``updated``); default
        the manifest's ``naive_timezone`` (the zone its extract used), else the element's
        (``ElementSpec.naive_timezone``: UTC).
    :param verify_record_count: fail when the file's record count differs from ``manifest.records``.
    :param synced_at: load time written to changed rows (default: now, UTC).
    :param typed: also bring the typed tables (``<prefix>typed_<element>_<resource>`` and its child
        tables, :func:`airflow_provider_cloudelements.typed.project`, docs/typed-tables.md) up to date,
        in the same transaction as the raw load; the summary then has a ``"typed"`` entry.
    :param history: history mode (SCD type 2, docs/typed-tables.md "History mode"): also keep every
        version and deletion staged, including those that lose the ordering, in ``<table>__versions``
        (idempotent) and derive ``<table>__history`` (``valid_from``/``valid_to`` per version,
        :func:`~.history.derive_history`) for the records whose versions changed; the summary then has
        ``"history_records"`` (records whose history was rewritten) and ``"history_rows"``. Costs one
        more insert per record; off by default.
    :param before_commit: called with ``conn`` after the merge (and the typed projection), inside the
        open transaction, just before it commits: work that must commit or roll back with the load (the
        unified tables of :mod:`airflow_provider_cloudelements.common_model.unified_load`). An exception
        from it rolls the whole load back.
    :returns: ``{"table", "element_key", "instance_id", "resource", "inserted", "updated",
        "unchanged", "deleted", "new_tombstones", "rows_live", "rows_total"}`` — see
        :func:`~.statements.count_sql` for the counts; ``rows_*`` count this instance's rows after the load
        (``rows_total`` includes tombstone rows).
    :raises CloudElementsDataError: a bad line or record (the table is left unchanged).
    :raises CloudElementsReconciliationError: the record count disagrees with the manifest.
    :raises Exception: any database error, after rolling back.
    """
    table = table_name(table_prefix, manifest.element_key, manifest.resource)
    naive_tz = rowmod.resolve_naive_timezone(naive_timezone, manifest)
    if naive_timezone and manifest.naive_timezone and naive_timezone != manifest.naive_timezone:
        log.warning(
            "Reading naive times of %s/%s in %s (naive_timezone) although its extract used %s",
            manifest.element_key,
            manifest.resource,
            naive_timezone,
            manifest.naive_timezone,
        )
    stamp = format_utc(synced_at or datetime.now(timezone.utc))
    iid = manifest.instance_id
    if manifest.failed_records:
        log.warning(
            "Manifest %s/%s instance %s reports %s failed record(s) (errors: %s); loading the rest",
            manifest.element_key,
            manifest.resource,
            iid,
            manifest.failed_records,
            manifest.errors_path,
        )

    cur = conn.cursor()
    kept_absent = 0
    try:
        if dialect.begin_sql:
            cur.execute(dialect.begin_sql)
        if dialect.lock_sql:
            cur.execute(dialect.lock_sql, (table,))
        cur.execute(stmt.create_table_sql(dialect, table))
        _migrate(cur, dialect, table, manifest, stamp)
        cur.execute(stmt.create_snapshots_sql(dialect, table))
        snap, snap_all = _latest_snapshot(cur, dialect, table, manifest, stamp)
        for statement in stmt.create_stage_sql(dialect):
            cur.execute(statement)
        if history:
            for statement in [
                *hist.create_versions_sql(dialect, table),
                *hist.create_stage_versions_sql(dialect),
            ]:
                cur.execute(statement)
            stage_version = hist.stage_version_sql(dialect)

        records = _Counter()
        for batch in _batched(_record_rows(manifest, naive_tz, records), batch_size):
            _stage_batch(cur, dialect, batch)
            if history:
                cur.executemany(stage_version, [hist.version_params(row) for row in batch])
        if verify_record_count and manifest.records is not None and records.value != manifest.records:
            raise CloudElementsReconciliationError(
                f"{manifest.path} holds {records.value} record(s) but the manifest says {manifest.records}; "
                "nothing was loaded"
            )

        tombstones = _Counter()
        if manifest.deleted_path:
            tomb_insert = stmt.tombstone_insert_sql(dialect)
            for batch in _batched(_tombstone_rows(manifest, stamp, tombstones), batch_size):
                cur.executemany(tomb_insert, batch)
        if manifest.deletes_by_absence:
            statement, params = stmt.full_refresh_sql(
                dialect, table, snapshot_at=manifest.snapshot_at, window_end=manifest.window_end, load_time=stamp
            )
            cur.execute(statement, stmt.bind(params, iid))
        elif manifest.full_refresh:
            cur.execute(stmt.kept_absent_sql(dialect, table), (iid,))
            kept_absent = int(cur.fetchone()[0])

        cur.execute(stmt.resolve_sql(dialect, table), (snap, snap_all, iid))
        cur.execute(stmt.count_sql())
        file_ids, inserted, updated, deleted, new_tombstones = (int(v) for v in cur.fetchone())
        cur.execute(stmt.merge_sql(dialect, table), (iid, stamp))
        cur.execute(stmt.rows_count_sql(dialect, table), (iid,))
        rows_total, rows_live = (int(v) for v in cur.fetchone())
        history_summary = _update_history(cur, dialect, table, manifest, stamp, batch_size) if history else None
        for statement in stmt.drop_stage_sql():
            cur.execute(statement)
        typed_summary = None
        if typed:
            from airflow_provider_cloudelements.typed import project

            typed_summary = project(
                conn,
                dialect,
                element_key=manifest.element_key,
                resource=manifest.resource,
                instance_id=iid,
                table_prefix=table_prefix,
                manage_transaction=False,
            )
        if before_commit is not None:
            before_commit(conn)
        conn.commit()
    except BaseException:
        try:
            conn.rollback()
        except Exception:  # the original error matters more than a failed rollback
            log.exception("Rollback of the load into %s failed", table)
        raise
    finally:
        cur.close()

    if manifest.full_refresh and not manifest.deletes_by_absence:
        log.warning(
            "Full refresh %s of %s/%s instance %s is not complete (complete=%s, failed_records=%s): "
            "deleted nothing by absence; %s live row(s) absent from the file were kept",
            manifest.path,
            manifest.element_key,
            manifest.resource,
            iid,
            manifest.complete,
            manifest.failed_records,
            kept_absent,
        )
    if new_tombstones:
        log.info("Stored %s tombstone row(s) for ids %s did not hold (instance %s)", new_tombstones, table, iid)
    summary = {
        "table": table,
        "element_key": manifest.element_key,
        "instance_id": iid,
        "resource": manifest.resource,
        "inserted": inserted,
        "updated": updated,
        "unchanged": file_ids - inserted - updated,
        "deleted": deleted,
        "new_tombstones": new_tombstones,
        "rows_live": rows_live,
        "rows_total": rows_total,
    }
    if typed_summary is not None:
        summary["typed"] = typed_summary
    if history_summary is not None:
        summary.update(history_summary)
    log.info(
        "Loaded %s (%s record(s), %s tombstone(s), full_refresh=%s, deletes_absent=%s) into %s: inserted=%s "
        "updated=%s unchanged=%s deleted=%s new_tombstones=%s rows_live=%s rows_total=%s",
        manifest.path,
        records.value,
        tombstones.value,
        manifest.full_refresh,
        manifest.deletes_by_absence,
        table,
        inserted,
        updated,
        summary["unchanged"],
        deleted,
        new_tombstones,
        rows_live,
        rows_total,
    )
    return summary
