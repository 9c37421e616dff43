"""Rows of the storage → SQL load: the manifest argument, record and tombstone lines, timestamps.

Pure (no file, no database): :mod:`.load` streams the files and runs the statements of :mod:`.statements`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsDataError
from airflow_provider_cloudelements.models.manifest import ExtractManifest
from airflow_provider_cloudelements.models.timestamps import format_utc, parse_timestamp
from airflow_provider_cloudelements.utils import jsonfast
from airflow_provider_cloudelements.utils.elements import ElementSpec
from airflow_provider_cloudelements.utils.records import (
    field_value,
    is_soft_deleted,
    record_id,
    record_version,
    stable_id,
)

#: Manifest formats the SQL loader reads (NDJSON only).
NDJSON_FORMATS = frozenset({"ndjson", "jsonl"})

# --------------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------------


class ManifestArgument(NamedTuple):
    """The operator's ``manifest`` argument as a list, and whether a single manifest was given."""

    manifests: list[Any]
    single: bool


def coerce_manifests(value: Any) -> ManifestArgument:
    """Turn the operator's ``manifest`` argument into a list of raw manifests.

    Accepts an :class:`~airflow_provider_cloudelements.models.manifest.ExtractManifest`, its XCom dict,
    or a list/tuple/lazy XCom sequence of them (``None`` entries, from skipped mapped tasks, are dropped).
    Text is refused: a manifest that reached the operator as a string was rendered by a Jinja template
    (``"{{ ti.xcom_pull(...) }}"``); pass the extract's ``.output`` (an XComArg) instead, or set
    ``render_template_as_native_obj=True`` on the DAG.

    :returns: the manifests, and ``single`` true when a single manifest was given.
    :raises CloudElementsDataError: for anything else (``None``, a number, text).
    """
    if isinstance(value, (Mapping, ExtractManifest)):
        return ManifestArgument([value], True)
    if isinstance(value, str):
        raise CloudElementsDataError(
            "manifest is text (a Jinja-rendered XCom?): pass the extract task's .output instead, "
            "or set render_template_as_native_obj=True on the DAG"
        )
    if value is None or isinstance(value, (bytes, int, float, bool)):
        raise CloudElementsDataError(f"manifest must be a dict or a list of dicts, got {type(value).__name__}")
    try:
        # A sequence is read as one slice: iterating Airflow's lazy XCom sequence (mapped extracts) probes
        # one index past the end, which Airflow logs as an "XCom not found" error on every load.
        values = value[: len(value)] if isinstance(value, Sequence) else value
        items = [item for item in values if item is not None]
    except TypeError:
        raise CloudElementsDataError(
            f"manifest must be a dict or a list of dicts, got {type(value).__name__}"
        ) from None
    return ManifestArgument(items, False)


def loadable_manifest(value: Any) -> ExtractManifest:
    """:meth:`ExtractManifest.from_xcom` plus the loader's own condition: an NDJSON records file.

    :raises CloudElementsDataError: a malformed manifest (naming the key), or a format other than NDJSON.
    """
    manifest = ExtractManifest.from_xcom(value)
    if manifest.format not in NDJSON_FORMATS:
        raise CloudElementsDataError(
            f"Manifest format {manifest.format!r} is not supported by the SQL loader; only NDJSON files can be loaded"
        )
    return manifest


def resolve_naive_timezone(explicit: str | None, manifest: ExtractManifest) -> str:
    """Return the zone naive element times of ``manifest`` are read in.

    The operator's ``naive_timezone`` when set, else the manifest's (the zone the extract filtered with),
    else the element's default.
    """
    return explicit or manifest.naive_timezone or manifest.spec.naive_timezone


# --------------------------------------------------------------------------------------------------
# Timestamps and rows
# --------------------------------------------------------------------------------------------------


def normalize_timestamp(value: Any, *, naive_tz: str = "UTC") -> str | None:
    """Normalise an element's timestamp to fixed-width ISO-8601 UTC (``YYYY-MM-DDTHH:MM:SS.mmmZ``).

    Accepts what :func:`~airflow_provider_cloudelements.models.timestamps.parse_timestamp` accepts with
    numbers as epoch milliseconds (ISO-8601 with ``Z``/offset, naive ``yyyy-MM-dd[ HH:mm:ss]`` read in
    ``naive_tz``; a local time repeated by a daylight-saving change is read as its first occurrence).

    :returns: the normalised string, or ``None`` for ``None``/empty input.
    :raises CloudElementsConfigError: for an unparseable value (message names the value).
    """
    moment = parse_timestamp(value, naive_tz=naive_tz)
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


class Tombstone(NamedTuple):
    """One tombstone line read: the stable record id and ``deleted_at`` (normalised, ``None`` if absent)."""

    record_id: str
    deleted_at: str | None


def build_tombstone(obj: Mapping[str, Any], spec: ElementSpec, *, where: str) -> Tombstone:
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
    return Tombstone(stable_id(raw_id, spec), deleted_at)


def default_deletion_time(manifest: ExtractManifest, load_time: str) -> str:
    """Return the deletion time D of a tombstone without ``deleted_at``.

    The manifest's ``snapshot_at``, else its window end, else the load time (all are upper bounds of when
    the deletion was seen).
    """
    return manifest.snapshot_at or manifest.window_end or load_time
