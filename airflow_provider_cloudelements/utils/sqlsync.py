"""Pure logic of the SQL loading layer: manifests, table names, row building and per-dialect SQL.

Nothing here opens a file or a database; :mod:`airflow_provider_cloudelements.operators.sql` does the
I/O. Every SQL statement is built here so that SQLite and PostgreSQL share one code path and differ
only by a :class:`SqlDialect` (placeholder, column types, locking, null-safe inequality).

Target table (one per ``(element_key, resource)``, e.g. ``ce_quickbooks_invoices``)::

    instance_id BIGINT   NOT NULL   -- Cloud Elements element instance id
    record_id   TEXT     NOT NULL   -- the record's id (QBO ``id`` without ``|syncToken``, QBE ListID/TxnID)
    updated_at  TEXT     NULL       -- ISO-8601 UTC, fixed width ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (sorts as text)
    is_deleted  INTEGER  NOT NULL   -- 1 = soft-deleted at the source, tombstoned or gone from a full load
    data        TEXT     NOT NULL   -- canonical JSON of the record as Cloud Elements served it
    synced_at   TEXT     NOT NULL   -- ISO-8601 UTC time of the load that last changed the row
    PRIMARY KEY (instance_id, record_id)

Load algorithm (one transaction per manifest, see :func:`merge_sql` and :func:`count_sql`):

1. stream the NDJSON file into a temp staging table (``_STAGE``), de-duplicated by id (newest
   ``updated_at`` wins, the later line wins a tie);
2. stream the tombstones file (if any) into ``_TOMBS``; mark the staged rows they name as deleted, and
   stage a deleted copy of every existing target row they name that the file did not carry;
3. on a full refresh, stage a deleted copy of every live target row of the instance the file did not
   carry (restricted to rows updated before the window end, when one is given);
4. count inserted/updated/unchanged/deleted by joining the staging table to the target;
5. ``INSERT … SELECT … ON CONFLICT DO UPDATE … WHERE <newer-or-equal and different>``: rows never move
   back in time, and unchanged rows are not written at all (a rerun leaves the table byte-identical).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsDataError
from airflow_provider_cloudelements.utils.elements import ElementSpec, get_element
from airflow_provider_cloudelements.utils.records import (
    field_value,
    format_utc,
    is_soft_deleted,
    parse_instant,
    record_id,
    stable_id,
)

# --------------------------------------------------------------------------------------------------
# Dialects
# --------------------------------------------------------------------------------------------------

#: Temp tables used during one load; dropped before the transaction commits.
_STAGE = "ce_stage_records"
_TOMBS = "ce_stage_tombstones"

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
    """

    name: str
    placeholder: str
    key_text_type: str
    distinct_op: str
    session_sql: tuple[str, ...] = ()
    begin_sql: str | None = None
    lock_sql: str | None = None


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


# --------------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------------

_REQUIRED_MANIFEST_KEYS: tuple[str, ...] = ("element_key", "instance_id", "resource", "path", "format")
_NDJSON_FORMATS = frozenset({"ndjson", "jsonl"})


@dataclass(frozen=True)
class LoadManifest:
    """A validated extract manifest (the XCom dict an extract operator returns).

    :param element_key: element key (``quickbooks``, ``quickbooksonprem``, ``freshbooksv2``, ``freshbooks``).
    :param instance_id: element instance id (int).
    :param resource: Finance-hub resource, e.g. ``invoices``.
    :param path: ObjectStoragePath URI of the NDJSON records file (any fsspec scheme).
    :param records: number of records the extract says it wrote, or ``None`` when not reported.
    :param full_refresh: whether the file holds every live record of the instance.
    :param window_end: normalised ISO-8601 UTC end of the extract window, or ``None``.
    :param deleted_path: URI of the NDJSON tombstones file (``{"id": ..., "deleted_at": ISO}``), or ``None``.
    :param failed_records: records the bulk job could not export (informational).
    :param errors_path: URI of the bulk job's error file (informational).
    """

    element_key: str
    instance_id: int
    resource: str
    path: str
    records: int | None
    full_refresh: bool
    window_end: str | None
    deleted_path: str | None
    failed_records: int
    errors_path: str | None

    @property
    def spec(self) -> ElementSpec:
        """The element's :class:`ElementSpec`."""
        return get_element(self.element_key)


