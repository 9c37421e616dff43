"""Pure HTTP helpers shared by the sync and async hooks: headers, error parsing, redaction.

Nothing here does I/O; every function is unit-tested on its own (``tests/utils/test_http.py``).
References are to docs/api-facts.md (§1.2 headers, §1.3 response headers, §6 errors).
"""

from __future__ import annotations

import codecs
import csv
import email.utils
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsAuthenticationError,
    CloudElementsBadRequestError,
    CloudElementsConfigError,
    CloudElementsConflictError,
    CloudElementsForbiddenError,
    CloudElementsNotFoundError,
    CloudElementsReconciliationError,
    CloudElementsResponseTooLargeError,
    CloudElementsServerError,
    CloudElementsThrottledError,
)
from airflow_provider_cloudelements.utils import jsonfast
from airflow_provider_cloudelements.utils.retry import RETRY_AFTER_ATTR, unreachable_cause

DEFAULT_BASE_URL = "https://api.cloud-elements.com/elements/api-v2"  # reference §1.1
API_BASE_PATH = "/elements/api-v2"  # every Cloud Elements / SAP Open Connectors API path starts here
HUB_PREFIX = "/hubs/finance"  # reference §1.2: the token picks the instance, we still send the hub (§3)

# Response headers, reference §1.3 (HTTP header names are case-insensitive; requests/httpx handle that).
H_NEXT_PAGE = "Elements-Next-Page-Token"
H_RETURNED_COUNT = "Elements-Returned-Count"
H_TOTAL_COUNT = "Elements-Total-Count"
H_ERROR = "Elements-Error"
H_REQUEST_ID = "Elements-Request-Id"
H_CALLBACK_URL = "Elements-Async-Callback-Url"

REDACTED = "***"
# How much of a non-JSON error body (e.g. a proxy's HTML 502 page) goes into an exception text.
MAX_EXCERPT_CHARS = 200
#: Largest non-download response body read into memory (status, pages, instances): 16 MiB. A Cloud
#: Elements page of 200-1,000 records is a few MB at most; a bigger body is a fault, not data.
MAX_RESPONSE_BYTES = 16 * 1024 * 1024
#: Bytes of an error body read at most (only an excerpt ends up in the exception).
MAX_ERROR_BODY_BYTES = 64 * 1024
#: Largest CSV field the record counter accepts (the :mod:`csv` default of 128 KiB is raised to this).
CSV_FIELD_LIMIT = 64 * 1024 * 1024

# Markers of throttling that Cloud Elements forwards inside a 500 (QBO ``ThrottleExceeded``, Intuit
# error code 003001; user-needs §4 item 7).
THROTTLE_MARKERS = ("throttleexceeded", "003001", "throttle exceeded", "too many requests")

# Values of these configuration / providerData keys are credentials (reference §2.2.4, user-needs §4.13).
_SENSITIVE_KEY_PARTS = (
    "secret",
    "password",
    "token",
    "api.key",
    "apikey",
    "signature.key",
    "code",
    "verifier",
)

# "User <s>", "Organization <s>", "Element <s>" anywhere in a text (a proxy may echo our header back).
_AUTH_PART_RE = re.compile(r"\b(User|Organization|Element)(\s+)([A-Za-z0-9+/=._\-]{6,})", re.IGNORECASE)
_TAG_RE = re.compile(r"<[^>]*>")
_WS_RE = re.compile(r"\s+")


# --------------------------------------------------------------------------------------------- headers
def platform_authorization(user_secret: str, organization_secret: str) -> str:
    """``Authorization`` value for platform calls (``/instances``, ``/elements`` …), reference §1.2.

    :param user_secret: Cloud Elements User secret.
    :param organization_secret: Cloud Elements Organization secret.
    :return: ``"User <u>, Organization <o>"``.
    """
    return f"User {user_secret}, Organization {organization_secret}"


