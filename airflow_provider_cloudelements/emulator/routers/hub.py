"""Finance hub routes (reference §3). The ``{hub}`` path segment is ignored: the Element token in
the ``Authorization`` header selects the instance (reference §1.2)."""

from __future__ import annotations

import random
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from airflow_provider_cloudelements.emulator import generator, timefmt
from airflow_provider_cloudelements.emulator.bulkfiles import flatten
from airflow_provider_cloudelements.emulator.deps import (
    API,
    HubInstance,
    JsonBody,
    int_param,
    json_text,
    state_of,
)
from airflow_provider_cloudelements.emulator.records import dumps

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
    sample = next(iter(state.record_repo.scan(tbl, limit=1)), None)
    record = (
        sample.obj()
        if sample
        else generator.stamp(
            element,
            name,
            generator.builder_for(element, name)(
                random.Random(0), generator.pools(state.config.seed), 1, timefmt.now_ms(), 1
            ),
            1,
            timefmt.now_ms(),
            timefmt.now_ms(),
            0,
        )
    )
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


@router.get("/{resource}")
def list_records(hub: str, resource: str, request: Request, inst: HubInstance) -> Response:
    """Search/list (reference §3.3-3.4): ``where``, ``orderBy``, ``page`` (1-based), ``pageSize``,
    ``nextPage``, ``returnCount``. Returns a bare JSON array plus paging headers."""
    q = request.query_params
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
    return json_text(page.body, _headers(inst, page.headers))


@router.post("/{resource}")
def create_record(
    hub: str,
    resource: str,
    request: Request,
    inst: HubInstance,
    body: JsonBody,
) -> Response:
    """Create; returns the stored object with its id, version and timestamps."""
    record = state_of(request).hub.create(inst, resource, body)
    return json_text(dumps(record), _headers(inst))


@router.get("/{resource}/{record_id}")
def get_record(hub: str, resource: str, record_id: str, request: Request, inst: HubInstance) -> Response:
    """One record (404 unknown/hard-deleted; QBO ``id|syncToken`` accepted, malformed ids → 400)."""
    return json_text(state_of(request).hub.get(inst, resource, record_id), _headers(inst))


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
    record = state_of(request).hub.update(inst, resource, record_id, body, full=False)
    return json_text(dumps(record), _headers(inst))


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
    record = state_of(request).hub.update(inst, resource, record_id, body, full=True)
    return json_text(dumps(record), _headers(inst))


@router.delete("/{resource}/{record_id}")
def delete_record(hub: str, resource: str, record_id: str, request: Request, inst: HubInstance) -> Response:
    """Soft or hard delete per resource (see :mod:`..elements`); 200 with an empty body."""
    state_of(request).hub.delete(inst, resource, record_id)
    return Response(status_code=200, headers=_headers(inst))
