"""Event listing (reference §5.6) and webhook delivery queue (reference §5.7). Platform auth.

Listings are oldest first (``orderBy=eventDate desc`` for newest first), paged with ``pageSize``
(default 200) / ``nextPage``, filterable by ``from`` (inclusive) / ``to`` (exclusive) ISO-8601
instants on ``eventDate`` and by CEQL ``where`` on any event field (``eventDate`` compares as an
instant).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request

from cloudelements_emulator import timefmt
from cloudelements_emulator.ceql import CeqlError, compile_where
from cloudelements_emulator.deps import (
    API,
    PlatformState,
    json_text,
    paginate,
)
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.state import EmulatorState
from cloudelements_emulator.webhooks import public

router = APIRouter(prefix=API, tags=["events"])


def _list(state: EmulatorState, request: Request, instance_id: int | None) -> Any:
    q = request.query_params
    try:
        lo = timefmt.require_instant(q["from"], "from") if q.get("from") else None
        hi = timefmt.require_instant(q["to"], "to") if q.get("to") else None
        query = compile_where(q.get("where"), frozenset({"eventDate"}))
    except CeqlError as err:
        raise CEError(400, str(err), provider_message=err.provider_message) from None
    except ValueError as err:
        raise CEError(400, str(err)) from None
    order = (q.get("orderBy") or "").lower().split()
    newest_first = len(order) == 2 and order[1] == "desc"
    if instance_id is not None:
        state.instances.get(instance_id)
    events = state.events.query(instance_id, lo, hi, newest_first, query.predicate)
    page, headers = paginate(events, q.get("pageSize"), q.get("nextPage"))
    return json_text(json.dumps(page), headers)


@router.get("/instances/events")
def all_events(request: Request, state: PlatformState) -> Any:
    """Events of all instances."""
    return _list(state, request, None)


@router.get("/instances/events/{event_id}")
def one_event(event_id: str, state: PlatformState) -> dict[str, Any]:
    event = state.events.get(event_id)
    if event is None:
        raise CEError(404, f"No event found with id {event_id}")
    return event


@router.get("/instances/{instance_id:int}/events")
def instance_events(instance_id: int, request: Request, state: PlatformState) -> Any:
    """Events of one instance."""
    return _list(state, request, instance_id)


@router.get("/instances/{instance_id:int}/events/{event_id}")
def instance_event(instance_id: int, event_id: str, state: PlatformState) -> dict:
    event = state.events.get(event_id)
    if event is None or event["instanceId"] != instance_id:
        raise CEError(404, f"No event {event_id} for instance {instance_id}")
    return event


@router.get("/notifications/subscriptions/deliveries")
def deliveries(request: Request, state: PlatformState) -> Any:
    """Webhook deliveries; e.g. ``where=channel='webhook' and status='queued' and config.url='...'``."""
    q = request.query_params
    try:
        predicate = compile_where(q.get("where")).predicate
    except CeqlError as err:
        raise CEError(400, str(err)) from None
    items = [d for d in state.dispatcher.all() if predicate(d)]
    page, headers = paginate(items, q.get("pageSize"), q.get("nextPage"))
    return json_text(json.dumps(page), headers)


@router.put("/notifications/subscriptions/deliveries")
def redeliver(state: PlatformState) -> dict[str, Any]:
    """Re-activate queued deliveries (reference §5.7)."""
    return {"redelivered": state.dispatcher.redeliver_queued()}


__all__ = ["public", "router"]
