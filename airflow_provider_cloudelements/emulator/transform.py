"""Instance-level object definitions and transformations, the small part the vendor's test lifecycle needs
(reference §10.2, §10.3).

Only what churros' element lifecycle exercises is emulated: ``POST/GET/DELETE
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

from airflow_provider_cloudelements.emulator.ceql import lookup
from airflow_provider_cloudelements.emulator.errors import CEError

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


class TransformStore:
    """Definitions and transformations per ``(instance id, object name)``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._definitions: dict[tuple[int, str], dict[str, Any]] = {}
        self._transforms: dict[tuple[int, str], dict[str, Any]] = {}

    # ------------------------------------------------------------ definitions
    def define(self, iid: int, name: str, body: Any) -> dict[str, Any]:
        """:raises CEError: 400 without a ``fields`` list, 409 when the definition exists."""
        if not isinstance(body, dict) or not isinstance(body.get("fields"), list):
            raise CEError(400, "An object definition needs a 'fields' list of {path, type}")
        with self._lock:
            if (iid, name) in self._definitions:
                raise CEError(409, f"Object definition '{name}' already exists for instance {iid}")
            self._definitions[(iid, name)] = {"fields": body["fields"], "level": "instance"}
            return self._definitions[(iid, name)]

    def definition(self, iid: int, name: str) -> dict[str, Any]:
        found = self._definitions.get((iid, name))
        if found is None:
            raise CEError(404, f"No object definition '{name}' for instance {iid}")
        return found

    def definitions(self, iid: int) -> dict[str, Any]:
        return {n: d for (i, n), d in self._definitions.items() if i == iid}

    def undefine(self, iid: int, name: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self._definitions if k[0] == iid and name in (None, k[1])]:
                del self._definitions[key]

    # ------------------------------------------------------------ transformations
    def put(self, iid: int, name: str, body: Any) -> dict[str, Any]:
        """Create or replace. :raises CEError: 400 without ``fields`` of ``{path, vendorPath}``."""
        fields = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(fields, list) or not all(
            isinstance(f, dict) and f.get("path") and f.get("vendorPath") for f in fields
        ):
            raise CEError(400, "A transformation needs 'fields' of {path, vendorPath}")
        stored = {"level": "instance", "vendorName": body.get("vendorName") or name, "fields": fields}
        with self._lock:
            self._transforms[(iid, name)] = stored
        return stored

    def get(self, iid: int, name: str) -> dict[str, Any]:
        found = self._transforms.get((iid, name))
        if found is None:
            raise CEError(404, f"No transformation '{name}' for instance {iid}")
        return found

    def all(self, iid: int) -> dict[str, Any]:
        return {n: t for (i, n), t in self._transforms.items() if i == iid}

    def delete(self, iid: int, name: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self._transforms if k[0] == iid and name in (None, k[1])]:
                del self._transforms[key]

    def has(self, iid: int, name: str) -> bool:
        return (iid, name) in self._transforms

    def apply(self, iid: int, name: str, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` plus the mapped fields (evaluated on the vendor record), or ``record`` itself."""
        found = self._transforms.get((iid, name))
        if found is None:
            return record
        out = dict(record)
        for spec in found["fields"]:
            value = _get(record, str(spec["vendorPath"]))
            if value is not _MISSING and value is not None:
                _set(out, str(spec["path"]), value)
        return out
