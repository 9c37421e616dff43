"""Timestamp rendering and parsing per element convention (reference §3.5, §5.2).

All internal times are integer epoch **milliseconds** (UTC).

* ``epoch_ms`` (QBO ``metaData.*``): the number itself.
* ``iso_offset`` (QBE ``TimeCreated``/``TimeModified``): ``yyyy-MM-dd'T'HH:mm:ssXXX`` in a fixed
  ``-05:00`` offset (QuickBooks Desktop has no DST support, reference §5.2), second precision.
* ``fb_datetime`` (FreshBooks ``updated``/``created_at``): ``yyyy-MM-dd HH:mm:ss`` in UTC, second
  precision.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import datetime, timedelta, timezone

QBE_TZ = timezone(timedelta(hours=-5))
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def truncate(ms: int, kind: str) -> int:
    """Round ``ms`` down to the precision ``kind`` can represent."""
    return ms if kind == "epoch_ms" else ms - ms % 1000


def render(ms: int, kind: str) -> int | str:
    """Render epoch-ms ``ms`` in the element convention ``kind``."""
    if kind == "epoch_ms":
        return ms
    if kind == "iso_offset":
        return datetime.fromtimestamp(ms / 1000, QBE_TZ).isoformat(timespec="seconds")
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def iso_utc(ms: int) -> str:
    """``2026-01-01T00:00:00.000Z`` (event dates, job dates)."""
    dt = datetime.fromtimestamp(ms / 1000, timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def date_str(ms: int) -> str:
    """``yyyy-MM-dd`` (UTC) for transaction dates."""
    return _day(ms // 86_400_000)


@functools.lru_cache(maxsize=4096)
def _day(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, timezone.utc).strftime("%Y-%m-%d")


def parse_instant(value: object) -> int | None:
    """Parse a CEQL/bulk date literal or a record value into epoch ms; ``None`` if not a date.

    Accepts epoch numbers (ms; values below 1e11 are taken as seconds), ISO-8601 with ``Z``, an
    offset or none (→ UTC), ``yyyy-MM-dd`` (midnight UTC) and ``yyyy-MM-dd HH:mm:ss`` (UTC).
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value if abs(value) >= 1e11 else value * 1000)
    text = str(value).strip()
    if _NUMBER.match(text):
        return parse_instant(float(text))
    if _DATE_ONLY.match(text):
        text += "T00:00:00"
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def require_instant(value: str, what: str) -> int:
    """Like :func:`parse_instant` but raising ``ValueError`` naming ``what``."""
    ms = parse_instant(value)
    if ms is None:
        raise ValueError(f"Invalid date for '{what}': {value!r} (expected ISO-8601)")
    return ms