def hub_authorization(user_secret: str, organization_secret: str | None, element_token: str) -> str:
    """``Authorization`` value for hub / bulk / ping calls, reference §1.2 (3-part form, or 2-part
    ``User <u>, Element <t>`` when no organization secret is given).

    :param user_secret: Cloud Elements User secret.
    :param organization_secret: Organization secret or ``None``.
    :param element_token: the element instance token.
    """
    if organization_secret:
        return f"User {user_secret}, Organization {organization_secret}, Element {element_token}"
    return f"User {user_secret}, Element {element_token}"


# --------------------------------------------------------------------------------------------- redaction
def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """Replace every known secret value and every ``User|Organization|Element <value>`` pair in ``text``.

    :param text: any text that may leave the hook (exception message, log line, body excerpt).
    :param secrets: secret values to remove (``None``/empty values are ignored).
    :return: the text with secrets replaced by ``***``.
    """
    out = text
    # longest first so a secret containing another is fully removed
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        out = out.replace(secret, REDACTED)
    return _AUTH_PART_RE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", out)


def safe_excerpt(text: str, secrets: Iterable[str | None] = (), limit: int = MAX_EXCERPT_CHARS) -> str:
    """:func:`excerpt` of ``text`` with every secret removed FIRST: truncating before redacting could cut
    a secret at the limit and leave a prefix the exact-match redaction no longer finds."""
    secrets = list(secrets)
    return redact(excerpt(redact(text, secrets), limit), secrets)


def check_credential(value: str, field: str, where: str) -> str:
    """A secret that goes into the ``Authorization`` header: printable ASCII without spaces.

    :param value: the (stripped) secret.
    :param field: its name for the message (``user_secret``, ``element_token`` …); the value is never shown.
    :param where: where it came from, e.g. ``"Connection 'cloudelements_default' extra"``.
    :raises CloudElementsConfigError: a line break, tab, space, other control or non-ASCII character
        (``requests``/``httpx`` would raise a bare ``ValueError`` quoting the whole header).
    """
    for ch in value:
        if not ("!" <= ch <= "~"):
            raise CloudElementsConfigError(
                f"{where} {field!r} contains {_char_kind(ch)}; a Cloud Elements secret is printable ASCII "
                "without spaces (check for a pasted line break); the value is not shown"
            )
    return value


def _char_kind(ch: str) -> str:
    if ch in "\r\n":
        return "a line break"
    if ch.isspace():
        return "whitespace"
    if ord(ch) < 32 or ord(ch) == 127:
        return "a control character"
    return "a non-ASCII character"


def is_sensitive_key(key: str) -> bool:
    """Whether a configuration/providerData key holds a credential (``oauth.api.secret``, ``code`` …)."""
    low = key.lower()
    if low in ("oauth.callback.url", "oauth.token.url", "oauth.request.url", "oauth.authorization.url"):
        return False
    return any(part in low for part in _SENSITIVE_KEY_PARTS)


def strip_instance(instance: Mapping[str, Any]) -> dict[str, Any]:
    """Copy of an instance JSON (reference §2.2.3) that is safe to log or return.

    Drops ``token`` and replaces credential values in ``configuration`` and ``providerData`` with
    ``********`` (what Cloud Elements itself shows for masked configuration, reference §2.2.3).

    :param instance: instance JSON as returned by ``POST/GET /instances``.
    """
    out = {k: v for k, v in instance.items() if k != "token"}
    for section in ("configuration", "providerData"):
        value = out.get(section)
        if isinstance(value, Mapping):
            out[section] = {
                k: ("********" if is_sensitive_key(str(k)) and v not in (None, "") else v) for k, v in value.items()
            }
    return out


def sensitive_values(body: Mapping[str, Any]) -> list[str]:
    """Credential values found in an instance request body (``configuration``/``providerData``), so the
    caller can ``mask_secret`` them before the body is sent."""
    found: list[str] = []
    for section in ("configuration", "providerData"):
        value = body.get(section)
        if isinstance(value, Mapping):
            found.extend(str(v) for k, v in value.items() if is_sensitive_key(str(k)) and isinstance(v, str) and v)
    return found


