"""Events (reference §5): recording, the polling loop and webhook notifications.

* **Webhook mode** (``event.vendor.type`` ``webhook``/``webhooks`` and
  ``event.notification.enabled``): every create/update/delete (hub calls, bulk uploads,
  ``simulate_activity``) records one event immediately and POSTs the §5.4 envelope (one event per
  delivery) to ``event.notification.callback.url``.
* **Polling mode** (``event.vendor.type: polling`` and enabled): a poller per instance runs every
  ``event.poller.refresh_interval`` minutes (or ``EmulatorConfig.poller_interval_seconds``) and
  emits CREATED (created == updated within 1 s) / UPDATED events for records whose updated time is
  in ``(last poll, this poll]``; soft-deleted records show up as UPDATED; hard deletes are **not**
  visible to the poller (only webhook mode reports DELETED), like the real platform (§5.2). One
  delivery per (poll, resource) carries all its events.
* **Events disabled**: changes are still recorded (status ``RECEIVED``) so they can be inspected,
  nothing is delivered.

Event objects: ``{id (str), eventDate (ISO, ms, UTC; >= the record's updated time), status
(RECEIVED | DISPATCHED | NOTIFIED), elementKey, instanceId, objectType, objectId, eventType
(CREATED | UPDATED | DELETED), providerData (JSON string of the raw record), notifiedData}``.
Listings are **oldest first** (ascending id) unless ``orderBy=eventDate desc``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from cloudelements_emulator import timefmt
from cloudelements_emulator.instances import InstanceService, event_settings
from cloudelements_emulator.records import RecordRepo, Window
from cloudelements_emulator.store import Store
from cloudelements_emulator.webhooks import Dispatcher

log = logging.getLogger(__name__)


class EventService:
    """Stores events, runs the poller thread and hands notifications to the dispatcher."""

    def __init__(
        self,
        store: Store,
        instances: InstanceService,
        records: RecordRepo,
        dispatcher: Dispatcher,
        poller_interval_seconds: float | None,
    ) -> None:
        self.store = store
        self.instances = instances
        self.records = records
        self.dispatcher = dispatcher
        self.poller_interval_seconds = poller_interval_seconds
        self._watermarks: dict[int, int] = {}
        self._next_poll: dict[int, float] = {}
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="ce-emulator-poller", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ recording
    def _insert(
        self,
        inst: dict[str, Any],
        resource: str,
        object_id: Any,
        event_type: str,
        record: dict,
        date_ms: int,
        status: str,
    ) -> dict[str, Any]:
        event = {
            "eventDate": timefmt.iso_utc(date_ms),
            "status": status,
            "elementKey": inst["element"]["key"],
            "instanceId": inst["id"],
            "objectType": resource,
            "objectId": str(object_id),
            "eventType": event_type,
            "providerData": json.dumps(record, separators=(",", ":")),
            "notifiedData": [],
        }
        with self.store.tx() as c:
            cur = c.execute(
                "INSERT INTO events (instance_id, date_ms, status, data) VALUES (?, ?, ?, ?)",
                (inst["id"], date_ms, status, json.dumps(event)),
            )
            event["id"] = str(cur.lastrowid)
        return event

    def on_change(
        self, inst: dict[str, Any], resource: str, object_id: Any, event_type: str, record: dict, date_ms: int
    ) -> None:
        """Called for every change; records (and in webhook mode delivers) an event."""
        settings = event_settings(inst)
        if settings["enabled"] and settings["mode"] == "polling":
            return  # the poller reports it
        deliver = settings["enabled"] and settings["mode"] == "webhook" and settings["callback_url"]
        event = self._insert(
            inst, resource, object_id, event_type, record, date_ms, "DISPATCHED" if deliver else "RECEIVED"
        )
        if deliver:
            self._notify(inst, settings, resource, [(event, record)])

    def receive_vendor(
        self, inst: dict[str, Any], resource: str, object_id: Any, event_type: str, raw: dict, date_ms: int
    ) -> dict[str, Any]:
        """Record an event the vendor pushed to ``POST /events/{elementKey}`` (reference §5.1).

        The vendor payload is kept as ``providerData``. When events are enabled with a callback URL the
        event is delivered at once, whatever the polling/webhook mode (the vendor, not the poller,
        reported it).
        """
        settings = event_settings(inst)
        deliver = bool(settings["enabled"] and settings["callback_url"])
        event = self._insert(
            inst, resource, object_id, event_type, raw, date_ms, "DISPATCHED" if deliver else "RECEIVED"
        )
        if deliver:
            self._notify(inst, settings, resource, [(event, raw)])
        return event

    def _notify(
        self,
        inst: dict[str, Any],
        settings: dict[str, Any],
        resource: str,
        batch: list[tuple[dict[str, Any], dict]],
    ) -> None:
        """POST the reference §5.4 envelope for ``batch`` (events of one resource)."""
        first = batch[0][0]
        payload = {
            "message": {
                "eventId": first["id"],
                "instanceId": inst["id"],
                "elementKey": inst["element"]["key"],
                "accountId": 1,
                "userId": inst["user"]["id"],
                "events": [
                    {
                        "eventId": e["id"],
                        "objectType": resource,
                        "objectId": e["objectId"],
                        "eventType": e["eventType"],
                        "elementKey": inst["element"]["key"],
                        "date": e["eventDate"],
                    }
                    for e, _ in batch
                ],
                "raw": {"objectType": resource, "objects": [rec for _, rec in batch]},
            }
        }
        self.dispatcher.submit(
            settings["callback_url"],
            payload,
            settings["signature_key"],
            kind="event",
            instance_id=inst["id"],
            event_id=first["id"],
        )

    def on_delivery_result(self, delivery: dict[str, Any]) -> None:
        """Dispatcher callback: mark the delivered events NOTIFIED."""
        if delivery.get("kind") != "event" or delivery["status"] != "delivered":
            return
        ids = [int(e["eventId"]) for e in delivery["payload"]["message"]["events"]]
        with self.store.tx() as c:
            for eid in ids:
                row = c.execute("SELECT data FROM events WHERE id=?", (eid,)).fetchone()
                if row:
                    data = json.loads(row[0])
                    data["status"] = "NOTIFIED"
                    data["notifiedData"] = [{"webhookId": delivery["webhookId"], "url": delivery["config"]["url"]}]
                    c.execute("UPDATE events SET status='NOTIFIED', data=? WHERE id=?", (json.dumps(data), eid))

    # ------------------------------------------------------------ reading
    def query(
        self,
        instance_id: int | None,
        lo_ms: int | None,
        hi_ms: int | None,
        newest_first: bool,
        predicate: Callable[[dict], bool],
    ) -> list[dict[str, Any]]:
        """Events filtered by instance, ``[lo, hi)`` on the event date, and a CEQL predicate."""
        parts, args = [], []
        if instance_id is not None:
            parts.append("instance_id = ?")
            args.append(instance_id)
        if lo_ms is not None:
            parts.append("date_ms >= ?")
            args.append(lo_ms)
        if hi_ms is not None:
            parts.append("date_ms < ?")
            args.append(hi_ms)
        where = (" WHERE " + " AND ".join(parts)) if parts else ""
        sql = f"SELECT id, data FROM events{where} ORDER BY id {'DESC' if newest_first else 'ASC'}"
        out = []
        for eid, data in self.store.conn().execute(sql, args):
            event = json.loads(data)
            event = {"id": str(eid), **event}
            if predicate(event):
                out.append(event)
        return out

    def get(self, event_id: str) -> dict[str, Any] | None:
        if not str(event_id).isdigit():
            return None
        row = self.store.conn().execute("SELECT id, data FROM events WHERE id=?", (int(event_id),)).fetchone()
        if not row:
            return None
        return {"id": str(row[0]), **json.loads(row[1])}

    # ------------------------------------------------------------ polling
    def _interval(self, settings: dict[str, Any]) -> float:
        if self.poller_interval_seconds is not None:
            return float(self.poller_interval_seconds)
        return max(1.0, settings["refresh_minutes"] * 60.0)

    def _poll_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_due()
            except Exception:  # pragma: no cover - keep the poller alive
                log.exception("poller iteration failed")
            self._wake.wait(
                0.05 if self.poller_interval_seconds is not None and self.poller_interval_seconds < 1 else 0.2
            )
            self._wake.clear()

    def poll_due(self) -> None:
        """Run every instance poll that is due (polling-mode, enabled, not disabled)."""
        active = set()
        for inst in self.instances.all():
            settings = event_settings(inst)
            if inst.get("disabled") or not settings["enabled"] or settings["mode"] != "polling":
                continue
            iid = inst["id"]
            active.add(iid)
            now = time.monotonic()
            if iid not in self._watermarks:
                self._watermarks[iid] = self._locked_now()
                self._next_poll[iid] = now + self._interval(settings)
                continue
            if now >= self._next_poll[iid]:
                self._next_poll[iid] = now + self._interval(settings)
                self.poll_instance(inst, settings)
        for iid in list(self._watermarks):
            if iid not in active:
                self._watermarks.pop(iid, None)
                self._next_poll.pop(iid, None)

    def _locked_now(self) -> int:
        # changes take their timestamp inside the write lock, so every change stamped <= this
        # instant is committed once we hold the lock
        with self.store.write_lock:
            return timefmt.now_ms()

    def poll_instance(self, inst: dict[str, Any], settings: dict[str, Any]) -> int:
        """One poll: events for records changed in ``(last poll, now]``; returns the event count."""
        element = self.instances.element_of(inst)
        iid = inst["id"]
        last = self._watermarks.get(iid, 0)
        now = self._locked_now()
        total = 0
        for resource in element.resources:
            if not self.records.is_generated(iid, resource):
                continue
            tbl = self.records.ensure(element, iid, resource)
            batch = []
            # ``updated`` may be truncated to seconds; select by it, then decide on the exact time
            window = Window(lo=last - last % 1000, hi=now, hi_inclusive=True)
            for row in self.records.scan(tbl, window, order="updated, seq"):
                if not last < row.changed <= now:
                    continue
                record = row.obj()
                event_type = "CREATED" if abs(row.updated - row.created) <= 1000 else "UPDATED"
                rid = record.get(element.id_field(resource))
                event = self._insert(
                    inst,
                    resource,
                    rid,
                    event_type,
                    record,
                    now,
                    "DISPATCHED" if settings["callback_url"] else "RECEIVED",
                )
                batch.append((event, record))
            if batch and settings["callback_url"]:
                self._notify(inst, settings, resource, batch)
            total += len(batch)
        self._watermarks[iid] = now
        if total:
            log.info("poller: %s events for instance %s", total, iid)
        return total

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