def coerce_manifests(value: Any) -> tuple[list[Any], bool]:
    """Turn the operator's ``manifest`` argument into a list of raw manifests.

    Accepts a dict, a list/tuple/lazy XCom sequence of dicts (``None`` entries, from skipped mapped
    tasks, are dropped), or the same rendered as a JSON/Python-literal string by a Jinja template.

    :returns: ``(manifests, was_single)``: ``was_single`` is true when a single dict was given.
    :raises CloudElementsConfigError: for anything else (``None``, a number, unparseable text).
    """
    if isinstance(value, str):
        text = value.strip()
        try:
            value = json.loads(text)
        except ValueError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise CloudElementsConfigError(
                    "manifest is a string that is neither JSON nor a Python literal"
                ) from None
    if isinstance(value, Mapping):
        return [value], True
    if value is None or isinstance(value, (bytes, int, float, bool)):
        raise CloudElementsConfigError(
            f"manifest must be a dict or a list of dicts, got {type(value).__name__}"
        )
    try:
        items = [item for item in value if item is not None]
    except TypeError:
        raise CloudElementsConfigError(
            f"manifest must be a dict or a list of dicts, got {type(value).__name__}"
        ) from None
    return items, False


def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise CloudElementsConfigError(f"manifest {what} must be an integer, got {value!r}")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CloudElementsConfigError(f"manifest {what} must be an integer, got {value!r}") from None


def _as_bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0"}:
        return value.strip().lower() in {"true", "1"}
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise CloudElementsConfigError(f"manifest {what} must be a boolean, got {value!r}")


def validate_manifest(raw: Any) -> LoadManifest:
    """Validate one extract manifest (see the operator docstring for the shape).

    Required keys: ``element_key``, ``instance_id``, ``resource``, ``path``, ``format``. Optional:
    ``records``, ``full_refresh`` (default false), ``window`` (``{"start", "end"}``), ``deleted_path``,
    ``failed_records``, ``errors_path``; other keys (``bytes``, ``job_id``, ``mode``) are ignored.

    :raises CloudElementsConfigError: not a mapping, a missing key, an unknown element key, a format
        other than NDJSON, a non-integer instance id or count, an unparseable window end.
    """
    if not isinstance(raw, Mapping):
        raise CloudElementsConfigError(f"Each manifest must be a dict, got {type(raw).__name__}")
    missing = [key for key in _REQUIRED_MANIFEST_KEYS if raw.get(key) in (None, "")]
    if missing:
        raise CloudElementsConfigError(
            f"Manifest is missing required key(s) {', '.join(missing)}; "
            f"got keys: {', '.join(sorted(map(str, raw)))}"
        )
    element_key = str(raw["element_key"])
    get_element(element_key)  # raises CloudElementsConfigError for an unknown key
    fmt = str(raw["format"]).lower()
    if fmt not in _NDJSON_FORMATS:
        raise CloudElementsConfigError(
            f"Manifest format {raw['format']!r} is not supported by the SQL loader; "
            "only NDJSON files can be loaded"
        )
    records = raw.get("records")
    window = raw.get("window") or {}
    if not isinstance(window, Mapping):
        raise CloudElementsConfigError(f"manifest window must be a dict, got {type(window).__name__}")
    window_end = window.get("end")
    return LoadManifest(
        element_key=element_key,
        instance_id=_as_int(raw["instance_id"], "instance_id"),
        resource=str(raw["resource"]),
        path=str(raw["path"]),
        records=None if records is None else _as_int(records, "records"),
        full_refresh=_as_bool(raw.get("full_refresh", False), "full_refresh"),
        window_end=None if window_end in (None, "") else normalize_timestamp(window_end, naive_tz="UTC"),
        deleted_path=str(raw["deleted_path"]) if raw.get("deleted_path") else None,
        failed_records=_as_int(raw.get("failed_records") or 0, "failed_records"),
        errors_path=str(raw["errors_path"]) if raw.get("errors_path") else None,
    )


# --------------------------------------------------------------------------------------------------
# Timestamps and rows
# --------------------------------------------------------------------------------------------------

def normalize_timestamp(value: Any, *, naive_tz: str = "UTC") -> str | None:
    """Normalise an element's timestamp to fixed-width ISO-8601 UTC (``YYYY-MM-DDTHH:MM:SS.mmmZ``).

    Accepts what :func:`~airflow_provider_cloudelements.utils.records.parse_instant` accepts (epoch-ms,
    ISO-8601 with ``Z``/offset, naive ``yyyy-MM-dd[ HH:mm:ss]`` read in ``naive_tz``).

    :returns: the normalised string, or ``None`` for ``None``/empty input.
    :raises CloudElementsConfigError: for an unparseable value (message names the value).
    """
    moment = parse_instant(value, naive_tz=naive_tz, strict=True)
    return None if moment is None else format_utc(moment)