# --------------------------------------------------------------------------------------------- errors
@dataclass(frozen=True)
class ErrorInfo:
    """What an error response told us (reference §6.1).

    :param message: Cloud Elements ``message`` or a sanitized excerpt of a non-JSON body.
    :param request_id: ``requestId`` from the body, else the ``Elements-Request-Id`` header.
    :param provider_message: the provider's raw text (``providerMessage``), if any.
    :param is_json: whether the body was a JSON error object.
    """

    message: str
    request_id: str | None = None
    provider_message: str | None = None
    is_json: bool = True


def excerpt(text: str, limit: int = MAX_EXCERPT_CHARS) -> str:
    """A short one-line excerpt of a (possibly HTML) body: tags removed, whitespace collapsed, truncated."""
    plain = _WS_RE.sub(" ", _TAG_RE.sub(" ", text)).strip()
    return plain if len(plain) <= limit else plain[: limit - 1] + "…"


def parse_error_body(
    body: bytes | str,
    *,
    content_type: str | None = None,
    request_id_header: str | None = None,
    secrets: Iterable[str | None] = (),
) -> ErrorInfo:
    """Parse an error body into :class:`ErrorInfo`, never raising.

    JSON ``{"message", "requestId", "providerMessage"}`` (reference §6.1) is read field by field;
    anything else (an HTML 502 page from a proxy, plain text, an empty body) becomes a short sanitized
    excerpt. All texts are passed through :func:`redact`.

    :param body: raw response body.
    :param content_type: the response ``Content-Type`` (only informative; JSON is sniffed).
    :param request_id_header: value of ``Elements-Request-Id`` if the body has no ``requestId``.
    :param secrets: secret values that must not survive into the result.
    """
    secrets = list(secrets)
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    data: Any = None
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
    if isinstance(data, Mapping):
        message = data.get("message") or data.get("error") or data.get("errorMessage") or ""
        provider = data.get("providerMessage")
        request_id = data.get("requestId") or request_id_header
        return ErrorInfo(
            message=safe_excerpt(str(message), secrets, 500) if message else "",
            request_id=str(request_id) if request_id else None,
            provider_message=safe_excerpt(str(provider), secrets, 500) if provider else None,
            is_json=True,
        )
    kind = (
        "HTML" if (content_type or "").lower().startswith("text/html") or "<html" in text[:500].lower() else "non-JSON"
    )
    snippet = safe_excerpt(text, secrets)
    return ErrorInfo(
        message=f"{kind} error body: {snippet}" if snippet else "empty error body",
        request_id=request_id_header,
        provider_message=None,
        is_json=False,
    )


def error_from_reply(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
    instance_id: int | None,
    hub: bool,
    secrets: Iterable[str | None],
    base_url: str | None = None,
) -> CloudElementsApiError:
    """The typed exception for an error response of either hook: :func:`parse_error_body` (redacted),
    :func:`exception_for_response`, and the ``Retry-After`` seconds set as attribute
    ``retry_after`` (read by :func:`~.retry.compute_wait`; ``None`` when absent or useless).

    :param body: the (capped) error body.
    :param instance_id: for the 401 advice of hub calls.
    :param base_url: the connection's API base, for the 404 advice (:func:`base_url_advice`).
    """
    info = parse_error_body(
        body,
        content_type=headers.get("Content-Type"),
        request_id_header=headers.get(H_REQUEST_ID),
        secrets=secrets,
    )
    exc = exception_for_response(
        status_code, info, method=method, path=path, instance_id=instance_id, hub=hub, base_url=base_url
    )
    setattr(exc, RETRY_AFTER_ATTR, parse_retry_after(headers.get("Retry-After")))
    return exc


def base_url_advice(base_url: str | None) -> str:
    """``"; the connection's Base URL … lacks /elements/api-v2 …"`` when ``base_url``'s path does not end
    in ``/elements/api-v2`` (every API path is under it, reference §1.1: a bare host answers 404 to
    everything), else ``""``."""
    if not base_url:
        return ""
    path = "/" + base_url.partition("://")[2].partition("/")[2] if "://" in base_url else base_url
    if path.rstrip("/").endswith(API_BASE_PATH):
        return ""
    return (
        f"; the connection's Base URL {base_url} does not end in {API_BASE_PATH}: every Cloud Elements API "
        f"path is under it, set Host to e.g. {DEFAULT_BASE_URL}"
    )


