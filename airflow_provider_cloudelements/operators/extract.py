"""Extract Finance-hub resources to object storage: in bulk (deferrable) or by paged GETs.

Both operators share one interface and return the same small manifest (never records) in sync and
deferred modes (manifest v2)::

    {"manifest_version": 2, "element_key": "quickbooks", "instance_id": 12, "resource": "invoices",
     "mode": "bulk", "path": "file:///…/invoices.20260101T000000123Z-1a2b3c4d.ndjson", "format": "ndjson",
     "records": 40, "bytes": 23117, "job_id": "17", "failed_records": 0, "errors_path": None,
     "deleted_path": None, "deleted": 0,
     "window": {"start": ISO|None, "end": ISO|None, "full_refresh": bool}, "full_refresh": bool,
     "snapshot_at": "2026-01-01T00:00:00.123Z", "complete": bool, "naive_timezone": "UTC",
     "manifest_path": "file:///…/_manifest.json"}

* ``snapshot_at`` (server clock, ISO UTC with milliseconds) is a lower bound of when every record in the
  file was observed: the bulk job's ``createdDate`` (``GET /bulk/{id}/status``; fallback the server time
  taken just before the submit), or for paged extracts the server time taken before the first page.
* ``complete`` is true iff the file holds every live record of the resource as of ``snapshot_at``: a
  full refresh (extracted **open-ended**, no upper bound on the updated time), no user ``where``, no
  failed records, the record count reconciled. Only then may a loader delete rows by absence.
* ``window`` is what the run resolved at submit time; a resumed deferral or a retry that re-attaches
  to its job uses exactly the persisted resolution (task state store and trigger event), never a
  recomputation from a context that may have changed meanwhile.

Files land in ``<output_base>/<element_key>/instance=<id>/<resource>/window=<start>_<end>/`` (see
:func:`~airflow_provider_cloudelements.utils.landing.partition_path`) under run-unique names, each
written atomically, and ``_manifest.json`` is written last (publishing rule:
:func:`~airflow_provider_cloudelements.utils.landing.publish_manifest`): a failed, partial or
unreconciled download never leaves a file a manifest names, and a rerun of an interval replaces the
folder's manifest and removes the replaced run's files.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow.providers.common.compat.sdk import conf
from airflow.sdk import AssetAlias, BaseOperator, ObjectStoragePath

from airflow_provider_cloudelements import openlineage, storage
from airflow_provider_cloudelements.exceptions import (
    CloudElementsBulkJobError,
    CloudElementsConfigError,
    CloudElementsError,
    CloudElementsNotFoundError,
    CloudElementsReconciliationError,
    CloudElementsRecordFailuresError,
    CloudElementsServerError,
    CloudElementsThrottledError,
    CloudElementsTimeoutError,
    as_instance_id,
    exception_from_event,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.operators.links import (
    BULK_JOB_URL_KEY,
    INSTANCE_URL_KEY,
    CloudElementsBulkJobLink,
    CloudElementsInstanceLink,
    bulk_job_url,
    instance_url,
    push_link,
)
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger
from airflow_provider_cloudelements.utils import ceql
from airflow_provider_cloudelements.utils.elements import check_resource, get_element
from airflow_provider_cloudelements.utils.landing import (
    FORMAT_SUFFIX,
    MANIFEST_NAME,
    ProgressLogger,
    landed_name,
    partition_path,
    publish_manifest,
    run_token,
    staged_file,
    write_ndjson,
)
from airflow_provider_cloudelements.utils.polling import poll_delays
from airflow_provider_cloudelements.utils.records import format_utc, parse_instant
from airflow_provider_cloudelements.utils.status import CloudElementsBulkJobStatus
from airflow_provider_cloudelements.utils.windows import (
    DEFAULT_LOOKBACK,
    ExtractWindow,
    check_lookback,
    check_naive_timezone,
    in_window,
    naive_times,
    positive_number,
    resolve_window,
    server_bounds,
)

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "CloudElementsBulkExtractOperator",
    "CloudElementsPagedExtractOperator",
    "ExtractPlan",
    "build_manifest",
    "server_time",
    "snapshot_time",
    "tombstone",
]

#: Default landing root when neither ``output_base`` nor ``CLOUDELEMENTS_OUTPUT_BASE`` is given.
DEFAULT_OUTPUT_BASE = "file://" + os.path.join(os.path.expanduser("~"), "cloudelements-data")
#: AssetAlias every extract emits its landed dataset under (event-driven downstream DAGs).
EXTRACT_ASSET_ALIAS = "cloudelements_extracts"
#: Default ``outlets`` of the extract operators (mapped and unmapped): the alias above. A list (Airflow
#: concatenates ``inlets + outlets``); never mutated here, each unmapped operator copies it.
DEFAULT_OUTLETS: list[Any] = [AssetAlias(EXTRACT_ASSET_ALIAS)]
#: task_state_store key holding the submitted bulk job and its plan (shared by retries of one task instance).
STATE_KEY = "cloudelements_bulk_job"
#: Seconds kept between our own deadline and ``execution_timeout`` so the job can still be cancelled.
TIMEOUT_BUFFER_SECONDS = 60.0
MANIFEST_VERSION = 2
log = logging.getLogger(__name__)


def default_output_base() -> str:
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


class _CloudElementsExtractBase(BaseOperator):
    """Shared parameters, window/partition resolution, landing and manifest of the extract operators.

    :param resource: Finance-hub resource, e.g. ``invoices`` (reference §3.2). Templated.
    :param instance_id: element instance id; default: the connection's ``instance_id`` extra. Templated.
    :param element_key: skip the ``GET /instances/{id}`` lookup of the element key (optional).
    :param cloudelements_conn_id: Airflow connection of type ``cloudelements``.
    :param output_base: landing root, any ``ObjectStoragePath`` URI (``file://``, or ``s3://``/``gs://``… with their
        Airflow provider installed); default env ``CLOUDELEMENTS_OUTPUT_BASE`` or ``~/cloudelements-data``. Templated.
    :param output_conn_id: Airflow connection of the object store (e.g. an ``aws`` connection for ``s3://``);
        default: the one in the URI (``s3://<conn_id>@bucket/…``), else the store's default credentials.
        The bucket must exist and be writable; checked before any job is submitted. Templated.
    :param output_format: ``ndjson`` (default), ``csv`` (bulk only) or ``parquet`` (needs pyarrow).
    :param where: extra CEQL condition ANDed with the window (reference §3.4); a filtered full refresh
        is not ``complete`` (the loader never deletes by its absence). Templated.
    :param full_refresh: ``"auto"`` (full load on the first successful run, incremental after),
        ``True`` or ``False``. Full refreshes are extracted open-ended (every record, also those edited
        after the interval end); the interval only names the partition.
    :param lookback: overlap (timedelta or seconds >= 0) subtracted from the window start. Default
        ``None``: 10 minutes (:data:`~airflow_provider_cloudelements.utils.windows.DEFAULT_LOOKBACK`)
        for windows from the data interval, so records stamped by a server clock up to 10 minutes
        behind the worker's are not missed (the overlap is harmless: the loader orders versions);
        no overlap for an explicit ``window_start``. Validated when the operator is built.
    :param window_start: explicit window start, overrides the data interval. Templated.
    :param window_end: explicit window end, overrides the data interval. Templated.
    :param naive_timezone: IANA zone of the element's naive times (FreshBooks ``updated``); ``None``
        (default) = the element's :attr:`~airflow_provider_cloudelements.utils.elements.ElementSpec.naive_timezone`
        (UTC). Used for the window filter and written into the manifest for the loader.
    :param capture_deletes: on incremental windows, write the window's ``DELETED`` events for the
        resource (``GET /instances/{id}/events``, reference §5.6) as tombstones
        ``{"id", "deleted_at"}`` to ``<resource>.<token>.deleted.ndjson`` (manifest ``deleted_path``).
        Hard deletes no event reports (QuickBooks Enterprise polling, reference §5.2) are caught by the
        next complete full refresh. Default True.
    """

    template_fields: Sequence[str] = (
        "resource",
        "instance_id",
        "output_base",
        "output_conn_id",
        "where",
        "window_start",
        "window_end",
    )
    operator_extra_links: tuple[Any, ...] = (CloudElementsInstanceLink(),)
    ui_color = "#dbeafe"
    mode = "bulk"

    def __init__(
        self,
        *,
        resource: str,
        instance_id: int | str | None = None,
        element_key: str | None = None,
        cloudelements_conn_id: str = CloudElementsHook.default_conn_name,
        output_base: str | None = None,
        output_conn_id: str | None = None,
        output_format: str = "ndjson",
        where: str | None = None,
        full_refresh: bool | str = "auto",
        lookback: timedelta | float | None = None,
        window_start: Any = None,
        window_end: Any = None,
        naive_timezone: str | None = None,
        capture_deletes: bool = True,
        outlets: Any = DEFAULT_OUTLETS,
        **kwargs: Any,
    ) -> None:
        # A signature default (not kwargs.setdefault): .partial() takes BaseOperator defaults from the
        # signature, so mapped extracts get the alias too and emit asset events (a setdefault saw the
        # partial's outlets=[] and mapped extracts emitted none).
        super().__init__(outlets=outlets, **kwargs)
        if output_format not in FORMAT_SUFFIX:
            raise CloudElementsConfigError(
                f"output_format must be one of {sorted(FORMAT_SUFFIX)}, got {output_format!r}"
            )
        if full_refresh not in (True, False, "auto"):
            raise CloudElementsConfigError(f"full_refresh must be True, False or 'auto', got {full_refresh!r}")
        if element_key is not None:
            get_element(element_key)
        check_lookback(lookback)  # before any call: a bad lookback never reaches the network
        self.resource = resource
        self.instance_id = instance_id
        self.element_key = element_key
        self.cloudelements_conn_id = cloudelements_conn_id
        self.output_base = output_base
        self.output_conn_id = output_conn_id
        self.output_format = output_format
        self.where = where
        self.full_refresh = full_refresh
        self.lookback = lookback
        self.window_start = window_start
        self.window_end = window_end
        self.naive_timezone = check_naive_timezone(naive_timezone)
        self.capture_deletes = capture_deletes
        self._ce_links: dict[str, str] = {}

    # -- resolution -------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> CloudElementsHook:
        return CloudElementsHook(cloudelements_conn_id=self.cloudelements_conn_id, instance_id=self._instance_id())

    def _instance_id(self) -> int | None:
        if self.instance_id in (None, ""):
            return None
        return as_instance_id(self.instance_id)

    def _resolve(self, context: Context) -> ExtractPlan:
        """Resolve window, element and partition folder; validates before any transfer."""
        if not isinstance(self.resource, str) or not self.resource.strip():
            raise CloudElementsConfigError(f"resource must be a non-empty string, got {self.resource!r}")
        window = resolve_window(
            context,
            full_refresh=self.full_refresh,
            lookback=self.lookback,
            window_start=self.window_start,
            window_end=self.window_end,
        )
        hook = self.hook
        instance_id = hook.instance_id
        if instance_id is None:
            raise CloudElementsConfigError(
                "No element instance id: pass instance_id= or set the connection's instance_id extra"
            )
        element_key = self.element_key
        if element_key is None:
            instance = hook.get_instance(instance_id)
            element_key = str((instance.get("element") or {}).get("key") or "")
            if instance.get("disabled"):
                self.log.warning("Element instance %s is disabled: hub calls will fail with 403", instance_id)
        check_resource(element_key, self.resource)
        if self.where:
            ceql.validate_where(self.where, element_key)
        folder = partition_path(
            storage.output_root(self.output_base or default_output_base(), self.output_conn_id),
            element_key=element_key,
            instance_id=instance_id,
            resource=self.resource,
            window_start=window.start,
            window_end=window.end,
        )
        storage.check_output_folder(folder)  # bucket, credentials, writable: before any job is submitted
        self._push_instance_link(context, instance_id)
        return ExtractPlan(
            instance_id=instance_id,
            element_key=element_key,
            resource=self.resource,
            output_format=self.output_format,
            window=window,
            folder=str(folder),
            naive_timezone=self.naive_timezone or get_element(element_key).naive_timezone,
            where=self.where or None,
        )

    def _push_instance_link(self, context: Context, instance_id: int) -> None:
        push_link(self, context, INSTANCE_URL_KEY, instance_url(self.hook.base_url, instance_id))

    def _where_for(self, plan: ExtractPlan) -> str | None:
        """CEQL for the window (``[start, end)`` on the element's updated field, widened for naive
        elements, none for a full refresh) ANDed with ``where``."""
        parts: list[str] = []
        start, end = server_bounds(plan.window, get_element(plan.element_key))
        clause = ceql.window_clause(plan.element_key, start, end)
        if clause:
            parts.append(clause)
        if plan.where:
            parts.append(f"({plan.where})" if parts else plan.where)
        return " AND ".join(parts) or None

    def _record_filter(self, plan: ExtractPlan) -> Callable[[Any], bool] | None:
        """Client-side exact window for naive-time elements (``None``: the server filter is exact)."""
        spec = get_element(plan.element_key)
        if plan.window.full_refresh or not naive_times(spec):
            return None
        return lambda record: in_window(record, spec, plan.window, plan.naive_timezone)

    # -- landing ----------------------------------------------------------------------------------

    def _land_tombstones(self, plan: ExtractPlan, token: str) -> tuple[str | None, int]:
        """Write the window's DELETED events for this resource as tombstones; ``(path, count)``."""
        if not self.capture_deletes or plan.window.full_refresh:
            return None, 0
        path = plan.folder_path / landed_name(plan.resource, token, "deleted.ndjson")
        events = self.hook.iter_events(
            instance_id=plan.instance_id,
            since=plan.window.start,
            until=plan.window.end,
            object_types=[plan.resource],
            event_types=["DELETED"],
        )
        with staged_file(path, "wb") as (handle, publish):
            count, _ = write_ndjson(handle, (tombstone(e.get("objectId"), e.get("eventDate")) for e in events))
            publish()
        if count:
            self.log.info("Recorded %s hard deletes of %s as tombstones", count, plan.resource)
        return str(path), count

    def _publish_manifest(self, context: Context, manifest: dict[str, Any]) -> dict[str, Any]:
        folder = ObjectStoragePath(manifest["manifest_path"]).parent
        published = publish_manifest(folder, manifest)
        if published is not manifest:
            self.log.warning(
                "A newer snapshot of this interval (snapshot_at %s) was published meanwhile; this run's "
                "files were dropped and its manifest is returned instead",
                published.get("snapshot_at"),
            )
        self._emit_asset_event(context, published)
        self._landed_manifest = published  # for get_openlineage_facets_on_complete
        self.log.info(
            "Landed %s %s records (%s bytes) of %s/%s at %s (snapshot_at %s, complete=%s)",
            published["records"],
            published["format"],
            published["bytes"],
            published["element_key"],
            published["resource"],
            published["path"],
            published.get("snapshot_at"),
            published.get("complete"),
        )
        return published

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """OpenLineage: the Cloud Elements resource -> its landed files (:func:`openlineage.extract_lineage`)."""
        return openlineage.extract_lineage(getattr(self, "_landed_manifest", None))

    def _emit_asset_event(self, context: Context, manifest: dict[str, Any]) -> None:
        if not any(isinstance(o, AssetAlias) and o.name == EXTRACT_ASSET_ALIAS for o in self.outlets):
            return
        from airflow.sdk import Asset

        outlet_events = context.get("outlet_events")
        if outlet_events is None:
            return
        uri = asset_uri(manifest["element_key"], manifest["instance_id"], manifest["resource"])
        extra = {k: manifest.get(k) for k in ("path", "records", "job_id", "full_refresh", "snapshot_at", "complete")}
        extra["window"] = manifest["window"]
        outlet_events[AssetAlias(EXTRACT_ASSET_ALIAS)].add(Asset(uri=uri, name=uri), extra=extra)


class CloudElementsBulkExtractOperator(_CloudElementsExtractBase):
    """Extract one Finance-hub resource through a Cloud Elements bulk job into object storage.

    Flow (reference §4): resolve the plan (window, folder, element) → ``POST /hubs/finance/bulk/query``
    on the worker (the job id and the plan go to XCom and to the task state store at once) → poll
    ``GET /bulk/{id}/status`` (in the triggerer when deferrable, via
    :class:`~airflow_provider_cloudelements.triggers.bulk.CloudElementsBulkJobTrigger`, which carries the
    plan back in its event) → check ``recordsFailedCount`` against ``max_failed_records`` (failed
    records saved as ``<resource>.<token>.errors.ndjson`` beside the output) → stream
    ``GET /bulk/{id}/{resource}`` into a temporary file → reconcile the **record** count (NDJSON
    non-blank lines, CSV records) with ``recordsCount`` → move to the final path → publish
    ``_manifest.json`` → return the manifest (module docstring).

    On a retry of the same task instance it re-attaches to the previous job while that is still
    running, or downloads its result if it completed but was never landed, instead of submitting a
    duplicate, and lands it with the persisted plan. A transient failure while polling (5xx,
    throttling, a dropped connection, in the worker or in the triggerer) keeps the job for the retry
    to re-attach; on the last try, on a timeout (absolute wall-clock deadline from
    ``timeout``/``execution_timeout``) or on any other error the job is cancelled
    (``PUT /bulk/{id}/cancel``).

    :param deferrable: free the worker while the job runs; default ``[operators] default_deferrable``.
    :param poll_interval: steady-state seconds between status GETs (default 5); the first re-polls come
        after 1, 2, 4 … s (:func:`~airflow_provider_cloudelements.utils.polling.poll_delays`).
    :param timeout: longest wait for the job, timedelta or seconds (default 6 hours).
    :param max_failed_records: failed records tolerated before the task fails (default 0); a file
        with failed records is never ``complete``.
    :param cancel_on_kill: cancel the job when a user kills the task (default True).
    (other parameters: see :class:`_CloudElementsExtractBase`)
    :raises CloudElementsBulkJobError: job FAILED/ABORTED/CANCELLED, unknown status, or a status whose
        ``recordsFailedCount`` is not an integer.
    :raises CloudElementsRecordFailuresError: ``recordsFailedCount`` > ``max_failed_records``.
    :raises CloudElementsReconciliationError: ``recordsCount`` missing or not an integer, or landed
        records != ``recordsCount``.
    :raises CloudElementsTimeoutError: the deadline passed (job cancelled first).
    """

    operator_extra_links = (CloudElementsInstanceLink(), CloudElementsBulkJobLink())

    def __init__(
        self,
        *,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        timeout: timedelta | float = timedelta(hours=6),
        max_failed_records: int = 0,
        cancel_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(max_failed_records, bool) or not isinstance(max_failed_records, int) or max_failed_records < 0:
            raise CloudElementsConfigError(f"max_failed_records must be an integer >= 0, got {max_failed_records!r}")
        self.deferrable = deferrable
        self.poll_interval = positive_number(poll_interval, "poll_interval")
        self.timeout = timeout
        self._timeout_seconds()  # validate now: a bad timeout must fail before any job is submitted
        self.max_failed_records = max_failed_records
        self.cancel_on_kill = cancel_on_kill
        self.job_id: str | None = None

    def _timeout_seconds(self) -> float:
        if isinstance(self.timeout, timedelta):
            seconds = self.timeout.total_seconds()
        else:
            seconds = positive_number(self.timeout, "timeout")
        if self.execution_timeout is not None:
            framework = self.execution_timeout.total_seconds() - TIMEOUT_BUFFER_SECONDS
            seconds = min(seconds, max(framework, 1.0))
        if seconds <= 0:
            raise CloudElementsConfigError("timeout must be positive")
        return seconds

    # -- execute ----------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        self._timeout_seconds()  # before submitting: no orphan job for a bad timeout
        hook = self.hook
        attached = self._reattach(context, hook)
        if attached is not None:
            job_id, plan = attached
            self._push_instance_link(context, plan.instance_id)
        else:
            plan = self._resolve(context)
            where, from_, to = self._query_for(plan)
            submitted = server_time(hook)
            plan = dataclasses.replace(plan, submitted_at=format_utc(submitted) if submitted else None)
            job_id = hook.start_bulk_query(self.resource, where=where, from_=from_, to=to)
            self.log.info(
                "Submitted bulk job %s for %s/%s (window %s)",
                job_id,
                plan.element_key,
                self.resource,
                plan.window.as_dict(),
            )
            self._remember(context, job_id, plan)
        self._attach(context, job_id)

        deadline = time.time() + self._timeout_seconds()
        with self._keep_or_cancel(context, job_id):
            status = hook.get_bulk_status(job_id)
        if CloudElementsBulkJobStatus.parse(status.get("status")).is_terminal():
            return self._complete(context, job_id, status, plan)

        if self.deferrable:
            self.defer(
                trigger=CloudElementsBulkJobTrigger(
                    job_id=job_id,
                    instance_id=plan.instance_id,
                    cloudelements_conn_id=self.cloudelements_conn_id,
                    poll_interval=self.poll_interval,
                    end_time=deadline,
                    cancel_on_kill=self.cancel_on_kill,
                    plan=plan.to_dict(),
                ),
                method_name="execute_complete",
                timeout=None,
            )
        delays = poll_delays(self.poll_interval)  # 1, 2, 4 … s up to poll_interval (utils/polling.py)
        while time.time() < deadline:
            time.sleep(min(next(delays), max(deadline - time.time(), 0.0)))
            with self._keep_or_cancel(context, job_id):
                status = hook.get_bulk_status(job_id)
            if CloudElementsBulkJobStatus.parse(status.get("status")).is_terminal():
                return self._complete(context, job_id, status, plan)
        self._cancel_quietly(job_id)
        raise CloudElementsTimeoutError(f"Bulk job {job_id} did not finish before the deadline; cancelled")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after :class:`CloudElementsBulkJobTrigger`; fails closed on unknown event statuses.

        The plan (window, folder, element, naive zone) is the one persisted at submit time: from the
        event, else from the task state store entry of this job. It is never recomputed from the
        context, which may have changed while the task was deferred.
        """
        event = event or {}
        job_id = str(event.get("job_id") or "")
        if not job_id:
            raise CloudElementsBulkJobError(f"Trigger event without a job id: {event.get('status')!r}")
        self._attach(context, job_id)
        kind = event.get("status")
        message = event.get("message", "")
        if kind == "success":
            plan = self._persisted_plan(context, job_id, event)
            self._push_instance_link(context, plan.instance_id)
            with self._keep_or_cancel(context, job_id):
                status = self.hook.get_bulk_status(job_id)
            return self._complete(context, job_id, status, plan)
        if kind == "timeout":
            self._cancel_quietly(job_id)
            raise CloudElementsTimeoutError(f"Bulk job {job_id} did not finish before the deadline; cancelled")
        if kind == "error" and event.get("error"):
            err = exception_from_event(event["error"], f"Bulk job {job_id}: {message}")
            self._keep_or_cancel_after(context, job_id, err)
            raise err
        if kind in ("failed", "cancelled", "error"):
            if kind == "error":
                self._cancel_quietly(job_id)
            raise CloudElementsBulkJobError(f"Bulk job {job_id}: {message}")
        raise CloudElementsBulkJobError(f"Bulk job {job_id}: unexpected trigger event {kind!r}")

    def on_kill(self) -> None:
        if self.cancel_on_kill and self.job_id:
            self._cancel_quietly(self.job_id)

    # -- helpers ----------------------------------------------------------------------------------

    def _attach(self, context: Context, job_id: str) -> None:
        self.job_id = job_id
        context["ti"].xcom_push(key="bulk_job_id", value=job_id)
        push_link(self, context, BULK_JOB_URL_KEY, bulk_job_url(self.hook.base_url, job_id))

    def _query_for(self, plan: ExtractPlan) -> tuple[str | None, Any, Any]:
        """(where, from, to) of the bulk query. FreshBooks CEQL dates are day precision (reference
        §3.4), so its window goes in the bulk ``from``/``to`` parameters (reference §4.1) instead,
        widened for naive times (the exact window is applied to the downloaded records). A full
        refresh has no bound at all."""
        spec = get_element(plan.element_key)
        if spec.ceql_date_format == "date":
            start, end = server_bounds(plan.window, spec)
            return plan.where, start, end
        return self._where_for(plan), None, None

    def _persisted_plan(self, context: Context, job_id: str, event: dict[str, Any]) -> ExtractPlan:
        """The plan resolved when ``job_id`` was submitted (trigger event, else task state store).

        :raises CloudElementsBulkJobError: none persisted (a deferral from an older provider version):
            the retry submits a fresh job with a fresh plan.
        """
        if isinstance(event.get("plan"), dict):
            return ExtractPlan.from_dict(event["plan"])
        store = context.get("task_state_store")
        saved = store.get(STATE_KEY) if store is not None else None
        if isinstance(saved, dict) and str(saved.get("job_id")) == job_id and isinstance(saved.get("plan"), dict):
            return ExtractPlan.from_dict(saved["plan"])
        self._cancel_quietly(job_id)
        raise CloudElementsBulkJobError(
            f"Bulk job {job_id}: no persisted plan (window, folder) for it; cancelled, the retry submits a new job"
        )

    def _remember(self, context: Context, job_id: str, plan: ExtractPlan, *, landed: bool = False) -> None:
        store = context.get("task_state_store")
        if store is None:
            if not landed:
                self.log.warning("No task_state_store: a retry cannot re-attach to bulk job %s", job_id)
            return
        store.set(STATE_KEY, {"job_id": job_id, "landed": landed, "plan": plan.to_dict()}, retention=timedelta(days=3))

    def _reattach(self, context: Context, hook: CloudElementsHook) -> tuple[str, ExtractPlan] | None:
        """``(job id, plan)`` of an earlier try of this task instance worth resuming, else ``None``."""
        store = context.get("task_state_store")
        if store is None:
            return None
        saved = store.get(STATE_KEY)
        if not isinstance(saved, dict) or not saved.get("job_id") or saved.get("landed"):
            return None
        job_id = str(saved["job_id"])
        try:
            plan = ExtractPlan.from_dict(saved.get("plan"))
        except CloudElementsConfigError:
            plan = None
        if plan is None or plan.resource != self.resource or plan.output_format != self.output_format:
            self.log.info("Earlier bulk job %s has no usable plan: cancelling it, submitting a new one", job_id)
            self._cancel_quietly(job_id)
            return None
        try:
            status = CloudElementsBulkJobStatus.parse(hook.get_bulk_status(job_id).get("status"))
        except (CloudElementsNotFoundError, CloudElementsBulkJobError):
            return None
        if status.is_terminal() and not status.is_success():
            self.log.info("Earlier bulk job %s ended %s: submitting a new one", job_id, status.value)
            return None
        self.log.info(
            "Re-attaching to bulk job %s (%s) from an earlier try, window %s",
            job_id,
            status.value,
            plan.window.as_dict(),
        )
        return job_id, plan

    def _retries_left(self, context: Context) -> bool:
        try_number = getattr(context.get("ti"), "try_number", None)
        if not isinstance(try_number, int):
            return bool(self.retries)
        return try_number <= int(self.retries or 0)

    def _keep_or_cancel_after(self, context: Context, job_id: str, err: BaseException) -> None:
        """After a failed status poll: keep the job for a retry to re-attach when the failure is
        transient and a retry follows; cancel it otherwise."""
        transient = isinstance(err, (CloudElementsServerError, CloudElementsThrottledError))
        if transient and self._retries_left(context):
            self.log.warning("Polling bulk job %s failed (%s); a retry re-attaches to it", job_id, type(err).__name__)
            return
        self._cancel_quietly(job_id)

    @contextmanager
    def _keep_or_cancel(self, context: Context, job_id: str) -> Iterator[None]:
        try:
            yield
        except CloudElementsError as err:
            self._keep_or_cancel_after(context, job_id, err)
            raise

    def _cancel_quietly(self, job_id: str) -> None:
        try:
            self.hook.cancel_bulk_job(job_id)
            self.log.info("Cancelled bulk job %s", job_id)
        except Exception as err:  # best effort: the original failure matters more
            self.log.warning("Could not cancel bulk job %s: %s", job_id, err)

    def _complete(self, context: Context, job_id: str, status: dict[str, Any], plan: ExtractPlan) -> dict[str, Any]:
        parsed = CloudElementsBulkJobStatus.parse(status.get("status"))
        if not parsed.is_success():
            raise CloudElementsBulkJobError(f"Bulk job {job_id} ended {parsed.value}")
        failed = status_count(status, "recordsFailedCount", job_id) or 0
        expected = status_count(status, "recordsCount", job_id)
        if expected is None:
            raise CloudElementsReconciliationError(
                f"Bulk job {job_id}: the status has no recordsCount, the download cannot be reconciled; nothing landed"
            )
        snapshot = parse_instant(status.get("createdDate")) or parse_instant(plan.submitted_at)
        if snapshot is None:
            self.log.warning("Bulk job %s status has no createdDate and no submit time was taken", job_id)
            snapshot = snapshot_time(self.hook)
        token = run_token(snapshot, unique=job_id)
        folder = plan.folder_path
        errors_path = None
        if failed:
            errors_path = str(self._save_errors(job_id, folder / landed_name(plan.resource, token, "errors.ndjson")))
            self.log.warning("Bulk job %s reported %s failed records (saved to %s)", job_id, failed, errors_path)
        if failed > self.max_failed_records:
            raise CloudElementsRecordFailuresError(
                f"Bulk job {job_id}: {failed} failed records > max_failed_records={self.max_failed_records}"
            )
        target = folder / landed_name(plan.resource, token, FORMAT_SUFFIX[self.output_format])
        records, nbytes = self._download(job_id, target, expected, plan)
        deleted_path, deleted = self._land_tombstones(plan, token)
        manifest = build_manifest(
            plan=plan,
            mode=self.mode,
            target=target,
            records=records,
            nbytes=nbytes,
            job_id=job_id,
            snapshot_at=snapshot,
            complete=plan.may_be_complete and failed == 0,
            failed_records=failed,
            errors_path=errors_path,
            deleted_path=deleted_path,
            deleted=deleted,
        )
        published = self._publish_manifest(context, manifest)
        self._remember(context, job_id, plan, landed=True)
        return published

    def _download(self, job_id: str, target: ObjectStoragePath, expected: int, plan: ExtractPlan) -> tuple[int, int]:
        """Download, reconcile records with ``expected`` and publish ``target``; ``(records, bytes)`` landed."""
        progress = ProgressLogger(f"Bulk job {job_id} download", logger=self.log)  # type: ignore[arg-type]
        fmt = "csv" if self.output_format == "csv" else "json"
        keep = self._record_filter(plan)
        with staged_file(target, "wb") as (handle, publish):
            if keep is None and self.output_format != "parquet":
                result = self.hook.download_bulk(
                    job_id, plan.resource, handle, fmt=fmt, progress=progress, expected_records=expected
                )
                got = records = result.records
                nbytes = result.bytes
            else:
                # Records are rewritten: filtered to the exact window (naive times) or converted to Parquet.
                with tempfile.TemporaryFile(prefix="ce-bulk-") as raw:
                    result = self.hook.download_bulk(
                        job_id,
                        plan.resource,
                        raw,  # type: ignore[arg-type]
                        fmt=fmt,
                        progress=progress,
                        expected_records=expected,
                    )
                    raw.seek(0)
                    sink: Any = _ParquetSink(handle) if self.output_format == "parquet" else handle
                    _, records, nbytes = copy_records(raw, sink, fmt=fmt, keep=keep)
                    got = result.records
                    if isinstance(sink, _ParquetSink):
                        sink.close()
            if got != expected:
                raise CloudElementsReconciliationError(
                    f"Bulk job {job_id}: downloaded {got} records but recordsCount={expected}; nothing landed"
                )
            publish()
        if records != got:
            self.log.info("Kept %s of %s downloaded records inside the window (naive times)", records, got)
        self.log.info("%s", progress.summary(records, nbytes))
        return records, nbytes

    def _save_errors(self, job_id: str, path: ObjectStoragePath) -> ObjectStoragePath:
        with staged_file(path, "wb") as (handle, publish):
            write_ndjson(handle, self.hook.iter_bulk_errors(job_id))
            publish()
        return path


class CloudElementsPagedExtractOperator(_CloudElementsExtractBase):
    """Extract one Finance-hub resource by paged ``GET /hubs/finance/{resource}`` calls (reference §3.3).

    For resources or elements without bulk, or small incremental windows. Same parameters (except the
    bulk-only ones), same landing and the same manifest as :class:`CloudElementsBulkExtractOperator`
    (``mode="paged"``, ``job_id=None``). Pages are streamed to the file as they arrive
    (``CloudElementsHook.iter_records`` follows ``Elements-Next-Page-Token`` to the end).
    ``snapshot_at`` is the server time taken before the first page.

    :param page_size: records per page (default: the connection's ``page_size``).
    :param reconcile_total: ask for ``Elements-Total-Count`` and fail if the landed count differs;
        default ``None`` = on for full refreshes (whose manifest may be ``complete``), off otherwise.
    :raises CloudElementsReconciliationError: count mismatch with ``reconcile_total``.
    """

    mode = "paged"

    def __init__(self, *, page_size: int | None = None, reconcile_total: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if page_size is not None and int(page_size) <= 0:
            raise CloudElementsConfigError(f"page_size must be a positive integer, got {page_size!r}")
        if self.output_format == "csv":
            raise CloudElementsConfigError("output_format='csv' is only available for bulk extracts")
        self.page_size = page_size
        self.reconcile_total = reconcile_total

    def execute(self, context: Context) -> dict[str, Any]:
        plan = self._resolve(context)
        where = self._where_for(plan)
        keep = self._record_filter(plan)
        reconcile = plan.window.full_refresh if self.reconcile_total is None else bool(self.reconcile_total)
        progress = ProgressLogger(f"Paged extract {plan.element_key}/{self.resource}", logger=self.log)  # type: ignore[arg-type]
        pages = self.hook.iter_records(self.resource, where=where, page_size=self.page_size, reconcile_total=reconcile)
        snapshot = snapshot_time(self.hook)  # before the first page is requested
        token = run_token(snapshot)
        target = plan.folder_path / landed_name(plan.resource, token, FORMAT_SUFFIX[self.output_format])
        selected = (r for r in pages if keep is None or keep(r))
        with staged_file(target, "wb") as (handle, publish):
            sink = handle if self.output_format == "ndjson" else _ParquetSink(handle)
            records, nbytes = write_ndjson(sink, selected, progress=progress)  # type: ignore[arg-type]
            if isinstance(sink, _ParquetSink):
                sink.close()
            publish()
        deleted_path, deleted = self._land_tombstones(plan, token)
        manifest = build_manifest(
            plan=plan,
            mode=self.mode,
            target=target,
            records=records,
            nbytes=nbytes,
            job_id=None,
            snapshot_at=snapshot,
            complete=plan.may_be_complete,
            deleted_path=deleted_path,
            deleted=deleted,
        )
        return self._publish_manifest(context, manifest)


def tombstone(record_id: Any, deleted_at: Any) -> dict[str, Any]:
    """One tombstone line for the SQL loader: ``{"id": str, "deleted_at": ISO|None}``."""
    return {"id": str(record_id), "deleted_at": deleted_at}


def build_manifest(
    *,
    plan: ExtractPlan,
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
) -> dict[str, Any]:
    """The small XCom manifest (v2) every extract returns (module docstring); no I/O."""
    return {
        "manifest_version": MANIFEST_VERSION,
        "element_key": plan.element_key,
        "instance_id": plan.instance_id,
        "resource": plan.resource,
        "mode": mode,
        "path": str(target),
        "format": plan.output_format,
        "records": records,
        "bytes": nbytes,
        "job_id": job_id,
        "failed_records": failed_records,
        "errors_path": errors_path,
        "deleted_path": deleted_path,
        "deleted": deleted,
        "window": plan.window.as_dict(),
        "full_refresh": plan.window.full_refresh,
        "snapshot_at": format_utc(snapshot_at),
        "complete": bool(complete),
        "naive_timezone": plan.naive_timezone,
        "manifest_path": str(plan.folder_path / MANIFEST_NAME),
    }


def status_count(status: dict[str, Any], key: str, job_id: str) -> int | None:
    """An integer count from a bulk status (``recordsCount``, ``recordsFailedCount``); ``None`` if absent.

    ``recordsFailedCount`` absent means 0.

    :raises CloudElementsReconciliationError: ``recordsCount`` that is not a non-negative integer.
    :raises CloudElementsBulkJobError: ``recordsFailedCount`` that is not a non-negative integer.
    """
    value = status.get(key)
    if value is None or value == "":
        return 0 if key == "recordsFailedCount" else None
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or number < 0:
        error = CloudElementsReconciliationError if key == "recordsCount" else CloudElementsBulkJobError
        raise error(f"Bulk job {job_id}: status field {key} is not a record count: {str(value)[:40]!r}")
    return number


def server_time(hook: CloudElementsHook) -> datetime | None:
    """The Cloud Elements server clock (aware UTC, floored to the second), ``None`` when unknown.

    :meth:`CloudElementsHook.server_time` reads the ``Date`` header of the hook's latest response.
    """
    value = hook.server_time()
    return value if isinstance(value, datetime) else None


def snapshot_time(hook: CloudElementsHook) -> datetime:
    """:func:`server_time`, or when the server sent no ``Date`` the worker clock minus
    :data:`~airflow_provider_cloudelements.utils.windows.DEFAULT_LOOKBACK` (a conservative lower bound)."""
    value = server_time(hook)
    if value is not None:
        return value
    fallback = datetime.now(timezone.utc).replace(microsecond=0) - DEFAULT_LOOKBACK
    log.warning("The server sent no Date header: snapshot_at falls back to %s", format_utc(fallback))
    return fallback


def copy_records(raw: BinaryIO, out: Any, *, fmt: str, keep: Callable[[Any], bool] | None) -> tuple[int, int, int]:
    """Copy the records of a downloaded bulk file (``fmt`` ``json``: NDJSON; ``csv``: header + records)
    to ``out``, keeping those ``keep`` accepts (all when ``None``).

    NDJSON lines are copied byte for byte (blank lines dropped); CSV records are parsed with the csv
    module (a line break inside a quoted field stays inside its record) and rewritten.

    :returns: ``(records read, records written, bytes written)``.
    """
    read = written = nbytes = 0
    if fmt == "csv":
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        reader = csv.DictReader(text)
        buffer = io.StringIO()
        writer: csv.DictWriter[str] | None = None
        for row in reader:
            read += 1
            if writer is None:
                writer = csv.DictWriter(buffer, fieldnames=list(reader.fieldnames or []), lineterminator="\n")
                writer.writeheader()
            if keep is None or keep(row):
                writer.writerow(row)
                written += 1
            if buffer.tell() >= 1 << 20:
                nbytes += _drain(buffer, out)
        if writer is None and reader.fieldnames:
            csv.DictWriter(buffer, fieldnames=list(reader.fieldnames), lineterminator="\n").writeheader()
        nbytes += _drain(buffer, out)
        text.detach()
        return read, written, nbytes
    for line in raw:
        if not line.strip():
            continue
        read += 1
        if keep is None or keep(json.loads(line)):
            data = line if line.endswith(b"\n") else line + b"\n"
            out.write(data)
            written += 1
            nbytes += len(data)
    return read, written, nbytes


def _drain(buffer: io.StringIO, out: Any) -> int:
    data = buffer.getvalue().encode("utf-8")
    buffer.seek(0)
    buffer.truncate()
    if data:
        out.write(data)
    return len(data)


class _ParquetSink:
    """Buffer NDJSON lines in a local temp file, then write Parquet to ``handle`` on close."""

    def __init__(self, handle: BinaryIO) -> None:
        self.handle = handle
        self.tmp = tempfile.NamedTemporaryFile(prefix="ce-parquet-", suffix=".ndjson")

    def write(self, line: bytes) -> None:
        self.tmp.write(line)

    def close(self) -> None:
        from airflow_provider_cloudelements.utils.parquet import ndjson_to_parquet

        self.tmp.flush()
        ndjson_to_parquet(self.tmp.name, self.handle)
        self.tmp.close()