def canonical_json(record: Any) -> str:
    """The canonical JSON text stored in ``data``: sorted keys, no whitespace, ASCII-escaped."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class StagedRow:
    """One row ready for the staging table.

    :param record_id: stable record id (text).
    :param updated_at: normalised ISO-8601 UTC string, or ``None`` when the record has no updated field.
    :param is_deleted: 1 when soft-deleted at the source, else 0.
    :param data: canonical JSON of the record.
    """

    record_id: str
    updated_at: str | None
    is_deleted: int
    data: str

    def as_params(self) -> tuple[str, str | None, int, str]:
        """Parameters in the order of :func:`stage_insert_sql`."""
        return (self.record_id, self.updated_at, self.is_deleted, self.data)


def parse_json_line(line: str | bytes, *, where: str) -> Any:
    """Parse one NDJSON line; ``None`` for a blank line.

    :param where: ``"<path>:<line number>"`` for the error message.
    :raises CloudElementsDataError: invalid JSON, invalid UTF-8, or a value that is not an object.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CloudElementsDataError(f"{where}: not UTF-8 ({exc.reason})") from None
    text = line.strip()
    if not text:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CloudElementsDataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise CloudElementsDataError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def build_row(record: Mapping[str, Any], spec: ElementSpec, *, naive_tz: str, where: str) -> StagedRow:
    """Build the staged row of one record.

    :param spec: the element's spec (id fields, updated field, soft-delete field).
    :param naive_tz: zone of timestamps without offset (default: the element's ``naive_timezone``).
    :param where: ``"<path>:<line number>"`` for error messages.
    :raises CloudElementsDataError: the record has none of the element's id fields, or an updated
        value that cannot be parsed (both are also :class:`CloudElementsConfigError`).
    """
    try:
        rid = record_id(record, spec)
    except CloudElementsConfigError:
        raise CloudElementsDataError(
            f"{where}: record has no id field (expected one of {', '.join(spec.id_fields)})"
        ) from None
    try:
        updated = normalize_timestamp(field_value(record, spec.updated_field), naive_tz=naive_tz)
    except CloudElementsConfigError as exc:
        raise CloudElementsDataError(
            f"{where}: record {rid!r} field {spec.updated_field}: {exc.message}"
        ) from None
    return StagedRow(
        record_id=rid,
        updated_at=updated,
        is_deleted=1 if is_soft_deleted(record, spec) else 0,
        data=canonical_json(record),
    )


def build_tombstone(obj: Mapping[str, Any], spec: ElementSpec, *, where: str) -> tuple[str, str | None]:
    """Return ``(record_id, deleted_at)`` of one tombstone line ``{"id": ..., "deleted_at": ISO}``.

    The id may also be given under the element's own id field (``ListID``/``TxnID``).

    :raises CloudElementsDataError: no id, or an unparseable ``deleted_at``.
    """
    raw_id = obj.get("id")
    if raw_id is None or raw_id == "":
        try:
            raw_id = record_id(obj, spec)
        except CloudElementsConfigError:
            raise CloudElementsDataError(f"{where}: tombstone has no id") from None
    try:
        deleted_at = normalize_timestamp(obj.get("deleted_at"), naive_tz="UTC")
    except CloudElementsConfigError as exc:
        raise CloudElementsDataError(f"{where}: tombstone deleted_at: {exc.message}") from None
    return stable_id(raw_id, spec), deleted_at


# --------------------------------------------------------------------------------------------------
# SQL
# --------------------------------------------------------------------------------------------------

#: Marker in parameter tuples replaced by the manifest's instance id at execution time.
INSTANCE = object()


def create_table_sql(dialect: SqlDialect, table: str) -> str:
    """Idempotent DDL of a target table (see the module docstring for the columns)."""
    key = dialect.key_text_type
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(table)} ("
        f"instance_id BIGINT NOT NULL, "
        f"record_id {key} NOT NULL, "
        f"updated_at {key}, "
        f"is_deleted INTEGER NOT NULL DEFAULT 0, "
        f"data TEXT NOT NULL, "
        f"synced_at TEXT NOT NULL, "
        f"PRIMARY KEY (instance_id, record_id))"
    )


