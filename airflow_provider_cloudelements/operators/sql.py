"""Load landed Cloud Elements extracts (NDJSON in object storage) into SQL tables, idempotently.

:class:`CloudElementsSqlUpsertOperator` takes the manifest(s) returned by the extract operators and
upserts each file into one table per ``(element_key, resource)`` through a common-sql
:class:`~airflow.providers.common.sql.hooks.sql.DbApiHook`: SQLite and PostgreSQL share this code,
and every dialect difference lives in :mod:`airflow_provider_cloudelements.utils.sqlsync`.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseOperator, ObjectStoragePath

from airflow_provider_cloudelements import openlineage
from airflow_provider_cloudelements.exceptions import (
    CloudElementsConfigError,
    CloudElementsDataError,
    CloudElementsReconciliationError,
)
from airflow_provider_cloudelements.utils import sqlsync
from airflow_provider_cloudelements.utils.records import is_soft_deleted
from airflow_provider_cloudelements.utils.sqlsync import LoadManifest, SqlDialect

if TYPE_CHECKING:
    from airflow.providers.common.sql.hooks.sql import DbApiHook
    from airflow.sdk import Context

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


def get_sql_hook(conn_id: str) -> tuple[DbApiHook, SqlDialect]:
    """Resolve ``conn_id`` to its common-sql hook and our dialect for it.

    :raises CloudElementsConfigError: the connection's hook is not a ``DbApiHook``, or its type is not
        ``sqlite``/``postgres`` (for ``sqlite`` the ``apache-airflow-providers-sqlite`` package is needed).
    """
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    conn = BaseHook.get_connection(conn_id)
    sqlsync.dialect_for_conn_type(conn.conn_type)  # fail on an unsupported type first
    try:
        hook = conn.get_hook()
    except Exception as exc:  # Airflow raises a bare AirflowException for an unknown hook type
        raise CloudElementsConfigError(
            f"Connection {conn_id!r} (type {conn.conn_type!r}) has no usable hook: {exc}; "
            f"is the provider for {conn.conn_type!r} installed?"
        ) from exc
    if not isinstance(hook, DbApiHook):
        raise CloudElementsConfigError(
            f"Connection {conn_id!r} resolves to {type(hook).__name__}, not a common-sql DbApiHook"
        )
    return hook, sqlsync.dialect_for_conn_type(conn.conn_type, getattr(hook, "placeholder", None))


def prepare_connection(conn: Any, dialect: SqlDialect) -> None:
    """Put a fresh DB-API connection in the state :func:`load_manifest` expects.

    SQLite: driver-managed implicit transactions off (we issue ``BEGIN IMMEDIATE`` ourselves) and a
    busy timeout. PostgreSQL: autocommit off (psycopg opens the transaction on the first statement).
    """
    if dialect.name == "sqlite":
        conn.isolation_level = None
    elif getattr(conn, "autocommit", False):
        conn.autocommit = False
    cur = conn.cursor()
    try:
        for statement in dialect.session_sql:
            cur.execute(statement)
    finally:
        cur.close()


def _iter_lines(uri: str) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_line)`` of a file in object storage, streaming (never read whole)."""
    path = ObjectStoragePath(uri)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise CloudElementsDataError(f"Landed file {uri} does not exist") from None
    with handle as fh:
        yield from enumerate(fh, start=1)


