"""Vendor webhook payloads delivered to ``POST /events/{elementKey}`` (reference §5.1, §5.3).

Each payload is normalised to ``(resource, objectId, eventType)`` triples.

* QuickBooks Online (Intuit webhooks): ``{"eventNotifications": [{"realmId": "...", "dataChangeEvent":
  {"entities": [{"name": "Invoice", "id": "130", "operation": "Create|Update|Delete|Merge|Void|Emailed",
  "lastUpdated": "..."}]}}]}``; the instance is the one whose ``providerData.realmId`` matches.
* FreshBooks (Classic and Cloud Accounting): form or JSON fields ``name=<object>.<create|update|delete>``
  and ``object_id``; ``name=callback.verify`` is FreshBooks' registration handshake (answered, no event).
* Any element: ``{"objectType": "<resource>", "objectId": "...", "eventType": "CREATED|UPDATED|DELETED"}``
  (or a list of them under ``events``), the normalised form.

The instance is given by the path (``/events/{elementKey}/{base64 instance id}``, reference §5.1) or
found from the payload; unknown → 404.
"""

from __future__ import annotations

import re
from typing import Any

from cloudelements_emulator.errors import CEError

_QBO_OPERATIONS = {
    "create": "CREATED",
    "update": "UPDATED",
    "emailed": "UPDATED",
    "void": "UPDATED",
    "merge": "UPDATED",
    "delete": "DELETED",
}
_FB_ACTIONS = {"create": "CREATED", "update": "UPDATED", "delete": "DELETED"}
#: FreshBooks object names → hub resources.
_FB_OBJECTS = {
    "client": "customers",
    "invoice": "invoices",
    "payment": "payments",
    "item": "items",
    "tax": "taxes",
    "contractor": "vendors",
    "vendor": "vendors",
    "estimate": "estimates",
}
_NORMAL = frozenset({"CREATED", "UPDATED", "DELETED"})


def qbo_resource(entity: str) -> str:
    """Intuit entity name → hub resource: ``Invoice`` → ``invoices``, ``BillPayment`` → ``bill-payments``."""
    words = re.sub(r"(?<!^)(?=[A-Z])", "-", entity).lower()
    special = {
        "account": "ledger-accounts",
        "item": "products",
        "term": "credit-terms",
        "class": "classes",
        "tax-agency": "tax-agencies",
        "currency": "currencies",
        "company-info": "company-info",
        "preferences": "preferences",
    }
    if words in special:
        return special[words]
    return words + ("es" if words.endswith(("s", "x", "ch")) else "s")


def parse(element_key: str, payload: Any) -> tuple[list[tuple[str, str, str]], str | None]:
    """``([(resource, objectId, eventType)], QBO realmId or None)``.

    :raises CEError: 400 when the payload is not a recognised webhook body.
    """
    if not isinstance(payload, dict):
        raise CEError(400, "Webhook body must be a JSON object or form fields")
    if isinstance(payload.get("eventNotifications"), list):
        events, realm = [], None
        for note in payload["eventNotifications"]:
            realm = realm or (str(note.get("realmId")) if note.get("realmId") else None)
            for ent in (note.get("dataChangeEvent") or {}).get("entities") or []:
                op = _QBO_OPERATIONS.get(str(ent.get("operation", "")).lower())
                if op and ent.get("name") and ent.get("id") is not None:
                    events.append((qbo_resource(str(ent["name"])), str(ent["id"]), op))
        if not events:
            raise CEError(400, "No dataChangeEvent entities with name, id and operation in the webhook body")
        return events, realm
    name = payload.get("name")
    if isinstance(name, str) and "." in name:
        obj, _, action = name.partition(".")
        if name == "callback.verify":
            return [], None
        resource, kind = _FB_OBJECTS.get(obj.lower()), _FB_ACTIONS.get(action.lower())
        if resource is None or kind is None or payload.get("object_id") in (None, ""):
            raise CEError(
                400,
                f"Unsupported FreshBooks webhook {name!r} (need <object>.<create|update|delete> + object_id)",
            )
        return [(resource, str(payload["object_id"]), kind)], None
    listed = payload.get("events")
    items: list[Any] = listed if isinstance(listed, list) else [payload]
    out = []
    for item in items:
        if not isinstance(item, dict) or str(item.get("eventType", "")).upper() not in _NORMAL:
            raise CEError(400, "Each event needs objectType, objectId and eventType CREATED|UPDATED|DELETED")
        if not item.get("objectType") or item.get("objectId") in (None, ""):
            raise CEError(400, "Each event needs objectType, objectId and eventType CREATED|UPDATED|DELETED")
        out.append((str(item["objectType"]), str(item["objectId"]), str(item["eventType"]).upper()))
    return out, None
