"""Pure logic of the SQL loading layer: manifests, table names, row building and per-dialect SQL.

Nothing here opens a file or a database; :mod:`airflow_provider_cloudelements.operators.sql` does the
I/O. Every SQL statement is built here so that SQLite and PostgreSQL share one code path and differ
only by a :class:`SqlDialect` (placeholder, column types, locking, null-safe inequality).

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

Ordering (docs/reliability.md "Semantics"): of two versions the higher ``version_num`` wins when both
have one and they differ, else the higher ``observed_at`` (to the second when either has no
milliseconds), else the higher ``updated_at``; a full tie
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
2. stream the NDJSON file into a temp staging table (``_STAGE``), one row per id (best version wins);
3. stream the tombstones file into the same table (``deleted_at``, the latest per id);
4. on a complete full refresh, stage a deletion at ``snapshot_at`` for every row the file lacks
   (:func:`full_refresh_sql`) and record the snapshot;
5. :func:`resolve_sql` joins the stage to the target and writes, into ``_FINAL``, the rows whose
   resolved state differs from what is stored; :func:`count_sql` counts them;
6. :func:`merge_sql` upserts ``_FINAL``: unchanged rows are never written (a rerun writes nothing).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import itertools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsDataError
from airflow_provider_cloudelements.utils import jsonfast
from airflow_provider_cloudelements.utils.elements import ElementSpec, get_element
from airflow_provider_cloudelements.utils.records import (
    field_value,
    format_utc,
    is_soft_deleted,
    parse_instant,
    record_id,
    record_version,
    stable_id,
    zone,
)

# --------------------------------------------------------------------------------------------------
# Dialects
# --------------------------------------------------------------------------------------------------

#: Temp tables used during one load; dropped before the transaction commits.
_STAGE = "ce_stage_records"
_FINAL = "ce_stage_resolved"

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
    :param full_refresh: whether the extract selected every record (no lower bound on the updated time).
    :param window_end: normalised ISO-8601 UTC end of the extract window, or ``None``.
    :param deleted_path: URI of the NDJSON tombstones file (``{"id": ..., "deleted_at": ISO}``), or ``None``.
    :param failed_records: records the bulk job could not export (they are absent from the file).
    :param errors_path: URI of the bulk job's error file (informational).
    :param manifest_version: ``2`` for manifests with ``snapshot_at``/``complete``, else ``1``.
    :param snapshot_at: s, normalised ISO-8601 UTC lower bound (server clock) of when every record in the
        file was observed, or ``None`` (a v1 manifest: unknown).
    :param complete: whether the file holds every live record of the instance as of ``snapshot_at`` (the
        manifest's ``complete``; for a manifest without ``snapshot_at`` and without ``complete``:
        ``full_refresh`` and no failed records).
    :param naive_timezone: the IANA zone the extract used for the element's naive times, or ``None``.
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
    manifest_version: int = 1
    snapshot_at: str | None = None
    complete: bool = False
    naive_timezone: str | None = None

    @property
    def spec(self) -> ElementSpec:
        """The element's :class:`ElementSpec`."""
        return get_element(self.element_key)

    @property
    def deletes_by_absence(self) -> bool:
        """Whether ids absent from the file may be marked deleted: a complete full refresh, 0 failed."""
        return self.full_refresh and self.complete and self.failed_records == 0


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
        raise CloudElementsConfigError(f"manifest must be a dict or a list of dicts, got {type(value).__name__}")
    try:
        # A sequence is read as one slice: iterating Airflow's lazy XCom sequence (mapped extracts) probes
        # one index past the end, which Airflow logs as an "XCom not found" error on every load.
        values = value[: len(value)] if isinstance(value, Sequence) else value
        items = [item for item in values if item is not None]
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


def _as_instant(value: Any, what: str) -> str | None:
    """A manifest time (ISO-8601; naive = UTC) normalised, ``None`` when missing."""
    if value in (None, ""):
        return None
    try:
        return normalize_timestamp(value, naive_tz="UTC")
    except CloudElementsConfigError as exc:
        raise CloudElementsConfigError(f"manifest {what}: {exc.message}") from None