def create_stage_sql(dialect: SqlDialect) -> list[str]:
    """DDL of the two temp staging tables (dropped first, in case a previous load left them)."""
    key = dialect.key_text_type
    return [
        f"DROP TABLE IF EXISTS {_STAGE}",
        f"DROP TABLE IF EXISTS {_TOMBS}",
        f"CREATE TEMP TABLE {_STAGE} (record_id {key} PRIMARY KEY, updated_at {key}, "
        f"is_deleted INTEGER NOT NULL, data TEXT NOT NULL, from_file INTEGER NOT NULL)",
        f"CREATE TEMP TABLE {_TOMBS} (record_id {key} PRIMARY KEY, deleted_at {key})",
    ]


def drop_stage_sql() -> list[str]:
    """Drop the staging tables (run before commit so nothing outlives the transaction)."""
    return [f"DROP TABLE IF EXISTS {_STAGE}", f"DROP TABLE IF EXISTS {_TOMBS}"]


def _newer_or_equal(new: str, old: str) -> str:
    """SQL predicate: ``new`` timestamp may replace ``old`` (unknown times never block a write)."""
    return f"({new} IS NULL OR {old} IS NULL OR {new} >= {old})"


def stage_insert_sql(dialect: SqlDialect) -> str:
    """Insert one file record into the staging table; a duplicate id keeps the newest version.

    Parameters: ``(record_id, updated_at, is_deleted, data)`` (:meth:`StagedRow.as_params`).
    """
    p = dialect.placeholder
    return (
        f"INSERT INTO {_STAGE} (record_id, updated_at, is_deleted, data, from_file) "
        f"VALUES ({p}, {p}, {p}, {p}, 1) "
        f"ON CONFLICT (record_id) DO UPDATE SET updated_at = excluded.updated_at, "
        f"is_deleted = excluded.is_deleted, data = excluded.data "
        f"WHERE {_newer_or_equal('excluded.updated_at', f'{_STAGE}.updated_at')}"
    )


def tombstone_insert_sql(dialect: SqlDialect) -> str:
    """Insert one tombstone; a duplicate id keeps the latest ``deleted_at``.

    Parameters: ``(record_id, deleted_at)``.
    """
    p = dialect.placeholder
    return (
        f"INSERT INTO {_TOMBS} (record_id, deleted_at) VALUES ({p}, {p}) "
        f"ON CONFLICT (record_id) DO UPDATE SET deleted_at = excluded.deleted_at "
        f"WHERE {_TOMBS}.deleted_at IS NULL OR "
        f"(excluded.deleted_at IS NOT NULL AND excluded.deleted_at > {_TOMBS}.deleted_at)"
    )


def _later(deleted_at: str, updated_at: str) -> str:
    """SQL expression: the later of a tombstone time and a row's updated time (NULLs ignored)."""
    return (
        f"CASE WHEN {deleted_at} IS NOT NULL AND ({updated_at} IS NULL OR {deleted_at} > {updated_at}) "
        f"THEN {deleted_at} ELSE {updated_at} END"
    )


def apply_tombstones_sql(dialect: SqlDialect, table: str) -> list[tuple[str, tuple[Any, ...]]]:
    """Statements (with parameters; ``instance_id`` is bound later) applying tombstones to the stage.

    1. staged file rows named by a tombstone become deleted, ``updated_at`` moves to ``deleted_at`` if later;
    2. existing target rows named by a tombstone and absent from the file are staged as deleted copies.

    The returned parameter tuples contain the marker ``INSTANCE`` to be replaced by the instance id.
    """
    p = dialect.placeholder
    tgt = quote_identifier(table)
    return [
        (
            f"UPDATE {_STAGE} SET is_deleted = 1, updated_at = ("
            f"SELECT {_later('t.deleted_at', f'{_STAGE}.updated_at')} FROM {_TOMBS} t "
            f"WHERE t.record_id = {_STAGE}.record_id) "
            f"WHERE record_id IN (SELECT record_id FROM {_TOMBS})",
            (),
        ),
        (
            f"INSERT INTO {_STAGE} (record_id, updated_at, is_deleted, data, from_file) "
            f"SELECT t.record_id, {_later('t.deleted_at', 'p.updated_at')}, 1, p.data, 0 "
            f"FROM {_TOMBS} t JOIN {tgt} p ON p.instance_id = {p} AND p.record_id = t.record_id "
            f"WHERE NOT EXISTS (SELECT 1 FROM {_STAGE} s WHERE s.record_id = t.record_id)",
            (INSTANCE,),
        ),
    ]


