"""Bulk API methods of the sync hook: submit a bulk query, poll, download, errors, cancel, upload (reference §4).

``wait_for_bulk_job`` is a plain blocking poll for callers of the hook itself; the operators, the sensor and
the trigger share the one bulk wait, :class:`~airflow_provider_cloudelements.utils.polling.BulkWait`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any, BinaryIO

import httpx

from airflow_provider_cloudelements.client.paging import RecordCounter
from airflow_provider_cloudelements.client.protocol import (
    H_CALLBACK_URL,
    HUB_PREFIX,
    header_int,
    json_object,
    safe_excerpt,
)
from airflow_provider_cloudelements.client.retry import TruncatedDownloadError
from airflow_provider_cloudelements.client.transport import BULK_DOWNLOAD_READ_TIMEOUT
from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsBulkJobError,
    CloudElementsConfigError,
    CloudElementsConnectionError,
    CloudElementsError,
    CloudElementsServerError,
    CloudElementsThrottledError,
    CloudElementsTimeoutError,
)
from airflow_provider_cloudelements.hooks.base import DEFAULT_PAGE_SIZE
from airflow_provider_cloudelements.hooks.params import bulk_date, check_resource_name, job_path
from airflow_provider_cloudelements.hooks.sync_base import CloudElementsSyncBase
from airflow_provider_cloudelements.utils import ceql
from airflow_provider_cloudelements.utils.polling import BulkWait, wait_until_done

DOWNLOAD_CHUNK_BYTES = 1024 * 1024  # 1 MiB: 256 KiB chunks cost ~4-20% at 100k-1M (benchmarks/)
_FORMATS = {"json": "application/json", "csv": "text/csv"}
#: Bulk job statuses after which a job found by :meth:`BulkMixin._find_submitted_job` is not reused.
_DEAD_JOB_STATUSES = frozenset({"FAILED", "ABORTED", "CANCELLED"})
#: Seconds of clock slack when matching a job's ``createdDate`` with a response's ``Date`` (2 clocks).
_SUBMIT_CLOCK_SLACK = 5.0


@dataclass(frozen=True)
class BulkDownloadResult:
    """What :meth:`CloudElementsHook.download_bulk` wrote.

    :param records: records in the file: NDJSON non-blank lines; CSV records as parsed by the
        :mod:`csv` module (a quoted line break stays inside its record), header row excluded.
    :param lines: newline-terminated lines written, plus one for a final unterminated line (kept for
        compatibility; a CSV field with a line break or a blank line makes it differ from ``records``).
    :param bytes: bytes written to the file object.
    """

    records: int
    lines: int
    bytes: int


class BulkMixin(CloudElementsSyncBase):
    """``/hubs/finance/bulk/...`` calls of :class:`~.cloudelements.CloudElementsHook`."""

    def start_bulk_query(
        self,
        resource: str,
        *,
        where: str | None = None,
        from_: datetime | str | None = None,
        to: datetime | str | None = None,
        callback_url: str | None = None,
    ) -> str:
        """Submit a bulk download: ``POST /hubs/finance/bulk/query?q=select * from <resource> [where ...]`` (§4.1).

        QuickBooks/FreshBooks bulk support ``select *`` only (§4.4).

        Not retried once the request may have reached the server (a retry could start a duplicate job);
        429 and connection failures are retried. After an AMBIGUOUS failure (a read timeout, the attempt
        deadline or a 5xx: the server may have created the job), the hook looks the job up
        (:meth:`_find_submitted_job`, ``GET /hubs/finance/bulk/jobs``) and REUSES it: the same query
        submitted in the same seconds is the job this call created (or an identical snapshot a
        concurrent run created, equally valid), so no orphan job keeps scanning the provider and no
        duplicate is started. When none is found, the original error is raised.

        :param resource: object name (``invoices``).
        :param where: CEQL clause (validated; no ``OR`` for QuickBooks Online).
        :param from_: bulk ``from`` bound (datetime or ISO-8601 string; sent as UTC with offset).
        :param to: bulk ``to`` bound.
        :param callback_url: sent as ``Elements-Async-Callback-Url``.
        :return: the job id (string).
        :raises CloudElementsConfigError: bad resource, CEQL or dates (before any call).
        """
        check_resource_name(resource, self.element_key)
        if where is not None:
            ceql.validate_where(where, self.element_key)
        params: dict[str, Any] = {}
        if from_ is not None:
            params["from"] = bulk_date(from_, "bulk from_")
        if to is not None:
            params["to"] = bulk_date(to, "bulk to")
        key = self.resolve_element_key()
        where_clean = ceql.validate_where(where, key) if where is not None else None
        params = {"q": ceql.select_query(resource, where_clean), **params}
        headers = {H_CALLBACK_URL: callback_url} if callback_url else None
        submitted = time.monotonic()
        try:
            job = self._call("POST", f"{HUB_PREFIX}/bulk/query", hub=True, params=params, headers=headers)
        except (CloudElementsServerError, CloudElementsConnectionError) as exc:
            if isinstance(exc, CloudElementsThrottledError):
                raise
            found = self._find_submitted_job(resource, params, callback_url, submitted, exc)
            if found is None:
                raise
            return found
        job_id = job.get("id") if isinstance(job, Mapping) else None
        if job_id in (None, ""):
            raise CloudElementsApiError("POST /bulk/query returned no job id")
        self._jobs_started.add(str(job_id))
        self.log.info("Started Cloud Elements bulk job %s: %s", job_id, params["q"])
        return str(job_id)

    def _find_submitted_job(
        self,
        resource: str,
        params: Mapping[str, Any],
        callback_url: str | None,
        submitted: float,
        error: CloudElementsError,
    ) -> str | None:
        """Find the job an ambiguously failed ``POST /bulk/query`` created, or ``None`` (best effort, never raises).

        The lookup is ``GET /hubs/finance/bulk/jobs?where=object_name = '<resource>' AND job_direction =
        'DOWNLOAD'`` (paged), keeping jobs with the same ``job_query`` (and ``from``/``to`` and
        ``notification_url`` where the listing shows them), not FAILED/ABORTED/CANCELLED, created no
        earlier than the submit on the SERVER clock: the listing's ``Date`` (floored to the second, so
        the server clock was at least that when it answered) minus the local time elapsed since the
        submit started, minus :data:`_SUBMIT_CLOCK_SLACK` (the ``Date`` of a gateway and the
        ``createdDate`` of the job service may come from different clocks), and not submitted earlier by
        this hook. The NEWEST such job wins (the one this call created, unless a concurrent run
        submitted the same query later: an equally valid snapshot).
        """
        path = f"{HUB_PREFIX}/bulk/jobs"
        where = f"object_name = {ceql.quote_value(resource)} AND job_direction = 'DOWNLOAD'"
        matches: list[tuple[datetime, str]] = []
        try:
            jobs = list(self._paginate(path, {"where": where}, hub=True, page_size=DEFAULT_PAGE_SIZE, cursor_only=True))
            if self._server_date is None:
                return None
            listed_at, received = self._server_date
            lower = listed_at - timedelta(seconds=received - submitted + _SUBMIT_CLOCK_SLACK)
            for job in jobs:
                if not isinstance(job, Mapping) or job.get("job_query", job.get("query")) != params["q"]:
                    continue
                if str(job.get("status") or job.get("job_status") or "").upper() in _DEAD_JOB_STATUSES:
                    continue
                if any(name in job and job[name] != params.get(name) for name in ("from", "to")):
                    continue
                if "notification_url" in job and (job["notification_url"] or None) != callback_url:
                    continue
                try:
                    created = ceql.to_datetime(str(job.get("createdDate") or ""), what="createdDate")
                except CloudElementsConfigError:
                    continue
                if created >= lower and job.get("id") not in (None, "") and str(job["id"]) not in self._jobs_started:
                    matches.append((created, str(job["id"])))
        except CloudElementsError as lookup_error:
            self.log.warning(
                "POST %s/bulk/query failed ambiguously (%s) and the job lookup failed too (%s); a job may "
                "have been created: check GET %s",
                HUB_PREFIX,
                type(error).__name__,
                type(lookup_error).__name__,
                path,
            )
            return None
        if not matches:
            self.log.warning(
                "POST %s/bulk/query failed ambiguously (%s); no job with that query was created",
                HUB_PREFIX,
                type(error).__name__,
            )
            return None
        job_id = max(matches, key=lambda m: (m[0], int(m[1]) if m[1].isdigit() else 0))[1]
        self._jobs_started.add(job_id)
        self.log.warning(
            "POST %s/bulk/query failed ambiguously (%s) but the server created job %s for it; reusing that "
            "job instead of leaving it orphaned: %s",
            HUB_PREFIX,
            type(error).__name__,
            job_id,
            params["q"],
        )
        return job_id

    def get_bulk_status(self, job_id: str) -> dict[str, Any]:
        """Return the raw JSON of ``GET /hubs/finance/bulk/{id}/status`` (§4.1).

        Keys include ``id``, ``status``, ``recordsCount``, ``recordsFailedCount`` ….
        """
        path = f"{HUB_PREFIX}/bulk/{job_path(job_id)}/status"
        return json_object(self._call("GET", path, hub=True), f"GET {path}")

    def wait_for_bulk_job(self, job_id: str, *, poll_interval: float = 5, timeout: float | None = None) -> dict:
        """Poll :meth:`get_bulk_status` until the job is terminal (§4.2).

        Uses the one bulk wait of the operators, trigger and sensor (:class:`~..utils.polling.BulkWait`):
        polls back off 1, 2, 4 … s up to ``poll_interval``.

        :param poll_interval: steady-state seconds between polls.
        :param timeout: seconds in total, ``None`` = no limit.
        :return: the final status JSON of a COMPLETED (or ``COMPLETE``) job.
        :raises CloudElementsBulkJobError: FAILED, ABORTED, CANCELLED or an unknown status.
        :raises CloudElementsTimeoutError: ``timeout`` passed.
        """
        if poll_interval <= 0:
            raise CloudElementsConfigError(f"poll_interval must be positive, got {poll_interval!r}")
        # the one bulk wait (utils/polling.BulkWait): polls back off 1, 2, 4 … s up to poll_interval
        wait = BulkWait(poll_interval, deadline=None if timeout is None else time.time() + timeout)

        def poll() -> dict[str, Any]:
            status_json = self.get_bulk_status(job_id)
            self.log.info(
                "Bulk job %s: %s (records=%s, failed=%s)",
                job_id,
                status_json.get("status"),
                status_json.get("recordsCount"),
                status_json.get("recordsFailedCount"),
            )
            return status_json

        first = poll()
        step = wait.decide(first)
        final = first if step.done else wait_until_done(poll, wait, step)
        if final is None:
            raise CloudElementsTimeoutError(
                f"Bulk job {job_id} still running after {timeout} s; cancel it with "
                f"PUT /bulk/{job_id}/cancel if it is no longer needed"
            )
        outcome = wait.classify(final)
        if outcome.outcome == "success":
            return final
        raise CloudElementsBulkJobError(
            f"Bulk job {job_id} ended {outcome.status.value}"
            + (f": {safe_excerpt(str(final['message']), self._secrets())}" if final.get("message") else "")
        )

    def download_bulk(
        self,
        job_id: str,
        resource: str,
        fileobj: BinaryIO,
        *,
        fmt: str = "json",
        progress: Callable[[int, int], None] | None = None,
        expected_records: int | None = None,
    ) -> BulkDownloadResult:
        """Stream a finished job's file: ``GET /hubs/finance/bulk/{id}/{resource}`` (§4.1) into ``fileobj``.

        The body is written chunk by chunk (:data:`DOWNLOAD_CHUNK_BYTES`, 1 MiB), never held in memory.
        ``fmt="json"`` sends
        ``Accept: application/json`` (the file is NDJSON, one record per line); ``"csv"`` sends
        ``Accept: text/csv``. The read timeout is at least 300 s.

        Truncation: a connection dropped mid-stream, a body shorter than its ``Content-Length`` or an
        NDJSON file ending in a partial line is never returned as success. When ``fileobj`` is seekable
        the hook rewinds to where it started (``seek``; ``truncate``) and downloads again under the retry
        policy; when it is not seekable and bytes were already written it raises
        :class:`CloudElementsConnectionError`.

        :param job_id: bulk job id.
        :param resource: the job's object name.
        :param fileobj: binary file object opened for writing.
        :param fmt: ``"json"`` or ``"csv"``.
        Records are counted while streaming (:class:`~..client.paging.RecordCounter`: NDJSON non-blank lines,
        CSV records parsed with :mod:`csv`, header excluded). With ``expected_records`` (the job's
        ``recordsCount``) reading stops at the first chunk that brings more records than that (a body
        that never ends cannot fill the disk); that chunk is never written and a seekable ``fileobj``
        is rewound to where it started. Fewer records than expected is the caller's check
        (:attr:`BulkDownloadResult.records`).

        :param progress: called after every chunk with ``(records, bytes)`` written so far in this attempt.
        :param expected_records: stop (typed error) once more records than this arrived; ``None`` = no cap.
        :return: :class:`BulkDownloadResult`.
        :raises CloudElementsConfigError: unknown ``fmt``, bad resource, negative ``expected_records``.
        :raises CloudElementsReconciliationError: more records than ``expected_records`` (not retried).
        :raises CloudElementsConnectionError: download still truncated when the retry budget is spent.
        """
        if fmt not in _FORMATS:
            raise CloudElementsConfigError(f"fmt must be one of {sorted(_FORMATS)}, got {fmt!r}")
        if expected_records is not None and (
            isinstance(expected_records, bool) or not isinstance(expected_records, int) or expected_records < 0
        ):
            raise CloudElementsConfigError(f"expected_records must be an integer >= 0, got {expected_records!r}")
        check_resource_name(resource, self.element_key)
        path = f"{HUB_PREFIX}/bulk/{job_path(job_id)}/{resource}"
        try:
            start_pos: int | None = fileobj.tell()
            seekable = bool(getattr(fileobj, "seekable", lambda: True)())
        except (OSError, AttributeError, ValueError):
            start_pos, seekable = None, False
        attempts = 0
        read_timeout = max(self.settings.read_timeout, BULK_DOWNLOAD_READ_TIMEOUT)

        def attempt() -> BulkDownloadResult:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and seekable and start_pos is not None:
                fileobj.seek(start_pos)
                fileobj.truncate()
            return self._send_once(
                "GET",
                path,
                hub=True,
                headers={"Accept": _FORMATS[fmt]},
                read_timeout=read_timeout,
                stream_consume=lambda resp: _stream_to_file(
                    resp,
                    fileobj,
                    fmt=fmt,
                    progress=progress,
                    seekable=seekable and start_pos is not None,
                    counter=RecordCounter(fmt, expected=expected_records, what=f"Bulk job {job_id} download"),
                ),
            )

        try:
            result = self._with_retry(attempt, method="GET", path=path, read_timeout=read_timeout)
        except CloudElementsError:
            if seekable and start_pos is not None:  # leave no partial file behind
                fileobj.seek(start_pos)
                fileobj.truncate()
            raise
        self.log.info(
            "Downloaded bulk job %s (%s): %s records, %s bytes in %s attempt(s)",
            job_id,
            resource,
            result.records,
            result.bytes,
            attempts,
        )
        return result

    def iter_bulk_errors(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Failed records of a bulk job: paged ``GET /hubs/finance/bulk/{id}/errors`` (§4.1)."""
        return self._paginate(
            f"{HUB_PREFIX}/bulk/{job_path(job_id)}/errors",
            {},
            hub=True,
            page_size=self.settings.page_size,
            cursor_only=True,
        )

    def cancel_bulk_job(self, job_id: str) -> None:
        """``PUT /hubs/finance/bulk/{id}/cancel`` (§4.1); the status becomes ``CANCELLED``."""
        self._call("PUT", f"{HUB_PREFIX}/bulk/{job_path(job_id)}/cancel", hub=True)
        self.log.info("Cancelled bulk job %s", job_id)

    def upload_bulk(
        self, resource: str, fileobj: IO[bytes], *, fmt: str = "json", identifier_field_name: str | None = None
    ) -> str:
        """Bulk upload: ``POST /hubs/finance/bulk/{resource}`` with a multipart ``file`` and ``metaData`` (§4.1).

        ``metaData`` is ``{"format": fmt[, "identifierFieldName": …]}``. The file is read once into memory
        (httpx builds multipart bodies from it) so that a retry after a 429 resends the same bytes.

        :param fileobj: binary file with NDJSON / a JSON array (``fmt="json"``) or CSV with a header row.
        :param identifier_field_name: upsert key: a record whose value of this field matches an existing
            record updates it instead of creating a new one.
        :return: the job id.
        """
        if fmt not in _FORMATS:
            raise CloudElementsConfigError(f"fmt must be one of {sorted(_FORMATS)}, got {fmt!r}")
        check_resource_name(resource, self.element_key)
        metadata = {"format": fmt}
        if identifier_field_name:
            metadata["identifierFieldName"] = identifier_field_name
        content = fileobj.read()
        if isinstance(content, str):
            content = content.encode("utf-8")
        path = f"{HUB_PREFIX}/bulk/{resource}"
        job = self._with_retry(
            lambda: self._send_once(
                "POST",
                path,
                hub=True,
                files={"file": (f"{resource}.{fmt}", content, _FORMATS[fmt])},
                data={"metaData": json.dumps(metadata)},
                consume=self._json,
            ),
            method="POST",
            path=path,
        )
        job_id = job.get("id") if isinstance(job, Mapping) else None
        if job_id in (None, ""):
            raise CloudElementsApiError(f"POST {path} returned no job id")
        return str(job_id)


