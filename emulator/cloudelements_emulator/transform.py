"""The field-mapping engine of common resources and transformations (reference §10.3).

A transformation is ``{"vendorName", "fields": [{"path", "vendorPath", "type", "vendorType"}],
"script"?}``; :class:`Mapping` is its compiled form and maps one vendor record to the common shape
(:meth:`Mapping.to_common`, ``fromVendor == true``) and one common body back to vendor fields
(:meth:`Mapping.to_vendor`, ``fromVendor == false``).

Paths (both ``path`` and ``vendorPath``), documented in devportal
``docs/guides/common-resources/mappingapi.md`` ("Map Complex Objects") and ``mapping.md``
("Working With Nested Objects"):

* dot notation, nested objects are built on write (``address.city``);
* array indexes ``Line[0].Amount``;
* filters ``Products[?(@.id==2)].name`` (also ``!=`` and quoted strings ``[?(@.type=='work')]``);
* a wildcard ``line[*].amount`` (emulator extension, one per path): the vendor values of every array
  element, written element-wise into the common array (``lines[*].amount``), so invoice lines map
  without the JavaScript step.

Types (``type`` of the common field): ``string``, ``number``, ``boolean``, ``date``; no type keeps the
vendor value. ``vendorType`` matters for dates only: a Java-style date mask
(``yyyy-MM-dd'T'HH:mm:ssXXX``, ``yyyy-MM-dd``, ``yyyy-MM-dd HH:mm:ss``) or ``epoch_ms``; without one,
any instant :func:`timefmt.parse_instant` understands is read. Common dates are ISO-8601 UTC
(``2025-01-09T08:00:17Z``, milliseconds only when non-zero). A value that does not convert is left
out (as a missing value is).

The JavaScript step is not run; instead ``"script": {"steps": [...]}`` takes a small declarative
subset applied in order after the field mapping on reads (``fromVendor``):

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

``from`` paths are paths of the transformed object. A JavaScript ``script.body`` is stored and ignored.

Unmapped fields (the documents leave this open, §10.3): a transformation named like one of the
element's own resources (churros' ``id ← ListID``) *adds* its fields and passes every vendor field
through; a transformation of any other (common) name returns only the mapped fields (the common
resource's definition, when there is one, limits them further).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

from cloudelements_emulator import timefmt
from cloudelements_emulator.errors import CEError

_MISSING: Any = object()
TYPES = frozenset({"string", "number", "boolean", "date"})
_SEGMENT = re.compile(
    r"(?P<name>[^.\[\]]+)|\[(?P<index>\d+)\]|\[(?P<star>\*)\]"
    r"|\[\?\(@\.(?P<fkey>[^=!\s)]+)\s*(?P<fop>==|!=)\s*(?P<fval>'[^']*'|\"[^\"]*\"|[^)\s]+)\s*\)\]"
)
_MASK_TOKENS = [
    ("yyyy", "%Y"),
    ("MM", "%m"),
    ("dd", "%d"),
    ("HH", "%H"),
    ("mm", "%M"),
    ("ss", "%S"),
    ("SSS", "%f"),
    ("XXX", "%:z"),
    ("Z", "%z"),
    ("X", "%z"),
]


@dataclass(frozen=True)
class Step:
    """One path step: a key, an index, ``*``, or a filter ``(key, op, value)``."""

    key: str | None = None
    index: int | None = None
    star: bool = False
    filter: tuple[str, str, Any] | None = None


def parse_path(path: str) -> tuple[Step, ...]:
    """``"Line[0].Amount"`` → steps. :raises CEError: 400 for an unparsable path or two wildcards."""
    steps: list[Step] = []
    pos = 0
    text = str(path)
    while pos < len(text):
        if text[pos] == "." and steps:
            pos += 1
        m = _SEGMENT.match(text, pos)
        if not m or m.end() == pos:
            raise CEError(400, f"Invalid field path {path!r} at position {pos}")
        if m["name"] is not None:
            steps.append(Step(key=m["name"]))
        elif m["index"] is not None:
            steps.append(Step(index=int(m["index"])))
        elif m["star"]:
            steps.append(Step(star=True))
        else:
            raw = m["fval"]
            value: Any = raw[1:-1] if raw[0] in "'\"" else _number(raw)
            steps.append(Step(filter=(m["fkey"], m["fop"], value)))
        pos = m.end()
    if not steps or steps[0].key is None or sum(s.star for s in steps) > 1:
        raise CEError(400, f"Invalid field path {path!r} (must start with a name; at most one [*])")
    return tuple(steps)


def _number(raw: str) -> Any:
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return {"true": True, "false": False}.get(raw, raw)


def _matches(item: Any, flt: tuple[str, str, Any]) -> bool:
    key, op, value = flt
    if not isinstance(item, dict):
        return False
    have = item.get(key, _MISSING)
    equal = have is not _MISSING and (have == value or str(have) == str(value))
    return equal if op == "==" else not equal


def get_path(record: Any, steps: tuple[Step, ...]) -> Any:
    """The value at ``steps`` (``_MISSING`` when absent); a list of values across a ``[*]``."""
    cur = record
    for i, step in enumerate(steps):
        if step.key is not None:
            if not isinstance(cur, dict):
                return _MISSING
            if i == 0 and len(steps) > 1 and step.key not in cur:
                return _MISSING
            cur = cur.get(step.key, _MISSING)
        elif step.index is not None:
            cur = cur[step.index] if isinstance(cur, list) and step.index < len(cur) else _MISSING
        elif step.filter is not None:
            found = [x for x in cur if _matches(x, step.filter)] if isinstance(cur, list) else []
            cur = found[0] if found else _MISSING
        else:
            if not isinstance(cur, list):
                return _MISSING
            return [get_path(x, steps[i + 1 :]) if i + 1 < len(steps) else x for x in cur]
        if cur is _MISSING:
            return _MISSING
    return cur


def set_path(target: dict[str, Any], steps: tuple[Step, ...], value: Any) -> None:
    """Write ``value`` at ``steps``, creating objects, arrays and filtered items.

    Write ``value`` at ``steps``, creating objects / arrays / filtered items; across a ``[*]`` ``value`` must be a list
    and is written element-wise.
    """
    cur: Any = target
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        nxt = steps[i + 1] if not last else None
        empty: Any = [] if nxt is not None and nxt.key is None else {}
        if step.key is not None:
            if last:
                cur[step.key] = value
                return
            if not isinstance(cur.get(step.key), type(empty)):
                cur[step.key] = empty
            cur = cur[step.key]
        elif step.index is not None:
            while len(cur) <= step.index:
                cur.append({} if not last else None)
            if last:
                cur[step.index] = value
                return
            if not isinstance(cur[step.index], type(empty)):
                cur[step.index] = empty
            cur = cur[step.index]
        elif step.filter is not None:
            key, op, fval = step.filter
            found = [x for x in cur if _matches(x, step.filter)]
            if found:
                item = found[0]
            else:
                item = {key: fval} if op == "==" else {}
                cur.append(item)
            if last:
                return
            cur = item
        else:
            values = value if isinstance(value, list) else []
            while len(cur) < len(values):
                cur.append({} if not last else None)
            for j, v in enumerate(values):
                if v is _MISSING:
                    continue
                if last:
                    cur[j] = v
                elif isinstance(cur[j], dict):
                    set_path(cur[j], steps[i + 1 :], v)
            return


# ---------------------------------------------------------------- types and date masks
def mask_to_strftime(mask: str) -> str:
    """Java ``SimpleDateFormat`` mask → ``strftime`` (quoted literals kept)."""
    out, i = [], 0
    while i < len(mask):
        if mask[i] == "'":
            end = mask.index("'", i + 1) if "'" in mask[i + 1 :] else len(mask)
            out.append(mask[i + 1 : end].replace("%", "%%"))
            i = end + 1
            continue
        for token, fmt in _MASK_TOKENS:
            if mask.startswith(token, i):
                out.append(fmt)
                i += len(token)
                break
        else:
            out.append(mask[i].replace("%", "%%"))
            i += 1
    return "".join(out)


def parse_date(value: Any, mask: str | None) -> int | None:
    """Epoch ms of a vendor date value, or ``None`` when it does not parse."""
    if value is None or isinstance(value, bool):
        return None
    if mask and mask not in TYPES and mask != "epoch_ms" and isinstance(value, str):
        fmt = mask_to_strftime(mask)
        try:
            parsed = dt.datetime.strptime(value, fmt.replace("%:z", "%z"))
        except ValueError:
            return timefmt.parse_instant(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return int(parsed.timestamp() * 1000)
    return timefmt.parse_instant(value)


def format_date(ms: int, mask: str | None) -> Any:
    """A vendor date value for epoch ``ms`` per ``mask`` (ISO UTC without one)."""
    if mask == "epoch_ms":
        return ms
    if not mask or mask in TYPES:
        return iso(ms)
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)  # offsets are written as +00:00
    text = when.strftime(mask_to_strftime(mask).replace("%:z", "%z"))
    if "SSS" in mask:
        text = text.replace(f"{when.microsecond:06d}", f"{when.microsecond // 1000:03d}", 1)
    if "XXX" in mask:
        text = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", text)
    return text


def iso(ms: int) -> str:
    """Common date text: ISO-8601 UTC with ``Z`` (milliseconds only when non-zero)."""
    when = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else text + "Z"


def to_type(value: Any, ftype: str | None, mask: str | None) -> Any:
    """A vendor value as common ``ftype`` (``_MISSING`` when it does not convert)."""
    if value is None or value is _MISSING or not ftype:
        return value
    if isinstance(value, list):
        return [to_type(v, ftype, mask) for v in value]
    if ftype == "string":
        if isinstance(value, (dict, list)):
            return _MISSING
        return str(value).lower() if isinstance(value, bool) else str(value)
    if ftype == "number":
        if isinstance(value, bool):
            return _MISSING
        if isinstance(value, (int, float)):
            return value
        try:
            num = float(str(value).strip())
        except ValueError:
            return _MISSING
        return int(num) if num.is_integer() and "." not in str(value) else num
    if ftype == "boolean":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        return {"true": True, "false": False, "1": True, "0": False}.get(text, _MISSING)
    if ftype == "date":
        ms = parse_date(value, mask)
        return _MISSING if ms is None else iso(ms)
    return value


def from_type(value: Any, ftype: str | None, mask: str | None) -> Any:
    """A common value as the vendor expects it (dates per mask; the hub coerces the rest)."""
    if ftype == "date" and value is not None:
        if isinstance(value, list):
            return [from_type(v, ftype, mask) for v in value]
        ms = timefmt.parse_instant(value)
        if ms is None:
            raise CEError(400, f"Invalid date value {value!r}")
        return format_date(ms, mask)
    return value


# ---------------------------------------------------------------- compiled transformation
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
