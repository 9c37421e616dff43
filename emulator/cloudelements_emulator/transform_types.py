"""Field types and date masks of transformations (reference §10.3): vendor values ↔ common values.

Types (``type`` of the common field): ``string``, ``number``, ``boolean``, ``date``; no type keeps the
vendor value. ``vendorType`` matters for dates only: a Java-style date mask
(``yyyy-MM-dd'T'HH:mm:ssXXX``, ``yyyy-MM-dd``, ``yyyy-MM-dd HH:mm:ss``) or ``epoch_ms``; without one,
any instant :func:`timefmt.parse_instant` understands is read. Common dates are ISO-8601 UTC
(``2025-01-09T08:00:17Z``, milliseconds only when non-zero). A value that does not convert is
``_MISSING`` (left out, as a missing value is). Devportal ``docs/guides/common-resources/mappingapi.md``
("Transformation JSON Parameters").
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from cloudelements_emulator import timefmt
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.transform_paths import _MISSING

TYPES = frozenset({"string", "number", "boolean", "date"})
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
