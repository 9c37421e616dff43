"""Finance hub routes (reference §3).

The ``{hub}`` path segment is ignored: the Element token in the ``Authorization`` header selects the
instance (reference §1.2).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cloudelements_emulator import generator, reports, timefmt
from cloudelements_emulator.bulkfiles import flatten
from cloudelements_emulator.deps import (
    API,
    HubInstance,
    JsonBody,
    int_param,
    json_text,
    state_of,
)
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.records import dumps

router = APIRouter(prefix=API + "/hubs/{hub}", tags=["hub"])


def _headers(inst: dict[str, Any], extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Elements-Element-Instance-Id": str(inst["id"]), **(extra or {})}


@router.get("/ping")
def ping(hub: str, inst: HubInstance) -> dict[str, Any]:
    """Instance connectivity check (reference §3.1)."""
    return {
        "endpoint": inst["element"]["key"],
        "instanceId": inst["id"],
        "status": "connected",
        "dateTime": timefmt.iso_utc(timefmt.now_ms()),
    }


@router.get("/objects")
def objects(hub: str, request: Request, inst: HubInstance) -> list[str]:
    """Object (resource) names of the instance's element (reference §3.1, §4.1)."""
    return list(state_of(request).instances.element_of(inst).resources)


def _field_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str) and value.startswith("["):
        return "array"
    return "string"


@router.get("/objects/{name}/metadata")
def object_metadata(hub: str, name: str, request: Request, inst: HubInstance) -> dict[str, Any]:
    """``{"fields": [{"vendorPath", "type", "vendorNativeType", "vendorReadOnly"}]}`` from a sample record.

    :raises CEError: 404 for an unknown object.
    """
    state = state_of(request)
    element, tbl = state.hub.table(inst, name)
    name = element.resolve(name)
    sample = next(iter(state.record_repo.scan(tbl, limit=1)), None)
    record = sample.obj() if sample else state.hub.template(element, name)
    date_fields = {element.date_field, element.created_field}
    system = set(generator.stamp(element, name, {}, 1, 0, 0, 0))
    fields = []
    for path, value in flatten(record).items():
        ftype = "date" if path in date_fields else _field_type(value)
        fields.append(
            {
                "vendorPath": path,
                "type": ftype,
                "vendorNativeType": ftype,
                "vendorReadOnly": path.split(".")[0] in system,
                "vendorDisplayName": path,
            }
        )
    return {"objectName": name, "fields": fields, "primaryKey": element.id_field(name)}


def _records_of(request: Request, inst: dict[str, Any]) -> reports.Records:
    hub = state_of(request).hub

    def load(resource: str) -> list[dict[str, Any]]:
        _, tbl = hub.table(inst, resource)
        return [row.obj() for row in hub.records.scan(tbl)]

    return load


def _require_style(request: Request, inst: dict[str, Any], style: str, route: str) -> None:
    element = state_of(request).instances.element_of(inst)
    if element.style != style:
        raise CEError(404, f"{route} is not available for element '{element.key}'")


@router.get("/reports/metadata")
def qbo_report_metadata(hub: str, request: Request, inst: HubInstance) -> list[dict[str, Any]]:
    """QuickBooks Online report catalog ``[{"id", "name", "reportName", "dateFilters"}]`` (reference §10.5)."""
    _require_style(request, inst, "qbo", "GET /reports/metadata")
    return reports.qbo_metadata()


@router.get("/reports/{report_id}")
def qbo_report(hub: str, report_id: str, request: Request, inst: HubInstance) -> dict[str, Any]:
    """One QuickBooks Online report for a period.

    The period is ``startDate``/``endDate`` or ``dateMacro`` / ``createdDateRange``, as query
    parameters or CEQL ``where`` equalities (see :mod:`..reports`).
    """
    _require_style(request, inst, "qbo", "GET /reports/{reportId}")
    params = {**reports.where_equalities(request.query_params.get("where")), **dict(request.query_params)}
    return reports.qbo_report(report_id, params, _records_of(request, inst))


@router.get("/reports")
def qbe_reports(hub: str, request: Request, inst: HubInstance) -> list[dict[str, Any]]:
    """QuickBooks Enterprise reports (reference §10.5).

    ``where=ReportName='…' [and ReportPeriodStart='…' and ReportPeriodEnd='…']`` answers one row with
    ``ReportTitle``. QBO reports are read with ``/reports/{reportId}``.
    """
    element = state_of(request).instances.element_of(inst)
    if element.style == "qbo":
        raise CEError(400, "QuickBooks Online reports are read by id: GET /reports/{reportId} (GET /reports/metadata)")
    _require_style(request, inst, "qbe", "GET /reports")
    return reports.qbe_reports(request.query_params.get("where"), _records_of(request, inst))


