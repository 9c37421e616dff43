"""Hub list paging helpers (reference §3.3): the page type, opaque cursors and ``orderBy`` parsing."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from cloudelements_emulator.errors import CEError


@dataclass
class Page:
    """One hub list page: the JSON array text and the response headers."""

    body: str
    headers: dict[str, str] = field(default_factory=dict)


def encode_cursor(offset: int, last_seq: int | None = None) -> str:
    """Encode an opaque ``Elements-Next-Page-Token`` (reference §3.3).

    The token holds the row offset and, for pages in ascending ``seq`` order, the last row's ``seq``
    (keyset paging: the next page starts there instead of re-reading every skipped row).
    """
    state: dict[str, int] = {"o": offset}
    if last_seq is not None:
        state["s"] = last_seq
    return base64.urlsafe_b64encode(json.dumps(state).encode()).decode().rstrip("=")


def decode_cursor(token: str) -> tuple[int, int | None]:
    """``(offset, last_seq or None)``. :raises CEError: 400 for a token this emulator did not issue."""
    try:
        padded = token + "=" * (-len(token) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded.encode()))
        offset = int(state["o"])
        last_seq = int(state["s"]) if "s" in state else None
    except (ValueError, KeyError, TypeError):
        raise CEError(400, f"Invalid nextPage token: {token!r}") from None
    if offset < 0:
        raise CEError(400, f"Invalid nextPage token: {token!r}")
    return offset, last_seq


def parse_order_by(order_by: str | None) -> list[tuple[str, bool]]:
    """``"field asc, other desc"`` → ``[("field", False), ("other", True)]`` (True = descending)."""
    out = []
    for part in (order_by or "").split(","):
        words = part.strip().split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise CEError(400, f"Invalid orderBy: {order_by!r} (expected 'field asc|desc')")
        out.append((words[0].strip("`"), len(words) == 2 and words[1].lower() == "desc"))
    return out


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (3, "")
    if isinstance(value, bool):
        return (0, int(value))
    if isinstance(value, (int, float)):
        return (0, value)
    text = str(value)
    try:
        return (0, float(text))
    except ValueError:
        return (1, text)
