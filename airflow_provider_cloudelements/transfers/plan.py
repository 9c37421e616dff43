"""What an extract resolved before its first transfer (:class:`ExtractPlan`), and helpers shared by transfers.

The helpers every transfer to object storage shares: the landing root, the asset URI, the server-clock
snapshot time, tombstones.

Shared by the extract operators (:mod:`~airflow_provider_cloudelements.transfers.cloudelements_to_storage`)
and the report operator; none of them imports another's internals.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAlias, ObjectStoragePath

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.models.manifest import MANIFEST_NAME, MANIFEST_VERSION, ExtractManifest
from airflow_provider_cloudelements.models.timestamps import format_utc
from airflow_provider_cloudelements.models.window import DEFAULT_LOOKBACK, ExtractWindow

if TYPE_CHECKING:
    from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook

__all__ = [
    "DEFAULT_OUTPUT_BASE",
    "EXTRACT_ASSET_ALIAS",
    "ExtractPlan",
    "asset_uri",
    "default_output_base",
    "server_time",
    "snapshot_time",
    "tombstone",
]

#: Default landing root when neither ``output_base`` nor ``CLOUDELEMENTS_OUTPUT_BASE`` is given.
DEFAULT_OUTPUT_BASE = "file://" + os.path.join(os.path.expanduser("~"), "cloudelements-data")
#: AssetAlias every extract emits its landed dataset under (event-driven downstream DAGs).
EXTRACT_ASSET_ALIAS = "cloudelements_extracts"
#: Default ``outlets`` of the extract operators (mapped and unmapped): the alias above. A list (Airflow
#: concatenates ``inlets + outlets``); never mutated here.
DEFAULT_OUTLETS: list[Any] = [AssetAlias(EXTRACT_ASSET_ALIAS)]
#: Default ``map_index_template`` of the extract operators: a mapped extract is listed in the UI as
#: ``quickbooks 12/invoices`` (element, instance, resource; ``12/invoices`` when the element is not given)
#: instead of a bare map index. Rendered after the task ran, with its templated fields rendered.
DEFAULT_MAP_INDEX_TEMPLATE = (
    "{% if task.element_key %}{{ task.element_key }} {% endif %}{{ task.instance_id }}/{{ task.resource }}"
)
log = logging.getLogger(__name__)


def default_output_base() -> str:
    """The landing root: env ``CLOUDELEMENTS_OUTPUT_BASE``, else ``~/cloudelements-data`` (a ``file://`` URI)."""
    return os.environ.get("CLOUDELEMENTS_OUTPUT_BASE") or DEFAULT_OUTPUT_BASE


def asset_uri(element_key: str, instance_id: int, resource: str) -> str:
    """URI of the dataset an extract feeds: ``cloudelements://<element_key>/<instance_id>/<resource>``."""
    return f"cloudelements://{element_key}/{instance_id}/{resource}"


@dataclass(frozen=True)
class ExtractPlan:
    """What one extract run resolved before its first transfer; persisted next to a bulk job id.

    :param instance_id: element instance id.
    :param element_key: element key (``quickbooks`` …).
    :param resource: Finance-hub resource.
    :param output_format: ``ndjson``, ``csv`` or ``parquet``.
    :param window: the resolved window (full refresh or incremental).
    :param folder: URI of the partition folder.
    :param naive_timezone: zone naive element times are read in.
    :param where: the user's CEQL ``where`` (a filtered extract is never ``complete``).
    :param submitted_at: server time taken just before the bulk submit (ISO, fallback ``snapshot_at``).
    """

    instance_id: int
    element_key: str
    resource: str
    output_format: str
    window: ExtractWindow
    folder: str
    naive_timezone: str
    where: str | None = None
    submitted_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (task state store, trigger kwargs); holds no secret."""
        data = dataclasses.asdict(self)
        data["window"] = self.window.as_dict()
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ExtractPlan:
        """:raises CloudElementsConfigError: not a persisted plan."""
        if not isinstance(data, dict):
            raise CloudElementsConfigError(f"Not a persisted extract plan: {type(data).__name__}")
        try:
            return cls(
                instance_id=int(data["instance_id"]),
                element_key=str(data["element_key"]),
                resource=str(data["resource"]),
                output_format=str(data["output_format"]),
                window=ExtractWindow.from_dict(data["window"]),
                folder=str(data["folder"]),
                naive_timezone=str(data["naive_timezone"]),
                where=data.get("where"),
                submitted_at=data.get("submitted_at"),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CloudElementsConfigError(f"Not a persisted extract plan: {err}") from None

    @property
    def folder_path(self) -> ObjectStoragePath:
        return ObjectStoragePath(self.folder)

    @property
    def may_be_complete(self) -> bool:
        """Full refresh (open-ended) without a user ``where``: complete unless records failed."""
        return self.window.full_refresh and not self.where

    def manifest(
        self,
        *,
        mode: str,
        target: ObjectStoragePath,
        records: int,
        nbytes: int,
        job_id: str | None,
        snapshot_at: datetime,
        complete: bool,
        failed_records: int = 0,
        errors_path: str | None = None,
        deleted_path: str | None = None,
        deleted: int = 0,
        extra: Mapping[str, Any] | None = None,
    ) -> ExtractManifest:
        """The manifest (v2) of this plan's landed file ``target``; no I/O.

        :param snapshot_at: s, aware (server clock), written as fixed-width ISO UTC with milliseconds.
        :param extra: further keys appended to the XCom dict (reports).
        """
        return ExtractManifest(
            manifest_version=MANIFEST_VERSION,
            element_key=self.element_key,
            instance_id=self.instance_id,
            resource=self.resource,
            mode=mode,
            path=str(target),
            format=self.output_format,
            records=records,
            bytes=nbytes,
            job_id=job_id,
            failed_records=failed_records,
            errors_path=errors_path,
            deleted_path=deleted_path,
            deleted=deleted,
            window=self.window,
            full_refresh=self.window.full_refresh,
            snapshot_at=format_utc(snapshot_at),
            complete=bool(complete),
            naive_timezone=self.naive_timezone,
            manifest_path=str(self.folder_path / MANIFEST_NAME),
            extra=dict(extra or {}),
        )


def tombstone(record_id: Any, deleted_at: Any) -> dict[str, Any]:
    """One tombstone line for the SQL loader: ``{"id": str, "deleted_at": ISO|None}``."""
    return {"id": str(record_id), "deleted_at": deleted_at}


def server_time(hook: CloudElementsHook) -> datetime | None:
    """The Cloud Elements server clock (aware UTC, floored to the second), ``None`` when unknown.

    :meth:`CloudElementsHook.server_time` reads the ``Date`` header of the hook's latest response.
    """
    value = hook.server_time()
    return value if isinstance(value, datetime) else None


def snapshot_time(hook: CloudElementsHook) -> datetime:
    """Return :func:`server_time`, or a conservative lower bound when the server sent no ``Date``.

    The lower bound is the worker clock minus :data:`~airflow_provider_cloudelements.models.window.DEFAULT_LOOKBACK`.
    """
    value = server_time(hook)
    if value is not None:
        return value
    fallback = datetime.now(timezone.utc).replace(microsecond=0) - DEFAULT_LOOKBACK
    log.warning("The server sent no Date header: snapshot_at falls back to %s", format_utc(fallback))
    return fallback
