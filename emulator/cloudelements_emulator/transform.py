"""Compiled transformations of common resources (reference §10.3): validation and :class:`Mapping`.

A transformation is ``{"vendorName", "fields": [{"path", "vendorPath", "type", "vendorType"}],
"script"?}`` (devportal ``docs/guides/common-resources/mappingapi.md``); :class:`Mapping` is its
compiled form and maps one vendor record to the common shape (:meth:`Mapping.to_common`,
``fromVendor == true``) and one common body back to vendor fields (:meth:`Mapping.to_vendor`,
``fromVendor == false``). The parts of the mapping engine:

* field paths (dots, indexes, filters, ``[*]``): :mod:`.transform_paths`;
* field types and date masks: :mod:`.transform_types`;
* the declarative script step run after the field mapping (the JavaScript ``script.body`` is stored
  and ignored): :mod:`.transform_script`.

Unmapped fields (the documents leave this open, §10.3): a transformation named like one of the
element's own resources (churros' ``id ← ListID``) *adds* its fields and passes every vendor field
through; a transformation of any other (common) name returns only the mapped fields (the common
resource's definition, when there is one, limits them further).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cloudelements_emulator.errors import CEError
from cloudelements_emulator.transform_paths import _MISSING, Step, get_path, parse_path, set_path
from cloudelements_emulator.transform_script import _OPS, _run_step
from cloudelements_emulator.transform_types import TYPES, from_type, iso, parse_date, to_type

#: ``iso`` and ``parse_date`` are imported from here by the tests.
__all__ = ["FieldMap", "Mapping", "iso", "parse_date", "validate"]


@dataclass(frozen=True)
class FieldMap:
    """One mapped field: common ``path`` ← vendor ``vendor_path``."""

    path: str
    vendor_path: str
    type: str | None
    vendor_type: str | None
    steps: tuple[Step, ...]
    vendor_steps: tuple[Step, ...]

    @property
    def simple_vendor(self) -> bool:
        """Whether the vendor path is plain dot notation (CEQL-queryable)."""
        return all(s.key is not None for s in self.vendor_steps)


def validate(body: Any, default_name: str) -> dict[str, Any]:
    """Normalised transformation body.

    :raises CEError: 400 without ``fields`` of ``{path, vendorPath}``, for a duplicate ``path``, an
        unknown ``type`` or a bad path.
    """
    fields = body.get("fields") if isinstance(body, dict) else None
    if not isinstance(fields, list) or not all(
        isinstance(f, dict) and f.get("path") and f.get("vendorPath") for f in fields
    ):
        raise CEError(400, "A transformation needs 'fields' of {path, vendorPath}")
    seen: set[str] = set()
    for f in fields:
        if f["path"] in seen:
            raise CEError(400, f"Duplicate field path '{f['path']}' in the transformation")
        seen.add(f["path"])
        if f.get("type") not in (None, *TYPES):
            raise CEError(400, f"Unknown type {f['type']!r} for field '{f['path']}' (string, number, boolean, date)")
        parse_path(f["path"])
        parse_path(f["vendorPath"])
    script = body.get("script")
    if script is not None and not isinstance(script, dict):
        raise CEError(400, "'script' must be an object ({'steps': [...]})")
    for step in (script or {}).get("steps") or []:
        if not isinstance(step, dict) or step.get("op") not in _OPS or not step.get("path"):
            raise CEError(400, f"Invalid script step {step!r}; ops: {', '.join(sorted(_OPS))}")
    out = {"vendorName": body.get("vendorName") or default_name, "fields": fields}
    if script is not None:
        out["script"] = script
    for key in ("configuration", "isLegacy"):
        if key in body:
            out[key] = body[key]
    return out


class Mapping:
    """A compiled transformation.

    :ivar overlay: ``True`` when the transformation is named like an element resource (vendor fields
        pass through, mapped fields are added); ``False`` for a common resource (mapped fields only).
    """

    def __init__(
        self, name: str, body: dict[str, Any], resource: str, overlay: bool, types: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.body = body
        self.resource = resource
        self.overlay = overlay
        self.level = str(body.get("level", "instance"))
        allowed = {_generic(p) for p in types} if types and not overlay else None
        generic_types = {_generic(p): t for p, t in (types or {}).items()}
        self.fields = [
            FieldMap(
                str(f["path"]),
                str(f["vendorPath"]),
                f.get("type") or generic_types.get(_generic(str(f["path"]))),
                f.get("vendorType"),
                parse_path(str(f["path"])),
                parse_path(str(f["vendorPath"])),
            )
            for f in body["fields"]
            if allowed is None or _generic(str(f["path"])) in allowed or str(f["path"]).split(".")[0] in allowed
        ]
        self.steps: list[dict[str, Any]] = list((body.get("script") or {}).get("steps") or [])
        self._by_path = {f.path: f for f in self.fields}

    def to_common(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record as the common resource (``fromVendor``)."""
        out: dict[str, Any] = dict(record) if self.overlay else {}
        for f in self.fields:
            value = to_type(get_path(record, f.vendor_steps), f.type, f.vendor_type)
            if value is _MISSING or value is None:
                continue
            set_path(out, f.steps, value)
        for step in self.steps:
            _run_step(out, step, record)
        return out

    def to_vendor(self, body: dict[str, Any]) -> dict[str, Any]:
        """A common body as vendor fields (``fromVendor == false``); an overlay passes it through.

        :raises CEError: 400 for a value the field's type cannot take.
        """
        if self.overlay:
            return body
        out: dict[str, Any] = {}
        for f in self.fields:
            # a flat dotted key (a CSV upload header ``address.city``) or the nested path
            value = body[f.path] if f.path in body else get_path(body, f.steps)
            if value is _MISSING:
                continue
            set_path(out, f.vendor_steps, from_type(value, f.type, f.vendor_type))
        return out

    def vendor_field(self, path: str) -> FieldMap:
        """The field mapping of common ``path``. :raises CEError: 400 unknown / not queryable."""
        found = self._by_path.get(path)
        if found is None:
            raise CEError(400, f"Error parsing query: unknown field '{path}' of common resource '{self.name}'")
        if not found.simple_vendor:
            raise CEError(
                400, f"Error parsing query: field '{path}' maps to '{found.vendor_path}', which is not queryable"
            )
        return found


def _generic(path: str) -> str:
    """A path with every array index written ``[*]`` (``lines[0].amount`` → ``lines[*].amount``)."""
    return re.sub(r"\[\d+\]", "[*]", path)
