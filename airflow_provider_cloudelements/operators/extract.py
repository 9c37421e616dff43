"""Extract Finance-hub resources to object storage: in bulk (deferrable) or by paged GETs.

Both operators share one interface and return the same small manifest (never records) in sync and
deferred modes::

    {"element_key": "quickbooks", "instance_id": 12, "resource": "invoices", "mode": "bulk",
     "path": "file:///…/invoices.ndjson", "format": "ndjson", "records": 40, "bytes": 23117,
     "job_id": "17", "failed_records": 0, "errors_path": None,
     "window": {"start": ISO|None, "end": ISO|None, "full_refresh": bool}, "full_refresh": bool,
     "manifest_path": "file:///…/_manifest.json"}

Files land at ``<output_base>/<element_key>/instance=<id>/<resource>/window=<start>_<end>/`` (see
:func:`~airflow_provider_cloudelements.utils.landing.partition_path`) atomically: a failed, partial or
unreconciled download never leaves a file at the final path, and re-running an interval replaces it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO

from airflow.sdk import AssetAlias, BaseOperator, ObjectStoragePath, conf

from airflow_provider_cloudelements.exceptions import (
    CloudElementsBulkJobError,
    CloudElementsConfigError,
    CloudElementsNotFoundError,
    CloudElementsReconciliationError,
    CloudElementsRecordFailuresError,
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
)
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger
from airflow_provider_cloudelements.utils import ceql
from airflow_provider_cloudelements.utils.elements import check_resource, get_element
from airflow_provider_cloudelements.utils.landing import (
    FORMAT_SUFFIX,
    ProgressLogger,
    partition_path,
    staged_file,
    write_json_atomic,
    write_ndjson,
)
from airflow_provider_cloudelements.utils.records import updated_at
from airflow_provider_cloudelements.utils.status import CloudElementsBulkJobStatus
from airflow_provider_cloudelements.utils.windows import ExtractWindow, positive_number, resolve_window

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Default landing root when neither ``output_base`` nor ``CLOUDELEMENTS_OUTPUT_BASE`` is given.
DEFAULT_OUTPUT_BASE = "file://" + os.path.join(os.path.expanduser("~"), "cloudelements-data")
#: AssetAlias every extract emits its landed dataset under (event-driven downstream DAGs).
EXTRACT_ASSET_ALIAS = "cloudelements_extracts"
#: task_state_store key holding the submitted bulk job (shared by retries of one task instance).
STATE_KEY = "cloudelements_bulk_job"
#: Seconds kept between our own deadline and ``execution_timeout`` so the job can still be cancelled.
TIMEOUT_BUFFER_SECONDS = 60.0
MANIFEST_NAME = "_manifest.json"


def default_output_base() -> str:
    return os.environ.get("CLOUDELEMENTS_OUTPUT_BASE") or DEFAULT_OUTPUT_BASE


def asset_uri(element_key: str, instance_id: int, resource: str) -> str:
    """URI of the dataset an extract feeds: ``cloudelements://<element_key>/<instance_id>/<resource>``."""
    return f"cloudelements://{element_key}/{instance_id}/{resource}"


