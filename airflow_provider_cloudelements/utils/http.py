"""Pure HTTP helpers shared by the sync and async hooks: headers, error parsing, redaction.

Nothing here does I/O; every function is unit-tested on its own (``tests/utils/test_http.py``).
References are to ``cloud-elements-api.md`` (§1.2 headers, §1.3 response headers, §6 errors).
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsAuthenticationError,
    CloudElementsBadRequestError,
    CloudElementsConflictError,
    CloudElementsForbiddenError,
    CloudElementsNotFoundError,
    CloudElementsReconciliationError,
    CloudElementsServerError,
    CloudElementsThrottledError,
)

DEFAULT_BASE_URL = "https://api.cloud-elements.com/elements/api-v2"  # reference §1.1
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
                k: ("********" if is_sensitive_key(str(k)) and v not in (None, "") else v)
                for k, v in value.items()
            }
    return out


def sensitive_values(body: Mapping[str, Any]) -> list[str]:
    """Credential values found in an instance request body (``configuration``/``providerData``), so the
    caller can ``mask_secret`` them before the body is sent."""
    found: list[str] = []
    for section in ("configuration", "providerData"):
        value = body.get(section)
        if isinstance(value, Mapping):
            found.extend(
                str(v) for k, v in value.items() if is_sensitive_key(str(k)) and isinstance(v, str) and v
            )
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
            message=redact(excerpt(str(message), 500), secrets) if message else "",
            request_id=str(request_id) if request_id else None,
            provider_message=redact(excerpt(str(provider), 500), secrets) if provider else None,
            is_json=True,
        )
    kind = (
        "HTML"
        if (content_type or "").lower().startswith("text/html") or "<html" in text[:500].lower()
        else "non-JSON"
    )
    snippet = redact(excerpt(text), secrets)
    return ErrorInfo(
        message=f"{kind} error body: {snippet}" if snippet else "empty error body",
        request_id=request_id_header,
        provider_message=None,
        is_json=False,
    )


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
) -> CloudElementsApiError:
    """Map an error status to the exception class of ``exceptions.py`` (reference §6.2).

    :param status_code: HTTP status (>= 400).
    :param info: parsed body.
    :param method: HTTP verb, for the message.
    :param path: request path **without** query string, for the message (never contains secrets).
    :param instance_id: element instance id for hub calls, used in the 401 advice.
    :param hub: whether the call used the element token (hub) or the platform header.
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
        return CloudElementsNotFoundError(f"{what}{detail}", **kwargs)
    if status_code == 409:
        return CloudElementsConflictError(f"{what}{detail}", **kwargs)
    if status_code == 429 or (
        status_code == 500 and is_throttle_message(info.message, info.provider_message)
    ):
        return CloudElementsThrottledError(f"{what}{detail} (throttled)", **kwargs)
    if status_code >= 500:
        return CloudElementsServerError(f"{what}{detail}", **kwargs)
    if status_code == 400 and "3100" in (info.provider_message or ""):
        detail += (
            " (QuickBooks fault 3100: development keys need configuration use_sandbox=true, "
            "or use production keys)"
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
    :return: seconds (>= 0, float) or ``None`` when absent or unparseable.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds in (float("inf"), float("-inf")):  # NaN / inf
            return None
        return max(seconds, 0.0)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max((when - now).total_seconds(), 0.0)


def header_int(headers: Mapping[str, str], name: str) -> int | None:
    """An integer response header (``Elements-Returned-Count``, ``Elements-Total-Count``) or ``None``."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


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
    ``Elements-Returned-Count`` (else the record count) > 0; without a token ask ``page=n+1`` while the
    page came back full; an ``Elements-Error`` header with a short non-empty page means the server
    capped ``pageSize``: continue with the size that came back (warning logged); a page starting with
    a record already seen or a repeated cursor raises :class:`CloudElementsApiError` instead of looping;
    ``reconcile_total`` sends ``returnCount=true`` and :meth:`finish` compares counts.

    :param path: request path (for messages).
    :param params: fixed query parameters (``where``, ``orderBy`` …).
    :param page_size: initial ``pageSize`` (> 0).
    :param reconcile_total: compare the yielded count with ``Elements-Total-Count``.
    :param logger: where warnings go.
    """

    def __init__(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        page_size: int,
        reconcile_total: bool = False,
        logger: Any = None,
    ) -> None:
        self.path = path
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

        :raises CloudElementsApiError: a page repeating an earlier first record, or a repeated cursor.
        """
        n = len(page.records)
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
                self.log.warning(
                    "Cloud Elements warning on GET %s: %s", self.path, excerpt(page.error_header)
                )
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
                    f"GET {self.path}: the server returned the same Elements-Next-Page-Token twice; "
                    "refusing to loop",
                    request_id=page.request_id,
                )
            self._tokens.add(page.next_token)
            self.token = page.next_token
            self.cursor_mode = True
            self.page_no += 1
        elif self.cursor_mode or n == 0 or n < self.size:
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
                    f"GET {self.path}: yielded {self.yielded} records but "
                    f"Elements-Total-Count says {self.total}"
                )
        self.log.info("GET %s: %s records in %s page(s)", self.path, self.yielded, self.page_no)