def unmatched_tombstones_sql(dialect: SqlDialect, table: str) -> str:
    """Count tombstones naming a record neither in the file nor in the table (param: instance id)."""
    p = dialect.placeholder
    return (
        f"SELECT COUNT(*) FROM {_TOMBS} t "
        f"WHERE NOT EXISTS (SELECT 1 FROM {_STAGE} s WHERE s.record_id = t.record_id)"
        f" AND NOT EXISTS (SELECT 1 FROM {quote_identifier(table)} p WHERE p.instance_id = {p} "
        f"AND p.record_id = t.record_id)"
    )


def full_refresh_sql(
    dialect: SqlDialect, table: str, *, window_end: str | None
) -> tuple[str, tuple[Any, ...]]:
    """Stage a deleted copy of every live row of the instance that the full-refresh file lacks.

    With a ``window_end``, rows updated at or after it are left alone: the extract could not have
    seen them, so their absence proves nothing (this keeps an out-of-order rerun of an old full
    refresh from deleting newer records).
    """
    p = dialect.placeholder
    sql = (
        f"INSERT INTO {_STAGE} (record_id, updated_at, is_deleted, data, from_file) "
        f"SELECT p.record_id, p.updated_at, 1, p.data, 0 FROM {quote_identifier(table)} p "
        f"WHERE p.instance_id = {p} AND p.is_deleted = 0 "
        f"AND NOT EXISTS (SELECT 1 FROM {_STAGE} s WHERE s.record_id = p.record_id)"
    )
    params: tuple[Any, ...] = (INSTANCE,)
    if window_end is not None:
        sql += f" AND (p.updated_at IS NULL OR p.updated_at < {p})"
        params = (INSTANCE, window_end)
    return sql, params


def _changes(dialect: SqlDialect, new: str, old: str) -> str:
    """SQL predicate: staged row ``new`` must be written over existing row ``old``.

    The staged version is not older, and it differs (data, delete flag or updated time).
    """
    d = dialect.distinct_op
    return (
        f"({_newer_or_equal(f'{new}.updated_at', f'{old}.updated_at')} AND ("
        f"{new}.data <> {old}.data OR {new}.is_deleted <> {old}.is_deleted OR "
        f"{new}.updated_at {d} {old}.updated_at))"
    )


def count_sql(dialect: SqlDialect, table: str) -> str:
    """Count what the merge will do, before it runs (param: instance id).

    Columns: ``inserted`` (file records new to the table), ``updated`` (file records replacing an
    existing row), ``unchanged`` (file records identical to, or older than, the stored row),
    ``deleted`` (rows that are absent or live now and will be deleted: soft-delete flag, tombstone or
    full-refresh difference). ``inserted + updated + unchanged`` = distinct record ids in the file.
    """
    p = dialect.placeholder
    w = _changes(dialect, "s", "p")

    def total(condition: str) -> str:
        return f"COALESCE(SUM(CASE WHEN {condition} THEN 1 ELSE 0 END), 0)"

    file_row = "s.from_file = 1"
    return (
        f"SELECT {total(f'{file_row} AND p.record_id IS NULL')}, "
        f"{total(f'{file_row} AND p.record_id IS NOT NULL AND {w}')}, "
        f"{total(f'{file_row} AND p.record_id IS NOT NULL AND NOT {w}')}, "
        f"{total(f's.is_deleted = 1 AND (p.record_id IS NULL OR (p.is_deleted = 0 AND {w}))')} "
        f"FROM {_STAGE} s LEFT JOIN {quote_identifier(table)} p "
        f"ON p.instance_id = {p} AND p.record_id = s.record_id"
    )


def merge_sql(dialect: SqlDialect, table: str) -> str:
    """Upsert the staging table into the target (params: instance id, synced_at).

    Only rows whose staged version is newer-or-equal *and* different are written, so stale reruns
    never regress data and identical reruns write nothing.
    """
    p = dialect.placeholder
    tgt = quote_identifier(table)
    return (
        f"INSERT INTO {tgt} (instance_id, record_id, updated_at, is_deleted, data, synced_at) "
        f"SELECT CAST({p} AS BIGINT), s.record_id, s.updated_at, s.is_deleted, s.data, CAST({p} AS TEXT) "
        f"FROM {_STAGE} s WHERE 1 = 1 "  # WHERE: SQLite needs it to parse ON CONFLICT after a SELECT
        f"ON CONFLICT (instance_id, record_id) DO UPDATE SET updated_at = excluded.updated_at, "
        f"is_deleted = excluded.is_deleted, data = excluded.data, synced_at = excluded.synced_at "
        f"WHERE {_changes(dialect, 'excluded', tgt)}"
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