def transport_failure_message(what: str, exc: BaseException, *, base_url: str, elapsed: float, described: str) -> str:
    """The message of a call that got no usable response: names the host and, for a refused connection
    or a failed DNS lookup (:func:`~.retry.unreachable_cause`), the cause and the setting to check.

    :param what: ``"GET /instances"``.
    :param described: short description of ``exc`` (class name, deadline or truncation detail).
    :param elapsed: seconds the call spent, retries included.
    """
    host = base_url.partition("://")[2].partition("/")[0] or base_url
    cause = unreachable_cause(exc)
    if cause is not None:
        return (
            f"Cloud Elements {what}: cannot reach {host} ({cause}; {described}) after {elapsed:.1f} s; "
            f"check the connection's Base URL {base_url}"
        )
    return f"Cloud Elements {what}: no usable response from {host} ({described}) after {elapsed:.1f} s"


def log_reply(logger: Any, method: str, path: str, status_code: int, headers: Mapping[str, str]) -> None:
    """DEBUG line for a successful response (never a header value other than the request id)."""
    logger.debug("Cloud Elements %s %s -> %s (requestId=%s)", method, path, status_code, headers.get(H_REQUEST_ID))


def is_throttle_message(*texts: str | None) -> bool:
    """Whether a message / providerMessage says the provider throttled us (``ThrottleExceeded``,
    ``003001``; user-needs §4 item 7)."""
    for text in texts:
        if text and any(marker in text.lower() for marker in THROTTLE_MARKERS):
            return True
    return False


def exception_for_response(
    status_code: int,
    info: ErrorInfo,
    *,
    method: str,
    path: str,
    instance_id: int | None = None,
    hub: bool = False,
    base_url: str | None = None,
) -> CloudElementsApiError:
    """Map an error status to the exception class of ``exceptions.py`` (reference §6.2).

    :param status_code: HTTP status (>= 400).
    :param info: parsed body.
    :param method: HTTP verb, for the message.
    :param path: request path **without** query string, for the message (never contains secrets).
    :param instance_id: element instance id for hub calls, used in the 401 advice.
    :param hub: whether the call used the element token (hub) or the platform header.
    :param base_url: the connection's API base; a 404 from a base without ``/elements/api-v2`` says so.
    :return: an instance of the matching :class:`CloudElementsApiError` subclass (not raised).
    """
    what = f"Cloud Elements {method} {path} failed with HTTP {status_code}"
    detail = f": {info.message}" if info.message else ""
    kwargs: dict[str, Any] = {
        "status_code": status_code,
        "request_id": info.request_id,
        "provider_message": info.provider_message,
    }
    if status_code == 401:
        if hub:
            target = f"element instance {instance_id}" if instance_id is not None else "the element instance"
            advice = (
                f"re-authorize {target} (PUT/PATCH /instances/{{id}} with a fresh providerData.code, "
                "reference "
                "§2.3); the token is unknown, the instance was deleted or its provider token refresh failed"
            )
        else:
            advice = "check the connection's user_secret and organization_secret"
        return CloudElementsAuthenticationError(f"{what}{detail}; {advice}", **kwargs)
    if status_code == 403:
        return CloudElementsForbiddenError(
            f"{what}{detail}; the provider forbids the call or the instance is disabled "
            "(PUT /instances/{id}/enabled re-enables it)",
            **kwargs,
        )
    if status_code == 404:
        return CloudElementsNotFoundError(f"{what}{detail}{base_url_advice(base_url)}", **kwargs)
    if status_code == 409:
        return CloudElementsConflictError(f"{what}{detail}", **kwargs)
    if status_code == 429 or (status_code == 500 and is_throttle_message(info.message, info.provider_message)):
        return CloudElementsThrottledError(f"{what}{detail} (throttled)", **kwargs)
    if status_code >= 500:
        return CloudElementsServerError(f"{what}{detail}", **kwargs)
    if status_code == 400 and "3100" in (info.provider_message or ""):
        detail += (
            " (QuickBooks fault 3100: development keys need configuration use_sandbox=true, or use production keys)"
        )
    if status_code in (400, 405, 406, 411, 413, 414, 415, 422):
        return CloudElementsBadRequestError(f"{what}{detail}", **kwargs)
    return CloudElementsApiError(f"{what}{detail}", **kwargs)


