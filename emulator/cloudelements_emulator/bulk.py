"""Bulk jobs (reference §4): query snapshots, uploads, status, errors, cancel, callbacks.

Lifecycle: ``CREATED`` → ``RUNNING`` → ``COMPLETED`` (or ``COMPLETE`` per
``EmulatorConfig.bulk_done_status``) / ``FAILED`` / ``CANCELLED``. A job stays non-terminal for at
least ``bulk_min_seconds``. Query jobs snapshot the matching records into
``<data_dir>/bulk/<id>.ndjson`` (later changes do not alter it); downloads stream that file.
On a terminal status the job POSTs ``{id, status, instanceId, objectName, jobDirection,
recordsCount, recordsFailedCount[, callback-payload]}`` to ``Elements-Async-Callback-Url``, signed
like events when the instance has ``event.notification.signature.key`` (§4.3, §5.5).
Jobs that were running when the emulator stopped are marked ``FAILED`` on restart.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from typing import Any, BinaryIO

from cloudelements_emulator import bulkfiles, timefmt
from cloudelements_emulator.ceql import date_window
from cloudelements_emulator.commonresources import translate_where
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.faults import FaultInjector
from cloudelements_emulator.hubservice import HubService
from cloudelements_emulator.instances import InstanceService, event_settings
from cloudelements_emulator.qbo_ids import bare_id
from cloudelements_emulator.records import Window, dumps
from cloudelements_emulator.stats import Stats
from cloudelements_emulator.store import Store
from cloudelements_emulator.transform import Mapping
from cloudelements_emulator.webhooks import Dispatcher

log = logging.getLogger(__name__)
_SELECT = re.compile(
    r"^\s*select\s+(?P<fields>.+?)\s+from\s+(?P<obj>[\w\-]+)"
    r"(?:\s+where\s+(?P<where>.+?))?(?:\s+limit\s+(?P<limit>\d+))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
TERMINAL = frozenset({"COMPLETED", "COMPLETE", "FAILED", "CANCELLED"})


class BulkService:
    """All bulk jobs; one worker thread per running job."""

    def __init__(
        self,
        store: Store,
        instances: InstanceService,
        hub: HubService,
        dispatcher: Dispatcher,
        faults: FaultInjector,
        stats: Stats,
        done_status: str,
        min_seconds: float,
    ) -> None:
        self.store = store
        self.instances = instances
        self.hub = hub
        self.dispatcher = dispatcher
        self.faults = faults
        self.stats = stats
        self.done_status = done_status
        self.min_seconds = min_seconds
        self.dir = os.path.join(store.data_dir, "bulk")
        os.makedirs(self.dir, exist_ok=True)
        self._cancel: dict[str, threading.Event] = {}
        self._threads: list[threading.Thread] = []
        self._recover()

    # ------------------------------------------------------------ persistence
    def _recover(self) -> None:
        for job in self._all():
            if job["status"] not in TERMINAL:
                job["message"] = "The emulator restarted while the job was running"
                self._set_status(job, "FAILED")

    def _all(self) -> list[dict[str, Any]]:
        return [json.loads(r[0]) for r in self.store.conn().execute("SELECT data FROM bulk_jobs ORDER BY id")]

    def _save(self, job: dict[str, Any]) -> None:
        with self.store.tx() as c:
            c.execute("UPDATE bulk_jobs SET data=? WHERE id=?", (json.dumps(job), int(job["id"])))

    def _new_job(
        self,
        inst: dict[str, Any],
        object_name: str,
        direction: str,
        query: str | None,
        callback_url: str | None,
        metadata: dict[str, Any],
    ) -> dict[str, Any]:
        now = timefmt.now_ms()
        job: dict[str, Any] = {
            "instanceId": inst["id"],
            "objectName": object_name,
            "object_name": object_name,
            "jobDirection": direction,
            "job_direction": direction,
            "status": "CREATED",
            "job_status": "CREATED",
            "recordsCount": 0,
            "recordsFailedCount": 0,
            "record_count": 0,
            "error_count": 0,
            "createdDate": timefmt.iso_utc(now),
            "completion_time": None,
            "job_query": query,
            "notification_url": callback_url,
            "fileFormat": "json",
            "metaData": metadata,
        }
        with self.store.tx() as c:
            cur = c.execute("INSERT INTO bulk_jobs (instance_id, data) VALUES (?, ?)", (inst["id"], "{}"))
            job["id"] = str(cur.lastrowid)
        self._save(job)
        self.stats.count_bulk_job(inst["id"])
        self._cancel[job["id"]] = threading.Event()
        return job

    def get(self, inst: dict[str, Any], job_id: str) -> dict[str, Any]:
        """:raises CEError: 404 for an unknown job or one of another instance."""
        row = (
            self.store.conn()
            .execute(
                "SELECT data FROM bulk_jobs WHERE id=? AND instance_id=?",
                (int(job_id) if str(job_id).isdigit() else -1, inst["id"]),
            )
            .fetchone()
        )
        if not row:
            raise CEError(404, f"No bulk job found with id {job_id}")
        return json.loads(row[0])

    def jobs(self, inst: dict[str, Any]) -> list[dict[str, Any]]:
        rows = self.store.conn().execute("SELECT data FROM bulk_jobs WHERE instance_id=? ORDER BY id", (inst["id"],))
        return [public(json.loads(r[0])) for r in rows]

    def _set_status(self, job: dict[str, Any], status: str) -> None:
        job["status"] = job["job_status"] = status
        if status in TERMINAL:
            job["completion_time"] = timefmt.iso_utc(timefmt.now_ms())
        self._save(job)

    # ------------------------------------------------------------ query jobs
    def submit_query(
        self,
        inst: dict[str, Any],
        q: str | None,
        from_: str | None,
        to: str | None,
        callback_url: str | None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /bulk/query`` (reference §4.1). :raises CEError: 400 for a bad ``q``/``from``/``to``."""
        match = _SELECT.match(q or "")
        if not match:
            raise CEError(400, f"Error parsing query: {q!r} (expected 'select * from <object> [where ...]')")
        if match["fields"].strip() != "*":
            raise CEError(
                400,
                "Field selection is not supported for this element; use 'select *' "
                "(reference: bulk field selection No)",
            )
        obj = match["obj"]
        vendor_obj, mapping = self.hub.target(inst, obj)  # a common resource name (reference §10.4)
        element, _ = self.hub.table(inst, vendor_obj)
        where = translate_where(mapping, element, match["where"]) if mapping is not None else match["where"]
        query = self.hub.compile(element, where)
        try:
            lo = timefmt.require_instant(from_, "from") if from_ else None
            hi = timefmt.require_instant(to, "to") if to else None
        except ValueError as err:
            raise CEError(400, str(err)) from None
        job = self._new_job(inst, obj, "DOWNLOAD", q, callback_url, metadata or {})
        job["from"], job["to"] = from_, to
        limit = int(match["limit"]) if match["limit"] else None
        self._start(self._run_query, job, inst, element, vendor_obj, query, lo, hi, limit, mapping)
        return job

    def _start(self, target: Any, *args: Any) -> None:
        def run() -> None:
            try:
                target(*args)
            finally:
                self.store.release()  # one SQLite connection per worker thread; free it

        thread = threading.Thread(target=run, name=f"ce-bulk-{args[0]['id']}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _wait(self, job: dict[str, Any], until: float) -> bool:
        """Sleep until ``until`` (monotonic) unless cancelled; True if cancelled."""
        return self._cancel[job["id"]].wait(max(0.0, until - time.monotonic()))

    def _run_query(
        self,
        job: dict[str, Any],
        inst: dict[str, Any],
        element: Any,
        obj: str,
        query: Any,
        lo: int | None,
        hi: int | None,
        limit: int | None,
        mapping: Mapping | None = None,
    ) -> None:
        started = time.monotonic()
        try:
            if self._wait(job, started + self.min_seconds / 2):
                return
            self._set_status(job, "RUNNING")
            path = os.path.join(self.dir, f"{job['id']}.ndjson")
            count, failed = self._snapshot(job, inst, element, obj, query, lo, hi, limit, path, mapping)
            if count is None:
                return
            job["file"] = path
            job["recordsCount"] = job["record_count"] = count
            job["recordsFailedCount"] = job["error_count"] = failed
            if self._wait(job, started + self.min_seconds):
                return
            if self.faults.config.bulk_fail:
                job["message"] = "The bulk job failed (injected fault)"
                self._finish(job, inst, "FAILED")
            else:
                self._finish(job, inst, self.done_status)
        except Exception as err:  # a worker must always reach a terminal state
            log.exception("bulk job %s failed", job["id"])
            job["message"] = f"{type(err).__name__}: {err}"
            self._finish(job, inst, "FAILED")

    def _snapshot(
        self,
        job: dict[str, Any],
        inst: dict[str, Any],
        element: Any,
        obj: str,
        query: Any,
        lo: int | None,
        hi: int | None,
        limit: int | None,
        path: str,
        mapping: Mapping | None = None,
    ) -> tuple[int | None, int]:
        _, tbl = self.hub.table(inst, obj)
        predicate = self.hub.predicate(element, query)
        wlo, whi = date_window(query.tree, element.date_field)
        window = Window(
            lo=_max(lo, wlo),
            hi=hi if whi is None or (hi is not None and hi <= whi) else whi,
            hi_inclusive=hi is None or (whi is not None and whi < hi),
        )
        to_fail = self.faults.config.bulk_failed_records
        cancel = self._cancel[job["id"]]
        count = failed = 0
        errors: list[tuple[int, int, str]] = []
        tmp = path + ".part"
        with open(tmp, "w", encoding="utf-8") as out:
            for n, row in enumerate(self.records_scan(tbl, window)):
                if n % 5000 == 0 and cancel.is_set():
                    out.close()
                    os.remove(tmp)
                    return None, 0
                if query.tree is not None and not predicate(row.obj()):
                    continue
                if limit is not None and count + failed >= limit:
                    break
                if failed < to_fail:
                    failed += 1
                    record = row.obj()
                    errors.append(
                        (
                            int(job["id"]),
                            failed,
                            json.dumps(
                                {
                                    "recordId": str(record.get(element.id_field(obj))),
                                    "record": record,
                                    "message": "Failed to retrieve the record from the provider (injected fault)",
                                }
                            ),
                        )
                    )
                    continue
                out.write(row.data if mapping is None else dumps(mapping.to_common(row.obj())))
                out.write("\n")
                count += 1
        os.replace(tmp, path)
        if errors:
            with self.store.tx() as c:
                c.executemany("INSERT INTO bulk_errors (job_id, seq, data) VALUES (?, ?, ?)", errors)
        return count, failed

    def records_scan(self, tbl: str, window: Window) -> Any:
        return self.hub.records.scan(tbl, window)

    def _finish(self, job: dict[str, Any], inst: dict[str, Any], status: str) -> None:
        if self._cancel[job["id"]].is_set():
            return
        self._set_status(job, status)
        if job.get("notification_url"):
            payload: dict[str, Any] = {
                "id": job["id"],
                "status": status,
                "instanceId": inst["id"],
                "objectName": job["objectName"],
                "jobDirection": job["jobDirection"],
                "recordsCount": job["recordsCount"],
                "recordsFailedCount": job["recordsFailedCount"],
            }
            if job.get("message"):
                payload["message"] = job["message"]
            if "callback-payload" in (job.get("metaData") or {}):
                payload["callback-payload"] = job["metaData"]["callback-payload"]
            key = (
                event_settings(self.instances.get(inst["id"]))["signature_key"]
                if inst["id"] in {i["id"] for i in self.instances.all()}
                else None
            )
            self.dispatcher.submit(job["notification_url"], payload, key, kind="bulk", instance_id=inst["id"])

    # ------------------------------------------------------------ upload jobs
    def submit_upload(
        self,
        inst: dict[str, Any],
        object_name: str,
        fh: BinaryIO,
        filename: str | None,
        metadata: dict[str, Any],
        callback_url: str | None,
    ) -> dict[str, Any]:
        """``POST /bulk/{objectName}`` (reference §4.1): creates records one by one in a worker.

        ``metaData.identifierFieldName`` upserts: a record whose field value matches a live record
        updates it, otherwise it is created. An object the element does not have still gives a job;
        every record then fails with the reason (reference §4.1, churros ``bulk.js``).
        """
        job = self._new_job(inst, object_name, "UPLOAD", None, callback_url, metadata)
        path = os.path.join(self.dir, f"{job['id']}.upload")
        with open(path, "wb") as out:
            shutil.copyfileobj(fh, out)
        self._start(self._run_upload, job, inst, object_name, path, filename, metadata)
        return job

    def _run_upload(
        self,
        job: dict[str, Any],
        inst: dict[str, Any],
        object_name: str,
        path: str,
        filename: str | None,
        metadata: dict[str, Any],
    ) -> None:
        started = time.monotonic()
        try:
            if self._wait(job, started + self.min_seconds / 2):
                return
            self._set_status(job, "RUNNING")
            ok = failed = 0
            errors = []
            try:
                self.hub.table(inst, self.hub.target(inst, object_name)[0])  # a common name: its vendor resource
                unknown = None
            except CEError as err:
                unknown = err.message
            identifier = metadata.get("identifierFieldName") or None
            with open(path, "rb") as fh:
                for line, item, error in bulkfiles.parse_upload(fh, metadata.get("format"), filename):
                    if self._cancel[job["id"]].is_set():
                        return
                    if error is None and unknown is not None:
                        error = unknown
                    if error is None:
                        try:
                            self._upsert(inst, object_name, item, identifier)
                            ok += 1
                            continue
                        except CEError as err:
                            error = err.message
                    failed += 1
                    errors.append(
                        (int(job["id"]), failed, json.dumps({"line": line, "record": item, "message": error}))
                    )
            if errors:
                with self.store.tx() as c:
                    c.executemany("INSERT INTO bulk_errors (job_id, seq, data) VALUES (?, ?, ?)", errors)
            job["recordsCount"] = job["record_count"] = ok
            job["recordsFailedCount"] = job["error_count"] = failed
            if self._wait(job, started + self.min_seconds):
                return
            self._finish(job, inst, "FAILED" if self.faults.config.bulk_fail else self.done_status)
        except Exception as err:
            log.exception("bulk upload %s failed", job["id"])
            job["message"] = f"{type(err).__name__}: {err}"
            self._finish(job, inst, "FAILED")

    def _upsert(self, inst: dict[str, Any], object_name: str, item: dict[str, Any], identifier: str | None) -> None:
        """Create ``item``, or update the live record whose ``identifier`` field equals the item's."""
        if identifier and item.get(identifier) not in (None, ""):
            element, tbl = self.hub.table(inst, object_name)
            wanted = str(item[identifier])
            for row in self.records_scan(tbl, Window()):
                record = row.obj()
                if str(record.get(identifier)) == wanted:
                    id_field = element.id_field(element.resolve(object_name))
                    body = {k: v for k, v in item.items() if k != id_field}
                    self.hub.update(inst, object_name, bare_id(record[id_field]), body, full=False)
                    return
        self.hub.create(inst, object_name, item)

    # ------------------------------------------------------------ errors / cancel / download
    def errors(self, inst: dict[str, Any], job_id: str, offset: int, size: int) -> tuple[list[dict], bool]:
        job = self.get(inst, job_id)
        rows = (
            self.store.conn()
            .execute(
                "SELECT data FROM bulk_errors WHERE job_id=? ORDER BY seq LIMIT ? OFFSET ?",
                (int(job["id"]), size + 1, offset),
            )
            .fetchall()
        )
        items = [json.loads(r[0]) for r in rows]
        return items[:size], len(items) > size

    def cancel(self, inst: dict[str, Any], job_id: str) -> dict[str, Any]:
        """``PUT /bulk/{id}/cancel``: non-terminal jobs become ``CANCELLED`` at once."""
        job = self.get(inst, job_id)
        if job["status"] in TERMINAL:
            return public(job)
        event = self._cancel.setdefault(job["id"], threading.Event())
        event.set()
        self._set_status(job, "CANCELLED")
        return public(job)

    def download(
        self, inst: dict[str, Any], job_id: str, object_name: str, accept: str | None
    ) -> tuple[Any, str, dict[str, str]]:
        """Return ``(chunk iterator, media type, headers)`` for a finished download job.

        :raises CEError: 404 unknown job/object, 400 job not finished, 406 unsupported ``Accept``.
        """
        job = self.get(inst, job_id)
        if job["objectName"] != object_name or job["jobDirection"] != "DOWNLOAD":
            raise CEError(404, f"Bulk job {job_id} has no file for object '{object_name}'")
        if job["status"] != self.done_status or not job.get("file") or not os.path.exists(job["file"]):
            raise CEError(
                400,
                f"Bulk job {job_id} is not complete (status {job['status']}); "
                "poll /bulk/{id}/status until it is " + self.done_status,
            )
        wanted = (accept or "text/csv").lower()
        limit = self.faults.take_download_drop("/elements/api-v2/hubs/finance/bulk")
        disposition = {"Content-Disposition": f'attachment; filename="{object_name}-{job_id}'}
        if any(t in wanted for t in ("application/json", "application/jsonl", "application/x-ndjson")):
            size = os.path.getsize(job["file"])
            disposition["Content-Disposition"] += '.json"'
            headers = {"Content-Length": str(size), **disposition}
            return bulkfiles.iter_file(job["file"], limit), "application/json", headers
        if "text/csv" in wanted or "*/*" in wanted:
            disposition["Content-Disposition"] += '.csv"'
            return (
                bulkfiles.iter_csv(job["file"], limit),
                "text/csv",
                {**disposition, "Content-Type": "text/csv"},
            )
        raise CEError(406, f"Cannot produce {accept!r}; use application/json or text/csv")

    def stop(self) -> None:
        for event in self._cancel.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout=5)


def public(job: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in job.items() if k not in ("file", "metaData")}


def _max(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else max(a, b)
