"""Write records back to a Finance-hub resource through a Cloud Elements bulk upload (reference §4.1).

Flow: read the input file from object storage and **validate it before anything is sent**
(:func:`validate_upload`) → ``POST /hubs/finance/bulk/{resource}`` (multipart ``file`` + ``metaData``
``{"format": "json"|"csv", "identifierFieldName": …}``) → wait for the job (in the triggerer when
deferrable, with :class:`~airflow_provider_cloudelements.triggers.bulk.CloudElementsBulkJobTrigger`) →
save the job's failed records (paged ``GET /bulk/{id}/errors``) beside the input as
``<input stem>.<token>.errors.ndjson`` (run-unique, written atomically) → apply ``max_failed_records``
→ return ``{"job_id", "records", "failed_records", "errors_path", "input_records", "input_path",
"resource", "instance_id"}`` (``records``: the job's ``recordsCount``, the records written).

Rerun policy: with ``identifier_field_name`` an upload is an **upsert** (a record whose identifier
matches an existing record updates it), so rerunning a task or a whole interval writes the same final
state and creates no duplicates. Without it every run creates new records. A retry of the same task
instance re-attaches to its earlier job (task state store) while that job is alive or finished, instead
of uploading again.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import conf
from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_provider_cloudelements.exceptions import (
    CloudElementsBulkJobError,
    CloudElementsConfigError,
    CloudElementsDataError,
    CloudElementsNotFoundError,
    CloudElementsRecordFailuresError,
    CloudElementsServerError,
    CloudElementsTimeoutError,
    exception_from_event,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.models.status import CloudElementsBulkJobStatus, status_count
from airflow_provider_cloudelements.operators.links import (
    CloudElementsInstanceLink,
)
from airflow_provider_cloudelements.transfers.bulkjob import announce_job, cancel_quietly
from airflow_provider_cloudelements.transfers.landing import landed_name, run_token, staged_file, write_ndjson
from airflow_provider_cloudelements.transfers.plan import snapshot_time
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger
from airflow_provider_cloudelements.utils.elements import check_resource
from airflow_provider_cloudelements.utils.polling import BulkWait, wait_until_done
from airflow_provider_cloudelements.utils.validation import as_instance_id, count, positive_number

if TYPE_CHECKING:
    from airflow.sdk import Context

#: task_state_store key of the submitted upload job (shared by the retries of one task instance).
UPLOAD_STATE_KEY = "cloudelements_bulk_upload"
#: Input formats and the bulk ``metaData.format`` each is sent as.
UPLOAD_FORMATS = {"ndjson": "json", "csv": "csv"}
_SUFFIX_FORMATS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson", ".csv": "csv"}


def upload_format(path: str, input_format: str | None) -> str:
    """``ndjson`` or ``csv``: ``input_format`` when given, else from the file suffix.

    :raises CloudElementsConfigError: unknown ``input_format`` or suffix (names the parameter).
    """
    if input_format is not None:
        if input_format not in UPLOAD_FORMATS:
            raise CloudElementsConfigError(
                f"input_format must be one of {sorted(UPLOAD_FORMATS)}, got {input_format!r}"
            )
        return input_format
    name = path.rstrip("/").rsplit("/", 1)[-1].lower()
    for suffix, fmt in _SUFFIX_FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise CloudElementsConfigError(
        f"input_path {path!r}: cannot tell the format from the suffix; pass input_format='ndjson' or 'csv'"
    )


def validate_upload(content: bytes, fmt: str, *, identifier_field_name: str | None, where: str) -> int:
    """Check an upload file before it is sent; return its record count.

    NDJSON: UTF-8, every non-blank line a JSON object. CSV: UTF-8, a header row without empty or
    duplicate names, every record as wide as the header. Both: at least one record; with
    ``identifier_field_name`` every record has a non-empty value for it (NDJSON: a top-level key).

    :param where: how errors name the input (``input_path 's3://…/je.ndjson'``).
    :raises CloudElementsDataError: the first problem found, naming the line and field.
    """
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CloudElementsDataError(f"{where}: not UTF-8 (byte {err.start})") from None
    ident = identifier_field_name
    records = 0
    if fmt == "ndjson":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise CloudElementsDataError(f"{where} line {number}: not valid JSON") from None
            if not isinstance(record, dict):
                raise CloudElementsDataError(f"{where} line {number}: a JSON {type(record).__name__}, not an object")
            if ident and record.get(ident) in (None, ""):
                raise CloudElementsDataError(
                    f"{where} line {number}: identifier_field_name {ident!r} is missing or empty"
                )
            records += 1
    else:
        rows = csv.reader(io.StringIO(text, newline=""))
        header = next(rows, None)
        if not header or not any(h.strip() for h in header):
            raise CloudElementsDataError(f"{where}: no CSV header row")
        names = [h.strip() for h in header]
        if "" in names or len(set(names)) != len(names):
            raise CloudElementsDataError(f"{where}: CSV header has empty or duplicate column names: {names}")
        if ident and ident not in names:
            raise CloudElementsDataError(f"{where}: identifier_field_name {ident!r} is not a CSV column: {names}")
        position = names.index(ident) if ident else -1
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue
            records += 1
            if len(row) != len(names):
                raise CloudElementsDataError(
                    f"{where} record {records}: {len(row)} fields, the header has {len(names)}"
                )
            if ident and not row[position].strip():
                raise CloudElementsDataError(f"{where} record {records}: identifier_field_name {ident!r} is empty")
    if records == 0:
        raise CloudElementsDataError(f"{where}: no records to upload")
    return records


class CloudElementsBulkUploadOperator(BaseOperator):
    """Upload an NDJSON or CSV file from object storage as a Cloud Elements bulk upload (module docstring).

    :param resource: Finance-hub resource to write (``journal-entries`` …, reference §3.2). Templated.
    :param input_path: the file, any ``ObjectStoragePath`` URI (``file://``, ``s3://`` …). Templated.
    :param input_format: ``ndjson`` or ``csv``; default from the suffix (``.ndjson``/``.jsonl``/``.json``,
        ``.csv``).
    :param identifier_field_name: upsert key sent as ``metaData.identifierFieldName`` (e.g. QBO
        ``docNumber``); every record must carry it. Templated.
    :param instance_id: element instance id; default: the connection's ``instance_id`` extra. Templated.
    :param element_key: skip the ``GET /instances/{id}`` lookup of the element key.
    :param cloudelements_conn_id: Airflow connection of type ``cloudelements``.
    :param deferrable: wait in the triggerer; default ``[operators] default_deferrable``.
    :param poll_interval: seconds between status GETs (default 5).
    :param timeout: longest wait for the job, timedelta or seconds (default 6 hours); the job is cancelled
        when it passes (records already written stay written).
    :param max_failed_records: failed records tolerated (default 0); above it the task fails after the
        errors file is saved.
    :param cancel_on_kill: cancel the job when a user kills the task (default True).
    :raises CloudElementsDataError: the input file fails validation (before anything is sent).
    :raises CloudElementsConfigError: bad parameters, a resource the element does not have.
    :raises CloudElementsRecordFailuresError: ``failed_records`` > ``max_failed_records``.
    :raises CloudElementsBulkJobError: the job ended FAILED/ABORTED/CANCELLED.
    :raises CloudElementsTimeoutError: the deadline passed (job cancelled).
    """

    template_fields: Sequence[str] = ("resource", "input_path", "identifier_field_name", "instance_id")
    operator_extra_links = (CloudElementsInstanceLink(),)
    ui_color = "#fde68a"

    def __init__(
        self,
        *,
        resource: str,
        input_path: str,
        input_format: str | None = None,
        identifier_field_name: str | None = None,
        instance_id: int | str | None = None,
        element_key: str | None = None,
        cloudelements_conn_id: str = CloudElementsHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 5.0,
        timeout: timedelta | float = timedelta(hours=6),
        max_failed_records: int = 0,
        cancel_on_kill: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        count(max_failed_records, "max_failed_records")
        if input_format is not None:
            upload_format("", input_format)
        self.resource = resource
        self.input_path = input_path
        self.input_format = input_format
        self.identifier_field_name = identifier_field_name
        self.instance_id = instance_id
        self.element_key = element_key
        self.cloudelements_conn_id = cloudelements_conn_id
        self.deferrable = deferrable
        self.poll_interval = positive_number(poll_interval, "poll_interval")
        seconds = timeout.total_seconds() if isinstance(timeout, timedelta) else positive_number(timeout, "timeout")
        if seconds <= 0:
            raise CloudElementsConfigError(f"timeout must be positive, got {timeout!r}")
        self.timeout_seconds = seconds
        self.max_failed_records = max_failed_records
        self.cancel_on_kill = cancel_on_kill
        self.job_id: str | None = None

    @cached_property
    def hook(self) -> CloudElementsHook:
        iid = None if self.instance_id in (None, "") else as_instance_id(self.instance_id)
        return CloudElementsHook(cloudelements_conn_id=self.cloudelements_conn_id, instance_id=iid)

    # -- execute ----------------------------------------------------------------------------------

    def _read_input(self) -> tuple[bytes, str, int]:
        """``(content, format, records)`` of the validated input; no network call."""
        for name in ("resource", "input_path"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise CloudElementsConfigError(f"{name} must be a non-empty string, got {value!r}")
        ident = self.identifier_field_name or None
        if ident is not None and (not isinstance(ident, str) or not ident.strip()):
            raise CloudElementsConfigError(f"identifier_field_name must be a non-empty string, got {ident!r}")
        fmt = upload_format(self.input_path, self.input_format)
        where = f"input_path {self.input_path!r}"
        try:
            with ObjectStoragePath(self.input_path).open("rb") as handle:
                content = handle.read()
        except FileNotFoundError:
            raise CloudElementsDataError(f"{where}: no such file") from None
        except (OSError, ValueError) as err:
            raise CloudElementsDataError(f"{where}: cannot be read ({type(err).__name__})") from None
        records = validate_upload(content, fmt, identifier_field_name=ident, where=where)
        return content, fmt, records

    def execute(self, context: Context) -> dict[str, Any]:
        content, fmt, input_records = self._read_input()  # before any network call
        hook = self.hook
        instance_id = hook.instance_id
        if instance_id is None:
            raise CloudElementsConfigError("No element instance id: pass instance_id= or set the connection extra")
        check_resource(self.element_key or hook.get_element_key(), self.resource)
        plan = {"input_path": self.input_path, "resource": self.resource, "input_records": input_records}
        job_id = self._reattach(context, hook, plan)
        if job_id is None:
            job_id = hook.upload_bulk(
                self.resource,
                io.BytesIO(content),
                fmt=UPLOAD_FORMATS[fmt],
                identifier_field_name=self.identifier_field_name or None,
            )
            self.log.info(
                "Submitted bulk upload %s: %s %s records of %s to %s (identifierFieldName=%s)",
                job_id,
                input_records,
                fmt,
                self.input_path,
                self.resource,
                self.identifier_field_name,
            )
            self._remember(context, job_id, plan, landed=False)
        self._attach(context, job_id)
        deadline = time.time() + self.timeout_seconds
        wait = BulkWait(self.poll_interval, deadline=deadline)
        status = hook.get_bulk_status(job_id)
        step = wait.decide(status)
        if not step.done and self.deferrable:
            self.defer(
                trigger=CloudElementsBulkJobTrigger(
                    job_id=job_id,
                    instance_id=instance_id,
                    cloudelements_conn_id=self.cloudelements_conn_id,
                    poll_interval=self.poll_interval,
                    end_time=deadline,
                    cancel_on_kill=self.cancel_on_kill,
                    plan=plan,
                ),
                method_name="execute_complete",
                timeout=None,
            )
        if not step.done:
            final = wait_until_done(lambda: hook.get_bulk_status(job_id), wait, step)
            if final is None:
                self._cancel_quietly(job_id)
                raise CloudElementsTimeoutError(
                    f"Bulk upload {job_id} did not finish within {self.timeout_seconds} s; cancelled"
                )
            status = final
        return self._complete(context, job_id, status, plan)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resume after :class:`CloudElementsBulkJobTrigger`; fails closed on unknown event statuses."""
        event = event or {}
        job_id = str(event.get("job_id") or "")
        if not job_id:
            raise CloudElementsBulkJobError(f"Trigger event without a job id: {event.get('status')!r}")
        self._attach(context, job_id)
        kind = event.get("status")
        message = event.get("message", "")
        raw_plan = event.get("plan")
        plan: dict[str, Any] = raw_plan if isinstance(raw_plan, dict) else {}
        if kind == "success":
            return self._complete(context, job_id, self.hook.get_bulk_status(job_id), plan)
        if kind == "timeout":
            self._cancel_quietly(job_id)
            raise CloudElementsTimeoutError(f"Bulk upload {job_id} did not finish before the deadline; cancelled")
        if kind == "error" and event.get("error"):
            err = exception_from_event(event["error"], f"Bulk upload {job_id}: {message}")
            if not isinstance(err, CloudElementsServerError):  # transient: a retry re-attaches to the job
                self._cancel_quietly(job_id)
            raise err
        if kind in ("failed", "cancelled", "error"):
            raise CloudElementsBulkJobError(f"Bulk upload {job_id}: {message}")
        raise CloudElementsBulkJobError(f"Bulk upload {job_id}: unexpected trigger event {kind!r}")

    def on_kill(self) -> None:
        if self.cancel_on_kill and self.job_id:
            self._cancel_quietly(self.job_id)

    # -- helpers ----------------------------------------------------------------------------------

    def _complete(self, context: Context, job_id: str, status: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
        parsed = CloudElementsBulkJobStatus.parse(status.get("status"))
        if not parsed.is_success():
            raise CloudElementsBulkJobError(f"Bulk upload {job_id} ended {parsed.value}")
        records = status_count(status, "recordsCount", job_id) or 0
        failed = status_count(status, "recordsFailedCount", job_id) or 0
        input_path = str(plan.get("input_path") or self.input_path)
        input_records = plan.get("input_records")
        if isinstance(input_records, int) and records + failed != input_records:
            self.log.warning(
                "Bulk upload %s: %s written + %s failed != %s records in %s",
                job_id,
                records,
                failed,
                input_records,
                input_path,
            )
        errors_path = None
        if failed:
            errors_path = str(self._save_errors(job_id, input_path))
            self.log.warning("Bulk upload %s: %s records failed (saved to %s)", job_id, failed, errors_path)
        self._remember(context, job_id, plan, landed=True)
        if failed > self.max_failed_records:
            raise CloudElementsRecordFailuresError(
                f"Bulk upload {job_id}: {failed} failed records > max_failed_records={self.max_failed_records} "
                f"(failed records: {errors_path})"
            )
        self.log.info(
            "Bulk upload %s of %s to %s: %s records written, %s failed",
            job_id,
            input_path,
            self.resource,
            records,
            failed,
        )
        return {
            "job_id": job_id,
            "records": records,
            "failed_records": failed,
            "errors_path": errors_path,
            "input_records": input_records,
            "input_path": input_path,
            "resource": str(plan.get("resource") or self.resource),
            "instance_id": self.hook.instance_id,
        }

    def _save_errors(self, job_id: str, input_path: str) -> ObjectStoragePath:
        """The job's failed records as NDJSON beside the input: ``<stem>.<token>.errors.ndjson``."""
        source = ObjectStoragePath(input_path)
        stem = source.name.rsplit(".", 1)[0] if "." in source.name else source.name
        target = source.parent / landed_name(stem, run_token(snapshot_time(self.hook), unique=job_id), "errors.ndjson")
        with staged_file(target, "wb") as (handle, publish):
            write_ndjson(handle, self.hook.iter_bulk_errors(job_id))
            publish()
        return target

    def _attach(self, context: Context, job_id: str) -> None:
        self.job_id = job_id
        announce_job(context, job_id)

    def _remember(self, context: Context, job_id: str, plan: dict[str, Any], *, landed: bool) -> None:
        store = context.get("task_state_store")
        if store is not None:
            store.set(UPLOAD_STATE_KEY, {"job_id": job_id, "landed": landed, "plan": plan}, retention=timedelta(days=3))

    def _reattach(self, context: Context, hook: CloudElementsHook, plan: dict[str, Any]) -> str | None:
        """The job of an earlier try of this task instance for the same input, unless it died."""
        store = context.get("task_state_store")
        saved = store.get(UPLOAD_STATE_KEY) if store is not None else None
        if not isinstance(saved, dict) or not saved.get("job_id") or saved.get("plan") != plan:
            return None
        job_id = str(saved["job_id"])
        try:
            status = CloudElementsBulkJobStatus.parse(hook.get_bulk_status(job_id).get("status"))
        except (CloudElementsNotFoundError, CloudElementsBulkJobError):
            return None
        if status.is_terminal() and not status.is_success():
            self.log.info("Earlier bulk upload %s ended %s: uploading again", job_id, status.value)
            return None
        self.log.info("Re-attaching to bulk upload %s (%s) from an earlier try", job_id, status.value)
        return job_id

    def _cancel_quietly(self, job_id: str) -> None:
        cancel_quietly(self.hook, job_id, self.log, "bulk upload")
