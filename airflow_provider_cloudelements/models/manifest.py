"""The extract → load manifest: one typed, versioned contract between every extract and every loader.

Every extract (bulk, paged, changed records, reports) builds an :class:`ExtractManifest` and returns
:meth:`ExtractManifest.to_xcom` (a plain JSON dict, never records); every loader reads its argument
back with :meth:`ExtractManifest.from_xcom`. The same dict is written as ``_manifest.json`` beside the
files it names (docs/reliability.md "Extract"). Shape (manifest v2)::

    {"manifest_version": 2, "element_key": "quickbooks", "instance_id": 12, "resource": "invoices",
     "mode": "bulk", "path": "file:///…/invoices.20260101T000000123Z-1a2b3c4d.ndjson", "format": "ndjson",
     "records": 40, "bytes": 23117, "job_id": "17", "failed_records": 0, "errors_path": None,
     "deleted_path": None, "deleted": 0,
     "window": {"start": ISO|None, "end": ISO|None, "full_refresh": bool}, "full_refresh": bool,
     "snapshot_at": "2026-01-01T00:00:00.123Z", "complete": bool, "naive_timezone": "UTC",
     "manifest_path": "file:///…/_manifest.json"}

plus, for reports, ``report``, ``report_title``, ``report_path`` and ``period`` (kept in
:attr:`ExtractManifest.extra`, in order, after the v2 keys).

* ``snapshot_at`` (server clock, ISO UTC with milliseconds) is a lower bound of when every record in the
  file was observed (bulk: the job's ``createdDate``; paged: the server time before the first page).
* ``complete`` is true iff the file holds every live record of the resource as of ``snapshot_at``: a
  full refresh (open-ended), no user ``where``, no failed records, the count reconciled. Only then may
  a loader delete rows by absence.
* ``window`` is what the run resolved at submit time (ISO with microseconds, ``isoformat()``).

Older XComs still load: a dict without ``snapshot_at`` is a v1 manifest (``manifest_version`` 1,
``complete`` = ``full_refresh`` and no failed records), and a ``window`` without ``full_refresh`` takes
the top-level flag. Only ``element_key``, ``instance_id``, ``resource``, ``path`` and ``format`` are
required.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsDataError
from airflow_provider_cloudelements.models.timestamps import format_utc, parse_timestamp
from airflow_provider_cloudelements.models.window import ExtractWindow
from airflow_provider_cloudelements.utils.elements import ElementSpec, get_element
from airflow_provider_cloudelements.utils.validation import as_bool, as_int, check_timezone

__all__ = ["MANIFEST_NAME", "MANIFEST_VERSION", "REQUIRED_KEYS", "ExtractManifest"]

#: Version written by this provider's extracts.
MANIFEST_VERSION = 2
#: Name of the manifest file written last in every partition folder.
MANIFEST_NAME = "_manifest.json"
#: Keys without which a manifest cannot be read.
REQUIRED_KEYS: tuple[str, ...] = ("element_key", "instance_id", "resource", "path", "format")


@dataclass(frozen=True)
class ExtractManifest:
    """One landed extract (module docstring for the XCom shape).

    :param element_key: element key (``quickbooks``, ``quickbooksonprem``, ``freshbooksv2``, ``freshbooks``).
    :param instance_id: element instance id.
    :param resource: Finance-hub resource (or report slug), e.g. ``invoices``.
    :param path: ObjectStoragePath URI of the records file.
    :param format: ``ndjson``, ``csv`` or ``parquet``.
    :param mode: ``bulk``, ``paged``, ``events`` or ``report`` (``None`` when an old XCom had none).
    :param records: records in the file, ``None`` when not reported.
    :param bytes: bytes of the file, ``None`` when not reported.
    :param job_id: bulk job id (bulk extracts only).
    :param failed_records: records the bulk job could not export (absent from the file).
    :param errors_path: URI of the bulk job's error records, or ``None``.
    :param deleted_path: URI of the tombstones file (``{"id", "deleted_at"}`` lines), or ``None``.
    :param deleted: tombstones written.
    :param window: the resolved extract window.
    :param full_refresh: whether the extract selected every record.
    :param snapshot_at: s, fixed-width ISO UTC (``…T10:00:00.000Z``), ``None`` for a v1 manifest.
    :param complete: whether the loader may delete by absence (see module docstring).
    :param naive_timezone: IANA zone the extract read naive element times in, ``None`` if not recorded.
    :param manifest_path: URI of the partition's ``_manifest.json``.
    :param manifest_version: 2 for this provider's extracts, 1 for manifests without ``snapshot_at``.
    :param extra: further keys (reports: ``report``, ``report_title``, ``report_path``, ``period``),
        kept in order after the v2 keys.
    """

    element_key: str
    instance_id: int
    resource: str
    path: str
    format: str
    mode: str | None = None
    records: int | None = None
    bytes: int | None = None
    job_id: str | None = None
    failed_records: int = 0
    errors_path: str | None = None
    deleted_path: str | None = None
    deleted: int = 0
    window: ExtractWindow = field(default_factory=lambda: ExtractWindow(start=None, end=None, full_refresh=False))
    full_refresh: bool = False
    snapshot_at: str | None = None
    complete: bool = False
    naive_timezone: str | None = None
    manifest_path: str | None = None
    manifest_version: int = MANIFEST_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    # -- derived ----------------------------------------------------------------------------------

    @property
    def spec(self) -> ElementSpec:
        """The element's :class:`~airflow_provider_cloudelements.utils.elements.ElementSpec`.

        For a common resource (``common-invoices`` …) the spec carries the common resource's id and
        ``updated_at`` fields (:func:`airflow_provider_cloudelements.common_model.spec_for`).
        """
        from airflow_provider_cloudelements.common_model import spec_for  # lazy: common_model imports utils

        return spec_for(self.element_key, self.resource)

    @property
    def window_end(self) -> str | None:
        """The window end as fixed-width ISO UTC (``…T00:00:00.000Z``), ``None`` when unbounded."""
        return format_utc(self.window.end) if self.window.end is not None else None

    @property
    def deletes_by_absence(self) -> bool:
        """Whether ids absent from the file may be marked deleted: a complete full refresh, 0 failed."""
        return self.full_refresh and self.complete and self.failed_records == 0

    # -- XCom -------------------------------------------------------------------------------------

    def to_xcom(self) -> dict[str, Any]:
        """The JSON-safe dict returned through XCom and written as ``_manifest.json`` (module docstring)."""
        data: dict[str, Any] = {
            "manifest_version": self.manifest_version,
            "element_key": self.element_key,
            "instance_id": self.instance_id,
            "resource": self.resource,
            "mode": self.mode,
            "path": self.path,
            "format": self.format,
            "records": self.records,
            "bytes": self.bytes,
            "job_id": self.job_id,
            "failed_records": self.failed_records,
            "errors_path": self.errors_path,
            "deleted_path": self.deleted_path,
            "deleted": self.deleted,
            "window": self.window.as_dict(),
            "full_refresh": self.full_refresh,
            "snapshot_at": self.snapshot_at,
            "complete": self.complete,
            "naive_timezone": self.naive_timezone,
            "manifest_path": self.manifest_path,
        }
        data.update(self.extra)
        return data

    @classmethod
    def from_xcom(cls, value: Any) -> ExtractManifest:
        """Read a manifest dict (this version's, or an older provider's XCom) back.

        :raises CloudElementsDataError: not a mapping, a missing required key, an unknown element key,
            a non-integer id or count, a non-boolean flag, an unparseable window bound or
            ``snapshot_at``, an unknown ``naive_timezone``; the message names the key.
        """
        if isinstance(value, ExtractManifest):
            return value
        if not isinstance(value, Mapping):
            raise CloudElementsDataError(f"Each manifest must be a dict, got {type(value).__name__}")
        missing = [key for key in REQUIRED_KEYS if value.get(key) in (None, "")]
        if missing:
            raise CloudElementsDataError(
                f"Manifest is missing required key(s) {', '.join(missing)}; "
                f"got keys: {', '.join(sorted(map(str, value)))}"
            )
        element_key = str(value["element_key"])
        try:
            get_element(element_key)
        except CloudElementsConfigError as err:
            raise CloudElementsDataError(f"manifest element_key: {err.message}") from None
        full_refresh = as_bool(value.get("full_refresh", False), "manifest full_refresh", error=CloudElementsDataError)
        failed = _int(value.get("failed_records") or 0, "failed_records")
        snapshot = _instant(value.get("snapshot_at"), "snapshot_at")
        snapshot_at = format_utc(snapshot) if snapshot is not None else None
        if value.get("complete") is not None:
            complete = as_bool(value["complete"], "manifest complete", error=CloudElementsDataError)
        else:  # v2 without the key: not complete; v1: what a full refresh meant before manifest v2
            complete = snapshot_at is None and full_refresh and failed == 0
        naive = value.get("naive_timezone")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"} | {"window"}
        return cls(
            element_key=element_key,
            instance_id=_int(value["instance_id"], "instance_id"),
            resource=str(value["resource"]),
            path=str(value["path"]),
            format=str(value["format"]).lower(),
            mode=_text(value.get("mode")),
            records=None if value.get("records") is None else _int(value["records"], "records"),
            bytes=None if value.get("bytes") is None else _int(value["bytes"], "bytes"),
            job_id=_text(value.get("job_id")),
            failed_records=failed,
            errors_path=_text(value.get("errors_path")),
            deleted_path=_text(value.get("deleted_path")),
            deleted=_int(value.get("deleted") or 0, "deleted"),
            window=_window(value.get("window"), full_refresh),
            full_refresh=full_refresh,
            snapshot_at=snapshot_at,
            complete=complete,
            naive_timezone=None
            if naive in (None, "")
            else check_timezone(naive, "manifest naive_timezone", error=CloudElementsDataError),
            manifest_path=_text(value.get("manifest_path")),
            manifest_version=_int(value.get("manifest_version") or 1, "manifest_version"),
            extra={k: v for k, v in value.items() if k not in known},
        )


def _int(value: Any, key: str) -> int:
    return as_int(value, f"manifest {key}", error=CloudElementsDataError)


def _text(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _instant(value: Any, key: str) -> datetime | None:
    try:
        return parse_timestamp(value, what=key)
    except CloudElementsConfigError as err:
        raise CloudElementsDataError(f"manifest {key}: {err.message}") from None


def _window(value: Any, full_refresh: bool) -> ExtractWindow:
    """The ``window`` dict (``start``/``end`` ISO, ``full_refresh``; old XComs may lack the flag)."""
    if value in (None, ""):
        return ExtractWindow(start=None, end=None, full_refresh=full_refresh)
    if not isinstance(value, Mapping):
        raise CloudElementsDataError(f"manifest window must be a dict, got {type(value).__name__}")
    flag = value.get("full_refresh")
    return ExtractWindow(
        start=_instant(value.get("start"), "window start"),
        end=_instant(value.get("end"), "window end"),
        full_refresh=full_refresh
        if flag is None
        else as_bool(flag, "manifest window full_refresh", error=CloudElementsDataError),
    )