class _CloudElementsExtractBase(BaseOperator):
    """Shared parameters, window/partition resolution, landing and manifest of the extract operators.

    :param resource: Finance-hub resource, e.g. ``invoices`` (reference §3.2). Templated.
    :param instance_id: element instance id; default: the connection's ``instance_id`` extra. Templated.
    :param element_key: skip the ``GET /instances/{id}`` lookup of the element key (optional).
    :param cloudelements_conn_id: Airflow connection of type ``cloudelements``.
    :param output_base: landing root, any ``ObjectStoragePath`` URI (``file://``, or ``s3://``/``gs://``… with their
        Airflow provider installed); default env ``CLOUDELEMENTS_OUTPUT_BASE`` or ``~/cloudelements-data``. Templated.
    :param output_format: ``ndjson`` (default), ``csv`` (bulk only) or ``parquet`` (needs pyarrow).
    :param where: extra CEQL condition ANDed with the window (reference §3.4). Templated.
    :param full_refresh: ``"auto"`` (full load on the first successful run, incremental after),
        ``True`` or ``False``.
    :param lookback: overlap (timedelta or seconds) subtracted from the window start.
    :param window_start: explicit window start, overrides the data interval. Templated.
    :param window_end: explicit window end, overrides the data interval. Templated.
    :param capture_deletes: on incremental windows, write the window's ``DELETED`` events for the
        resource (``GET /instances/{id}/events``, reference §5.6) as tombstones
        ``{"id", "deleted_at"}`` to ``<resource>.deleted.ndjson`` (manifest ``deleted_path``). Hard
        deletes no event reports (QuickBooks Enterprise polling, reference §5.2) are caught by the
        next full refresh. Default True.
    """

    template_fields: Sequence[str] = ("resource", "instance_id", "output_base", "where", "window_start", "window_end")
    operator_extra_links = (CloudElementsInstanceLink(), CloudElementsBulkJobLink())
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
        output_format: str = "ndjson",
        where: str | None = None,
        full_refresh: bool | str = "auto",
        lookback: timedelta | float | None = None,
        window_start: Any = None,
        window_end: Any = None,
        capture_deletes: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("outlets", [AssetAlias(EXTRACT_ASSET_ALIAS)])
        super().__init__(**kwargs)
        if output_format not in FORMAT_SUFFIX:
            raise CloudElementsConfigError(
                f"output_format must be one of {sorted(FORMAT_SUFFIX)}, got {output_format!r}"
            )
        if full_refresh not in (True, False, "auto"):
            raise CloudElementsConfigError(f"full_refresh must be True, False or 'auto', got {full_refresh!r}")
        if element_key is not None:
            get_element(element_key)
        self.resource = resource
        self.instance_id = instance_id
        self.element_key = element_key
        self.cloudelements_conn_id = cloudelements_conn_id
        self.output_base = output_base
        self.output_format = output_format
        self.where = where
        self.full_refresh = full_refresh
        self.lookback = lookback
        self.window_start = window_start
        self.window_end = window_end
        self.capture_deletes = capture_deletes

    # -- resolution -------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> CloudElementsHook:
        return CloudElementsHook(cloudelements_conn_id=self.cloudelements_conn_id, instance_id=self._instance_id())

    def _instance_id(self) -> int | None:
        if self.instance_id in (None, ""):
            return None
        return as_instance_id(self.instance_id)

    def _resolve(self, context: Context) -> tuple[int, str, ExtractWindow, ObjectStoragePath]:
        """Return ``(instance_id, element_key, window, target file)``; validates before any transfer."""
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
        folder = partition_path(
            self.output_base or default_output_base(),
            element_key=element_key,
            instance_id=instance_id,
            resource=self.resource,
            window_start=window.start,
            window_end=window.end,
        )
        target = folder / f"{self.resource}.{FORMAT_SUFFIX[self.output_format]}"
        context["ti"].xcom_push(key=INSTANCE_URL_KEY, value=instance_url(hook.base_url, instance_id))
        return instance_id, element_key, window, target

    def _where_for(self, element_key: str, window: ExtractWindow) -> str | None:
        """CEQL for the window (``[start, end)`` on the element's updated field) ANDed with ``where``."""
        parts: list[str] = []
        if not window.full_refresh or window.end is not None:
            clause = ceql.window_clause(element_key, None if window.full_refresh else window.start, window.end)
            if clause:
                parts.append(clause)
        if self.where:
            ceql.validate_where(self.where, element_key)
            parts.append(f"({self.where})" if parts else self.where)
        return " AND ".join(parts) or None

    # -- landing ----------------------------------------------------------------------------------

    def _manifest(
        self,
        *,
        instance_id: int,
        element_key: str,
        window: ExtractWindow,
        target: ObjectStoragePath,
        records: int,
        nbytes: int,
        job_id: str | None,
        failed_records: int = 0,
        errors_path: str | None = None,
        deleted_path: str | None = None,
        deleted: int = 0,
    ) -> dict[str, Any]:
        """This operator's :func:`build_manifest` (no I/O)."""
        return build_manifest(
            element_key=element_key,
            instance_id=instance_id,
            resource=self.resource,
            mode=self.mode,
            target=target,
            output_format=self.output_format,
            records=records,
            nbytes=nbytes,
            job_id=job_id,
            failed_records=failed_records,
            errors_path=errors_path,
            deleted_path=deleted_path,
            deleted=deleted,
            window=window,
        )

    def _land_tombstones(
        self, instance_id: int, window: ExtractWindow, target: ObjectStoragePath
    ) -> tuple[str | None, int]:
        """Write the window's DELETED events for this resource as tombstones; ``(path, count)``."""
        if not self.capture_deletes or window.full_refresh:
            return None, 0
        path = target.parent / f"{self.resource}.deleted.ndjson"
        events = self.hook.iter_events(
            instance_id=instance_id,
            since=window.start,
            until=window.end,
            object_types=[self.resource],
            event_types=["DELETED"],
        )
        with staged_file(path, "wb") as (handle, publish):
            count, _ = write_ndjson(handle, (tombstone(e.get("objectId"), e.get("eventDate")) for e in events))
            publish()
        if count:
            self.log.info("Recorded %s hard deletes of %s as tombstones", count, self.resource)
        return str(path), count

    def _publish_manifest(self, context: Context, manifest: dict[str, Any]) -> dict[str, Any]:
        write_json_atomic(ObjectStoragePath(manifest["manifest_path"]), manifest)
        self._emit_asset_event(context, manifest)
        self.log.info(
            "Landed %s %s records (%s bytes) of %s/%s at %s",
            manifest["records"],
            manifest["format"],
            manifest["bytes"],
            manifest["element_key"],
            manifest["resource"],
            manifest["path"],
        )
        return manifest

    def _emit_asset_event(self, context: Context, manifest: dict[str, Any]) -> None:
        if not any(isinstance(o, AssetAlias) and o.name == EXTRACT_ASSET_ALIAS for o in self.outlets):
            return
        from airflow.sdk import Asset

        outlet_events = context.get("outlet_events")
        if outlet_events is None:
            return
        uri = asset_uri(manifest["element_key"], manifest["instance_id"], manifest["resource"])
        extra = {k: manifest[k] for k in ("path", "records", "job_id", "full_refresh")}
        extra["window"] = manifest["window"]
        outlet_events[AssetAlias(EXTRACT_ASSET_ALIAS)].add(Asset(uri=uri, name=uri), extra=extra)


