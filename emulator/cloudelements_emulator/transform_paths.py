"""Field paths of transformations (reference §10.3): parsing, reading and writing a path in a record.

Both ``path`` (common) and ``vendorPath`` (vendor) of a transformation field are paths, documented in
devportal ``docs/guides/common-resources/mappingapi.md`` ("Map Complex Objects") and ``mapping.md``
("Working With Nested Objects"):

* dot notation, nested objects are built on write (``address.city``);
* array indexes ``Line[0].Amount``;
* filters ``Products[?(@.id==2)].name`` (also ``!=`` and quoted strings ``[?(@.type=='work')]``);
* a wildcard ``line[*].amount`` (emulator extension, one per path): the vendor values of every array
  element, written element-wise into the common array (``lines[*].amount``), so invoice lines map
  without the JavaScript step.

:func:`get_path` answers ``_MISSING`` for an absent value (shared with :mod:`.transform_types` and
:mod:`.transform_script`, where a value that does not convert is left out as a missing one is).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cloudelements_emulator.errors import CEError

_MISSING: Any = object()
_SEGMENT = re.compile(
    r"(?P<name>[^.\[\]]+)|\[(?P<index>\d+)\]|\[(?P<star>\*)\]"
    r"|\[\?\(@\.(?P<fkey>[^=!\s)]+)\s*(?P<fop>==|!=)\s*(?P<fval>'[^']*'|\"[^\"]*\"|[^)\s]+)\s*\)\]"
)


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
