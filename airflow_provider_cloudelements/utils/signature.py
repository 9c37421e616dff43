"""Webhook / bulk-callback signatures, reference §5.5.

``Elements-Webhook-Signature: sha256=<base64(HMAC-SHA256(key, raw body bytes))>``, standard base64
alphabet with padding, key as UTF-8. Verify on the **raw** bytes before parsing JSON; compare in
constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

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
    if not header or not key or not isinstance(raw_body, (bytes, bytearray, memoryview)):
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