def json_object(value: Any, what: str) -> dict[str, Any]:
    """A decoded 2xx body that must be a JSON object (an empty body gives ``{}``).

    :param value: the decoded body (``None`` for an empty body).
    :param what: the call, for the message (``"GET /hubs/finance/ping"``).
    :raises CloudElementsApiError: any other JSON value (an array, a string, a number …), which a
        ``dict(...)`` would turn into a bare ``TypeError``/``ValueError`` or silently wrong data.
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    raise CloudElementsApiError(f"Cloud Elements {what}: expected a JSON object, got {type(value).__name__}")


def json_array(value: Any, what: str) -> list[Any]:
    """A decoded 2xx body that must be a JSON array (an empty body gives ``[]``).

    :raises CloudElementsApiError: any other JSON value.
    """
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise CloudElementsApiError(f"Cloud Elements {what}: expected a JSON array, got {type(value).__name__}")


# --------------------------------------------------------------------------------------------- Retry-After
def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (RFC 9110: delay-seconds or an HTTP-date).

    :param value: the header value or ``None``.
    :param now: current time (aware) for HTTP-dates; defaults to ``datetime.now(timezone.utc)``.
    :return: seconds (> 0, float), or ``None`` when absent, unparseable, 0, negative or a date that has
        passed: none of those says how long to wait, so the caller falls back to its jittered backoff
        (obeying "0" hammered the server with ~110 requests in 5 s).
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        when = parse_http_date(text)
        if when is None:
            return None
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
        return None
    return seconds if seconds > 0 else None


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP-date (RFC 9110 ``Date``/``Retry-After``: ``Tue, 01 Dec 2026 10:00:00 GMT``) as an aware
    UTC datetime, or ``None`` when absent or unparseable."""
    if not value or not value.strip():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc)