def check_timezone(name: Any, what: str) -> str:
    """``name`` if it is a known IANA zone. :raises CloudElementsConfigError: naming ``what``."""
    if not isinstance(name, str) or not name.strip():
        raise CloudElementsConfigError(f"{what} must be an IANA time zone name, got {name!r}")
    try:
        zone(name)
    except CloudElementsConfigError:
        raise CloudElementsConfigError(f"{what}: unknown time zone {name!r}") from None
    return name


def validate_manifest(raw: Any) -> LoadManifest:
    """Validate one extract manifest (see the operator docstring for the shape).

    Required keys: ``element_key``, ``instance_id``, ``resource``, ``path``, ``format``. Optional:
    ``records``, ``full_refresh`` (default false), ``window`` (``{"start", "end"}``), ``deleted_path``,
    ``failed_records``, ``errors_path``, and the manifest-v2 keys ``manifest_version``, ``snapshot_at``
    (ISO-8601), ``complete`` (bool), ``naive_timezone`` (IANA zone); other keys (``bytes``, ``job_id``,
    ``mode``) are ignored. A manifest without ``snapshot_at`` is read as v1 (see :class:`LoadManifest`).

    :raises CloudElementsConfigError: not a mapping, a missing key, an unknown element key, a format
        other than NDJSON, a non-integer instance id or count, an unparseable window end or
        ``snapshot_at``, a non-boolean ``complete``, an unknown ``naive_timezone``.
    """
    if not isinstance(raw, Mapping):
        raise CloudElementsConfigError(f"Each manifest must be a dict, got {type(raw).__name__}")
    missing = [key for key in _REQUIRED_MANIFEST_KEYS if raw.get(key) in (None, "")]
    if missing:
        raise CloudElementsConfigError(
            f"Manifest is missing required key(s) {', '.join(missing)}; got keys: {', '.join(sorted(map(str, raw)))}"
        )
    element_key = str(raw["element_key"])
    get_element(element_key)  # raises CloudElementsConfigError for an unknown key
    fmt = str(raw["format"]).lower()
    if fmt not in _NDJSON_FORMATS:
        raise CloudElementsConfigError(
            f"Manifest format {raw['format']!r} is not supported by the SQL loader; only NDJSON files can be loaded"
        )
    records = raw.get("records")
    window = raw.get("window") or {}
    if not isinstance(window, Mapping):
        raise CloudElementsConfigError(f"manifest window must be a dict, got {type(window).__name__}")
    full_refresh = _as_bool(raw.get("full_refresh", False), "full_refresh")
    failed = _as_int(raw.get("failed_records") or 0, "failed_records")
    snapshot_at = _as_instant(raw.get("snapshot_at"), "snapshot_at")
    if raw.get("complete") is not None:
        complete = _as_bool(raw["complete"], "complete")
    else:  # v2 without the key: not complete; v1: what a full refresh meant before manifest v2
        complete = snapshot_at is None and full_refresh and failed == 0
    naive = raw.get("naive_timezone")
    return LoadManifest(
        element_key=element_key,
        instance_id=_as_int(raw["instance_id"], "instance_id"),
        resource=str(raw["resource"]),
        path=str(raw["path"]),
        records=None if records is None else _as_int(records, "records"),
        full_refresh=full_refresh,
        window_end=_as_instant(window.get("end"), "window end"),
        deleted_path=str(raw["deleted_path"]) if raw.get("deleted_path") else None,
        failed_records=failed,
        errors_path=str(raw["errors_path"]) if raw.get("errors_path") else None,
        manifest_version=_as_int(raw.get("manifest_version") or 1, "manifest_version"),
        snapshot_at=snapshot_at,
        complete=complete,
        naive_timezone=None if naive in (None, "") else check_timezone(naive, "manifest naive_timezone"),
    )


def resolve_naive_timezone(explicit: str | None, manifest: LoadManifest) -> str:
    """The zone naive element times of ``manifest`` are read in: the operator's ``naive_timezone`` when
    set, else the manifest's (the zone the extract filtered with), else the element's default."""
    return explicit or manifest.naive_timezone or manifest.spec.naive_timezone


