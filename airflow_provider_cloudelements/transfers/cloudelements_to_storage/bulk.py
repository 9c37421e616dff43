"""Cloud Elements → object storage through a bulk job: :class:`CloudElementsBulkExtractOperator`.

Submit ``POST /hubs/finance/bulk/query``, wait for ``GET /hubs/finance/bulk/{id}/status`` (the shared
:class:`~airflow_provider_cloudelements.utils.polling.BulkWait`, in the worker or in the triggerer),
download ``GET /hubs/finance/bulk/{id}/{resource}``, reconcile the record count and publish the manifest
(:class:`~airflow_provider_cloudelements.models.manifest.ExtractManifest`; landing rules: :mod:`.base`).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow.providers.common.compat.sdk import conf
from airflow.sdk import ObjectStoragePath

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
    exception_from_event,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.models.status import CloudElementsBulkJobStatus, status_count
from airflow_provider_cloudelements.models.timestamps import format_utc, parse_timestamp
from airflow_provider_cloudelements.models.window import server_bounds
from airflow_provider_cloudelements.operators.links import (
    CloudElementsInstanceLink,
)
from airflow_provider_cloudelements.transfers.bulkjob import announce_job, cancel_quietly
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.base import _CloudElementsExtractBase
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.recordfiles import ParquetSink, copy_records
from airflow_provider_cloudelements.transfers.landing import (
    FORMAT_SUFFIX,
    ProgressLogger,
    landed_name,
    run_token,
    staged_file,
    write_ndjson,
)
from airflow_provider_cloudelements.transfers.plan import ExtractPlan, server_time, snapshot_time
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger
from airflow_provider_cloudelements.utils.elements import get_element
from airflow_provider_cloudelements.utils.polling import BulkWait, wait_until_done
from airflow_provider_cloudelements.utils.validation import count, positive_number

if TYPE_CHECKING:
    from airflow.sdk import Context

#: task_state_store key holding the submitted bulk job and its plan (shared by retries of one task instance).
STATE_KEY = "cloudelements_bulk_job"
#: Seconds kept between our own deadline and ``execution_timeout`` so the job can still be cancelled.
TIMEOUT_BUFFER_SECONDS = 60.0


class BulkQuery(NamedTuple):
    """The bulk query of a plan: CEQL ``where`` and the ``from``/``to`` parameters (reference §4.1)."""

    where: str | None
    from_: datetime | None
    to: datetime | None


class Attached(NamedTuple):
    """An earlier try's bulk job worth resuming and the plan persisted with it."""

    job_id: str
    plan: ExtractPlan


