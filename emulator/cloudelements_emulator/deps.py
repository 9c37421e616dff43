"""FastAPI dependencies shared by the routers: state access, auth, JSON bodies, paging helpers."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from cloudelements_emulator.auth import check_platform, element_token
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.state import EmulatorState

API = "/elements/api-v2"


def state_of(request: Request) -> EmulatorState:
    return request.app.state.emulator


def platform_auth(request: Request) -> EmulatorState:
    """Dependency: ``User`` + ``Organization`` (reference §1.2); returns the state."""
    state = state_of(request)
    check_platform(request.headers.get("authorization"), state.config.user_secret, state.config.organization_secret)
    return state


def hub_instance(request: Request) -> dict[str, Any]:
    """Dependency: ``User`` + ``Element`` → the instance (401 unknown/deleted, 403 disabled)."""
    state = state_of(request)
    token = element_token(
        request.headers.get("authorization"), state.config.user_secret, state.config.organization_secret
    )
    return state.instance_by_token(token)


async def json_body(request: Request) -> Any:
    """Parsed JSON body. :raises CEError: 400 for malformed JSON, 415 for a non-JSON content type."""
    raw = await request.body()
    if not raw.strip():
        return {}
    ctype = request.headers.get("content-type", "application/json")
    if "json" not in ctype and "text/plain" not in ctype:
        raise CEError(415, f"Unsupported Content-Type {ctype!r}; send application/json")
    try:
        return json.loads(raw)
    except ValueError as err:
        raise CEError(400, f"Malformed JSON body: {err}") from None


def json_text(text: str, headers: dict[str, str] | None = None, status: int = 200) -> Response:
    """A response from already-serialised JSON text."""
    return Response(content=text, media_type="application/json", headers=headers or {}, status_code=status)


def int_param(value: str | None, name: str) -> int | None:
    """Parse an optional integer query parameter. :raises CEError: 400 if not an integer."""
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise CEError(400, f"'{name}' must be an integer, got {value!r}") from None


def paginate(
    items: list[Any], page_size: str | None, next_page: str | None, default: int = 200, cap: int = 5000
) -> tuple[list[Any], dict[str, str]]:
    """Offset paging of an in-memory list with CE headers (platform lists: events, errors, jobs)."""
    from cloudelements_emulator.paging import decode_cursor, encode_cursor

    size = int_param(page_size, "pageSize") or default
    if size < 1:
        raise CEError(400, "pageSize must be a positive integer")
    size = min(size, cap)
    offset = decode_cursor(next_page)[0] if next_page else 0
    page = items[offset : offset + size]
    headers = {"Elements-Returned-Count": str(len(page)), "Elements-Total-Count": str(len(items))}
    if offset + size < len(items):
        headers["Elements-Next-Page-Token"] = encode_cursor(offset + size)
    return page, headers


HubInstance = Annotated[dict, Depends(hub_instance)]
"""Route parameter type: the instance of the ``Element`` token."""
PlatformState = Annotated[EmulatorState, Depends(platform_auth)]
"""Route parameter type: the state, after platform auth."""
JsonBody = Annotated[Any, Depends(json_body)]
"""Route parameter type: the parsed JSON body."""