# --------------------------------------------------------------------------------------------------
# Timestamps and rows
# --------------------------------------------------------------------------------------------------


def normalize_timestamp(value: Any, *, naive_tz: str = "UTC") -> str | None:
    """Normalise an element's timestamp to fixed-width ISO-8601 UTC (``YYYY-MM-DDTHH:MM:SS.mmmZ``).

    Accepts what :func:`~airflow_provider_cloudelements.utils.records.parse_instant` accepts (epoch-ms,
    ISO-8601 with ``Z``/offset, naive ``yyyy-MM-dd[ HH:mm:ss]`` read in ``naive_tz``; a local time
    repeated by a daylight-saving change is read as its first occurrence).

    :returns: the normalised string, or ``None`` for ``None``/empty input.
    :raises CloudElementsConfigError: for an unparseable value (message names the value).
    """
    moment = parse_instant(value, naive_tz=naive_tz, strict=True)
    return None if moment is None else format_utc(moment)


def canonical_json(record: Any) -> str:
    """The canonical JSON text stored in ``data``: sorted keys, no whitespace, ASCII-escaped."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"))


#: ``data`` of a tombstone row: the id was deleted before any version of it was loaded.
TOMBSTONE_DATA = "null"


@dataclass(frozen=True)
class StagedRow:
    """One version of a record, ready for the staging table.

    :param record_id: stable record id (text).
    :param updated_at: u, normalised ISO-8601 UTC, or ``None`` when the record has no updated field.
    :param version_num: n, the element's version number (:func:`records.record_version`), or ``None``.
    :param observed_at: K = max(u, snapshot_at) (u alone without a snapshot time, ``None`` if neither).
    :param is_deleted: 1 when soft-deleted at the source, else 0.
    :param data: canonical JSON of the record.
    """

    record_id: str
    updated_at: str | None
    is_deleted: int
    data: str
    version_num: int | None = None
    observed_at: str | None = None

    def as_params(self) -> tuple[str, str | None, int | None, str | None, int, str]:
        """Parameters in the order of :func:`stage_insert_sql`."""
        return (self.record_id, self.updated_at, self.version_num, self.observed_at, self.is_deleted, self.data)


def observed_time(updated: str | None, snapshot_at: str | None) -> str | None:
    """K = max(u, s) of normalised times (either may be ``None``)."""
    if updated is None or snapshot_at is None:
        return updated or snapshot_at
    return max(updated, snapshot_at)


def parse_json_line(line: str | bytes, *, where: str) -> Any:
    """Parse one NDJSON line; ``None`` for a blank line.

    :param where: ``"<path>:<line number>"`` for the error message.
    :raises CloudElementsDataError: invalid JSON, invalid UTF-8, nesting deeper than the parser allows,
        or a value that is not an object.
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
        value = jsonfast.loads(text)
    except json.JSONDecodeError as exc:
        raise CloudElementsDataError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise CloudElementsDataError(f"{where}: JSON nested too deeply to load") from None
    if not isinstance(value, dict):
        raise CloudElementsDataError(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def build_row(
    record: Mapping[str, Any],
    spec: ElementSpec,
    *,
    naive_tz: str,
    where: str,
    snapshot_at: str | None = None,
) -> StagedRow:
    """Build the staged row of one record.

    :param spec: the element's spec (id, updated, version and soft-delete fields).
    :param naive_tz: zone of timestamps without offset (:func:`resolve_naive_timezone`).
    :param where: ``"<path>:<line number>"`` for error messages.
    :param snapshot_at: the manifest's normalised ``snapshot_at`` (``None`` for a v1 manifest).
    :raises CloudElementsDataError: the record has none of the element's id fields, an updated value
        that cannot be parsed, or nesting too deep to serialise (all are also
        :class:`CloudElementsConfigError`).
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
        raise CloudElementsDataError(f"{where}: record {rid!r} field {spec.updated_field}: {exc.message}") from None
    try:
        data = canonical_json(record)
    except RecursionError:
        raise CloudElementsDataError(f"{where}: record {rid!r} is nested too deeply to store") from None
    return StagedRow(
        record_id=rid,
        updated_at=updated,
        is_deleted=1 if is_soft_deleted(record, spec) else 0,
        data=data,
        version_num=record_version(record, spec),
        observed_at=observed_time(updated, snapshot_at),
    )


def build_tombstone(obj: Mapping[str, Any], spec: ElementSpec, *, where: str) -> tuple[str, str | None]:
    """Return ``(record_id, deleted_at)`` of one tombstone line ``{"id": ..., "deleted_at": ISO}``.

    The id may also be given under the element's own id field (``ListID``/``TxnID``). A missing
    ``deleted_at`` gives ``None``; the loader then uses :func:`default_deletion_time`.

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


def default_deletion_time(manifest: LoadManifest, load_time: str) -> str:
    """d of a tombstone without ``deleted_at``: the manifest's ``snapshot_at``, else its window end,
    else the load time (all are upper bounds of when the deletion was seen)."""
    return manifest.snapshot_at or manifest.window_end or load_time


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
    """``ALTER TABLE … ADD COLUMN`` for each column of :func:`create_table_sql` missing from ``present``
    (lower-case names of a table created by an older loader), plus the backfill that makes old rows
    follow the ordering rule: ``observed_at`` = ``updated_at`` (what the old loader compared).

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

    ``_STAGE``: per id the best version in the file (``data`` NULL when the file has none) and the
    latest deletion (``deleted_at``); ``_FINAL``: the resolved rows that differ from the target.
    """
    key = dialect.key_text_type
    version = (
        f"updated_at {key}, version_num BIGINT, observed_at {key}, is_deleted INTEGER, data TEXT, deleted_at {key}"
    )
    return [
        *drop_stage_sql(),
        f"CREATE TEMP TABLE {_STAGE} (record_id {key} PRIMARY KEY, from_file INTEGER NOT NULL, {version})",
        f"CREATE TEMP TABLE {_FINAL} (record_id {key} PRIMARY KEY, existed INTEGER NOT NULL, "
        f"from_file INTEGER NOT NULL, data_changed INTEGER NOT NULL, was_deleted INTEGER, {version})",
    ]


def drop_stage_sql() -> list[str]:
    """Drop the staging tables (run before commit so nothing outlives the transaction)."""
    return [f"DROP TABLE IF EXISTS {_STAGE}", f"DROP TABLE IF EXISTS {_FINAL}"]


def _beats(new: str, old: str) -> str:
    """SQL predicate: version ``new`` wins over version ``old`` (both aliases have ``version_num``,
    ``observed_at``, ``updated_at``): the higher version number when both have one and they differ,
    else the later observed time, else the later updated time; missing times count as earliest and a
    full tie is false (the stored version stays). Observed times are compared to the second when
    either has no milliseconds (:func:`_observed_key`)."""
    kn, ko = _observed_key(new, old), _observed_key(old, new)
    return (
        f"(CASE WHEN {new}.version_num IS NOT NULL AND {old}.version_num IS NOT NULL "
        f"AND {new}.version_num <> {old}.version_num THEN {new}.version_num > {old}.version_num "
        f"WHEN {kn} <> {ko} THEN {kn} > {ko} "
        f"ELSE COALESCE({new}.updated_at, '') > COALESCE({old}.updated_at, '') END)"
    )


def _observed_key(alias: str, other: str) -> str:
    """SQL: ``alias.observed_at`` as compared with ``other.observed_at`` by :func:`_beats`. A K without
    milliseconds (a paged ``snapshot_at``: the server ``Date`` floored to the second; or a whole-second
    u) stands for some instant of its second, so against it only the seconds count, and u decides a
    tie: a newer edit a paged extract saw (K = the second's start) does not lose to an older edit a
    bulk job saw earlier in that second (K = its ``createdDate``, with milliseconds)."""
    coarse = f"({_whole_second(f'{alias}.observed_at')} OR {_whole_second(f'{other}.observed_at')})"
    value = f"COALESCE({alias}.observed_at, '')"
    return f"(CASE WHEN {coarse} THEN substr({value}, 1, 19) ELSE {value} END)"


def _whole_second(value: str) -> str:
    """SQL: a fixed-width normalised time (``YYYY-MM-DDTHH:MM:SS.mmmZ``, may be NULL) without a
    sub-second part: it may stand for any instant of that second."""
    return f"substr(COALESCE({value}, ''), 21, 3) = '000'"


def written_by(updated: str) -> str:
    """SQL: the latest instant at which a version with updated time ``updated`` (normalised, may be
    NULL: then ``''``) can have been written: the time itself, or the last millisecond of its second
    when it has no sub-second part (QBE ``TimeModified``, FreshBooks ``updated``: second resolution)."""
    return (
        f"(CASE WHEN {updated} IS NULL THEN '' WHEN {_whole_second(updated)} "
        f"THEN substr({updated}, 1, 20) || '999Z' ELSE {updated} END)"
    )


def absence_proves(observed: str, updated: str, bound: str) -> str:
    """SQL predicate: a complete snapshot at ``bound`` that lacks the record proves this version
    (``observed_at`` K, ``updated_at`` u) gone: d = s >= K (docs/reliability.md "Semantics"), and K
    orders it before the snapshot. K from whole seconds (a paged ``snapshot_at`` floored from ``Date``,
    or a second-resolution u) does not order it within its second: a record created or restored after a
    page was read, in the same second, has K = s and is live although the snapshot lacks it. Such a
    version is proven gone only when it was written before s (:func:`written_by` < s); otherwise the
    next complete snapshot decides. K with milliseconds (a bulk ``createdDate``, a QBO epoch-ms u)
    orders it.
    """
    return (
        f"(COALESCE({observed}, '') <= {bound} AND (NOT {_whole_second(observed)} OR {written_by(updated)} < {bound}))"
    )


def _later_deletion(table: str) -> str:
    """ON CONFLICT condition keeping the later deletion time in the staging table."""
    return f"{table}.deleted_at IS NULL OR excluded.deleted_at > {table}.deleted_at"


#: Parameters of one staged file record (:meth:`StagedRow.as_params`).
STAGE_PARAMS = 6


def stage_rows_per_statement(dialect: SqlDialect) -> int:
    """Most file records one :func:`stage_insert_sql` statement may carry in ``dialect``."""
    return max(1, dialect.max_params // STAGE_PARAMS)


def stage_insert_sql(dialect: SqlDialect, rows: int = 1) -> str:
    """Insert ``rows`` file records into the staging table; an id already staged keeps the winning
    version. The ids of one statement must be distinct (PostgreSQL cannot update a row twice in one
    ``ON CONFLICT`` statement): a repeated id goes into the next statement, so the result is the one
    of inserting the records one by one in file order.

    Parameters: ``rows`` times ``(record_id, updated_at, version_num, observed_at, is_deleted, data)``
    (:meth:`StagedRow.as_params`), at most :func:`stage_rows_per_statement` rows.
    """
    p = dialect.placeholder
    values = ", ".join([f"({p}, 1, {p}, {p}, {p}, {p}, {p})"] * rows)
    return (
        f"INSERT INTO {_STAGE} (record_id, from_file, updated_at, version_num, observed_at, is_deleted, data) "
        f"VALUES {values} "
        f"ON CONFLICT (record_id) DO UPDATE SET updated_at = excluded.updated_at, "
        f"version_num = excluded.version_num, observed_at = excluded.observed_at, "
        f"is_deleted = excluded.is_deleted, data = excluded.data "
        f"WHERE {_beats('excluded', _STAGE)}"
    )


def tombstone_insert_sql(dialect: SqlDialect) -> str:
    """Stage one deletion (after the file's records); a duplicate id keeps the latest ``deleted_at``.

    Parameters: ``(record_id, deleted_at)`` (``deleted_at`` never ``None``: see
    :func:`default_deletion_time`).
    """
    p = dialect.placeholder
    return (
        f"INSERT INTO {_STAGE} (record_id, from_file, deleted_at) VALUES ({p}, 0, {p}) "
        f"ON CONFLICT (record_id) DO UPDATE SET deleted_at = excluded.deleted_at WHERE {_later_deletion(_STAGE)}"
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

    Only call it for a manifest whose :attr:`LoadManifest.deletes_by_absence` is true. The deletion
    time d is ``snapshot_at`` (s); rows whose version was observed after s (``observed_at > s``:
    edited or created after the snapshot, loaded earlier from a later extract), or whose K cannot
    order them before s (:func:`absence_proves`: whole-second times in the snapshot's own second) keep
    their version, and rows already deleted
    before s get the later time. A v1 manifest (no ``snapshot_at``) uses its window
    end as d for rows observed strictly before it, as the old loader did; without a window end, d is
    each row's own ``observed_at`` (``load_time`` when it has none), so any newer version restores it.
    """
    p = dialect.placeholder
    head = f"INSERT INTO {_STAGE} (record_id, from_file, deleted_at) SELECT p.record_id, 0, "
    tail = (
        f" FROM {quote_identifier(table)} p WHERE p.instance_id = {p} AND ({{cond}}) "
        f"AND NOT EXISTS (SELECT 1 FROM {_STAGE} s WHERE s.record_id = p.record_id AND s.from_file = 1) "
        f"ON CONFLICT (record_id) DO UPDATE SET deleted_at = excluded.deleted_at WHERE {_later_deletion(_STAGE)}"
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
    """Count live rows of the instance a full-refresh file lacks (param: instance id): what an
    incomplete full refresh did not delete."""
    return (
        f"SELECT COUNT(*) FROM {quote_identifier(table)} p WHERE p.instance_id = {dialect.placeholder} "
        f"AND p.is_deleted = 0 AND NOT EXISTS (SELECT 1 FROM {_STAGE} s WHERE s.record_id = p.record_id "
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
    """Record a complete snapshot if later than the stored one (params: instance id, snapshot_at,
    synced_at). Only manifests with ``snapshot_at`` (v2, open-ended) are recorded: a v1 full refresh
    was bounded by its window end, so it does not prove that ids it lacks were gone."""
    p = dialect.placeholder
    snaps = quote_identifier(snapshots_table(table))
    return (
        f"INSERT INTO {snaps} (instance_id, snapshot_at, synced_at) VALUES ({p}, {p}, {p}) "
        f"ON CONFLICT (instance_id) DO UPDATE SET snapshot_at = excluded.snapshot_at, "
        f"synced_at = excluded.synced_at WHERE excluded.snapshot_at > {snaps}.snapshot_at"
    )


def resolve_sql(dialect: SqlDialect, table: str) -> str:
    """Resolve each staged id against its stored row into ``_FINAL``, keeping only rows that change
    (params: ``snap``, the instance's latest complete snapshot time, ``None`` when there is none or when
    this manifest is that snapshot; ``snap_all``, the same including this manifest's; instance id).

    Per id: the best version of (stored, staged) by :func:`_beats` (``took`` = 1 when it is the staged
    one; a tombstone row's empty version always loses; a staged version with the stored ``data`` is the
    stored version seen again: never rewritten, it only lowers ``observed_at`` to the earlier of the
    two), and the later deletion of the two. A staged
    version that would create or restore the row although it was observed no later than the instance's
    latest complete snapshot (:func:`snapshot_select_sql`) and ordered before it (:func:`absence_proves`)
    is deleted at that snapshot: the snapshot
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
        f"'{TOMBSTONE_DATA}' OR (p.data <> s.data AND {_beats('s', 'p')})) THEN 1 ELSE 0 END"
    )
    joined = (
        f"SELECT CAST({p} AS TEXT) AS snap, CAST({p} AS TEXT) AS snap_all, "
        f"s.record_id AS record_id, s.from_file AS from_file, "
        f"CASE WHEN p.record_id IS NULL THEN 0 ELSE 1 END AS existed, {pick} AS took, "
        f"CASE WHEN p.data = s.data THEN 1 ELSE 0 END AS same, "
        f"s.updated_at AS s_u, s.version_num AS s_n, s.observed_at AS s_k, s.is_deleted AS s_f, "
        f"s.data AS s_data, s.deleted_at AS s_d, p.updated_at AS p_u, p.version_num AS p_n, "
        f"p.observed_at AS p_k, p.is_deleted AS p_f, p.data AS p_data, p.deleted_at AS p_d "
        f"FROM {_STAGE} s LEFT JOIN {quote_identifier(table)} p "
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
    return f"INSERT INTO {_FINAL} ({columns}) SELECT {columns} FROM ({final}) x WHERE {changed}"


def count_sql() -> str:
    """Count what the merge will do, after :func:`resolve_sql` (no parameter).

    Columns: ``file_ids`` (distinct record ids in the file), ``inserted`` (file records new to the
    table), ``updated`` (file records whose version replaced different stored data), ``deleted``
    (rows live before, or new file records, that end deleted: soft-delete flag, tombstone or
    full-refresh absence), ``new_tombstones`` (deletions stored for ids the table did not hold).
    ``unchanged`` = ``file_ids - inserted - updated`` (identical, older, or only seen again later).
    """

    def total(condition: str) -> str:
        return f"(SELECT COUNT(*) FROM {_FINAL} WHERE {condition})"

    return (
        f"SELECT (SELECT COUNT(*) FROM {_STAGE} WHERE from_file = 1), "
        f"{total('from_file = 1 AND existed = 0')}, "
        f"{total('from_file = 1 AND existed = 1 AND data_changed = 1')}, "
        f"{total('is_deleted = 1 AND ((existed = 1 AND was_deleted = 0) OR (existed = 0 AND from_file = 1))')}, "
        f"{total('existed = 0 AND from_file = 0')}"
    )


def merge_sql(dialect: SqlDialect, table: str) -> str:
    """Upsert ``_FINAL`` (only changed rows) into the target (params: instance id, synced_at)."""
    p = dialect.placeholder
    tgt = quote_identifier(table)
    cols = ("updated_at", "is_deleted", "data", "synced_at", "version_num", "observed_at", "deleted_at")
    return (
        f"INSERT INTO {tgt} (instance_id, record_id, {', '.join(cols)}) "
        f"SELECT CAST({p} AS BIGINT), record_id, updated_at, is_deleted, data, CAST({p} AS TEXT), "
        f"version_num, observed_at, deleted_at "
        f"FROM {_FINAL} WHERE 1 = 1 "  # WHERE: SQLite needs it to parse ON CONFLICT after a SELECT
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
    """``<table>__history``: one row per version of a record with ``valid_from`` / ``valid_to``
    (:func:`derive_history`). Primary key ``(instance_id, record_id, seq)``."""
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
    """``<table>__snapshot_ids``: the record ids of every complete snapshot loaded in history mode
    (``instance_id, snapshot_at, record_id``; one marker row with ``record_id`` = ``''`` per snapshot),
    so that a version loaded after a snapshot that lacked its record is closed at that snapshot."""
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
    """Temp tables of a history-mode load: the versions this manifest stages, and the record ids whose
    versions changed (their history is derived again)."""
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
    """Stage one file record as a version (params: :func:`version_params`); the same content seen twice
    keeps its earliest observed time."""
    p = dialect.placeholder
    return (
        f"INSERT INTO {_STAGE_VERSIONS} (record_id, {', '.join(VERSION_COLUMNS)}) "
        f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}, NULL, {p}) "
        f"ON CONFLICT (record_id, version_key) DO UPDATE SET observed_at = excluded.observed_at "
        f"WHERE {_earlier_observed('excluded', _STAGE_VERSIONS)}"
    )


def version_params(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Parameters of :func:`stage_version_sql` from :meth:`StagedRow.as_params` order
    ``(record_id, updated_at, version_num, observed_at, is_deleted, data)``."""
    rid, updated, version, observed, deleted, data = row
    return (rid, version_key(data), version, updated, observed, deleted, data)


def stage_deletions_sql() -> list[str]:
    """Stage every deletion of this load as a version: the staged tombstones and full-refresh absences,
    and the deletions the resolution decided (a late version older than the latest complete snapshot).
    Run after :func:`resolve_sql`, before :func:`drop_stage_sql`; no parameter."""
    head = f"INSERT INTO {_STAGE_VERSIONS} (record_id, version_key, is_deleted, deleted_at) "
    tail = " ON CONFLICT (record_id, version_key) DO NOTHING"
    return [
        head + f"SELECT record_id, 'd:' || deleted_at, 1, deleted_at FROM {_STAGE} WHERE deleted_at IS NOT NULL" + tail,
        head + f"SELECT record_id, 'd:' || deleted_at, 1, deleted_at FROM {_FINAL} "
        f"WHERE is_deleted = 1 AND deleted_at IS NOT NULL" + tail,
    ]


def stage_absence_versions_sql(dialect: SqlDialect, table: str) -> str:
    """For a complete snapshot at s: stage a deletion at s for every record the versions table knows a
    version of, proven gone by s (:func:`absence_proves`) that the file lacks
    (params: s, s, instance id, s, s). Unlike
    :func:`full_refresh_sql`, which looks at the stored row only, this closes an older version although
    a newer one (observed after s, loaded earlier) is what the raw table holds, so the history does not
    depend on the load order."""
    p = dialect.placeholder
    return (
        f"INSERT INTO {_STAGE_VERSIONS} (record_id, version_key, is_deleted, deleted_at) "
        f"SELECT DISTINCT v.record_id, 'd:' || CAST({p} AS TEXT), 1, CAST({p} AS TEXT) "
        f"FROM {quote_identifier(versions_table(table))} v WHERE v.instance_id = {p} AND v.data IS NOT NULL "
        f"AND {absence_proves('v.observed_at', 'v.updated_at', p)} "
        f"AND NOT EXISTS (SELECT 1 FROM {_STAGE} s WHERE s.record_id = v.record_id AND s.from_file = 1) "
        f"ON CONFLICT (record_id, version_key) DO NOTHING"
    )


def snapshot_ids_insert_sql(dialect: SqlDialect, table: str) -> str:
    """Record the ids of this complete snapshot and its marker row (params: instance id, s, instance id, s)."""
    p = dialect.placeholder
    return (
        f"INSERT INTO {quote_identifier(snapshot_ids_table(table))} (instance_id, snapshot_at, record_id) "
        f"SELECT CAST({p} AS BIGINT), CAST({p} AS TEXT), record_id FROM {_STAGE} WHERE from_file = 1 "
        f"UNION ALL SELECT CAST({p} AS BIGINT), CAST({p} AS TEXT), '' "
        f"ON CONFLICT (instance_id, snapshot_at, record_id) DO NOTHING"
    )


def stage_late_absence_sql(dialect: SqlDialect, table: str) -> str:
    """Stage a deletion at s for every staged version proven gone (:func:`absence_proves`) by a
    complete snapshot s (recorded in :func:`snapshot_ids_table`) that lacked its record (params:
    instance id):
    a late, older extract's version is closed by the snapshots that prove it gone."""
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
    """Collect into the touched-ids table the record ids with a staged version the versions table lacks
    or holds with a later observed time (param: instance id). A rerun collects none."""
    v = quote_identifier(versions_table(table))
    return (
        f"INSERT INTO {_TOUCHED} (record_id) SELECT DISTINCT s.record_id FROM {_STAGE_VERSIONS} s "
        f"LEFT JOIN {v} v ON v.instance_id = {dialect.placeholder} AND v.record_id = s.record_id "
        f"AND v.version_key = s.version_key WHERE v.record_id IS NULL OR ({_earlier_observed('s', 'v')})"
    )


def versions_upsert_sql(dialect: SqlDialect, table: str) -> str:
    """Insert the staged versions into :func:`versions_table` (params: instance id, synced_at); a known
    version only takes an earlier observed time. Idempotent."""
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
    """Rows of the touched ids in ``(last, upto]`` (params: instance id, last, upto), ordered by record id:
    ``which`` = ``"versions"`` (``record_id`` + :data:`VERSION_COLUMNS`) or ``"history"`` (``record_id`` +
    :data:`HISTORY_COLUMNS`)."""
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