class CloudElementsBulkExtractOperator(_CloudElementsExtractBase):
    """Extract one Finance-hub resource through a Cloud Elements bulk job into object storage.

    Flow (reference §4): ``POST /hubs/finance/bulk/query`` on the worker (the job id is pushed to
    XCom and to the task state store at once) → poll ``GET /bulk/{id}/status`` (in the triggerer when
    deferrable, via :class:`~airflow_provider_cloudelements.triggers.bulk.CloudElementsBulkJobTrigger`)
    → check ``recordsFailedCount`` against ``max_failed_records`` (failed records saved as
    ``<resource>.errors.ndjson`` beside the output) → stream ``GET /bulk/{id}/{resource}`` into a
    temporary file → reconcile the line count with ``recordsCount`` → move to the final path → write
    ``_manifest.json`` → return the manifest (module docstring).

    On a retry of the same task instance it re-attaches to the previous job while that is still
    running, or downloads its result if it completed but was never landed, instead of submitting a
    duplicate. On timeout (absolute wall-clock deadline from ``timeout``/``execution_timeout``) the job
    is cancelled (``PUT /bulk/{id}/cancel``) and the task fails with
    :class:`~airflow_provider_cloudelements.exceptions.CloudElementsTimeoutError`.

    :param deferrable: free the worker while the job runs; default ``[operators] default_deferrable``.
    :param poll_interval: seconds between status GETs (default 5).
    :param timeout: longest wait for the job, timedelta or seconds (default 6 hours).
    :param max_failed_records: failed records tolerated before the task fails (default 0).
    :param cancel_on_kill: cancel the job when a user kills the task (default True).
    (other parameters: see :class:`_CloudElementsExtractBase`)
    :raises CloudElementsBulkJobError: job FAILED/ABORTED/CANCELLED or unknown status.
    :raises CloudElementsRecordFailuresError: ``recordsFailedCount`` > ``max_failed_records``.
    :raises CloudElementsReconciliationError: landed lines != ``recordsCount``.
    :raises CloudElementsTimeoutError: the deadline passed (job cancelled first).
    """

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
        instance_id, element_key, window, target = self._resolve(context)
        hook = self.hook
        job_id = self._reattach(context, hook)
        if job_id is None:
            where, from_, to = self._query_for(element_key, window)
            job_id = hook.start_bulk_query(self.resource, where=where, from_=from_, to=to)
            self.log.info(
                "Submitted bulk job %s for %s/%s (window %s)", job_id, element_key, self.resource, window.as_dict()
            )
            self._remember(context, job_id)
        self.job_id = job_id
        context["ti"].xcom_push(key="bulk_job_id", value=job_id)
        context["ti"].xcom_push(key=BULK_JOB_URL_KEY, value=bulk_job_url(hook.base_url, job_id))
        state = (element_key, window, target)

        status = hook.get_bulk_status(job_id)
        if CloudElementsBulkJobStatus.parse(status.get("status")).is_terminal():
            return self._complete(context, job_id, status, state)

        deadline = time.time() + self._timeout_seconds()
        if self.deferrable:
            self.defer(
                trigger=CloudElementsBulkJobTrigger(
                    job_id=job_id,
                    instance_id=instance_id,
                    cloudelements_conn_id=self.cloudelements_conn_id,
                    poll_interval=self.poll_interval,
                    end_time=deadline,
                    cancel_on_kill=self.cancel_on_kill,
                ),
                method_name="execute_complete",
                timeout=None,
            )
        while time.time() < deadline:
            time.sleep(min(self.poll_interval, max(deadline - time.time(), 0.0)))
            status = hook.get_bulk_status(job_id)
            if CloudElementsBulkJobStatus.parse(status.get("status")).is_terminal():
                return self._complete(context, job_id, status, state)
        self._cancel_quietly(job_id)
        raise CloudElementsTimeoutError(f"Bulk job {job_id} did not finish before the deadline; cancelled")

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after :class:`CloudElementsBulkJobTrigger`; fails closed on unknown event statuses.

        The window and target are recomputed from the same context (deterministic), the job id comes
        from the event, so nothing but ids crosses the deferral boundary.
        """
        event = event or {}
        job_id = str(event.get("job_id") or "")
        if not job_id:
            raise CloudElementsBulkJobError(f"Trigger event without a job id: {event.get('status')!r}")
        self.job_id = job_id
        kind = event.get("status")
        message = event.get("message", "")
        if kind == "success":
            _, element_key, window, target = self._resolve(context)
            return self._complete(context, job_id, self.hook.get_bulk_status(job_id), (element_key, window, target))
        if kind == "timeout":
            self._cancel_quietly(job_id)
            raise CloudElementsTimeoutError(f"Bulk job {job_id} did not finish before the deadline; cancelled")
        if kind == "error" and event.get("error"):
            raise exception_from_event(event["error"], f"Bulk job {job_id}: {message}")
        if kind in ("failed", "cancelled", "error"):
            raise CloudElementsBulkJobError(f"Bulk job {job_id}: {message}")
        raise CloudElementsBulkJobError(f"Bulk job {job_id}: unexpected trigger event {kind!r}")

    def on_kill(self) -> None:
        if self.cancel_on_kill and self.job_id:
            self._cancel_quietly(self.job_id)

    # -- helpers ----------------------------------------------------------------------------------

    def _query_for(self, element_key: str, window: ExtractWindow) -> tuple[str | None, Any, Any]:
        """(where, from, to) of the bulk query. FreshBooks CEQL dates are day precision (reference
        §3.4), so its window goes in the bulk ``from``/``to`` parameters (reference §4.1) instead."""
        if get_element(element_key).ceql_date_format == "date":
            where = None
            if self.where:
                ceql.validate_where(self.where, element_key)
                where = self.where
            start = None if window.full_refresh else window.start
            return where, start, window.end
        return self._where_for(element_key, window), None, None

    def _remember(self, context: Context, job_id: str) -> None:
        store = context.get("task_state_store")
        if store is None:
            self.log.warning("No task_state_store: a retry cannot re-attach to bulk job %s", job_id)
            return
        store.set(STATE_KEY, {"job_id": job_id, "landed": False}, retention=timedelta(days=3))

    def _reattach(self, context: Context, hook: CloudElementsHook) -> str | None:
        """Job id of an earlier try of this task instance worth resuming, else ``None``."""
        store = context.get("task_state_store")
        if store is None:
            return None
        saved = store.get(STATE_KEY)
        if not isinstance(saved, dict) or not saved.get("job_id") or saved.get("landed"):
            return None
        job_id = str(saved["job_id"])
        try:
            status = CloudElementsBulkJobStatus.parse(hook.get_bulk_status(job_id).get("status"))
        except (CloudElementsNotFoundError, CloudElementsBulkJobError):
            return None
        if status.is_terminal() and not status.is_success():
            self.log.info("Earlier bulk job %s ended %s: submitting a new one", job_id, status.value)
            return None
        self.log.info("Re-attaching to bulk job %s (%s) from an earlier try", job_id, status.value)
        return job_id

    def _cancel_quietly(self, job_id: str) -> None:
        try:
            self.hook.cancel_bulk_job(job_id)
            self.log.info("Cancelled bulk job %s", job_id)
        except Exception as err:  # best effort: the original failure matters more
            self.log.warning("Could not cancel bulk job %s: %s", job_id, err)

    def _complete(
        self,
        context: Context,
        job_id: str,
        status: dict[str, Any],
        state: tuple[str, ExtractWindow, ObjectStoragePath],
    ) -> dict[str, Any]:
        parsed = CloudElementsBulkJobStatus.parse(status.get("status"))
        if not parsed.is_success():
            raise CloudElementsBulkJobError(f"Bulk job {job_id} ended {parsed.value}")
        instance_id = int(self.hook.instance_id)  # type: ignore[arg-type]
        element_key, window, target = state
        failed = int(status.get("recordsFailedCount") or 0)
        errors_path = None
        if failed:
            errors_path = str(self._save_errors(job_id, target))
            self.log.warning("Bulk job %s reported %s failed records (saved to %s)", job_id, failed, errors_path)
        if failed > self.max_failed_records:
            raise CloudElementsRecordFailuresError(
                f"Bulk job {job_id}: {failed} failed records > max_failed_records={self.max_failed_records}"
            )
        expected = status.get("recordsCount")
        lines, nbytes = self._download(job_id, target, expected)
        deleted_path, deleted = self._land_tombstones(instance_id, window, target)
        manifest = self._manifest(
            instance_id=instance_id,
            deleted_path=deleted_path,
            deleted=deleted,
            element_key=element_key,
            window=window,
            target=target,
            records=lines,
            nbytes=nbytes,
            job_id=job_id,
            failed_records=failed,
            errors_path=errors_path,
        )
        self._publish_manifest(context, manifest)
        store = context.get("task_state_store")
        if store is not None:
            store.set(STATE_KEY, {"job_id": job_id, "landed": True}, retention=timedelta(days=3))
        return manifest

    def _download(self, job_id: str, target: ObjectStoragePath, expected: Any) -> tuple[int, int]:
        progress = ProgressLogger(f"Bulk job {job_id} download", logger=self.log)  # type: ignore[arg-type]
        fmt = "csv" if self.output_format == "csv" else "json"
        with staged_file(target, "wb") as (handle, publish):
            if self.output_format == "parquet":
                lines, nbytes = _download_as_parquet(self.hook, job_id, self.resource, handle, progress)
            else:
                result = self.hook.download_bulk(job_id, self.resource, handle, fmt=fmt, progress=progress)
                lines, nbytes = result.lines, result.bytes
                if fmt == "csv":
                    lines = max(lines - 1, 0)  # header row
            if expected is not None and int(expected) != lines:
                raise CloudElementsReconciliationError(
                    f"Bulk job {job_id}: downloaded {lines} records but recordsCount={expected}; nothing landed"
                )
            publish()
        self.log.info("%s", progress.summary(lines, nbytes))
        return lines, nbytes

    def _save_errors(self, job_id: str, target: ObjectStoragePath) -> ObjectStoragePath:
        path = target.parent / f"{self.resource}.errors.ndjson"
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

    :param page_size: records per page (default: the connection's ``page_size``).
    :param reconcile_total: ask for ``Elements-Total-Count`` and fail if the landed count differs.
    :raises CloudElementsReconciliationError: count mismatch with ``reconcile_total``.
    """

    mode = "paged"

    def __init__(self, *, page_size: int | None = None, reconcile_total: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if page_size is not None and int(page_size) <= 0:
            raise CloudElementsConfigError(f"page_size must be a positive integer, got {page_size!r}")
        if self.output_format == "csv":
            raise CloudElementsConfigError("output_format='csv' is only available for bulk extracts")
        self.page_size = page_size
        self.reconcile_total = reconcile_total

    def execute(self, context: Context) -> dict[str, Any]:

        instance_id, element_key, window, target = self._resolve(context)
        spec = get_element(element_key)
        where = self._where_for(element_key, window)
        # Day-precision CEQL (FreshBooks) selects a superset of the window: filter on the exact
        # instants. A full refresh still has an end bound (the interval end), so it is filtered too.
        day_precision = spec.ceql_date_format == "date" and (window.start is not None or window.end is not None)
        progress = ProgressLogger(f"Paged extract {element_key}/{self.resource}", logger=self.log)  # type: ignore[arg-type]
        pages = self.hook.iter_records(
            self.resource, where=where, page_size=self.page_size, reconcile_total=self.reconcile_total
        )
        selected = (r for r in pages if not day_precision or _in_window(r, element_key, window))
        with staged_file(target, "wb") as (handle, publish):
            sink = handle if self.output_format == "ndjson" else _ParquetSink(handle)
            records, nbytes = write_ndjson(sink, selected, progress=progress)  # type: ignore[arg-type]
            if isinstance(sink, _ParquetSink):
                sink.close()
            publish()
        deleted_path, deleted = self._land_tombstones(instance_id, window, target)
        manifest = self._manifest(
            instance_id=instance_id,
            deleted_path=deleted_path,
            deleted=deleted,
            element_key=element_key,
            window=window,
            target=target,
            records=records,
            nbytes=nbytes,
            job_id=None,
        )
        return self._publish_manifest(context, manifest)


def tombstone(record_id: Any, deleted_at: Any) -> dict[str, Any]:
    """One tombstone line for the SQL loader: ``{"id": str, "deleted_at": ISO|None}``."""
    return {"id": str(record_id), "deleted_at": deleted_at}


def build_manifest(
    *,
    element_key: str,
    instance_id: int,
    resource: str,
    mode: str,
    target: ObjectStoragePath,
    output_format: str,
    records: int,
    nbytes: int,
    job_id: str | None,
    window: ExtractWindow,
    failed_records: int = 0,
    errors_path: str | None = None,
    deleted_path: str | None = None,
    deleted: int = 0,
) -> dict[str, Any]:
    """The small XCom manifest every extract returns (module docstring); no I/O."""
    return {
        "element_key": element_key,
        "instance_id": instance_id,
        "resource": resource,
        "mode": mode,
        "path": str(target),
        "format": output_format,
        "records": records,
        "bytes": nbytes,
        "job_id": job_id,
        "failed_records": failed_records,
        "errors_path": errors_path,
        "deleted_path": deleted_path,
        "deleted": deleted,
        "window": window.as_dict(),
        "full_refresh": window.full_refresh,
        "manifest_path": str(target.parent / MANIFEST_NAME),
    }


def _in_window(record: dict[str, Any], element_key: str, window: ExtractWindow) -> bool:
    """Client-side half-open window check on the record's updated instant (day-precision elements)."""
    instant = updated_at(record, element_key)
    if instant is None:
        return True
    if window.start is not None and instant < window.start:
        return False
    return not (window.end is not None and instant >= window.end)


class _ParquetSink:
    """Buffer NDJSON lines in a local temp file, then write Parquet to ``handle`` on close."""

    def __init__(self, handle: BinaryIO) -> None:
        import tempfile

        self.handle = handle
        self.tmp = tempfile.NamedTemporaryFile(prefix="ce-parquet-", suffix=".ndjson")

    def write(self, line: bytes) -> None:
        self.tmp.write(line)

    def close(self) -> None:
        from airflow_provider_cloudelements.utils.parquet import ndjson_to_parquet

        self.tmp.flush()
        ndjson_to_parquet(self.tmp.name, self.handle)
        self.tmp.close()


def _download_as_parquet(
    hook: CloudElementsHook, job_id: str, resource: str, handle: BinaryIO, progress: ProgressLogger
) -> tuple[int, int]:
    sink = _ParquetSink(handle)
    result = hook.download_bulk(job_id, resource, sink.tmp, fmt="json", progress=progress)  # type: ignore[arg-type]
    sink.close()
    return result.lines, result.bytes