@router.get("/report-types")
def qbe_report_types(hub: str, request: Request, inst: HubInstance) -> list[dict[str, str]]:
    """QuickBooks Enterprise ``ReportName`` values with their ``ReportTitle``."""
    _require_style(request, inst, "qbe", "GET /report-types")
    return reports.qbe_report_types()


@router.get("/{resource}")
def list_records(hub: str, resource: str, request: Request, inst: HubInstance) -> Response:
    """Search/list records (reference §3.3-3.4).

    Parameters ``where``, ``orderBy``, ``page`` (1-based), ``pageSize``, ``nextPage``, ``returnCount``.
    Returns a bare JSON array plus paging headers.
    """
    q = request.query_params
    hub_service = state_of(request).hub
    extension = hub_service.extensions.find(inst["element"]["key"], "GET", "/" + resource)
    if extension is not None:
        return json_text(dumps(hub_service.extensions.serve(extension, _records_of(request, inst))), _headers(inst))
    page = state_of(request).hub.search(
        inst,
        resource,
        where=q.get("where"),
        order_by=q.get("orderBy"),
        page=int_param(q.get("page"), "page"),
        page_size=int_param(q.get("pageSize"), "pageSize"),
        next_page=q.get("nextPage") or None,
        return_count=str(q.get("returnCount", "")).lower() == "true",
    )
    return json_text(state_of(request).hub.render_text(inst, resource, page.body), _headers(inst, page.headers))


@router.post("/{resource}")
def create_record(
    hub: str,
    resource: str,
    request: Request,
    inst: HubInstance,
    body: JsonBody,
) -> Response:
    """Create; returns the stored object with its id, version and timestamps."""
    hub_service = state_of(request).hub
    record = hub_service.create(inst, resource, body)
    return json_text(dumps(hub_service.render(inst, resource, record)), _headers(inst))


@router.get("/{resource}/{record_id}")
def get_record(hub: str, resource: str, record_id: str, request: Request, inst: HubInstance) -> Response:
    """One record (404 unknown/hard-deleted; QBO ``id|syncToken`` accepted, malformed ids → 400).

    QuickBooks Online also answers ``Accept: application/pdf`` with the transaction as a PDF
    (reference §3.5, release notes 2.148).
    """
    hub_service = state_of(request).hub
    text = hub_service.get(inst, resource, record_id)
    accept = (request.headers.get("accept") or "").lower()
    if "application/pdf" in accept and "json" not in accept:
        _require_style(request, inst, "qbo", "Accept: application/pdf")
        return Response(pdf_of(text), media_type="application/pdf", headers=_headers(inst))
    return json_text(hub_service.render_text(inst, resource, text), _headers(inst))


@router.patch("/{resource}/{record_id}")
def patch_record(
    hub: str,
    resource: str,
    record_id: str,
    request: Request,
    inst: HubInstance,
    body: JsonBody,
) -> Response:
    """Merge-update; a stale QBO ``syncToken`` / QBE ``EditSequence`` → 400 (reference §3.5)."""
    hub_service = state_of(request).hub
    record = hub_service.update(inst, resource, record_id, body, full=False)
    return json_text(dumps(hub_service.render(inst, resource, record)), _headers(inst))


@router.put("/{resource}/{record_id}")
def put_record(
    hub: str,
    resource: str,
    record_id: str,
    request: Request,
    inst: HubInstance,
    body: JsonBody,
) -> Response:
    """Replace the business fields of a record."""
    hub_service = state_of(request).hub
    record = hub_service.update(inst, resource, record_id, body, full=True)
    return json_text(dumps(hub_service.render(inst, resource, record)), _headers(inst))


@router.delete("/{resource}/{record_id}")
def delete_record(hub: str, resource: str, record_id: str, request: Request, inst: HubInstance) -> Response:
    """Soft or hard delete per resource (see :mod:`..elements`); 200 with an empty body."""
    state_of(request).hub.delete(inst, resource, record_id)
    return Response(status_code=200, headers=_headers(inst))


def pdf_of(record_text: str) -> bytes:
    """A minimal one-page PDF whose text is the record's JSON (enough for clients to store it)."""
    text = record_text[:1500].replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 8 Tf 36 800 Td ({text}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