def check_not_superseded(raw: Any) -> None:
    """Fail clearly when the data file an XCom manifest names was removed by a later run of its interval.

    Reruns of an interval write run-unique files and, once their own ``_manifest.json`` is in place,
    remove the files of the run they replaced (docs/reliability.md "Extract"), so that a partition's
    manifest always describes exactly the files beside it. Loading the replacement instead would not be
    lossless for an incremental window (a record edited since has left it), so the load is refused,
    naming the partition's current manifest to load instead.

    :param raw: one manifest as given to the operator (anything but a mapping is ignored).
    :raises CloudElementsDataError: the data file is gone and the partition holds another run's manifest.
    """
    if not isinstance(raw, Mapping) or not raw.get("path") or not raw.get("manifest_path"):
        return
    try:
        if ObjectStoragePath(str(raw["path"])).exists():
            return
        current = json.loads(ObjectStoragePath(str(raw["manifest_path"])).read_bytes())
    except (OSError, ValueError):  # no readable current manifest: the plain missing-file error follows
        return
    if isinstance(current, Mapping) and current.get("path") and current.get("path") != raw.get("path"):
        raise CloudElementsDataError(
            f"Landed file {raw['path']} was replaced by a later run of the same interval "
            f"(snapshot_at {current.get('snapshot_at')}); load the partition's current manifest "
            f"{raw['manifest_path']} instead"
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


def _record_rows(manifest: LoadManifest, naive_tz: str, counter: _Counter) -> Iterator[tuple[Any, ...]]:
    spec = manifest.spec
    for lineno, line in _iter_lines(manifest.path):
        where = f"{manifest.path}:{lineno}"
        record = sqlsync.parse_json_line(line, where=where)
        if record is None:
            continue
        counter.value += 1
        row = sqlsync.build_row(record, spec, naive_tz=naive_tz, where=where, snapshot_at=manifest.snapshot_at)
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
    for run in _distinct_runs(batch, sqlsync.stage_rows_per_statement(dialect)):
        cur.execute(sqlsync.stage_insert_sql(dialect, len(run)), [value for row in run for value in row])


def _tombstone_rows(manifest: LoadManifest, load_time: str, counter: _Counter) -> Iterator[tuple[Any, ...]]:
    assert manifest.deleted_path is not None
    spec = manifest.spec
    default = sqlsync.default_deletion_time(manifest, load_time)
    for lineno, line in _iter_lines(manifest.deleted_path):
        where = f"{manifest.deleted_path}:{lineno}"
        obj = sqlsync.parse_json_line(line, where=where)
        if obj is None:
            continue
        counter.value += 1
        rid, deleted_at = sqlsync.build_tombstone(obj, spec, where=where)
        yield rid, deleted_at or default


def _migrate(cur: Any, dialect: SqlDialect, table: str, manifest: LoadManifest, load_time: str) -> list[str]:
    """Bring a table created by an older loader to the current columns, in place (inside the load's
    transaction, under its lock); returns the columns added (``[]`` for an up-to-date table)."""
    cur.execute(sqlsync.columns_probe_sql(table))
    present = {str(col[0]).lower() for col in cur.description}
    cur.fetchall()
    statements = sqlsync.migrate_table_sql(dialect, table, present)
    if not statements:
        return []
    for statement in statements:
        cur.execute(statement)
    if "deleted_at" not in present:
        select, update = sqlsync.old_deletions_sql(dialect, table)
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


def _latest_snapshot(
    cur: Any, dialect: SqlDialect, table: str, manifest: LoadManifest, load_time: str
) -> tuple[str | None, str | None]:
    """``(snap, snap_all)`` for :func:`sqlsync.resolve_sql`: the instance's latest complete snapshot
    time, ``snap`` being ``None`` when this manifest is that snapshot (its own file is the snapshot and
    its absences are staged by :func:`sqlsync.full_refresh_sql`). Records this manifest's when later."""
    cur.execute(sqlsync.snapshot_select_sql(dialect, table), (manifest.instance_id,))
    row = cur.fetchone()
    stored = None if row is None else str(row[0])
    mine = manifest.snapshot_at if manifest.deletes_by_absence else None
    if mine is None or (stored is not None and mine < stored):
        return stored, stored
    if stored is None or mine > stored:
        cur.execute(sqlsync.snapshot_upsert_sql(dialect, table), (manifest.instance_id, mine, load_time))
    return None, mine


def _update_history(
    cur: Any, dialect: SqlDialect, table: str, manifest: LoadManifest, stamp: str, page: int
) -> dict[str, int]:
    """History mode, after the merge: store the staged versions and deletions in ``<table>__versions``
    and derive ``<table>__history`` again for the records whose versions changed (none on a rerun).
    Only records whose derived history differs from the stored one are rewritten.

    :returns: ``{"history_records", "history_rows"}``: records rewritten, rows they now have.
    """
    instance_id = manifest.instance_id
    for statement in sqlsync.stage_deletions_sql():
        cur.execute(statement)
    if manifest.deletes_by_absence and manifest.snapshot_at:
        s = manifest.snapshot_at
        cur.execute(sqlsync.snapshot_ids_insert_sql(dialect, table), (instance_id, s, instance_id, s))
        cur.execute(sqlsync.stage_absence_versions_sql(dialect, table), (s, s, instance_id, s))
    cur.execute(sqlsync.stage_late_absence_sql(dialect, table), (instance_id,))
    cur.execute(sqlsync.touched_sql(dialect, table), (instance_id,))
    cur.execute(sqlsync.versions_upsert_sql(dialect, table), (instance_id, stamp))
    versions_page = sqlsync.touched_page_sql(dialect, table, "versions")
    history_page = sqlsync.touched_page_sql(dialect, table, "history")
    delete, insert = sqlsync.history_delete_sql(dialect, table), sqlsync.history_insert_sql(dialect, table)
    records = rows = 0
    last = ""
    while True:
        cur.execute(sqlsync.touched_ids_sql(dialect), (last, page))
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
            derived = sqlsync.derive_history(grouped.get(rid, []))
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
    for statement in sqlsync.drop_stage_versions_sql():
        cur.execute(statement)
    return {"history_records": records, "history_rows": rows}


def load_manifest(
    conn: Any,
    dialect: SqlDialect,
    manifest: LoadManifest,
    *,
    table_prefix: str = "ce_",
    batch_size: int = 1000,
    naive_timezone: str | None = None,
    verify_record_count: bool = True,
    synced_at: datetime | None = None,
    typed: bool = False,
    history: bool = False,
) -> dict[str, Any]:
    """Upsert one manifest's files into its table, in one transaction (all or nothing).

    Semantics (docs/reliability.md "Semantics", :mod:`~airflow_provider_cloudelements.utils.sqlsync`):
    versions are ordered by the element's version number, then observed time ``max(updated,
    snapshot_at)``, then updated time; deletions (tombstones, and ids absent from a *complete* full
    refresh) carry their own time and win over versions not observed after it. Loading a manifest
    again writes nothing.

    :param conn: an open DB-API connection prepared by :func:`prepare_connection`.
    :param dialect: the connection's :class:`SqlDialect`.
    :param manifest: a validated manifest (:func:`sqlsync.validate_manifest`).
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
        :func:`sqlsync.derive_history`) for the records whose versions changed; the summary then has
        ``"history_records"`` (records whose history was rewritten) and ``"history_rows"``. Costs one
        more insert per record; off by default.
    :returns: ``{"table", "element_key", "instance_id", "resource", "inserted", "updated",
        "unchanged", "deleted", "new_tombstones", "rows_live", "rows_total"}`` — see
        :func:`sqlsync.count_sql` for the counts; ``rows_*`` count this instance's rows after the load
        (``rows_total`` includes tombstone rows).
    :raises CloudElementsDataError: a bad line or record (the table is left unchanged).
    :raises CloudElementsReconciliationError: the record count disagrees with the manifest.
    :raises Exception: any database error, after rolling back.
    """
    table = sqlsync.table_name(table_prefix, manifest.element_key, manifest.resource)
    naive_tz = sqlsync.resolve_naive_timezone(naive_timezone, manifest)
    if naive_timezone and manifest.naive_timezone and naive_timezone != manifest.naive_timezone:
        log.warning(
            "Reading naive times of %s/%s in %s (naive_timezone) although its extract used %s",
            manifest.element_key,
            manifest.resource,
            naive_timezone,
            manifest.naive_timezone,
        )
    stamp = sqlsync.format_utc(synced_at or datetime.now(timezone.utc))
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
        cur.execute(sqlsync.create_table_sql(dialect, table))
        _migrate(cur, dialect, table, manifest, stamp)
        cur.execute(sqlsync.create_snapshots_sql(dialect, table))
        snap, snap_all = _latest_snapshot(cur, dialect, table, manifest, stamp)
        for statement in sqlsync.create_stage_sql(dialect):
            cur.execute(statement)
        if history:
            for statement in [
                *sqlsync.create_versions_sql(dialect, table),
                *sqlsync.create_stage_versions_sql(dialect),
            ]:
                cur.execute(statement)
            stage_version = sqlsync.stage_version_sql(dialect)

        records = _Counter()
        for batch in _batched(_record_rows(manifest, naive_tz, records), batch_size):
            _stage_batch(cur, dialect, batch)
            if history:
                cur.executemany(stage_version, [sqlsync.version_params(row) for row in batch])
        if verify_record_count and manifest.records is not None and records.value != manifest.records:
            raise CloudElementsReconciliationError(
                f"{manifest.path} holds {records.value} record(s) but the manifest says {manifest.records}; "
                "nothing was loaded"
            )

        tombstones = _Counter()
        if manifest.deleted_path:
            tomb_insert = sqlsync.tombstone_insert_sql(dialect)
            for batch in _batched(_tombstone_rows(manifest, stamp, tombstones), batch_size):
                cur.executemany(tomb_insert, batch)
        if manifest.deletes_by_absence:
            statement, params = sqlsync.full_refresh_sql(
                dialect, table, snapshot_at=manifest.snapshot_at, window_end=manifest.window_end, load_time=stamp
            )
            cur.execute(statement, sqlsync.bind(params, iid))
        elif manifest.full_refresh:
            cur.execute(sqlsync.kept_absent_sql(dialect, table), (iid,))
            kept_absent = int(cur.fetchone()[0])

        cur.execute(sqlsync.resolve_sql(dialect, table), (snap, snap_all, iid))
        cur.execute(sqlsync.count_sql())
        file_ids, inserted, updated, deleted, new_tombstones = (int(v) for v in cur.fetchone())
        cur.execute(sqlsync.merge_sql(dialect, table), (iid, stamp))
        cur.execute(sqlsync.rows_count_sql(dialect, table), (iid,))
        rows_total, rows_live = (int(v) for v in cur.fetchone())
        history_summary = _update_history(cur, dialect, table, manifest, stamp, batch_size) if history else None
        for statement in sqlsync.drop_stage_sql():
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


class CloudElementsSqlUpsertOperator(BaseOperator):
    """Upsert landed Cloud Elements extracts into SQL tables (SQLite or PostgreSQL).

    One table per ``(element_key, resource)``, named ``<table_prefix><element_key>_<resource>``
    sanitized (``ce_quickbooks_bill_payments``), primary key ``(instance_id, record_id)``; columns
    and algorithm in :mod:`airflow_provider_cloudelements.utils.sqlsync`, semantics in
    docs/reliability.md ("Semantics"). Each manifest loads in one transaction: a bad line leaves its
    table unchanged; rerunning a manifest writes nothing; manifests may be loaded in any order (an
    older version never overwrites a newer one, an old deletion never hides a newer version, a newer
    deletion is never undone by an older extract). Tombstones (``deleted_path``) and, for a
    *complete* full refresh only (``complete: true``, no failed records), ids absent from the file mark
    rows ``is_deleted = 1`` with their own ``deleted_at``; tombstones for ids the table does not hold
    are stored as tombstone rows (``data`` = ``null``).

    Manifest shape (the extract operators' XCom; v1 manifests lack the last four keys)::

        {"element_key": "quickbooks", "instance_id": 12, "resource": "invoices",
         "path": "file:///.../invoices.<token>.ndjson", "format": "ndjson", "records": 40,
         "full_refresh": False, "window": {"start": ISO | None, "end": ISO | None, "full_refresh": bool},
         "deleted_path": None | URI of {"id": ..., "deleted_at": ISO} lines,
         "failed_records": 0, "errors_path": None, ...,
         "manifest_version": 2, "snapshot_at": "2026-12-01T10:00:00.000Z", "complete": False,
         "naive_timezone": "UTC"}

    :param manifest: a manifest dict, or a list of them (e.g. the XComArg of mapped extract tasks;
        ``None`` entries are skipped). Templated.
    :param conn_id: a common-sql connection of type ``sqlite`` (needs
        ``apache-airflow-providers-sqlite``) or ``postgres``. Templated.
    :param table_prefix: table name prefix. Templated.
    :param batch_size: records per ``executemany`` (bounds memory; the file is streamed).
    :param naive_timezone: IANA zone of element times without an offset (FreshBooks ``updated``);
        ``None`` (default) = the manifest's ``naive_timezone`` (the zone its extract filtered with),
        else the element's default (``ElementSpec.naive_timezone``, UTC for every element). Set it only
        to override what the extract recorded (a warning is logged when they differ).
    :param source_timezone: deprecated alias of ``naive_timezone``.
    :param verify_record_count: fail (and load nothing) when a file's record count differs from the
        manifest's ``records``.
    :param typed: also maintain typed tables (one column per scalar field, child tables for arrays of
        objects, schema evolution; docs/typed-tables.md) in the same transaction as each raw load.
    :param history: history mode: keep every version in ``<table>__versions`` and maintain
        ``<table>__history`` (one row per version with ``valid_from``/``valid_to``, the deletion as a
        closing row; docs/typed-tables.md "History mode") in the same transaction as each raw load.
    :returns: per manifest ``{"table", "element_key", "instance_id", "resource", "inserted",
        "updated", "unchanged", "deleted", "new_tombstones", "rows_live", "rows_total"}`` (plus
        ``"typed"``: :func:`airflow_provider_cloudelements.typed.project`'s summary, with ``typed=True``):
        a dict for a dict manifest, a list of dicts (same order) for a list.
    :raises CloudElementsConfigError: bad manifest (missing key, unknown element key, non-NDJSON
        format, unknown ``naive_timezone``), bad connection or parameter — before the database is touched.
    :raises CloudElementsDataError: a bad line or record (invalid JSON, no id, an unparseable time,
        nesting too deep), naming the file and line; that manifest's table is unchanged (earlier
        manifests of a list stay committed, later ones are not loaded).
    :raises CloudElementsReconciliationError: a file's record count disagrees with its manifest.
    """

    template_fields: Sequence[str] = ("manifest", "conn_id", "table_prefix")
    ui_color = "#d9f0e3"

    def __init__(
        self,
        *,
        manifest: Any,
        conn_id: str = "sqlite_default",
        table_prefix: str = "ce_",
        batch_size: int = 1000,
        naive_timezone: str | None = None,
        verify_record_count: bool = True,
        source_timezone: str | None = None,
        typed: bool = False,
        history: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise CloudElementsConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if source_timezone is not None:
            warnings.warn("source_timezone is deprecated; use naive_timezone", DeprecationWarning, stacklevel=2)
            if naive_timezone is not None and naive_timezone != source_timezone:
                raise CloudElementsConfigError("Give naive_timezone only (source_timezone is its deprecated alias)")
            naive_timezone = source_timezone
        if naive_timezone is not None:
            sqlsync.check_timezone(naive_timezone, "naive_timezone")
        self.manifest = manifest
        self.conn_id = conn_id
        self.table_prefix = table_prefix
        self.batch_size = batch_size
        self.naive_timezone = naive_timezone
        self.verify_record_count = verify_record_count
        self.typed = bool(typed)
        self.history = bool(history)

    def execute(self, context: Context) -> dict[str, Any] | list[dict[str, Any]]:
        raw, single = sqlsync.coerce_manifests(self.manifest)
        for item in raw:
            check_not_superseded(item)
        manifests = [sqlsync.validate_manifest(item) for item in raw]
        for m in manifests:  # fail on a bad prefix before touching the database
            sqlsync.table_name(self.table_prefix, m.element_key, m.resource)
        if not manifests:
            self.log.info("No manifest to load")
            return []
        hook, dialect = get_sql_hook(self.conn_id)
        summaries: list[dict[str, Any]] = []
        conn = hook.get_conn()
        try:
            prepare_connection(conn, dialect)
            for m in manifests:
                summaries.append(
                    load_manifest(
                        conn,
                        dialect,
                        m,
                        table_prefix=self.table_prefix,
                        batch_size=self.batch_size,
                        naive_timezone=self.naive_timezone,
                        verify_record_count=self.verify_record_count,
                        typed=self.typed,
                        history=self.history,
                    )
                )
        finally:
            conn.close()
        self._loaded = (raw, summaries)  # for get_openlineage_facets_on_complete
        return summaries[0] if single else summaries

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the landed files of each manifest -> its table (:func:`openlineage.load_lineage`)."""
        raw, summaries = getattr(self, "_loaded", ([], []))
        return openlineage.load_lineage(raw, summaries, self.conn_id)
