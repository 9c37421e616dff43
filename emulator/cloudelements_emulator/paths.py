"""Two small ASGI middlewares on top of the routers.

:class:`HublessPaths` — hub calls without the hub segment (reference §1.2: the Element token, not the
path, selects the instance; churros checks ``/accounts`` ≡ ``/hubs/crm/accounts``):
``/elements/api-v2/customers`` is served as ``/elements/api-v2/hubs/finance/customers`` unless its
first segment is a platform API (``instances``, ``elements``, ``hubs``, ``events``, …). Runs outermost
so fault injection, stats and routing all see the canonical path.

:class:`AcceptCheck` — 406 when the ``Accept`` header excludes JSON (reference §6.2: "response type cannot
satisfy Accept"). Bulk file downloads (CSV/NDJSON) and QuickBooks Online PDF reads
(``GET /hubs/{hub}/{resource}/{id}``, ``Accept: application/pdf``) decide for themselves.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from cloudelements_emulator.errors import error_response, new_request_id

PREFIX = "/elements/api-v2/"
#: First path segments that are platform APIs, never hub resources.
PLATFORM_SEGMENTS = frozenset(
    {
        "instances",
        "elements",
        "hubs",
        "events",
        "organizations",
        "accounts",
        "users",
        "notifications",
        "usage",
        "formulas",
        "docs",
    }
)
_RECORD_GET = re.compile(r"^/elements/api-v2/hubs/[^/]+/[^/]+/[^/]+$")
_JSON_OK = ("application/json", "application/*", "*/*", "*/json", "application/jsonl", "application/x-ndjson")


class HublessPaths:
    """Rewrite ``/elements/api-v2/<resource>…`` to ``/elements/api-v2/hubs/finance/<resource>…``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith(PREFIX):
                first = path[len(PREFIX) :].split("/", 1)[0]
                if first and first not in PLATFORM_SEGMENTS:
                    new = PREFIX + "hubs/finance/" + path[len(PREFIX) :]
                    scope = {**scope, "path": new, "raw_path": new.encode()}
        await self.app(scope, receive, send)


def accepts_json(accept: str | None) -> bool:
    """Whether an ``Accept`` header admits a JSON answer (absent or empty: yes; ``q=0`` ranges excluded)."""
    if not accept or not accept.strip():
        return True
    for part in accept.lower().split(","):
        media, *params = [p.strip() for p in part.split(";")]
        if any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000") for p in params):
            continue
        if media in _JSON_OK or media.endswith("+json"):
            return True
    return False


class AcceptCheck:
    """Answer 406 (Cloud Elements error body) when ``Accept`` rules out JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PREFIX) and "/bulk/" not in scope["path"]:
            accept = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"accept"), None)
            pdf_read = (
                scope["method"] == "GET" and _RECORD_GET.match(scope["path"]) and "application/pdf" in (accept or "")
            )
            if not pdf_read and not accepts_json(accept):
                rid = scope.get("ce_request_id") or new_request_id()
                response = error_response(
                    406,
                    f"Cannot produce a response matching Accept: {accept}; this API answers application/json",
                    rid,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
