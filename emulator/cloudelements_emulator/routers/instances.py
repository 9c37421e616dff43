"""Element instances (reference §2.2): CRUD, enable/disable, configuration entries.

All routes need platform auth (``User`` + ``Organization``); the token-scoped forms
(``PATCH /instances``, ``GET /instances/configuration``) take the ``Element`` token instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cloudelements_emulator.deps import API, HubInstance, JsonBody, PlatformState, state_of
from cloudelements_emulator.elements import find_element
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.state import EmulatorState

router = APIRouter(prefix=API, tags=["instances"])


def _public(state: EmulatorState, inst: dict[str, Any]) -> dict[str, Any]:
    return state.instances.public(inst)


def _put_answer(state: EmulatorState, inst: dict[str, Any]) -> dict[str, Any]:
    """``PUT /instances`` answers without ``providerData`` (the OAuth results are not echoed on updates)."""
    out = _public(state, inst)
    out.pop("providerData", None)
    return out


@router.post("/instances")
def create_instance(body: JsonBody, state: PlatformState) -> dict:
    """Create an instance (reference §2.2.1-2.2.2); 400 names missing configuration/providerData keys."""
    return _public(state, state.instances.create(body))


@router.get("/instances")
def list_instances(request: Request, state: PlatformState) -> list[dict]:
    """List instances; ``tags[]=a&tags[]=b`` keeps instances carrying all given tags."""
    tags = request.query_params.getlist("tags[]") + request.query_params.getlist("tags")
    return [_public(state, i) for i in state.instances.all(tags)]


@router.patch("/instances")
@router.put("/instances")
async def update_by_token(request: Request, body: JsonBody, inst: HubInstance) -> dict:
    """Update the instance of the ``Element`` token (reference §2.2)."""
    state = state_of(request)
    full = request.method == "PUT"
    updated = state.instances.update(inst["id"], body, full=full)
    return _put_answer(state, updated) if full else _public(state, updated)


@router.get("/instances/configuration")
def config_by_token(request: Request, inst: HubInstance) -> list[dict]:
    return state_of(request).instances.config_entries(inst["id"])


@router.get("/instances/{instance_id:int}")
def get_instance(instance_id: int, state: PlatformState) -> dict:
    """One instance incl. its ``token`` (secrets in ``configuration`` masked)."""
    return _public(state, state.instances.get(instance_id))


@router.put("/instances/{instance_id:int}")
def put_instance(instance_id: int, body: JsonBody, state: PlatformState) -> dict:
    """Full update of an instance; the answer carries no ``providerData``.

    ``name`` is required, tags are replaced and ``providerData.code`` re-authorizes.
    """
    return _put_answer(state, state.instances.update(instance_id, body, full=True))


@router.patch("/instances/{instance_id:int}")
def patch_instance(instance_id: int, body: JsonBody, state: PlatformState) -> dict:
    """Partial update: name, tags (replaced wholesale), configuration (merged), providerData."""
    return _public(state, state.instances.update(instance_id, body, full=False))


@router.delete("/instances/{instance_id:int}")
def delete_instance(instance_id: int, state: PlatformState) -> Response:
    """Delete; later hub calls with its token get 401 (reference §2.2). Its datasets are dropped."""
    state.instances.delete(instance_id)
    state.record_repo.drop_instance(instance_id)
    return Response(status_code=200)


@router.put("/instances/{instance_id:int}/enabled")
def enable_instance(instance_id: int, state: PlatformState) -> dict:
    return _public(state, state.instances.set_enabled(instance_id, True))


@router.delete("/instances/{instance_id:int}/enabled")
def disable_instance(instance_id: int, state: PlatformState) -> dict:
    """Disable; hub calls then get 403."""
    return _public(state, state.instances.set_enabled(instance_id, False))


@router.get("/instances/{instance_id:int}/configuration")
def list_config(instance_id: int, state: PlatformState) -> list[dict]:
    """Configuration entries ``{id, key, propertyValue, ...}`` (secrets masked)."""
    return state.instances.config_entries(instance_id)


@router.get("/instances/{instance_id:int}/configuration/{config_id:int}")
def get_config(instance_id: int, config_id: int, state: PlatformState) -> dict:
    return state.instances.config_entry(instance_id, config_id)


@router.patch("/instances/{instance_id:int}/configuration/{config_id:int}")
def patch_config(instance_id: int, config_id: int, body: JsonBody, state: PlatformState) -> dict:
    """Set ``propertyValue`` of one entry (e.g. turn events on, reference §2.2.5)."""
    return state.instances.patch_config_entry(instance_id, config_id, body)


# ---------------------------------------------------------------- element-scoped forms (reference §2.2 table)
def _scoped(state: EmulatorState, key_or_id: str, instance_id: int) -> dict[str, Any]:
    """The instance if it belongs to the element. :raises CEError: 404 otherwise."""
    element = find_element(key_or_id)
    inst = state.instances.get(instance_id)
    if element is None or inst["element"]["key"] != element.key:
        raise CEError(404, f"No instance {instance_id} for element '{key_or_id}'")
    return inst


@router.get("/elements/{key_or_id}/instances")
def list_element_instances(key_or_id: str, state: PlatformState) -> list[dict]:
    """Instances of one element."""
    element = find_element(key_or_id)
    if element is None:
        raise CEError(404, f"No element found with key or id '{key_or_id}'")
    return [_public(state, i) for i in state.instances.all() if i["element"]["key"] == element.key]


@router.post("/elements/{key_or_id}/instances")
def create_element_instance(key_or_id: str, body: JsonBody, state: PlatformState) -> dict:
    """Create an instance of the element in the path (body ``element`` is ignored)."""
    element = find_element(key_or_id)
    if element is None:
        raise CEError(404, f"No element found with key or id '{key_or_id}'")
    if not isinstance(body, dict):
        raise CEError(400, "Request body must be a JSON object")
    return _public(state, state.instances.create({**body, "element": {"key": element.key}}))


@router.get("/elements/{key_or_id}/instances/{instance_id:int}")
def get_element_instance(key_or_id: str, instance_id: int, state: PlatformState) -> dict:
    return _public(state, _scoped(state, key_or_id, instance_id))


@router.put("/elements/{key_or_id}/instances/{instance_id:int}")
@router.patch("/elements/{key_or_id}/instances/{instance_id:int}")
def update_element_instance(
    key_or_id: str, instance_id: int, request: Request, body: JsonBody, state: PlatformState
) -> dict:
    _scoped(state, key_or_id, instance_id)
    full = request.method == "PUT"
    updated = state.instances.update(instance_id, body, full=full)
    return _put_answer(state, updated) if full else _public(state, updated)


@router.delete("/elements/{key_or_id}/instances/{instance_id:int}")
def delete_element_instance(key_or_id: str, instance_id: int, state: PlatformState) -> Response:
    _scoped(state, key_or_id, instance_id)
    return delete_instance(instance_id, state)
