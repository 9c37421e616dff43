"""The custom ``Authorization`` scheme (reference §1.2).

``User <secret>, Organization <secret>[, Element <token>]`` — parts split on ``,`` then on the first
whitespace, keys case-insensitive, any order. Platform routes need User + Organization; hub routes
need User + Element (Organization optional but checked when present). Failures → 401; an unknown or
deleted token → 401; a disabled instance → 403.
"""

from __future__ import annotations

import hmac

from cloudelements_emulator.errors import CEError

_UNAUTHORIZED = "Invalid Organization or User secret, or invalid Element token provided."


def parse_authorization(header: str | None) -> dict[str, str]:
    """``"User a, Element b"`` → ``{"user": "a", "element": "b"}`` (keys lower-cased)."""
    parts: dict[str, str] = {}
    for chunk in (header or "").split(","):
        chunk = chunk.strip()
        if not chunk:
            continue
        key, _, value = chunk.partition(" ")
        if value.strip():
            parts[key.strip().lower()] = value.strip()
    return parts


def _same(a: str | None, b: str) -> bool:
    return a is not None and hmac.compare_digest(a.encode(), b.encode())


def check_platform(header: str | None, user_secret: str, org_secret: str) -> None:
    """:raises CEError: 401 unless User and Organization secrets match."""
    parts = parse_authorization(header)
    if not (_same(parts.get("user"), user_secret) and _same(parts.get("organization"), org_secret)):
        raise CEError(401, _UNAUTHORIZED)


def element_token(header: str | None, user_secret: str, org_secret: str) -> str:
    """Return the Element token of a hub call.

    :raises CEError: 401 when User is wrong/missing, Organization is present but wrong, or Element
        is missing.
    """
    parts = parse_authorization(header)
    if not _same(parts.get("user"), user_secret):
        raise CEError(401, _UNAUTHORIZED)
    if "organization" in parts and not _same(parts["organization"], org_secret):
        raise CEError(401, _UNAUTHORIZED)
    token = parts.get("element")
    if not token:
        raise CEError(401, _UNAUTHORIZED)
    return token


UNAUTHORIZED_MESSAGE = _UNAUTHORIZED
