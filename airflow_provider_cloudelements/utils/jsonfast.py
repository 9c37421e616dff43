"""JSON decode/encode for the hot paths (hub pages, paged extracts) with orjson when installed.

orjson is ~2x faster than the stdlib on Cloud Elements' record shapes (benchmarks/RESULTS.md, paged
pull); it rejects what the stdlib accepts in a few corners (``NaN``, integers beyond 64 bits,
non-string keys), so every call falls back to :mod:`json` on those. Output is the same compact UTF-8
JSON either way (``separators=(",", ":")``, non-ASCII kept).
"""

from __future__ import annotations

import json
from typing import Any

try:  # optional speed-up; the stdlib is always the fallback
    import orjson
except ImportError:  # pragma: no cover - depends on the environment
    orjson = None  # type: ignore[assignment]

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def loads(data: bytes | str) -> Any:
    """Parse JSON text. :raises ValueError: (``json.JSONDecodeError``) on invalid JSON."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # NaN, huge integers…: let the stdlib decide (and raise its own error)
    return json.loads(data)


def dumps(value: Any) -> str:
    """Compact JSON text (no spaces, non-ASCII kept)."""
    if orjson is not None:
        try:
            return orjson.dumps(value).decode()
        except TypeError:
            pass  # e.g. integers beyond 64 bits, non-string keys
    return _ENCODER.encode(value)
