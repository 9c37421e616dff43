"""Bulk API routes (reference §4) under ``/hubs/{hub}/bulk``."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from cloudelements_emulator.bulk import public
from cloudelements_emulator.ceql import compile_where
from cloudelements_emulator.deps import (
    API,
    HubInstance,
    int_param,
    json_text,
    paginate,
    state_of,
)
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.paging import decode_cursor, encode_cursor

router = APIRouter(prefix=API + "/hubs/{hub}/bulk", tags=["bulk"])
_CALLBACK = "elements-async-callback-url"


async def _metadata(request: Request) -> tuple[dict[str, Any], UploadFile | None]:
    """``metaData`` JSON form field (or query parameter) and the uploaded ``file`` if any."""
    raw: Any = request.query_params.get("metaData")
    upload = None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        raw = form.get("metaData", raw)
        candidate = form.get("file")
        upload = candidate if hasattr(candidate, "read") else None
        if hasattr(raw, "read"):
            raw = (await raw.read()).decode()
    try:
        meta = json.loads(raw) if raw else {}
    except ValueError:
        raise CEError(400, "metaData must be a JSON object") from None
    if not isinstance(meta, dict):
        raise CEError(400, "metaData must be a JSON object")
    return meta, upload  # type: ignore[return-value]


@router.post("/query")
async def bulk_query(hub: str, request: Request, inst: HubInstance) -> dict[str, Any]:
    """Submit a bulk query ``q=select * from <object> [where ...] [limit n]``.

    Optional ``from``/``to`` (ISO-8601; from inclusive, to exclusive) bound the element's updated
    field. Answers ``{"id", "status": "CREATED"}``.
    """
    meta, _ = await _metadata(request)
    q = request.query_params
    job = await run_in_threadpool(
        state_of(request).bulk.submit_query,
        inst,
        q.get("q"),
        q.get("from") or q.get("lastRunDate"),
        q.get("to"),
        request.headers.get(_CALLBACK),
        meta,
    )
    return {"id": job["id"], "status": job["status"], "instanceId": inst["id"]}


@router.get("/jobs")
def bulk_jobs(hub: str, request: Request, inst: HubInstance) -> Any:
    """List the instance's jobs, CEQL ``where`` on job fields, paged with ``pageSize``/``nextPage``."""
    q = request.query_params
    predicate = compile_where(q.get("where")).predicate if q.get("where") else (lambda r: True)
    jobs = [j for j in state_of(request).bulk.jobs(inst) if predicate(j)]
    page, headers = paginate(jobs, q.get("pageSize"), q.get("nextPage"))
    return json_text(json.dumps(page), headers)


@router.get("/{job_id}/status")
def bulk_status(hub: str, job_id: str, request: Request, inst: HubInstance) -> dict[str, Any]:
    """``{"id", "status", "recordsCount", "recordsFailedCount", ...}``."""
    return public(state_of(request).bulk.get(inst, job_id))


@router.get("/{job_id}/errors")
def bulk_errors(hub: str, job_id: str, request: Request, inst: HubInstance) -> Any:
    """Failed records, paged (``pageSize`` default 200, ``nextPage``); no token on the last page."""
    q = request.query_params
    size = int_param(q.get("pageSize"), "pageSize") or 200
    if size < 1:
        raise CEError(400, "pageSize must be a positive integer")
    offset = decode_cursor(q["nextPage"])[0] if q.get("nextPage") else 0
    items, more = state_of(request).bulk.errors(inst, job_id, offset, size)
    headers = {"Elements-Returned-Count": str(len(items))}
    if more:
        headers["Elements-Next-Page-Token"] = encode_cursor(offset + size)
    return json_text(json.dumps(items), headers)


@router.put("/{job_id}/cancel")
def bulk_cancel(hub: str, job_id: str, request: Request, inst: HubInstance) -> dict[str, Any]:
    """Cancel a non-terminal job (→ ``CANCELLED``); terminal jobs are returned unchanged."""
    return state_of(request).bulk.cancel(inst, job_id)


@router.get("/{job_id}/{object_name}")
def bulk_download(hub: str, job_id: str, object_name: str, request: Request, inst: HubInstance) -> StreamingResponse:
    """The job's file: ``Accept: application/json`` → NDJSON, ``text/csv`` (default) → CSV.

    400 (JSON error) before the job is done; streamed in constant memory.
    """
    chunks, media_type, headers = state_of(request).bulk.download(
        inst, job_id, object_name, request.headers.get("accept")
    )
    return StreamingResponse(chunks, media_type=media_type, headers=headers)


@router.post("/{object_name}")
async def bulk_upload(hub: str, object_name: str, request: Request, inst: HubInstance) -> dict[str, Any]:
    """Upload a ``multipart/form-data`` ``file`` (CSV or NDJSON/JSON array) with ``metaData`` JSON.

    Records are created one by one and failures go to ``/errors``. Answers ``{"id", "status":
    "CREATED"}``.
    """
    meta, upload = await _metadata(request)
    if upload is None:
        raise CEError(400, "Missing multipart 'file' part")
    job = await run_in_threadpool(
        state_of(request).bulk.submit_upload,
        inst,
        object_name,
        upload.file,
        upload.filename,
        meta,
        request.headers.get(_CALLBACK),
    )
    return {"id": job["id"], "status": job["status"], "instanceId": inst["id"]}
