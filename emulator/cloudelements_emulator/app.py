"""FastAPI application factory (OpenAPI at ``/openapi.json``)."""

from __future__ import annotations

from email.utils import formatdate
from typing import Any

from fastapi import FastAPI

from cloudelements_emulator.errors import install_handlers
from cloudelements_emulator.faults import EmulatorMiddleware
from cloudelements_emulator.paths import AcceptCheck, HublessPaths
from cloudelements_emulator.routers import (
    admin,
    bulk,
    catalog,
    commonresources,
    events,
    hub,
    instances,
    platform,
)
from cloudelements_emulator.state import EmulatorState

DESCRIPTION = """Offline emulator of the Cloud Elements REST API (api-v2): platform (elements, instances,
events), the Finance hub for QuickBooks Online, QuickBooks Enterprise and FreshBooks, and the bulk API.
Authorization: `User <secret>, Organization <secret>` (platform) or `User <secret>, Element <token>` (hub).
Admin routes under `/_emulator` need no auth."""


TAGS = [
    {"name": "elements", "description": "Element and hub catalog, OAuth helpers (reference §2.1). No auth."},
    {"name": "instances", "description": "Element instances (§2.2). `User`, `Organization` auth."},
    {"name": "events", "description": "Events and webhook deliveries (§5.6, §5.7). Platform auth."},
    {"name": "bulk", "description": "Bulk query/upload jobs (§4). `User`, `Element` auth."},
    {
        "name": "hub",
        "description": "Finance hub resources (§3). `User`, `Element` auth; hub segment ignored.",
    },
    {
        "name": "common resources",
        "description": "Common-resource definitions and transformations at every level (§10). Platform auth.",
    },
    {"name": "admin", "description": "Emulator administration under `/_emulator`. No auth, never faulted."},
]


class ServerDate:
    """ASGI middleware stamping every response with its exact ``Date``.

    The ``Date`` header of every response is the time it is sent (RFC 9110 section 6.6.1, second
    resolution, as Cloud Elements sends it). uvicorn's own header is refreshed once a second and lags up
    to a second behind, which made clients' server-clock readings (a paged extract's ``snapshot_at``) up
    to a second too early; the server runs with ``date_header=False``.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_dated(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                message = {**message, "headers": [*headers, (b"date", formatdate(usegmt=True).encode())]}
            await send(message)

        await self.app(scope, receive, send_dated)


def create_app(state: EmulatorState) -> FastAPI:
    """Build the app around ``state``. Router order matters: specific paths before generic ones."""
    app = FastAPI(
        openapi_tags=TAGS,
        title="Cloud Elements emulator",
        version="1.0",
        description=DESCRIPTION,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.emulator = state
    install_handlers(app)
    for module in (admin, catalog, platform, commonresources, instances, events, bulk, hub):
        app.include_router(module.router)
    app.add_middleware(AcceptCheck)
    app.add_middleware(EmulatorMiddleware, injector=state.faults, stats=state.stats_counters)
    app.add_middleware(HublessPaths)
    app.add_middleware(ServerDate)
    return app
