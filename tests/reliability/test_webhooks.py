"""Webhook signatures (reference §5.5) on real deliveries from the emulator to a loopback receiver,
and deduplication of replayed deliveries by ``message.eventId`` (reference §5.7)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.utils.signature import (
    SIGNATURE_HEADER,
    WebhookDeduplicator,
    compute_webhook_signature,
    verify_webhook_signature,
    webhook_event_id,
)

pytestmark = pytest.mark.timeout(30)

KEY = "whsec-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Loopback webhook sink: records raw deliveries; answers ``statuses`` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    def wait_for(self, n: int, timeout: float = 15.0) -> list[Delivery]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.deliveries) >= n, timeout), (
                f"got {len(self.deliveries)} of {n} deliveries"
            )
            return list(self.deliveries)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with rec.cond:
                status = rec.statuses.pop(0) if rec.statuses else 200
                rec.deliveries.append(Delivery(dict(self.headers.items()), body))
                rec.cond.notify_all()
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{httpd.server_address[1]}/hooks/ce"
    try:
        yield rec
    finally:
        httpd.shutdown()
        httpd.server_close()


def _webhook_instance(remu: Any, receiver: Receiver, name: str) -> dict[str, Any]:
    return remu.state.create_instance(
        "quickbooks",
        name,
        configuration={
            "event.notification.enabled": "true",
            "event.vendor.type": "webhook",
            "event.notification.callback.url": receiver.url,
            "event.notification.signature.key": KEY,
        },
    )


def _header(d: Delivery) -> str | None:
    return next((v for k, v in d.headers.items() if k.lower() == SIGNATURE_HEADER.lower()), None)


def test_real_delivery_signature_accepted_and_forgeries_rejected(remu: Any, rconn: Any, receiver: Receiver) -> None:
    inst = _webhook_instance(remu, receiver, "webhook-sig")
    CloudElementsHook(rconn(), instance_id=inst["id"]).create_record("customers", {"displayName": "Signed Ltd"})
    (delivery,) = receiver.wait_for(1)
    header = _header(delivery)
    assert header and header.startswith("sha256=")
    assert webhook_event_id(delivery.body) is not None
    assert verify_webhook_signature(delivery.body, header, KEY)
    assert compute_webhook_signature(delivery.body, KEY) == header

    tampered = delivery.body.replace(b"Signed Ltd", b"Signed Ltc")
    assert tampered != delivery.body
    reserialized = json.dumps(json.loads(delivery.body), indent=1).encode()  # parsed + re-dumped
    assert reserialized != delivery.body
    for body, head, key, why in [
        (tampered, header, KEY, "tampered body"),
        (delivery.body + b" ", header, KEY, "one extra byte"),
        (delivery.body, header, KEY + "x", "wrong key"),
        (delivery.body, header, "", "empty key"),
        (delivery.body, None, KEY, "missing header"),
        (delivery.body, "", KEY, "empty header"),
        (delivery.body, header.removeprefix("sha256="), KEY, "no sha256= prefix"),
        (delivery.body, "sha1=" + header.removeprefix("sha256="), KEY, "wrong algorithm"),
        (delivery.body, header[:-4] + "AAA=", KEY, "truncated digest"),
        (delivery.body, "sha256=ünïcode", KEY, "non-ASCII header"),
        (delivery.body.decode(), header, KEY, "decoded str body"),
        (reserialized, header, KEY, "re-serialized JSON"),
    ]:
        assert not verify_webhook_signature(body, head, key), why  # type: ignore[arg-type]


def test_bulk_callback_is_signed(remu: Any, rconn: Any, receiver: Receiver) -> None:
    inst = _webhook_instance(remu, receiver, "webhook-bulk")
    hook = CloudElementsHook(rconn(), instance_id=inst["id"])
    job_id = hook.start_bulk_query("vendors", callback_url=receiver.url)
    deliveries = receiver.wait_for(1)
    callback = next(d for d in deliveries if json.loads(d.body).get("id") == job_id)
    assert verify_webhook_signature(callback.body, _header(callback), KEY)
    assert json.loads(callback.body)["status"] == "COMPLETED"


def test_replayed_delivery_is_processed_once(remu: Any, rconn: Any, receiver: Receiver) -> None:
    """The receiver fails the first attempt (HTTP 500): the emulator retries the same delivery
    (reference §5.7). Both attempts carry the same eventId and a valid signature; the deduplicator
    lets exactly one through."""
    receiver.statuses = [500]
    inst = _webhook_instance(remu, receiver, "webhook-replay")
    CloudElementsHook(rconn(), instance_id=inst["id"]).create_record("customers", {"displayName": "Twice Inc"})
    first, second = receiver.wait_for(2)[:2]
    assert first.body == second.body and webhook_event_id(first.body) is not None

    dedup = WebhookDeduplicator(max_size=100)
    processed = [
        d for d in (first, second) if verify_webhook_signature(d.body, _header(d), KEY) and dedup.first_time(d.body)
    ]
    assert processed == [first]


def test_deduplicator_is_bounded_and_safe() -> None:
    dedup = WebhookDeduplicator(max_size=3)
    bodies = [json.dumps({"message": {"eventId": i, "events": []}}).encode() for i in range(5)]
    assert [dedup.first_time(b) for b in bodies] == [True] * 5
    assert len(dedup) == 3
    assert not dedup.first_time(bodies[4]) and not dedup.first_time("4")
    assert dedup.first_time(bodies[0]), "the oldest id is forgotten (bounded memory)"
    # bodies without an event id cannot be deduplicated: always processed, never an exception
    for junk in [b"", b"not json", b"[]", b'{"message": 1}', b'{"message": {"eventId": ""}}', b"\xff\xfe"]:
        assert dedup.first_time(junk)
    threads = [threading.Thread(target=lambda: [dedup.first_time(str(i)) for i in range(200)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(dedup) == 3
    for bad in (0, -1, True, "10"):
        with pytest.raises(CloudElementsConfigError):
            WebhookDeduplicator(max_size=bad)  # type: ignore[arg-type]
