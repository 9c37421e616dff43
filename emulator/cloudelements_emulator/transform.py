"""Instance-level object definitions and transformations (reference §10.2, §10.3).

Only the small part churros' element lifecycle exercises is emulated: ``POST/GET/DELETE
/instances/{id}/objects/{name}/definitions`` and ``POST/GET/DELETE /instances/{id}/transformations[/{name}]``.
A transformation on an element resource's own name *adds* its mapped fields to every record read or
written through the hub and passes the vendor fields through (the behaviour churros' QBE suite
relies on, reference §10.3 [I]); a mapped field is set only when its ``vendorPath`` has a value.
JavaScript steps, organization/account levels and writes mapped back to vendor fields are not
emulated (issue 15). State is in memory (lost on restart).
"""

from __future__ import annotations

import threading
from typing import Any

from cloudelements_emulator.ceql import lookup
from cloudelements_emulator.errors import CEError

_MISSING = object()


def _get(record: dict[str, Any], path: str) -> Any:
    value = lookup(record, path)
    return _MISSING if value.__class__ is object else value


def _set(record: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    target = record
    for part in parts[:-1]:
        nxt = target.get(part)
        if not isinstance(nxt, dict):
            nxt = target[part] = {}
        target = nxt
    target[parts[-1]] = value


class _PerInstance:
    """``(instance id, object name) → body`` with the lookups both kinds share."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.lock = threading.Lock()
        self.items: dict[tuple[int, str], dict[str, Any]] = {}

    def get(self, iid: int, name: str) -> dict[str, Any]:
        """:raises CEError: 404 when absent."""
        found = self.items.get((iid, name))
        if found is None:
            raise CEError(404, f"No {self.what} '{name}' for instance {iid}")
        return found

    def all(self, iid: int) -> dict[str, Any]:
        return {n: body for (i, n), body in self.items.items() if i == iid}

    def drop(self, iid: int, name: str | None = None) -> None:
        """Remove one (``name``) or all of the instance's entries."""
        with self.lock:
            for key in [k for k in self.items if k[0] == iid and name in (None, k[1])]:
                del self.items[key]


class TransformStore:
    """Object definitions and transformations per ``(instance id, object name)``."""

    def __init__(self) -> None:
        self.definitions = _PerInstance("object definition")
        self.transformations = _PerInstance("transformation")

    def define(self, iid: int, name: str, body: Any) -> dict[str, Any]:
        """:raises CEError: 400 without a ``fields`` list, 409 when the definition exists."""
        if not isinstance(body, dict) or not isinstance(body.get("fields"), list):
            raise CEError(400, "An object definition needs a 'fields' list of {path, type}")
        with self.definitions.lock:
            if (iid, name) in self.definitions.items:
                raise CEError(409, f"Object definition '{name}' already exists for instance {iid}")
            stored = self.definitions.items[(iid, name)] = {"fields": body["fields"], "level": "instance"}
        return stored

    def put(self, iid: int, name: str, body: Any) -> dict[str, Any]:
        """Create or replace a transformation. :raises CEError: 400 without ``fields`` of ``{path, vendorPath}``."""
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, list) or not all(
            isinstance(f, dict) and f.get("path") and f.get("vendorPath") for f in fields
        ):
            raise CEError(400, "A transformation needs 'fields' of {path, vendorPath}")
        stored = {"level": "instance", "vendorName": body.get("vendorName") or name, "fields": fields}
        with self.transformations.lock:
            self.transformations.items[(iid, name)] = stored
        return stored

    def has(self, iid: int, name: str) -> bool:
        return (iid, name) in self.transformations.items

    def apply(self, iid: int, name: str, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` plus the mapped fields (evaluated on the vendor record), or ``record`` itself."""
        found = self.transformations.items.get((iid, name))
        if found is None:
            return record
        out = dict(record)
        for spec in found["fields"]:
            value = _get(record, str(spec["vendorPath"]))
            if value is not _MISSING and value is not None:
                _set(out, str(spec["path"]), value)
        return out