class Landed(NamedTuple):
    """Records and bytes written to the published data file."""

    records: int
    bytes: int


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
        after 1, 2, 4 … s (the shared :class:`~airflow_provider_cloudelements.utils.polling.BulkWait`).
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

    operator_extra_links = (CloudElementsInstanceLink(),)

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
        count(max_failed_records, "max_failed_records")
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
            query = self._query_for(plan)
            submitted = server_time(hook)
            plan = dataclasses.replace(plan, submitted_at=format_utc(submitted) if submitted else None)
            job_id = hook.start_bulk_query(self.resource, where=query.where, from_=query.from_, to=query.to)
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
        wait = BulkWait(self.poll_interval, deadline=deadline)  # 1, 2, 4 … s up to poll_interval
        with self._keep_or_cancel(context, job_id):
            status = hook.get_bulk_status(job_id)
        step = wait.decide(status)
        if step.done:
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
        final = wait_until_done(lambda: self._poll(context, job_id), wait, step)
        if final is not None:
            return self._complete(context, job_id, final, plan)
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
        announce_job(context, job_id)

    def _query_for(self, plan: ExtractPlan) -> BulkQuery:
        """Return ``(where, from, to)`` of the bulk query.

        FreshBooks CEQL dates are day precision (reference §3.4), so its window goes in the bulk ``from``/``to``
        parameters (reference §4.1) instead, widened for naive times (the exact window is applied to the
        downloaded records). A full refresh has no bound at all.
        """
        spec = get_element(plan.element_key)
        if spec.ceql_date_format == "date":
            start, end = server_bounds(plan.window, spec)
            return BulkQuery(plan.where, start, end)
        return BulkQuery(self._where_for(plan), None, None)

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

    def _reattach(self, context: Context, hook: CloudElementsHook) -> Attached | None:
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
        return Attached(job_id, plan)

    def _retries_left(self, context: Context) -> bool:
        try_number = getattr(context.get("ti"), "try_number", None)
        if not isinstance(try_number, int):
            return bool(self.retries)
        return try_number <= int(self.retries or 0)

    def _poll(self, context: Context, job_id: str) -> dict[str, Any]:
        with self._keep_or_cancel(context, job_id):
            return self.hook.get_bulk_status(job_id)

    def _keep_or_cancel_after(self, context: Context, job_id: str, err: BaseException) -> None:
        """After a failed status poll, keep the job for a retry to re-attach to, or cancel it.

        The job is kept when the failure is transient and a retry follows; it is cancelled otherwise.
        """
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
        cancel_quietly(self.hook, job_id, self.log)

    def _complete(self, context: Context, job_id: str, status: dict[str, Any], plan: ExtractPlan) -> dict[str, Any]:
        step = BulkWait.classify(status)
        if step.outcome != "success":
            raise CloudElementsBulkJobError(f"Bulk job {job_id} ended {step.status.value}")
        failed = status_count(status, "recordsFailedCount", job_id) or 0
        expected = status_count(status, "recordsCount", job_id)
        if expected is None:
            raise CloudElementsReconciliationError(
                f"Bulk job {job_id}: the status has no recordsCount, the download cannot be reconciled; nothing landed"
            )
        snapshot = parse_timestamp(status.get("createdDate"), strict=False) or parse_timestamp(
            plan.submitted_at, strict=False
        )
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
        landed = self._download(job_id, target, expected, plan)
        tombstones = self._land_tombstones(plan, token)
        manifest = plan.manifest(
            mode=self.mode,
            target=target,
            records=landed.records,
            nbytes=landed.bytes,
            job_id=job_id,
            snapshot_at=snapshot,
            complete=plan.may_be_complete and failed == 0,
            failed_records=failed,
            errors_path=errors_path,
            deleted_path=tombstones.path,
            deleted=tombstones.deleted,
        )
        published = self._publish_manifest(context, manifest)
        self._remember(context, job_id, plan, landed=True)
        return published

    def _download(self, job_id: str, target: ObjectStoragePath, expected: int, plan: ExtractPlan) -> Landed:
        """Download, reconcile records with ``expected`` and publish ``target``; ``(records, bytes)`` landed."""
        progress = ProgressLogger(f"Bulk job {job_id} download", logger=self.log, total=expected)  # type: ignore[arg-type]
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
                    sink: Any = ParquetSink(handle) if self.output_format == "parquet" else handle
                    copied = copy_records(raw, sink, fmt=fmt, keep=keep)
                    records, nbytes = copied.written, copied.bytes
                    got = result.records
                    if isinstance(sink, ParquetSink):
                        sink.close()
            if got != expected:
                raise CloudElementsReconciliationError(
                    f"Bulk job {job_id}: downloaded {got} records but recordsCount={expected}; nothing landed"
                )
            publish()
        if records != got:
            self.log.info("Kept %s of %s downloaded records inside the window (naive times)", records, got)
        self.log.info("%s", progress.summary(records, nbytes))
        return Landed(records, nbytes)

    def _save_errors(self, job_id: str, path: ObjectStoragePath) -> ObjectStoragePath:
        with staged_file(path, "wb") as (handle, publish):
            write_ndjson(handle, self.hook.iter_bulk_errors(job_id))
            publish()
        return path
