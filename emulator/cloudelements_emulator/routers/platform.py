"""Platform routes real clients call beyond instance CRUD (reference §2.1, §2.2, §5.1, §10.2).

* ``GET /elements/{keyOrId}/metadata`` (no auth): element, hub, events (``supported``, ``methods``),
  bulk flags and the element's objects.
* ``GET`` / ``PATCH /instances/configuration/{configurationId}`` (Element token): one configuration
  entry of the token's instance.
* Common-resource definitions and transformations (all levels) are in :mod:`.commonresources`.
* ``POST /events/{elementKey}[/{base64 instance id}]`` (no Cloud Elements auth, the vendor calls it):
  inbound vendor webhooks into the event pipeline (see :mod:`..inbound`).
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cloudelements_emulator import inbound, timefmt
from cloudelements_emulator.deps import API, HubInstance, JsonBody, PlatformState, state_of
from cloudelements_emulator.elements import ELEMENTS, find_element
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.state import EmulatorState

router = APIRouter(prefix=API, tags=["platform"])


@router.get("/elements/{key_or_id}/metadata", tags=["elements"])
def element_metadata(key_or_id: str) -> dict[str, Any]:
    """Element metadata (churros ``element.metadata.schema.json``). :raises CEError: 404 unknown element."""
    element = ELEMENTS[_element_key(key_or_id)]
    return {
        **element.public(),
        "events": {"supported": True, "methods": list(element.event_modes)},
        "bulk": {"upload": True, "download": True, "upsert": False, "fieldSelection": False},
        "objects": list(element.resources),
        "pollingObjects": list(element.polling_resources),
    }


def _element_key(key_or_id: str) -> str:
    element = find_element(key_or_id)
    if element is None:
        raise CEError(404, f"No element found with key or id '{key_or_id}'")
    return element.key


@router.post("/elements/{key_or_id}/resources", tags=["elements"])
def add_resource(key_or_id: str, body: JsonBody, state: PlatformState) -> dict[str, Any]:
    """Extend the element with a resource (``{"path", "method", "vendorPath", "parameters", "rootKey"}``).

    See :mod:`..extensions` for which ones answer offline.
    """
    return state.hub.extensions.add(_element_key(key_or_id), body)


@router.get("/elements/{key_or_id}/resources", tags=["elements"])
def list_resources(key_or_id: str, state: PlatformState) -> list[dict[str, Any]]:
    return state.hub.extensions.all(_element_key(key_or_id))


@router.delete("/elements/{key_or_id}/resources/{resource_id:int}", tags=["elements"])
def delete_resource(key_or_id: str, resource_id: int, state: PlatformState) -> Response:
    state.hub.extensions.delete(_element_key(key_or_id), resource_id)
    return Response(status_code=200)


@router.get("/instances/configuration/{config_id:int}", tags=["instances"])
def get_config_by_token(config_id: int, request: Request, inst: HubInstance) -> dict[str, Any]:
    """One configuration entry of the Element token's instance."""
    return state_of(request).instances.config_entry(inst["id"], config_id)


@router.patch("/instances/configuration/{config_id:int}", tags=["instances"])
def patch_config_by_token(config_id: int, request: Request, body: JsonBody, inst: HubInstance) -> dict[str, Any]:
    """Set ``propertyValue`` of one entry of the token's instance (reference §2.2, §2.2.5)."""
    return state_of(request).instances.patch_config_entry(inst["id"], config_id, body)


# ---------------------------------------------------------------- inbound vendor webhooks (§5.1)
async def _payload(request: Request) -> Any:
    raw = await request.body()
    ctype = request.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" in ctype:
        return {k: v[-1] for k, v in urllib.parse.parse_qs(raw.decode("utf-8", "replace")).items()}
    try:
        return json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise CEError(400, "Webhook body is neither JSON nor form fields") from None


def _find_instance(state: EmulatorState, element_key: str, encoded: str | None, realm: str | None) -> dict[str, Any]:
    candidates = [i for i in state.instances.all() if i["element"]["key"] == element_key and not i.get("disabled")]
    if encoded:
        try:
            iid = int(base64.b64decode(encoded + "=" * (-len(encoded) % 4)).decode())
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise CEError(400, f"Invalid encoded instance id {encoded!r}") from None
        candidates = [i for i in candidates if i["id"] == iid]
    elif realm:
        candidates = [i for i in candidates if str((i.get("providerData") or {}).get("realmId")) == realm]
    if len(candidates) != 1:
        raise CEError(404, f"No single enabled '{element_key}' instance matches this webhook ({len(candidates)} found)")
    return candidates[0]


async def _receive(element_key: str, encoded: str | None, request: Request) -> dict[str, Any]:
    state = state_of(request)
    element = find_element(element_key)
    if element is None:
        raise CEError(404, f"No element found with key '{element_key}'")
    events, realm = inbound.parse(element.key, await _payload(request))
    if not events:
        return {"status": "verified", "events": []}
    inst = _find_instance(state, element.key, encoded, realm)
    out = []
    now = timefmt.now_ms()
    for resource, object_id, event_type in events:
        raw = {"objectType": resource, "objectId": object_id, "eventType": event_type}
        event = state.events.receive_vendor(inst, resource, object_id, event_type, raw, now)
        out.append({"id": event["id"], "objectType": resource, "objectId": object_id, "eventType": event_type})
    return {"status": "received", "instanceId": inst["id"], "events": out}


@router.post("/events/{element_key}", tags=["events"])
async def vendor_webhook(element_key: str, request: Request) -> dict[str, Any]:
    """Inbound vendor webhook for the element's only matching instance (QBO: by ``realmId``)."""
    return await _receive(element_key, None, request)


@router.post("/events/{element_key}/{encoded_instance_id}", tags=["events"])
async def vendor_webhook_for(element_key: str, encoded_instance_id: str, request: Request) -> dict[str, Any]:
    """Inbound vendor webhook for the instance whose id is base64-encoded in the path."""
    return await _receive(element_key, encoded_instance_id, request)
