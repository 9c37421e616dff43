"""The declarative script step of transformations (reference §10.3), in place of the JavaScript step.

A transformation may add a JavaScript step after the field mapping (devportal
``docs/guides/common-resources/mapping.md``); the emulator does not run it (a ``script.body`` is
stored and ignored). Instead ``"script": {"steps": [...]}`` takes a small declarative subset applied
in order after the field mapping on reads (``fromVendor``):

* ``{"op": "set", "path", "value"}``, ``{"op": "default", "path", "value"}`` (only when missing),
  ``{"op": "remove", "path"}``;
* ``{"op": "copy", "path", "fromVendor": vendorPath, "type"?}`` (a vendor value, converted);
* ``{"op": "concat", "path", "from": [paths], "separator"}``, ``{"op": "sum", "path", "from": "a[*].b"}``;
* ``{"op": "extend", "path", "fromVendor": arrayPath, "fields": {sub: vendorSub}, "types"?: {sub: type},
  "set"?: {sub: value}}``: appends one object per vendor array item to the common array at ``path``
  (QBE journal entries: ``JournalDebitLine`` and ``JournalCreditLine`` into one ``lines`` array);
* ``{"op": "map", "path", "values": {text: value}, "default"?, "fromVendor"?}``: looks the current
  value (or the vendor value at ``fromVendor``) up as text (``true``, ``0``, ``paid``);
* any step may carry ``"if": {"path", "equals"}``: it runs only when the transformed object's value at
  ``path`` equals ``equals``.

``from`` paths are paths of the transformed object; paths are those of :mod:`.transform_paths`,
types those of :mod:`.transform_types`.
"""

from __future__ import annotations

from typing import Any

from cloudelements_emulator.transform_paths import _MISSING, get_path, parse_path, set_path
from cloudelements_emulator.transform_types import to_type

_OPS = frozenset({"set", "default", "remove", "copy", "concat", "sum", "map", "extend"})


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _run_step(out: dict[str, Any], step: dict[str, Any], vendor: dict[str, Any]) -> None:
    cond = step.get("if")
    if isinstance(cond, dict):
        have = get_path(out, parse_path(str(cond.get("path"))))
        if have is _MISSING or _text(have) != _text(cond.get("equals")):
            return
    op, steps = step["op"], parse_path(str(step["path"]))
    current = get_path(out, steps)
    if step.get("fromVendor"):
        current = get_path(vendor, parse_path(str(step["fromVendor"])))
    if op == "extend":
        items = current if isinstance(current, list) else []
        target = get_path(out, steps)
        if not isinstance(target, list):
            target = []
            set_path(out, steps, target)
        types = step.get("types") or {}
        for item in items:
            new: dict[str, Any] = dict(step.get("set") or {})
            for sub, vendor_sub in (step.get("fields") or {}).items():
                value = to_type(get_path(item, parse_path(str(vendor_sub))), types.get(sub), None)
                if value not in (_MISSING, None):
                    set_path(new, parse_path(str(sub)), value)
            target.append(new)
    elif op == "copy":
        value = to_type(current, step.get("type"), step.get("vendorType"))
        if value not in (_MISSING, None):
            set_path(out, steps, value)
    elif op == "set" or (op == "default" and current in (_MISSING, None)):
        set_path(out, steps, step.get("value"))
    elif op == "remove":
        if len(steps) == 1 and steps[0].key is not None:
            out.pop(steps[0].key, None)
    elif op == "concat":
        parts = [get_path(out, parse_path(str(p))) for p in step.get("from") or []]
        text = str(step.get("separator", " ")).join(str(p) for p in parts if p not in (_MISSING, None, ""))
        if text:
            set_path(out, steps, text)
    elif op == "sum":
        values = get_path(out, parse_path(str(step.get("from"))))
        nums = [to_type(v, "number", None) for v in (values if isinstance(values, list) else [values])]
        set_path(out, steps, round(sum(n for n in nums if isinstance(n, (int, float))), 6))
    elif op == "map" and current is not _MISSING:
        table = step.get("values") or {}
        mapped = table.get(_text(current), _MISSING)
        if mapped is _MISSING:
            mapped = step.get("default", current)
        set_path(out, steps, mapped)