def _stream_to_file(
    resp: httpx.Response,
    fileobj: BinaryIO,
    *,
    fmt: str,
    progress: Callable[[int, int], None] | None,
    seekable: bool,
    counter: RecordCounter,
) -> BulkDownloadResult:
    """Copy a streamed response into ``fileobj`` while ``counter`` counts its records.

    On truncation it raises :class:`TruncatedDownloadError` (retryable) or
    :class:`CloudElementsConnectionError` (not retryable: bytes written to a non-seekable file), and lets
    ``counter``'s :class:`CloudElementsReconciliationError` (too many records) through. A chunk is written
    only after the counter accepted it.
    """
    expected = None if resp.headers.get("Content-Encoding") else header_int(resp.headers, "Content-Length")
    written = 0
    tail = bytearray()  # bytes after the last newline (a partial NDJSON record)

    def truncated(reason: str) -> Exception:
        if written and not seekable:
            return CloudElementsConnectionError(
                f"Bulk download interrupted after {written} bytes ({reason}); the target file object is not "
                "seekable, so it cannot be rewound and downloaded again: retry the task"
            )
        return TruncatedDownloadError(f"{reason} after {written} bytes")

    def chunks() -> Iterator[bytes]:
        nonlocal written, tail
        for chunk in resp.iter_bytes(chunk_size=DOWNLOAD_CHUNK_BYTES):
            if not chunk:
                continue
            yield chunk  # counted (and maybe refused) before it is written
            fileobj.write(chunk)
            written += len(chunk)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                tail = bytearray(chunk[cut + 1 :])
            else:
                tail.extend(chunk)
            if progress is not None:
                progress(counter.records, written)

    try:
        counter.consume(chunks())
    except httpx.TransportError as exc:  # connection dropped, body shorter than announced, read timeout
        raise truncated(f"connection dropped mid-stream: {type(exc).__name__}") from exc
    if expected is not None and written != expected:
        raise truncated(f"got {written} of {expected} bytes announced by Content-Length")
    if fmt == "json" and tail.strip():
        try:
            json.loads(bytes(tail))
        except ValueError:
            raise truncated("the NDJSON body ends in a partial record") from None
    return BulkDownloadResult(records=counter.records, lines=counter.lines, bytes=written)
