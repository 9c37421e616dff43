"""Outbound webhook deliveries: signing (reference §5.5), retries with backoff and the queue (§5.7).

Attempt *x* (1-based) that fails is retried ``4**x * backoff_factor`` seconds later; after
``max_attempts`` failures the delivery is ``queued`` and readable at
``GET /notifications/subscriptions/deliveries``; ``PUT`` on that path redelivers queued ones.
Deliveries are ``{"id", "channel": "webhook", "status": "pending"|"delivered"|"retrying"|"queued",
"config": {"url"}, "instanceId", "eventId", "kind": "event"|"bulk", "attempts", "lastError",
"payload"}``.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from cloudelements_emulator.store import Store

log = logging.getLogger(__name__)
#: No proxies: callbacks usually target loopback receivers, which an HTTP(S)_PROXY would break.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def sign(body: bytes, key: str) -> str:
    """``sha256=<base64 HMAC-SHA256(key, raw body)>`` (reference §5.5)."""
    return "sha256=" + base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()


class Dispatcher:
    """A background thread POSTing deliveries in due-time order."""

    def __init__(
        self,
        store: Store,
        backoff_factor: float,
        max_attempts: int,
        timeout: float,
        on_result: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.backoff_factor = backoff_factor
        self.max_attempts = max(1, max_attempts)
        self.timeout = timeout
        self.on_result = on_result
        self._heap: list[tuple[float, int, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="ce-emulator-webhooks", daemon=True)
        self._thread.start()
        for (data,) in (
            store.conn()
            .execute("SELECT data FROM deliveries WHERE status IN ('pending', 'retrying') ORDER BY id")
            .fetchall()
        ):
            self._schedule(json.loads(data), 0.0)  # resume deliveries interrupted by a restart

    def submit(
        self,
        url: str,
        payload: dict[str, Any],
        signature_key: str | None,
        *,
        kind: str,
        instance_id: int | None,
        event_id: str | None = None,
    ) -> dict[str, Any]:
        """Queue a delivery for immediate sending; returns the delivery record."""
        delivery: dict[str, Any] = {
            "channel": "webhook",
            "status": "pending",
            "config": {"url": url},
            "instanceId": instance_id,
            "eventId": event_id,
            "kind": kind,
            "attempts": 0,
            "lastError": None,
            "webhookId": str(uuid.uuid4()),
            "payload": payload,
            "signatureKey": signature_key,
        }
        with self.store.tx() as c:
            cur = c.execute("INSERT INTO deliveries (status, data) VALUES (?, ?)", ("pending", json.dumps(delivery)))
            delivery["id"] = cur.lastrowid
        self._save(delivery)
        self._schedule(delivery, 0.0)
        return delivery

    def _schedule(self, delivery: dict[str, Any], delay: float) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + delay, delivery["id"], delivery))
            self._cond.notify()

    def _save(self, delivery: dict[str, Any]) -> None:
        with self.store.tx() as c:
            c.execute(
                "UPDATE deliveries SET status=?, data=? WHERE id=?",
                (delivery["status"], json.dumps(delivery), delivery["id"]),
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = None if not self._heap else max(0.0, self._heap[0][0] - time.monotonic())
                    self._cond.wait(timeout)
                if self._stop:
                    return
                _, _, delivery = heapq.heappop(self._heap)
            self._attempt(delivery)

    def _attempt(self, delivery: dict[str, Any]) -> None:
        body = json.dumps(delivery["payload"], separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "Elements-Webhook-Id": delivery["webhookId"],
            "User-Agent": "cloud-elements-emulator",
        }
        if delivery.get("signatureKey"):
            headers["Elements-Webhook-Signature"] = sign(body, delivery["signatureKey"])
        delivery["attempts"] += 1
        try:
            req = urllib.request.Request(delivery["config"]["url"], data=body, headers=headers, method="POST")
            with _OPENER.open(req, timeout=self.timeout) as resp:
                ok = 200 <= resp.status < 300
                error = None if ok else f"HTTP {resp.status}"
        except urllib.error.HTTPError as err:
            ok, error = False, f"HTTP {err.code}"
        except (OSError, ValueError) as err:
            ok, error = False, f"{type(err).__name__}: {err}"
        if ok:
            delivery["status"] = "delivered"
        elif delivery["attempts"] >= self.max_attempts:
            delivery["status"] = "queued"
            log.warning(
                "webhook delivery %s to %s queued after %s attempts: %s",
                delivery["id"],
                delivery["config"]["url"],
                delivery["attempts"],
                error,
            )
        else:
            delivery["status"] = "retrying"
            self._schedule(delivery, (4 ** delivery["attempts"]) * self.backoff_factor)
        delivery["lastError"] = error
        self._save(delivery)
        if self.on_result:
            self.on_result(delivery)

    def all(self) -> list[dict[str, Any]]:
        """All deliveries (oldest first), without the signature key."""
        rows = self.store.conn().execute("SELECT data FROM deliveries ORDER BY id").fetchall()
        return [public(json.loads(r[0])) for r in rows]

    def redeliver_queued(self) -> int:
        """Re-activate queued deliveries (``PUT /notifications/subscriptions/deliveries``)."""
        rows = self.store.conn().execute("SELECT data FROM deliveries WHERE status='queued'").fetchall()
        for (data,) in rows:
            delivery = json.loads(data)
            delivery["status"], delivery["attempts"] = "retrying", 0
            self._save(delivery)
            self._schedule(delivery, 0.0)
        return len(rows)

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5)


def public(delivery: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in delivery.items() if k != "signatureKey"}
