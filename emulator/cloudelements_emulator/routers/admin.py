"""Admin routes under ``/_emulator`` (no Cloud Elements auth, never subject to faults).

For out-of-process use (e.g. the demo runs Airflow in a subprocess): health, ground-truth records,
activity simulation, fault control, stats, and instance creation/generation helpers.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cloudelements_emulator.deps import JsonBody, state_of
from cloudelements_emulator.errors import CEError

router = APIRouter(prefix="/_emulator", tags=["admin"])


@router.get("/health")
def health(request: Request) -> dict[str, Any]:
    state = state_of(request)
    return {"status": "ok", "instances": len(state.instances.all()), "dataDir": state.data_dir}


@router.post("/instances")
def create_instance(request: Request, body: JsonBody) -> dict[str, Any]:
    """``{"element_key", "name", "configuration"?, "provider_data"?, "tags"?}`` → the instance incl. token."""
    if not isinstance(body, dict) or not body.get("element_key"):
        raise CEError(400, "element_key is required")
    return state_of(request).create_instance(
        body["element_key"],
        body.get("name") or body["element_key"],
        body.get("configuration"),
        body.get("provider_data"),
        body.get("tags"),
    )


@router.post("/instances/{instance_id:int}/generate/{resource}")
def generate(instance_id: int, resource: str, request: Request) -> dict[str, Any]:
    """Force lazy generation of one dataset; returns ``{"count"}``."""
    return {"count": state_of(request).generate(instance_id, resource)}


@router.get("/instances/{instance_id:int}/records/{resource}")
def records(instance_id: int, resource: str, request: Request, include_deleted: bool = False) -> list[dict]:
    """Ground truth, exactly as served, ordered by id."""
    return state_of(request).records(instance_id, resource, include_deleted)


@router.post("/instances/{instance_id:int}/records/{resource}")
def create_record(instance_id: int, resource: str, request: Request, body: JsonBody) -> dict[str, Any]:
    """Create one record; body ``{"fields"?: {...}}`` → ``{"id", "record", "changed_ms", "deleted"}``."""
    fields = body.get("fields") if isinstance(body, dict) else None
    return state_of(request).create_record(instance_id, resource, fields if isinstance(fields, dict) else None)


@router.patch("/instances/{instance_id:int}/records/{resource}/{record_id}")
def edit_record(instance_id: int, resource: str, record_id: str, request: Request, body: JsonBody) -> dict[str, Any]:
    """Merge ``{"fields": {...}}`` into a live record → ``{"id", "record", "changed_ms", "deleted"}``."""
    if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
        raise CEError(400, 'Body must be {"fields": {...}}')
    return state_of(request).edit_record(instance_id, resource, record_id, body["fields"])


@router.delete("/instances/{instance_id:int}/records/{resource}/{record_id}")
def delete_record(
    instance_id: int, resource: str, record_id: str, request: Request, hard: bool = False
) -> dict[str, Any]:
    """Delete by the element's policy, or always hard with ``?hard=true`` → the change result."""
    return state_of(request).delete_record(instance_id, resource, record_id, hard)


@router.post("/instances/{instance_id:int}/records/{resource}/{record_id}/restore")
def restore_record(instance_id: int, resource: str, record_id: str, request: Request) -> dict[str, Any]:
    """Restore a soft- or hard-deleted record as a new live version → the change result."""
    return state_of(request).restore_record(instance_id, resource, record_id)


@router.post("/activity")
def activity(request: Request, body: JsonBody) -> dict[str, Any]:
    """Simulate creates, updates and deletes on an instance's records.

    Body ``{"instance_id", "resources"?, "creates"?, "updates"?, "deletes"?}`` →
    ``{resource: {"created": [ids], "updated": [ids], "deleted": [ids]}}``.
    """
    if not isinstance(body, dict) or "instance_id" not in body:
        raise CEError(400, "instance_id is required")
    return state_of(request).simulate_activity(
        int(body["instance_id"]),
        body.get("resources"),
        int(body.get("creates", 2)),
        int(body.get("updates", 2)),
        int(body.get("deletes", 1)),
    )


@router.get("/faults")
def get_faults(request: Request) -> dict[str, Any]:
    return state_of(request).faults.config.to_dict()


@router.put("/faults")
def put_faults(request: Request, body: JsonBody) -> dict[str, Any]:
    """Partial :class:`FaultConfig` JSON; unknown fields → 400."""
    if not isinstance(body, dict):
        raise CEError(400, "Body must be a JSON object of FaultConfig fields")
    try:
        return state_of(request).set_faults(**body)
    except (TypeError, ValueError) as err:
        raise CEError(400, str(err)) from None


@router.delete("/faults")
def reset_faults(request: Request) -> Response:
    state_of(request).reset_faults()
    return Response(status_code=200)


@router.get("/stats")
def stats(request: Request) -> dict[str, Any]:
    snap = state_of(request).stats()
    snap["bulk_jobs_created"] = {str(k): v for k, v in snap["bulk_jobs_created"].items()}
    return snap
