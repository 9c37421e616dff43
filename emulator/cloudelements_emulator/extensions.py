"""Element resource extensions (platform "define a new resource").

``POST /elements/{keyOrId}/resources`` adds a resource to every instance of an element (churros
``quickbooks/customers-search.js``).

Only what can be answered offline is served: a ``GET`` resource whose ``vendorPath`` is QuickBooks
Online's query endpoint (``/v3/company/{realmID}/query``) with a ``value`` parameter ``select * from
<Entity>`` returns the instance's records of that entity in Intuit's raw PascalCase shape, taken from
the vendor response at ``rootKey`` (``|QueryResponse.Customer`` → the array). Other extensions are
stored and listed but calling them answers 501 (no vendor to call).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from typing import Any

from cloudelements_emulator.errors import CEError
from cloudelements_emulator.inbound import qbo_resource

_SELECT = re.compile(r"^\s*select\s+\*\s+from\s+(\w+)", re.IGNORECASE)


def pascal(value: Any) -> Any:
    """Turn camelCase keys into Intuit's PascalCase (``displayName`` → ``DisplayName``, ``id`` → ``Id``)."""
    if isinstance(value, dict):
        return {(k[:1].upper() + k[1:]): pascal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pascal(v) for v in value]
    return value


class ResourceExtensions:
    """Extension resources per element key."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1001)
        self._by_element: dict[str, dict[int, dict[str, Any]]] = {}

    def add(self, element_key: str, body: Any) -> dict[str, Any]:
        """:raises CEError: 400 without ``path`` and ``method``."""
        if not isinstance(body, dict) or not str(body.get("path", "")).startswith("/") or not body.get("method"):
            raise CEError(400, "A resource needs 'path' (starting with '/') and 'method'")
        with self._lock:
            stored = {**body, "id": next(self._ids), "method": str(body["method"]).upper()}
            self._by_element.setdefault(element_key, {})[stored["id"]] = stored
        return stored

    def all(self, element_key: str) -> list[dict[str, Any]]:
        return list(self._by_element.get(element_key, {}).values())

    def delete(self, element_key: str, resource_id: int) -> None:
        """:raises CEError: 404 for an unknown id."""
        with self._lock:
            if self._by_element.get(element_key, {}).pop(resource_id, None) is None:
                raise CEError(404, f"No resource {resource_id} for element '{element_key}'")

    def find(self, element_key: str, method: str, path: str) -> dict[str, Any] | None:
        for found in self._by_element.get(element_key, {}).values():
            if found["method"] == method and found["path"] == path:
                return found
        return None

    @staticmethod
    def serve(definition: dict[str, Any], records: Callable[[str], list[dict[str, Any]]]) -> Any:
        """Answer a call of ``definition``. :raises CEError: 501 when the vendor call cannot be emulated."""
        entity = None
        if str(definition.get("vendorPath", "")).endswith("/query"):
            for param in definition.get("parameters") or []:
                match = _SELECT.match(str(param.get("name", "")))
                if param.get("type") == "value" and param.get("vendorName") == "query" and match:
                    entity = match.group(1)
        if entity is None:
            raise CEError(501, f"Calling the vendor for extension resource {definition['path']} is not emulated")
        rows = [pascal(r) for r in records(qbo_resource(entity))]
        root = str(definition.get("rootKey") or "").lstrip("|")
        if root:
            return rows
        return {"QueryResponse": {entity: rows, "startPosition": 1, "maxResults": len(rows)}}
