"""The Cloud Elements wire protocol without I/O: auth headers, secret redaction, error mapping, JSON decoding.

Error responses are mapped to the typed exceptions of :mod:`airflow_provider_cloudelements.exceptions`.
Shared by the sync and async hooks (paging is in :mod:`.paging`, the HTTP client in :mod:`.transport`).
Part of the client core: no Airflow import. Every function is unit-tested on its own
(``tests/utils/test_http_helpers.py``). References are to docs/api-facts.md (§1.2 headers, §1.3 response
headers, §6 errors).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_cloudelements.client.retry import RETRY_AFTER_ATTR, parse_retry_after, unreachable_cause
from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsAuthenticationError,
    CloudElementsBadRequestError,
    CloudElementsConfigError,
    CloudElementsConflictError,
    CloudElementsForbiddenError,
    CloudElementsNotFoundError,
    CloudElementsServerError,
    CloudElementsThrottledError,
)
from airflow_provider_cloudelements.utils import jsonfast

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

# Markers of throttling that Cloud Elements forwards inside a 500 (QBO ``ThrottleExceeded``, Intuit
# error code 003001).
THROTTLE_MARKERS = ("throttleexceeded", "003001", "throttle exceeded", "too many requests")

# Values of these configuration / providerData keys are credentials (reference §2.2.4).
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
    """Build the ``Authorization`` value for hub / bulk / ping calls (reference §1.2).

    The 3-part form, or the 2-part ``User <u>, Element <t>`` when no organization secret is given.

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
    """Return an :func:`excerpt` of ``text`` with every secret removed FIRST.

    Truncating before redacting could cut a secret at the limit and leave a prefix the exact-match
    redaction no longer finds.
    """
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
    """Return the credential values found in an instance request body (``configuration``/``providerData``).

    The caller can then ``mask_secret`` them before the body is sent.
    """
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
    """Build the typed exception for an error response of either hook.

    It combines :func:`parse_error_body` (redacted) and :func:`exception_for_response`, and sets the
    ``Retry-After`` seconds as attribute ``retry_after`` (read by :func:`~.retry.compute_wait`; ``None``
    when absent or useless).

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
    """Return advice for a Base URL whose path does not end in ``/elements/api-v2``, else ``""``.

    The advice reads ``"; the connection's Base URL … lacks /elements/api-v2 …"``: every API path is under
    it (reference §1.1), and a bare host answers 404 to everything.
    """
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
    """Build the message of a call that got no usable response, naming the host.

    For a refused connection or a failed DNS lookup (:func:`~.retry.unreachable_cause`) it also names the
    cause and the setting to check.

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
    """Whether a message / providerMessage says the provider throttled us (``ThrottleExceeded``, ``003001``).

    Such a 500 is mapped to :class:`CloudElementsThrottledError`, like a 429 (rate limits: docs/api-facts.md §6.3).
    """
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
    """A fully read, size-capped (:func:`check_body_size`) response of the sync or async hook.

    It holds what the JSON decoders and :class:`PageInfo` need (same attribute names as
    ``requests``/``httpx``).

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
