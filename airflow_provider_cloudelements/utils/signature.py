"""Webhook / bulk-callback signatures, reference §5.5.

``Elements-Webhook-Signature: sha256=<base64(HMAC-SHA256(key, raw body bytes))>``, standard base64
alphabet with padding, key as UTF-8. Verify on the **raw** bytes before parsing JSON; compare in
constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections import OrderedDict

from airflow_provider_cloudelements.utils.validation import positive_int

SIGNATURE_HEADER = "Elements-Webhook-Signature"
_PREFIX = "sha256="


def compute_webhook_signature(raw_body: bytes, key: str) -> str:
    """The header value Cloud Elements sends for ``raw_body``.

    :param raw_body: exact request body bytes.
    :param key: the instance's ``event.notification.signature.key``.
    :return: ``"sha256=<base64 digest>"``.
    :raises TypeError: when ``raw_body`` is not bytes (a decoded/re-serialized body would not match).
    """
    if not isinstance(raw_body, (bytes, bytearray, memoryview)):
        raise TypeError("raw_body must be the raw request bytes")
    digest = hmac.new(key.encode("utf-8"), bytes(raw_body), hashlib.sha256).digest()
    return _PREFIX + base64.b64encode(digest).decode("ascii")


def verify_webhook_signature(raw_body: bytes, header: str | None, key: str) -> bool:
    """Whether ``header`` is the valid signature of ``raw_body`` under ``key`` (constant-time).

    :param raw_body: exact request body bytes.
    :param header: the ``Elements-Webhook-Signature`` value (``None`` when absent).
    :param key: the signature key; an empty key never verifies.
    :return: ``True`` only for a matching ``sha256=`` signature; never raises for bad input.
    """
    if (
        not header
        or not isinstance(header, str)
        or not key
        or not isinstance(key, str)
        or not isinstance(raw_body, (bytes, bytearray, memoryview))
    ):
        return False
    value = header.strip()
    if value[: len(_PREFIX)].lower() != _PREFIX:
        return False
    expected = compute_webhook_signature(raw_body, key).encode("ascii")
    try:
        given = (_PREFIX + value[len(_PREFIX) :].strip()).encode("ascii")
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected, given)


def webhook_event_id(raw_body: bytes) -> str | None:
    """Return ``message.eventId`` of a delivery body (reference §5.4) as a string, or ``None``. Never raises.

    ``None`` when the body is not a JSON object or has no event id.
    """
    try:
        data = json.loads(bytes(raw_body))
    except (TypeError, ValueError, RecursionError):
        return None
    message = data.get("message") if isinstance(data, dict) else None
    event_id = message.get("eventId") if isinstance(message, dict) else None
    if event_id is None or isinstance(event_id, (dict, list, bool)) or str(event_id).strip() == "":
        return None
    return str(event_id)


class WebhookDeduplicator:
    """Remembers the last ``max_size`` delivered ``message.eventId`` values, so a redelivery is processed once.

    A replayed or retried delivery (reference §5.7: retries can duplicate) is detected.

    Thread-safe; memory is bounded (oldest ids are forgotten first), so a replay older than
    ``max_size`` deliveries is not detected: pair it with idempotent processing downstream.

    Usage in a receiver, after :func:`verify_webhook_signature` succeeded::

        if dedup.first_time(raw_body):
            process(raw_body)
        return 200  # acknowledge duplicates too, or Cloud Elements keeps retrying

    :param max_size: number of event ids kept (positive).
    """

    def __init__(self, max_size: int = 10_000) -> None:
        self.max_size = positive_int(max_size, "max_size")
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, raw_body_or_event_id: bytes | str) -> bool:
        """``True`` the first time an event id is seen (and remember it), ``False`` for a duplicate.

        :param raw_body_or_event_id: the raw delivery body (its ``message.eventId`` is used) or the
            event id itself. A body without an event id cannot be deduplicated: ``True``.
        """
        if isinstance(raw_body_or_event_id, str):
            event_id: str | None = raw_body_or_event_id
        else:
            event_id = webhook_event_id(raw_body_or_event_id)
        if event_id is None:
            return True
        with self._lock:
            if event_id in self._seen:
                self._seen.move_to_end(event_id)
                return False
            self._seen[event_id] = None
            while len(self._seen) > self.max_size:
                self._seen.popitem(last=False)
            return True

    def __len__(self) -> int:
        return len(self._seen)
