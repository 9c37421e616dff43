"""Trigger that waits for Cloud Elements events (reference §5.6) — for sensors and AssetWatchers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_cloudelements.hooks.cloudelements_async import CloudElementsAsyncHook
from airflow_provider_cloudelements.models.events import event_date, floor_ms, newest_date, summarize_events
from airflow_provider_cloudelements.models.timestamps import parse_timestamp

WATERMARK_KEY = "cloudelements_event_watermark"


class CloudElementsEventTrigger(BaseEventTrigger):
    """Poll ``GET /instances/{id}/events`` for events after a watermark matching object/event types.

    Two uses:

    * **Sensor deferral** (``watch=False``): yields one event ``{"status": "success", "events": [...],
      "watermark": ISO}`` once matches exist, ``{"status": "timeout"}`` at ``end_time`` or
      ``{"status": "error", "message"}``, then stops.
    * **Event-driven scheduling** (``watch=True``, inside an ``AssetWatcher``): loops forever and yields
      one event per batch of new matches. The watermark (newest event date) and the ids seen at that
      instant are kept in the asset state store the triggerer injects (Airflow 3.3, AIP-103), so a
      triggerer restart resumes where it stopped and no event starts two DAG runs.

    Kwargs hold only ids, types, numbers and ISO dates — never a secret.

    :param instance_id: element instance whose events to read.
    :param object_types: resource names to match (``["invoices"]``); empty matches all.
    :param event_types: ``CREATED``/``UPDATED``/``DELETED``; empty matches all.
    :param since: ISO-8601 watermark; events at or after it (rounded down to the millisecond, the
        precision of event dates) match, half-open like data intervals. Default: when the trigger
        first runs.
    :param poll_interval: seconds between polls (multiplied by ``backoff`` after empty polls, capped
        at ``max_poll_interval``).
    :param end_time: absolute deadline, epoch seconds (sensor use); ``None`` = no deadline.
    """

    def __init__(
        self,
        *,
        instance_id: int,
        cloudelements_conn_id: str = "cloudelements_default",
        object_types: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        since: str | None = None,
        poll_interval: float = 60.0,
        backoff: float = 1.0,
        max_poll_interval: float = 600.0,
        end_time: float | None = None,
        watch: bool = False,
    ) -> None:
        super().__init__()
        self.instance_id = int(instance_id)
        self.cloudelements_conn_id = cloudelements_conn_id
        self.object_types = sorted(object_types or [])
        self.event_types = sorted(t.upper() for t in (event_types or []))
        self.since = since
        self.poll_interval = float(poll_interval)
        self.backoff = float(backoff)
        self.max_poll_interval = float(max_poll_interval)
        self.end_time = end_time
        self.watch = watch

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "instance_id": self.instance_id,
                "cloudelements_conn_id": self.cloudelements_conn_id,
                "object_types": self.object_types,
                "event_types": self.event_types,
                "since": self.since,
                "poll_interval": self.poll_interval,
                "backoff": self.backoff,
                "max_poll_interval": self.max_poll_interval,
                "end_time": self.end_time,
                "watch": self.watch,
            },
        )

    async def _load_watermark(self) -> tuple[datetime, set[str]]:
        default = floor_ms(parse_timestamp(self.since, strict=False) or datetime.now(timezone.utc))
        store = getattr(self, "asset_state_store", None)
        if self.watch and store is not None:
            try:
                saved = await store.aget(WATERMARK_KEY)
            except Exception as err:  # the store is optional; fall back to the kwargs
                self.log.warning("Could not read the event watermark: %s", err)
                saved = None
            at = parse_timestamp(saved.get("at"), strict=False) if isinstance(saved, dict) else None
            if isinstance(saved, dict) and at is not None:
                return at, set(saved.get("seen") or [])
        return default, set()

    async def _save_watermark(self, at: datetime, seen: set[str]) -> None:
        store = getattr(self, "asset_state_store", None)
        if self.watch and store is not None:
            try:
                await store.aset(WATERMARK_KEY, {"at": at.isoformat(), "seen": sorted(seen)})
            except Exception as err:
                self.log.warning("Could not save the event watermark: %s", err)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = CloudElementsAsyncHook(self.cloudelements_conn_id, instance_id=self.instance_id)
        try:
            watermark, seen = await self._load_watermark()
            interval = self.poll_interval
            while True:
                if self.end_time is not None and time.time() >= self.end_time:
                    yield TriggerEvent({"status": "timeout", "watermark": watermark.isoformat()})
                    return
                events = await hook.list_events(
                    instance_id=self.instance_id,
                    since=watermark,
                    object_types=self.object_types or None,
                    event_types=self.event_types or None,
                )
                fresh = [e for e in events if self._matches(e, watermark, seen)]
                if fresh:
                    newest = newest_date(fresh, watermark)
                    seen = {str(e.get("id")) for e in fresh if event_date(e) == newest} | (
                        seen if newest == watermark else set()
                    )
                    watermark = newest
                    await self._save_watermark(watermark, seen)
                    yield TriggerEvent(
                        {
                            "status": "success",
                            "instance_id": self.instance_id,
                            "events": summarize_events(fresh),
                            "watermark": watermark.isoformat(),
                        }
                    )
                    if not self.watch:
                        return
                    interval = self.poll_interval
                else:
                    self.log.info("No new events for instance %s after %s", self.instance_id, watermark.isoformat())
                    interval = min(interval * self.backoff, self.max_poll_interval) if self.backoff > 1 else interval
                sleep_for = interval
                if self.end_time is not None:
                    sleep_for = max(min(sleep_for, self.end_time - time.time()), 0.0)
                await asyncio.sleep(sleep_for)
        except Exception as err:
            yield TriggerEvent({"status": "error", "message": f"{type(err).__name__}: {err}"})
        finally:
            await hook.aclose()

    def _matches(self, event: dict[str, Any], watermark: datetime, seen: set[str]) -> bool:
        """Whether a listed event is new, by the watermark bookkeeping only.

        The hook already applied the one event filter
        (:func:`~airflow_provider_cloudelements.models.events.event_matches`: types case-insensitive and
        nested, ``[since, …)``). An event without a readable date cannot be placed after the watermark and is
        skipped (logged): it would fire on every poll.
        """
        when = event_date(event)
        if when is None:
            self.log.warning("Skipping event %s of instance %s: no readable date", event.get("id"), self.instance_id)
            return False
        return when >= watermark and str(event.get("id")) not in seen