def check_body_size(headers: Mapping[str, str], *, received: int, limit: int, what: str) -> None:
    """Refuse a response body beyond ``limit`` bytes, by its ``Content-Length`` before reading (when
    announced) or by the bytes ``received`` so far.

    :param headers: response headers.
    :param received: bytes read so far (0 before reading).
    :param limit: the cap (:data:`MAX_RESPONSE_BYTES` for JSON calls).
    :param what: the call, for the message (``"GET /hubs/finance/bulk/1/status"``).
    :raises CloudElementsResponseTooLargeError: over the cap.
    """
    announced = header_int(headers, "Content-Length") if not headers.get("Content-Encoding") else None
    size = max(received, announced or 0)
    if size > limit:
        raise CloudElementsResponseTooLargeError(
            f"Cloud Elements {what}: response body of {'at least ' if announced is None else ''}{size} bytes "
            f"exceeds the {limit}-byte cap for non-download responses; not read into memory",
            request_id=headers.get(H_REQUEST_ID),
        )


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """An integer response header (``Elements-Returned-Count``, ``Elements-Total-Count``) or ``None``."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------- replies
@dataclass(frozen=True)
class Reply:
    """A fully read, size-capped (:func:`check_body_size`) response of the sync or async hook: what the
    JSON decoders and :class:`PageInfo` need (same attribute names as ``requests``/``httpx``).

    :param status_code: HTTP status.
    :param headers: response headers (case-insensitive mapping of the HTTP library).
    :param content: the body bytes.
    """

    status_code: int
    headers: Mapping[str, str]
    content: bytes


def decode_json_reply(reply: Reply, secrets: Iterable[str | None] = ()) -> Any:
    """The decoded JSON body of a 2xx reply (``None`` for an empty body).

    :raises CloudElementsApiError: a body that is not JSON (or nested too deeply to decode), with a
        redacted excerpt.
    """
    content = reply.content
    if not content or not content.strip():
        return None
    try:
        return jsonfast.loads(content)
    except (ValueError, RecursionError):
        snippet = safe_excerpt(content[:MAX_ERROR_BODY_BYTES].decode("utf-8", "replace"), secrets)
        raise CloudElementsApiError(
            f"Cloud Elements answered HTTP {reply.status_code} with a non-JSON body: {snippet}",
            status_code=reply.status_code,
            request_id=reply.headers.get(H_REQUEST_ID),
        ) from None


# --------------------------------------------------------------------------------------------- pagination
@dataclass
class PageInfo:
    """One page of a paged list response (reference §1.3, §3.3).

    :param records: the decoded JSON array.
    :param next_token: ``Elements-Next-Page-Token`` (``None`` when absent/empty).
    :param returned: ``Elements-Returned-Count`` or ``None``.
    :param total: ``Elements-Total-Count`` or ``None``.
    :param error_header: ``Elements-Error`` or ``None``.
    :param request_id: ``Elements-Request-Id`` or ``None``.
    """

    records: list[Any]
    next_token: str | None = None
    returned: int | None = None
    total: int | None = None
    error_header: str | None = None
    request_id: str | None = None

    @classmethod
    def from_response(cls, body: Any, headers: Mapping[str, str]) -> PageInfo:
        """Build from a decoded body and response headers (requests or httpx, case-insensitive).

        :raises CloudElementsApiError: when the body is not a JSON array.
        """
        if body is None:
            body = []
        if not isinstance(body, list):
            raise CloudElementsApiError(
                f"Expected a JSON array in a paged list response, got {type(body).__name__}",
                request_id=headers.get(H_REQUEST_ID),
            )
        return cls(
            records=body,
            next_token=(headers.get(H_NEXT_PAGE) or "").strip() or None,
            returned=header_int(headers, H_RETURNED_COUNT),
            total=header_int(headers, H_TOTAL_COUNT),
            error_header=headers.get(H_ERROR),
            request_id=headers.get(H_REQUEST_ID),
        )


def record_key(record: Any) -> str:
    """Identity of a record for the pagination loop guard: ``id``/``ListID``/``TxnID``, else its JSON."""
    if isinstance(record, Mapping):
        for name in ("id", "ListID", "TxnID", "Id"):
            value = record.get(name)
            if value not in (None, ""):
                return f"{name}={value}"
    return "json=" + hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


class Pager:
    """The pagination state machine shared by the sync and async hooks (reference §3.3), without I/O.

    Usage: ``while (params := pager.next_params()) is not None: records = pager.feed(fetch(params))``,
    then ``pager.finish()``.

    Rules: send ``pageSize``; follow ``Elements-Next-Page-Token`` (as ``nextPage``) while present and
    ``Elements-Returned-Count`` (else the record count) > 0; a page without a token is the last one when
    the listing is ``cursor_only`` (QuickBooks Enterprise hub resources, event listings, bulk errors:
    they ignore or reject ``page``), or when the page came back short; otherwise (page-numbered
    listings) ask ``page=n+1`` after a full page. An ``Elements-Error`` header with a short non-empty
    page means the server capped ``pageSize``: continue with the size that came back (warning logged).
    A page starting with the same record as the PREVIOUS page means the server ignored ``page`` and
    sent page 1 again: that is the end of the list (its records are not yielded twice; warning
    logged). A page starting with a record of an older page, or a repeated cursor, raises
    :class:`CloudElementsApiError` instead of looping. ``reconcile_total`` sends ``returnCount=true``
    and :meth:`finish` compares counts.

    :param path: request path (for messages).
    :param params: fixed query parameters (``where``, ``orderBy`` …).
    :param page_size: initial ``pageSize`` (> 0).
    :param reconcile_total: compare the yielded count with ``Elements-Total-Count``.
    :param logger: where warnings go.
    :param cursor_only: the listing pages by cursor only (never send ``page``).
    """

    def __init__(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        page_size: int,
        reconcile_total: bool = False,
        logger: Any = None,
        cursor_only: bool = False,
    ) -> None:
        self.path = path
        self.cursor_only = cursor_only
        self.params = dict(params)
        self.size = page_size
        self.reconcile_total = reconcile_total
        self.log = logger or logging.getLogger(__name__)
        self.page_no = 1
        self.token: str | None = None
        self.cursor_mode = False
        self.yielded = 0
        self.total: int | None = None
        self.done = False
        self._first_keys: dict[str, int] = {}
        self._tokens: set[str] = set()
        self._warned = False

    def next_params(self) -> dict[str, Any] | None:
        """Query parameters of the next request, or ``None`` when the list is exhausted."""
        if self.done:
            return None
        query: dict[str, Any] = {**self.params, "pageSize": self.size}
        if self.reconcile_total:
            query["returnCount"] = "true"
        if self.token is not None:
            query["nextPage"] = self.token
        elif self.page_no > 1:
            query["page"] = self.page_no
        return query

    def feed(self, page: PageInfo) -> list[Any]:
        """Account for one page; return its records; decide the next request.

        :raises CloudElementsApiError: a page repeating the first record of an older page, or a repeated
            cursor.
        """
        n = len(page.records)
        if n and self.page_no > 1 and self._first_keys.get(record_key(page.records[0])) == self.page_no - 1:
            self.done = True
            self.log.warning(
                "GET %s: page %s starts with the same record as page %s (the server ignores page); "
                "treating it as the end of the list",
                self.path,
                self.page_no,
                self.page_no - 1,
            )
            return []
        if page.total is not None:
            self.total = page.total
        if page.error_header:
            if 0 < n < self.size:
                self.log.warning(
                    "GET %s returned %s of the %s requested records with Elements-Error: %s; assuming the "
                    "server capped pageSize, continuing with pageSize=%s",
                    self.path,
                    n,
                    self.size,
                    excerpt(page.error_header),
                    n,
                )
                self.size = n
            elif not self._warned:
                self.log.warning("Cloud Elements warning on GET %s: %s", self.path, excerpt(page.error_header))
            self._warned = True
        if n:
            key = record_key(page.records[0])
            if key in self._first_keys:
                self.done = True
                raise CloudElementsApiError(
                    f"GET {self.path}: page {self.page_no} starts with the same record as page "
                    f"{self._first_keys[key]} ({key}); the server ignores paging, refusing to loop",
                    request_id=page.request_id,
                )
            self._first_keys[key] = self.page_no
        self.yielded += n
        returned = page.returned if page.returned is not None else n
        if page.next_token and returned > 0:
            if page.next_token in self._tokens:
                self.done = True
                raise CloudElementsApiError(
                    f"GET {self.path}: the server returned the same Elements-Next-Page-Token twice; refusing to loop",
                    request_id=page.request_id,
                )
            self._tokens.add(page.next_token)
            self.token = page.next_token
            self.cursor_mode = True
            self.page_no += 1
        elif self.cursor_mode or self.cursor_only or n == 0 or n < self.size:
            self.done = True
        else:
            self.page_no += 1  # no cursor and a full page: fall back to page numbers
        return page.records

    def finish(self) -> None:
        """Reconcile after the last page.

        :raises CloudElementsReconciliationError: ``reconcile_total`` and the counts differ.
        """
        if self.reconcile_total:
            if self.total is None:
                self.log.warning(
                    "GET %s: reconcile_total requested but the server sent no Elements-Total-Count", self.path
                )
            elif self.total != self.yielded:
                raise CloudElementsReconciliationError(
                    f"GET {self.path}: yielded {self.yielded} records but Elements-Total-Count says {self.total}"
                )
        self.log.info("GET %s: %s records in %s page(s)", self.path, self.yielded, self.page_no)


# --------------------------------------------------------------------------------------------- record counting
class RecordCounter:
    """Counts the records of a bulk download while its chunks stream by (no I/O, constant memory).

    NDJSON (``fmt="json"``): every line holding a non-whitespace byte is one record; blank lines are not
    records. CSV (``fmt="csv"``): records as the :mod:`csv` module parses them (a line break inside a
    quoted field stays inside its record), the header row and blank lines excluded. ``lines`` counts
    newline-terminated lines plus a final unterminated one (``BulkDownloadResult.lines`` as before).

    Usage: ``counter.consume(chunks)``; the chunks are pulled one by one (the caller's iterator may write
    each to a file before yielding it), so reading stops at the first chunk that brings more records
    than ``expected``.

    :param fmt: ``"json"`` or ``"csv"``.
    :param expected: the record count Cloud Elements reported (``None``: no limit).
    :param what: the download, for the message.
    :raises CloudElementsReconciliationError: from :meth:`consume`: more records than ``expected``, or a
        CSV the :mod:`csv` module cannot parse (e.g. a NUL byte).
    """

    def __init__(self, fmt: str, *, expected: int | None = None, what: str = "bulk download") -> None:
        self.fmt = fmt
        self.expected = expected
        self.what = what
        self.records = 0
        self.lines = 0
        self.bytes = 0
        self._partial = False  # bytes after the last newline exist
        self._pending = False  # ... and hold a non-whitespace byte (NDJSON)

    def consume(self, chunks: Iterable[bytes]) -> None:
        """Pull and count every chunk.

        :raises CloudElementsReconciliationError: as soon as more records than ``expected`` arrived.
        """
        if self.fmt == "csv":
            if csv.field_size_limit() < CSV_FIELD_LIMIT:  # default 128 KiB: a long memo would raise
                csv.field_size_limit(CSV_FIELD_LIMIT)
            rows = 0
            try:
                for row in csv.reader(self._text_lines(chunks)):
                    if row:
                        rows += 1
                        self.records = rows - 1  # the first row is the header
                        self._check()
            except csv.Error as err:
                raise CloudElementsReconciliationError(
                    f"{self.what}: the CSV cannot be parsed to count its records after {self.bytes} bytes: {err}"
                ) from None
        else:
            for chunk in chunks:
                if chunk:
                    self._account(chunk)
                    self._count_ndjson(chunk)
                    self._check()
            if self._pending:
                self.records += 1
                self._pending = False
                self._check()
        if self._partial:
            self.lines += 1

    def _account(self, chunk: bytes) -> None:
        self.bytes += len(chunk)
        newlines = chunk.count(b"\n")
        self.lines += newlines
        if newlines:
            self._partial = not chunk.endswith(b"\n")
        elif chunk:
            self._partial = True

    def _count_ndjson(self, chunk: bytes) -> None:
        if b"\n" not in chunk:
            self._pending = self._pending or not chunk.isspace()
            return
        parts = chunk.split(b"\n")
        first, last = parts[0], parts[-1]
        if self._pending or (first and not first.isspace()):
            self.records += 1
        self.records += sum(1 for line in parts[1:-1] if line and not line.isspace())
        self._pending = bool(last) and not last.isspace()

    def _text_lines(self, chunks: Iterable[bytes]) -> Iterator[str]:
        """Decoded lines (``\\n`` kept) for :func:`csv.reader`; a UTF-8 BOM is dropped."""
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        buffer = ""
        for chunk in chunks:
            self._account(chunk)
            buffer += decoder.decode(chunk)
            if "\n" in buffer:
                *complete, buffer = buffer.split("\n")
                for line in complete:
                    yield line + "\n"
        buffer += decoder.decode(b"", final=True)
        if buffer:
            yield buffer

    def _check(self) -> None:
        if self.expected is not None and self.records > self.expected:
            raise CloudElementsReconciliationError(
                f"{self.what}: more records arrived than the {self.expected} Cloud Elements reported "
                f"({self.records} after {self.bytes} bytes); stopped reading, nothing was kept"
            )
