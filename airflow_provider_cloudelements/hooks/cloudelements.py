"""Synchronous hook for the Cloud Elements REST API (platform + Finance hub + bulk + events).

References in docstrings (``§n``) point at ``cloud-elements-api.md``. Design notes:

* **Headers** (§1.2): platform calls send ``User <u>, Organization <o>``; hub/bulk calls send
  ``User <u>, Organization <o>, Element <t>``. The header is attached by a ``requests`` auth object,
  so ``~/.netrc`` can never override it and it never appears in call arguments or logs.
* **Secrets**: user/organization secrets and element tokens are ``mask_secret``-ed the moment they are
  read; instance JSON is returned without ``token`` and with credential configuration masked; error
  texts are built from the response and passed through :func:`~..utils.http.redact`.
* **Retries**: one policy, :mod:`airflow_provider_cloudelements.utils.retry` (time budget, Retry-After
  (0/negative/past dates fall back to the backoff), plain 500s on GETs retried 3 times, never a POST
  that may have been processed; an ambiguous bulk submit reuses the job it created).
* **Deadlines and caps**: every response has a TOTAL deadline (the read timeout once the request is
  sent, within the retry budget; :mod:`._watchdog` shuts the socket down when it passes, so a
  trickling server cannot hold a call); non-download bodies are capped at 16 MiB
  (``CloudElementsResponseTooLargeError``); downloads count records while streaming and stop past
  ``expected_records``.
* **Client-side budget**: :mod:`airflow_provider_cloudelements.utils.budget` (500 req/min, 10 in flight
  per instance by default).
"""

from __future__ import annotations

import functools
import json
import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import cached_property
from typing import IO, Any, BinaryIO, TypeVar
from urllib.parse import quote

import requests
import requests.auth
import urllib3.exceptions
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsBulkJobError,
    CloudElementsConfigError,
    CloudElementsConnectionError,
    CloudElementsError,
    CloudElementsNotFoundError,
    CloudElementsServerError,
    CloudElementsThrottledError,
    CloudElementsTimeoutError,
    as_instance_id,
)
from airflow_provider_cloudelements.hooks._watchdog import DeadlineAdapter, Watchdog
from airflow_provider_cloudelements.hooks.transformations import CommonResourcesHookMixin
from airflow_provider_cloudelements.utils import ceql
from airflow_provider_cloudelements.utils.budget import (
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_REQUESTS_PER_MINUTE,
    RequestBudget,
    budget_party,
    check_budget_store,
    get_request_budget,
)
from airflow_provider_cloudelements.utils.elements import ELEMENTS, check_resource
from airflow_provider_cloudelements.utils.http import (
    DEFAULT_BASE_URL,
    H_CALLBACK_URL,
    HUB_PREFIX,
    MAX_ERROR_BODY_BYTES,
    MAX_RESPONSE_BYTES,
    PageInfo,
    Pager,
    RecordCounter,
    Reply,
    check_body_size,
    check_credential,
    decode_json_reply,
    error_from_reply,
    header_int,
    hub_authorization,
    json_array,
    json_object,
    log_reply,
    parse_http_date,
    platform_authorization,
    redact,
    safe_excerpt,
    sensitive_values,
    strip_instance,
    transport_failure_message,
)
from airflow_provider_cloudelements.utils.retry import (
    DEFAULT_RETRY_BUDGET,
    DEFAULT_UNREACHABLE_BUDGET,
    AttemptDeadlineError,
    RetryPolicy,
    TruncatedDownloadError,
    attempt_deadline,
    call_deadline,
    host_has_answered,
    is_transport_error,
    note_host_answered,
    retries_server_errors,
)
from airflow_provider_cloudelements.utils.status import CloudElementsBulkJobStatus

T = TypeVar("T")

CONN_TYPE = "cloudelements"
DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds: a TCP+TLS handshake to CE takes well under 1 s; 10 s = network trouble
DEFAULT_READ_TIMEOUT = 120.0  # seconds between bytes: CE pages the provider synchronously, QBO/QBE pages can be slow
BULK_DOWNLOAD_READ_TIMEOUT = 300.0  # seconds: CE may assemble a bulk file before the first byte
DEFAULT_PAGE_SIZE = 200  # records: CE hub default and QBO maximum (reference §3.3)
DOWNLOAD_CHUNK_BYTES = 1024 * 1024  # 1 MiB: 256 KiB chunks cost ~4-20% at 100k-1M (benchmarks/)
TEST_CONNECTION_RETRY_BUDGET = 10.0  # seconds: a connection test must answer quickly
USER_AGENT = "airflow-provider-cloudelements/0.1.0"
_RESOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_FORMATS = {"json": "application/json", "csv": "text/csv"}
#: Elements whose hub listings page by cursor only (``nextPage``; ``page=2`` is rejected), reference §3.3:
#: churros runs ``supportNextPagePagination`` for QuickBooks Enterprise.
CURSOR_ONLY_ELEMENTS = frozenset({"quickbooksonprem"})
#: Bulk job statuses after which a job found by :meth:`CloudElementsHook._find_submitted_job` is not reused.
_DEAD_JOB_STATUSES = frozenset({"FAILED", "ABORTED", "CANCELLED"})
#: Seconds of clock slack when matching a job's ``createdDate`` with a response's ``Date`` (2 clocks).
_SUBMIT_CLOCK_SLACK = 5.0
#: End (monotonic seconds) of the logical call the current attempt belongs to (set by ``_with_retry``).
_CALL_DEADLINE: ContextVar[float | None] = ContextVar("cloudelements_call_deadline", default=None)
_DEADLINE_TEXT = "the attempt deadline (the read timeout once the request was sent, within the retry budget)"


@dataclass(frozen=True)
class BulkDownloadResult:
    """What :meth:`CloudElementsHook.download_bulk` wrote.

    :param records: records in the file: NDJSON non-blank lines; CSV records as parsed by the
        :mod:`csv` module (a quoted line break stays inside its record), header row excluded.
    :param lines: newline-terminated lines written, plus one for a final unterminated line (kept for
        compatibility; a CSV field with a line break or a blank line makes it differ from ``records``).
    :param bytes: bytes written to the file object.
    """

    records: int
    lines: int
    bytes: int


@dataclass(frozen=True)
class CloudElementsSettings:
    """Connection settings resolved once per hook (secrets are excluded from ``repr``).

    :param base_url: API base, no trailing slash (§1.1).
    :param user_secret: User secret.
    :param organization_secret: Organization secret.
    :param element_token: element instance token from the connection, if any.
    :param instance_id: element instance id from the connection, if any.
    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds to wait between bytes of a response.
    :param page_size: records per hub ``GET`` page.
    :param retry_budget: total seconds one call may spend retrying.
    :param max_requests_per_minute: client-side rate budget per instance.
    :param max_concurrent_requests: client-side concurrency budget per instance.
    :param budget_store: ``None`` (budget per process) or where the budget is shared across processes
        (``"metadata"`` or a SQLAlchemy URL; :func:`~..utils.budget.check_budget_store`).
    """

    base_url: str
    user_secret: str = field(repr=False)
    organization_secret: str = field(repr=False)
    element_token: str | None = field(default=None, repr=False)
    instance_id: int | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    page_size: int = DEFAULT_PAGE_SIZE
    retry_budget: float = DEFAULT_RETRY_BUDGET
    max_requests_per_minute: int = DEFAULT_MAX_REQUESTS_PER_MINUTE
    max_concurrent_requests: int = DEFAULT_MAX_CONCURRENT_REQUESTS
    budget_store: str | None = field(default=None, repr=False)


def _number(extras: Mapping[str, Any], key: str, default: float, *, integer: bool = False, allow_zero: bool = False):
    value = extras.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = float(value)
        if not math.isfinite(number):  # NaN/inf: requests rejects NaN, inf would wait forever
            raise ValueError
        if integer:
            if number != int(number):
                raise ValueError
            number = int(number)
    except (TypeError, ValueError):
        raise CloudElementsConfigError(f"Connection extra {key!r} must be a finite number, got {value!r}") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise CloudElementsConfigError(f"Connection extra {key!r} must be positive, got {value!r}")
    return number


def normalize_base_url(host: str | None, *, schema: str | None = None, port: int | None = None) -> str:
    """The API base URL from the connection's host (``host = base URL``), no trailing slash.

    ``None``/empty → production (§1.1); a host without scheme gets ``https://`` (or ``schema``),
    ``port`` and, when it has no path, ``/elements/api-v2``.
    """
    if not host or not host.strip():
        return DEFAULT_BASE_URL
    host = host.strip()
    if "://" not in host:
        scheme = schema if schema in ("http", "https") else "https"
        hostpart, _, path = host.partition("/")
        if port and ":" not in hostpart:
            hostpart = f"{hostpart}:{port}"
        host = f"{scheme}://{hostpart}/{path or 'elements/api-v2'}"
    return host.rstrip("/")


def settings_from_connection(conn: Any, extras: Mapping[str, Any] | None = None) -> CloudElementsSettings:
    """Validate a ``cloudelements`` connection and return its settings; masks every secret.

    :param conn: an Airflow ``Connection``.
    :param extras: the connection's extra dict (pass it in async code, read with
        ``get_async_extra_dejson``); defaults to ``conn.extra_dejson``.
    :raises CloudElementsConfigError: wrong connection type, missing ``user_secret`` /
        ``organization_secret``, a secret or ``element_token`` with a line break, space, control or
        non-ASCII character (the message names the field, never the value), non-numeric or
        non-positive numbers.
    """
    conn_type = (getattr(conn, "conn_type", None) or "").strip().lower()
    if conn_type != CONN_TYPE:
        raise CloudElementsConfigError(
            f"Connection {getattr(conn, 'conn_id', '?')!r} has type {conn_type or None!r}; expected {CONN_TYPE!r}"
        )
    extras = dict(conn.extra_dejson if extras is None else extras)
    missing = [k for k in ("user_secret", "organization_secret") if not str(extras.get(k) or "").strip()]
    if missing:
        raise CloudElementsConfigError(
            f"Connection {getattr(conn, 'conn_id', '?')!r} lacks required extra(s): {', '.join(missing)}"
        )
    user_secret = str(extras["user_secret"]).strip()
    organization_secret = str(extras["organization_secret"]).strip()
    element_token = str(extras.get("element_token") or "").strip() or None
    for secret in (user_secret, organization_secret, element_token):
        if secret:
            mask_secret(secret)
    where = f"Connection {getattr(conn, 'conn_id', '?')!r} extra"
    for name, secret in (
        ("user_secret", user_secret),
        ("organization_secret", organization_secret),
        ("element_token", element_token),
    ):
        if secret:
            check_credential(secret, name, where)
    instance_id = extras.get("instance_id")
    if instance_id in (None, ""):
        parsed_instance: int | None = None
    else:
        parsed_instance = int(_number(extras, "instance_id", 0, integer=True))
    return CloudElementsSettings(
        base_url=normalize_base_url(conn.host, schema=conn.schema, port=conn.port),
        user_secret=user_secret,
        organization_secret=organization_secret,
        element_token=element_token,
        instance_id=parsed_instance,
        connect_timeout=float(_number(extras, "connect_timeout", DEFAULT_CONNECT_TIMEOUT)),
        read_timeout=float(_number(extras, "read_timeout", DEFAULT_READ_TIMEOUT)),
        page_size=int(_number(extras, "page_size", DEFAULT_PAGE_SIZE, integer=True)),
        retry_budget=float(_number(extras, "retry_budget", DEFAULT_RETRY_BUDGET, allow_zero=True)),
        max_requests_per_minute=int(
            _number(extras, "max_requests_per_minute", DEFAULT_MAX_REQUESTS_PER_MINUTE, integer=True)
        ),
        max_concurrent_requests=int(
            _number(extras, "max_concurrent_requests", DEFAULT_MAX_CONCURRENT_REQUESTS, integer=True)
        ),
        budget_store=check_budget_store(extras.get("budget_store")),
    )


def check_resource_name(resource: str, element_key: str | None = None) -> str:
    """Validate a Finance-hub resource name (``invoices``, ``bill-payments`` …) before any call.

    :param element_key: when known, the resource must be in the element's catalog (``utils/elements.py``).
    :raises CloudElementsConfigError: empty names, names with ``/`` or other characters, or resources
        the element does not support.
    """
    if not isinstance(resource, str) or not _RESOURCE_RE.match(resource):
        raise CloudElementsConfigError(f"Invalid Finance-hub resource name {resource!r}")
    if element_key is not None and element_key in ELEMENTS:
        check_resource(element_key, resource)
    return resource


def check_page_size(page_size: Any) -> int:
    """:raises CloudElementsConfigError: unless ``page_size`` is a positive integer."""
    if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size <= 0:
        raise CloudElementsConfigError(f"page_size must be a positive integer, got {page_size!r}")
    return page_size


def bulk_date(value: datetime | date | str, what: str) -> str:
    """A bulk ``from``/``to`` parameter: ISO-8601 with offset, UTC (§4.1).

    :raises CloudElementsConfigError: unparseable value.
    """
    return ceql.to_datetime(value, what=what).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _event_values(event: Any, key: str) -> set[str]:
    """All values of ``key`` (``objectType``/``eventType``) in an event record, wherever CE put them:
    top level, ``events[]``, ``message.events[]``, ``raw``, ``event`` or a JSON ``providerData`` string."""
    found: set[str] = set()

    def visit(node: Any, depth: int) -> None:
        if depth > 4:
            return
        if isinstance(node, str) and node[:1] in "{[":
            try:
                node = json.loads(node)
            except ValueError:
                return
        if isinstance(node, Mapping):
            value = node.get(key)
            if isinstance(value, str) and value:
                found.add(value.lower())
            for child in ("events", "message", "raw", "event", "providerData", "notifiedData"):
                if child in node:
                    visit(node[child], depth + 1)
        elif isinstance(node, list):
            for item in node:
                visit(item, depth + 1)

    visit(event, 0)
    return found


def event_window_params(since: datetime | None, until: datetime | None) -> dict[str, str]:
    """``from``/``to`` query hints for event listings (UTC ISO-8601, milliseconds; ``from`` rounded
    down, ``to`` rounded up so the server never returns less than the window). The devportal
    documents no server-side event filter (§5.6), so results are always filtered client-side too."""
    params = {}
    if since is not None:
        lo = ceql.to_datetime(since, what="since")
        params["from"] = lo.strftime("%Y-%m-%dT%H:%M:%S.") + f"{lo.microsecond // 1000:03d}Z"
    if until is not None:
        hi = ceql.to_datetime(until, what="until")
        if hi.microsecond % 1000:
            hi = hi + timedelta(microseconds=1000 - hi.microsecond % 1000)
        params["to"] = hi.strftime("%Y-%m-%dT%H:%M:%S.") + f"{hi.microsecond // 1000:03d}Z"
    return params


def event_date(event: Mapping[str, Any]) -> datetime | None:
    """The event's date (``eventDate``, else ``date``/``createdDate``), aware UTC, or ``None``."""
    for name in ("eventDate", "date", "createdDate"):
        value = event.get(name)
        if value in (None, ""):
            continue
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return ceql.to_datetime(datetime.fromtimestamp(value / 1000 if value > 1e11 else value, tz=None))
            return ceql.to_datetime(value)
        except (CloudElementsConfigError, OverflowError, OSError, ValueError):
            continue
    return None


def event_matches(
    event: Mapping[str, Any],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    object_types: list[str] | None = None,
    event_types: list[str] | None = None,
) -> bool:
    """Client-side event filter (the API documents no server-side filters, §5.6).

    :param since: inclusive lower bound on the event date (aware or naive = UTC).
    :param until: exclusive upper bound.
    :param object_types: keep events whose ``objectType`` is one of these (case-insensitive).
    :param event_types: keep events whose ``eventType`` is one of these (``CREATED``/``UPDATED``/``DELETED``).
    An event without a readable date passes the date filters (it is not silently dropped).
    """
    if since is not None or until is not None:
        when = event_date(event)
        if when is not None:
            if since is not None and when < ceql.to_datetime(since):
                return False
            if until is not None and when >= ceql.to_datetime(until):
                return False
    if object_types and not (_event_values(event, "objectType") & {t.lower() for t in object_types}):
        return False
    return not (event_types and not (_event_values(event, "eventType") & {t.lower() for t in event_types}))


class _HeaderAuth(requests.auth.AuthBase):
    """Sets the Cloud Elements ``Authorization`` header; its repr never shows the value."""

    def __init__(self, value: str) -> None:
        self._value = value

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self._value
        return r

    def __repr__(self) -> str:
        return "<CloudElementsAuthorization ***>"


class CloudElementsHook(CommonResourcesHookMixin, BaseHook):
    """Talks to the Cloud Elements REST API (api-v2) for one connection and (optionally) one element
    instance.

    :param cloudelements_conn_id: Airflow connection of type ``cloudelements``; ``host`` is the base URL
        (default ``https://api.cloud-elements.com/elements/api-v2``), extras ``user_secret``,
        ``organization_secret`` (required), ``element_token``, ``instance_id``, ``connect_timeout``
        (s, default 10), ``read_timeout`` (s, default 120), ``page_size`` (default 200),
        ``retry_budget`` (s, default 300), optional ``max_requests_per_minute`` (500) and
        ``max_concurrent_requests`` (10).
    :param instance_id: element instance for hub/bulk calls (overrides the connection extra).
    :param element_token: element token for hub/bulk calls (overrides the connection extra); when
        neither gives a token it is fetched once with ``GET /instances/{instance_id}``.
    :param retry_budget: override the connection's retry time budget (seconds; 0 = no retries).
    """

    conn_name_attr = "cloudelements_conn_id"
    default_conn_name = "cloudelements_default"
    conn_type = CONN_TYPE
    hook_name = "Cloud Elements"

    def __init__(
        self,
        cloudelements_conn_id: str = default_conn_name,
        *,
        instance_id: int | None = None,
        element_token: str | None = None,
        retry_budget: float | None = None,
    ) -> None:
        super().__init__()
        self.cloudelements_conn_id = cloudelements_conn_id
        self._instance_id_arg = as_instance_id(instance_id) if instance_id is not None else None
        if element_token:
            mask_secret(element_token)
            element_token = check_credential(element_token.strip(), "element_token", "CloudElementsHook argument")
        self._element_token_arg = element_token or None
        if retry_budget is not None and retry_budget < 0:
            raise CloudElementsConfigError(f"retry_budget must be >= 0 seconds, got {retry_budget!r}")
        self._retry_budget_arg = retry_budget
        self._tokens: dict[int, str] = {}
        self._element_keys: dict[int, str] = {}
        self._token_element_key: str | None = None  # element of the static token (GET /hubs/finance/ping)
        self._token_key_looked_up = False
        self._jobs_started: set[str] = set()  # bulk jobs this hook submitted (never "found" again)
        self._token_lock = threading.Lock()
        self._server_date: tuple[datetime, float] | None = None  # (Date header, monotonic when received)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"<{name} conn_id={self.cloudelements_conn_id!r} instance_id={self._instance_id_arg}>"

    # ------------------------------------------------------------------------------------ settings
    @cached_property
    def settings(self) -> CloudElementsSettings:
        """Resolved connection settings.

        :raises CloudElementsConfigError: see :func:`settings_from_connection`.
        """
        return settings_from_connection(self.get_connection(self.cloudelements_conn_id))

    @property
    def base_url(self) -> str:
        """API base URL without trailing slash."""
        return self.settings.base_url

    @property
    def instance_id(self) -> int | None:
        """Element instance id: constructor argument, else the connection extra ``instance_id``."""
        return self._instance_id_arg if self._instance_id_arg is not None else self.settings.instance_id

    @property
    def retry_policy(self) -> RetryPolicy:
        budget = self._retry_budget_arg if self._retry_budget_arg is not None else self.settings.retry_budget
        # fail fast on a host that never answered in this process (a wrong Base URL), see utils/retry.py
        unreachable = None if host_has_answered(self.base_url) else DEFAULT_UNREACHABLE_BUDGET
        return RetryPolicy(budget=budget, unreachable_budget=unreachable)

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        adapter = DeadlineAdapter()  # total per-attempt deadline (hooks/_watchdog.py)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.headers["User-Agent"] = USER_AGENT
        session.headers["Accept"] = "application/json"
        return session

    def _secrets(self) -> list[str | None]:
        s = self.settings
        return [
            s.user_secret,
            s.organization_secret,
            s.element_token,
            self._element_token_arg,
            *self._tokens.values(),
        ]

    def _static_token(self) -> str | None:
        return self._element_token_arg or self.settings.element_token

    # ------------------------------------------------------------------------------------ auth
    def _cache_instance(self, instance: Mapping[str, Any]) -> None:
        """Remember (and mask) the token and element key of an instance JSON."""
        try:
            iid = int(instance["id"])
        except (KeyError, TypeError, ValueError):
            return
        token = instance.get("token")
        with self._token_lock:
            if isinstance(token, str) and token:
                mask_secret(token)
                self._tokens[iid] = token
            element = instance.get("element")
            key = element.get("key") if isinstance(element, Mapping) else None
            if isinstance(key, str) and key:
                self._element_keys[iid] = key

    def _hub_token(self) -> str:
        static = self._static_token()
        if static:
            return static
        iid = self.instance_id
        if iid is None:
            raise CloudElementsConfigError(
                "Hub calls need an element instance: pass instance_id or element_token to the hook, "
                "or set the "
                "connection extra instance_id or element_token"
            )
        with self._token_lock:
            token = self._tokens.get(iid)
        if token:
            return token
        instance = self._call("GET", f"/instances/{iid}", hub=False)
        if not isinstance(instance, Mapping) or not instance.get("token"):
            raise CloudElementsApiError(f"GET /instances/{iid} returned no element token")
        mask_secret(str(instance["token"]))
        check_credential(str(instance["token"]), "token", f"The instance JSON of GET /instances/{iid}:")
        self._cache_instance(instance)
        return str(instance["token"])

    @property
    def element_key(self) -> str | None:
        """Element key of the hook's instance (or of its element token) when already known (no network
        call), else ``None``."""
        iid = self.instance_id
        if iid is not None:
            return self._element_keys.get(iid)
        return self._token_element_key

    def resolve_element_key(self) -> str | None:
        """Element key for element-specific behaviour (QBO ``OR`` check, cursor-only paging), fetched once:
        ``GET /instances/{id}`` for a hook with an instance id (the call that fetches its token anyway),
        else ``GET /hubs/finance/ping`` for a hook with only an ``element_token`` (its ``endpoint`` names
        the element). ``None`` when neither is configured or the ping does not name the element."""
        key = self.element_key
        if key:
            return key
        if self.instance_id is not None:
            return self.get_element_key()
        if not self._static_token() or self._token_key_looked_up:
            return None
        self._token_key_looked_up = True
        try:
            endpoint = self.ping().get("endpoint")
        except CloudElementsNotFoundError:
            endpoint = None
        if isinstance(endpoint, str) and endpoint.strip():
            self._token_element_key = endpoint.strip()
        else:
            self.log.warning(
                "GET %s/ping did not name the element of the element token; element-specific checks "
                "(QuickBooks Online OR, cursor-only paging) are skipped: pass instance_id",
                HUB_PREFIX,
            )
        return self._token_element_key

    def get_element_key(self) -> str:
        """Element key (``quickbooks`` …) of the hook's instance; ``GET /instances/{id}`` once if unknown.

        :raises CloudElementsConfigError: when the hook has no instance id.
        """
        key = self.element_key
        if key:
            return key
        iid = self.instance_id
        if iid is None:
            raise CloudElementsConfigError("The element key needs an instance_id")
        self.get_instance(iid)
        key = self._element_keys.get(iid)
        if not key:
            raise CloudElementsApiError(f"GET /instances/{iid} did not name its element")
        return key

    def _authorization(self, hub: bool) -> str:
        s = self.settings
        if hub:
            return hub_authorization(s.user_secret, s.organization_secret, self._hub_token())
        return platform_authorization(s.user_secret, s.organization_secret)

    def _budget(self, hub: bool) -> RequestBudget:
        s = self.settings
        party = budget_party(
            s.base_url,
            hub=hub,
            instance_id=self.instance_id,
            token=self._static_token() if hub else None,
            user_secret=s.user_secret,
        )
        return get_request_budget(
            party,
            max_per_minute=s.max_requests_per_minute,
            max_concurrent=s.max_concurrent_requests,
            store=s.budget_store,
        )

    # ------------------------------------------------------------------------------------ core
    def _error_from(self, resp: requests.Response, *, method: str, path: str, hub: bool) -> CloudElementsApiError:
        body = bytearray()
        try:  # only an excerpt ends up in the exception: read at most MAX_ERROR_BODY_BYTES
            for chunk in resp.iter_content(chunk_size=8192):
                body += chunk
                if len(body) >= MAX_ERROR_BODY_BYTES:
                    break
        except (requests.RequestException, urllib3.exceptions.HTTPError):
            pass
        return error_from_reply(
            resp.status_code,
            resp.headers,
            bytes(body),
            method=method,
            path=path,
            instance_id=self.instance_id if hub else None,
            hub=hub,
            secrets=self._secrets(),
            base_url=self.base_url,
        )

    def _note_date(self, headers: Mapping[str, str]) -> None:
        """Remember the server clock of a response (``Date`` header) for :meth:`server_time`."""
        when = parse_http_date(headers.get("Date"))
        if when is not None:
            self._server_date = (when, time.monotonic())

    @staticmethod
    def _read_body(resp: requests.Response, what: str) -> bytes:
        """The whole body of a non-download response, refused beyond :data:`MAX_RESPONSE_BYTES`."""
        check_body_size(resp.headers, received=0, limit=MAX_RESPONSE_BYTES, what=what)
        body = bytearray()
        for chunk in resp.iter_content(chunk_size=64 * 1024):
            body += chunk
            if len(body) > MAX_RESPONSE_BYTES:
                check_body_size(resp.headers, received=len(body), limit=MAX_RESPONSE_BYTES, what=what)
        return bytes(body)

    def _send_once(
        self,
        method: str,
        path: str,
        *,
        hub: bool,
        consume: Callable[[Reply], T] | None = None,
        stream_consume: Callable[[requests.Response], T] | None = None,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        data: Any = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> T:
        """One attempt: send, then either read the whole body (capped at :data:`MAX_RESPONSE_BYTES`)
        and ``consume`` it, or hand the streamed response to ``stream_consume`` (bulk downloads).

        The response has a TOTAL deadline (:func:`~..utils.retry.attempt_deadline`: the read timeout
        from the moment the request was sent, within the logical call's budget) enforced by a
        :class:`~._watchdog.Watchdog` (connecting is bounded by the connect timeout); a
        streamed download is released from it once its headers arrived (its body is bounded by record
        counts and the per-read timeout).

        :raises AttemptDeadlineError: the deadline passed (retried like a read timeout).
        """
        s = self.settings
        auth = _HeaderAuth(self._authorization(hub))
        timeout = read_timeout or s.read_timeout
        what = f"{method} {path}"
        call_end = _CALL_DEADLINE.get()
        with self._budget(hub).acquire():
            # the clock starts once the request is sent (connecting is bounded by connect_timeout)
            deadline_for = functools.partial(
                attempt_deadline, call_deadline=call_end, connect_timeout=0.0, read_timeout=timeout
            )
            with Watchdog(deadline_for) as dog:
                try:
                    resp = self.session.request(
                        method,
                        s.base_url + path,
                        params=params,
                        json=json_body,
                        data=data,
                        files=files,
                        headers=dict(headers or {}),
                        auth=auth,
                        timeout=(s.connect_timeout, timeout),
                        stream=True,
                    )
                except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                    if dog.fired:
                        raise AttemptDeadlineError(f"no response headers within {_DEADLINE_TEXT}") from exc
                    raise
                try:
                    note_host_answered(s.base_url)
                    self._note_date(resp.headers)
                    if resp.status_code >= 400:
                        raise self._error_from(resp, method=method, path=path, hub=hub)
                    log_reply(self.log, method, path, resp.status_code, resp.headers)
                    if stream_consume is not None:
                        dog.disarm()
                        return stream_consume(resp)
                    assert consume is not None
                    body = self._read_body(resp, what)
                    return consume(Reply(resp.status_code, resp.headers, body))
                except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                    if dog.fired:
                        raise AttemptDeadlineError(f"response not complete within {_DEADLINE_TEXT}") from exc
                    raise
                finally:
                    resp.close()

    def _with_retry(
        self,
        fn: Callable[[], T],
        *,
        method: str,
        path: str,
        idempotent: bool | None = None,
        read_timeout: float | None = None,
    ) -> T:
        """Run one logical call under the retry policy; convert leftover transport errors.

        ``GET`` calls also retry a plain HTTP 500 (at most 3 times); every attempt ends by the call's
        deadline (:func:`~..utils.retry.call_deadline`: the retry budget, at least one read timeout).
        """
        idem = method.upper() != "POST" if idempotent is None else idempotent
        what = f"{method} {path}"
        policy = self.retry_policy
        start = time.monotonic()
        token = _CALL_DEADLINE.set(
            call_deadline(start, budget=policy.budget, read_timeout=read_timeout or self.settings.read_timeout)
        )
        try:
            retrying = policy.retrying(
                idempotent=idem, logger=self.log, what=what, retry_server_error=retries_server_errors(method)
            )
            for attempt in retrying:
                with attempt:
                    result = fn()
            return result
        except CloudElementsError:
            raise
        except Exception as exc:
            if not is_transport_error(exc):
                raise
            elapsed = time.monotonic() - start
            hint = "" if idem else " (not retried after the request may have been sent: POST is not idempotent)"
            message = transport_failure_message(
                what, exc, base_url=self.base_url, elapsed=elapsed, described=_describe_transport(exc)
            )
            raise CloudElementsConnectionError(redact(f"{message}{hint}", self._secrets())) from exc
        finally:
            _CALL_DEADLINE.reset(token)

    def _call(
        self,
        method: str,
        path: str,
        *,
        hub: bool,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any:
        """One JSON call with retries; returns the decoded body (``None`` for an empty body)."""
        return self._with_retry(
            lambda: self._send_once(
                method, path, hub=hub, params=params, json_body=json_body, headers=headers, consume=self._json
            ),
            method=method,
            path=path,
            idempotent=idempotent,
        )

    def _json(self, resp: Reply) -> Any:
        return decode_json_reply(resp, self._secrets())

    def server_time(self) -> datetime | None:
        """The Cloud Elements server clock: the ``Date`` header of the most recent response (any
        status), else of a cheap call made now (``GET /hubs/finance/ping`` when the hook has an
        instance or element token, else ``GET /instances?pageSize=1``).

        :return: aware UTC datetime floored to the second (HTTP dates have second resolution), or
            ``None`` when the server sends no ``Date`` header.
        :raises CloudElementsError: the cheap call failed without any ``Date`` header.
        """
        if self._server_date is None:
            try:
                if self._static_token() or self.instance_id is not None:
                    self.ping()
                else:
                    self._call("GET", "/instances", hub=False, params={"pageSize": 1})
            except CloudElementsApiError:
                if self._server_date is None:
                    raise
        if self._server_date is None:
            return None
        return self._server_date[0].astimezone(timezone.utc).replace(microsecond=0)

    # ------------------------------------------------------------------------------------ pagination
    def _read_page(self, resp: Reply) -> PageInfo:
        return PageInfo.from_response(self._json(resp), resp.headers)

    def _get_page(self, path: str, params: Mapping[str, Any], *, hub: bool) -> PageInfo:
        return self._with_retry(
            lambda: self._send_once("GET", path, hub=hub, params=params, consume=self._read_page),
            method="GET",
            path=path,
        )

    def _paginate(
        self,
        path: str,
        params: Mapping[str, Any],
        *,
        hub: bool,
        page_size: int,
        reconcile_total: bool = False,
        cursor_only: bool = False,
    ) -> Iterator[Any]:
        """Yield every record of a paged list (§3.3); rules in :class:`~..utils.http.Pager`."""
        pager = Pager(
            path,
            params,
            page_size=page_size,
            reconcile_total=reconcile_total,
            logger=self.log,
            cursor_only=cursor_only,
        )
        while (query := pager.next_params()) is not None:
            yield from pager.feed(self._get_page(path, query, hub=hub))
        pager.finish()

    # ------------------------------------------------------------------------------------ platform
    def create_instance(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create (provision) an element instance: ``POST /instances`` (§2.2, §2.2.1).

        The returned ``token`` is masked, cached on the hook for hub calls on that instance, and removed
        from the result. Not retried after the request may have reached the server (no duplicate
        instances); beware that authorizing a second QBO instance for the same QuickBooks user
        invalidates the oldest (reference §7 item 10).

        :param body: ``{"element": {"key": ...}, "name": ..., "configuration": {...}, "providerData":
            {...}, "tags": [...]}``.
        :return: the instance JSON without ``token``, credential configuration values masked.
        :raises CloudElementsConfigError: body without ``element``.
        :raises CloudElementsApiError: subclasses per status (400 missing config, 401 bad secrets, 409 …).
        """
        if not isinstance(body, Mapping) or not isinstance(body.get("element"), Mapping):
            raise CloudElementsConfigError("create_instance body needs an 'element': {'key': ...} object")
        for value in sensitive_values(body):
            mask_secret(value)
        instance = self._call("POST", "/instances", hub=False, json_body=dict(body))
        if not isinstance(instance, Mapping):
            raise CloudElementsApiError("POST /instances returned no instance object")
        self._cache_instance(instance)
        self.log.info("Created Cloud Elements instance %s (%s)", instance.get("id"), instance.get("name"))
        return strip_instance(instance)

    def get_instance(self, instance_id: int) -> dict[str, Any]:
        """``GET /instances/{id}`` (§2.2); token cached (masked) and stripped from the result.

        :param instance_id: element instance id.
        :raises CloudElementsNotFoundError: unknown instance.
        """
        iid = _positive_int(instance_id, "instance_id")
        instance = self._call("GET", f"/instances/{iid}", hub=False)
        if not isinstance(instance, Mapping):
            raise CloudElementsApiError(f"GET /instances/{iid} returned no instance object")
        self._cache_instance(instance)
        return strip_instance(instance)

    def find_instances(self, *, name: str | None = None, tags: list[str] | None = None) -> list[dict[str, Any]]:
        """``GET /instances?tags[]=..`` (§2.2), then keep instances whose ``name`` equals ``name`` exactly.

        :param name: exact instance name to keep, or ``None`` for all.
        :param tags: tags passed as ``tags[]`` (server-side filter).
        :return: instances, tokens stripped.
        """
        params: dict[str, Any] = {}
        if tags:
            params["tags[]"] = list(tags)
        out = []
        for inst in self._paginate("/instances", params, hub=False, page_size=DEFAULT_PAGE_SIZE):
            if not isinstance(inst, Mapping):
                continue
            if name is not None and inst.get("name") != name:
                continue
            self._cache_instance(inst)
            out.append(strip_instance(inst))
        return out

    def update_instance(self, instance_id: int, body: Mapping[str, Any], *, partial: bool = True) -> dict[str, Any]:
        """``PATCH /instances/{id}`` (``partial=True``) or ``PUT /instances/{id}`` (§2.2).

        :param body: fields to change (``name``, ``tags`` (replaced wholesale), ``configuration``,
            ``providerData``).
        :return: the instance without ``token``.
        """
        iid = _positive_int(instance_id, "instance_id")
        for value in sensitive_values(body):
            mask_secret(value)
        instance = self._call("PATCH" if partial else "PUT", f"/instances/{iid}", hub=False, json_body=dict(body))
        if isinstance(instance, Mapping):
            self._cache_instance(instance)
            return strip_instance(instance)
        return {}

    def delete_instance(self, instance_id: int) -> None:
        """``DELETE /instances/{id}`` (§2.2); later hub calls with its token get 401."""
        iid = _positive_int(instance_id, "instance_id")
        self._call("DELETE", f"/instances/{iid}", hub=False)
        with self._token_lock:
            self._tokens.pop(iid, None)

    def enable_instance(self, instance_id: int) -> None:
        """``PUT /instances/{id}/enabled`` (§2.2)."""
        self._call("PUT", f"/instances/{_positive_int(instance_id, 'instance_id')}/enabled", hub=False)

    def disable_instance(self, instance_id: int) -> None:
        """``DELETE /instances/{id}/enabled`` (§2.2); hub calls then get 403."""
        self._call("DELETE", f"/instances/{_positive_int(instance_id, 'instance_id')}/enabled", hub=False)

    def list_elements(self) -> list[dict[str, Any]]:
        """``GET /elements`` (§2.1): element catalog objects."""
        return json_array(self._call("GET", "/elements", hub=False), "GET /elements")

    def get_element(self, key: str) -> dict[str, Any]:
        """``GET /elements/{keyOrId}`` (§2.1)."""
        if not key or not str(key).strip():
            raise CloudElementsConfigError("Element key must not be empty")
        path = f"/elements/{quote(str(key), safe='')}"
        return json_object(self._call("GET", path, hub=False), f"GET {path}")

    # ------------------------------------------------------------------------------------ hub
    def ping(self) -> dict[str, Any]:
        """``GET /hubs/finance/ping`` (§3.1): checks the instance is still connected."""
        return json_object(self._call("GET", f"{HUB_PREFIX}/ping", hub=True), f"GET {HUB_PREFIX}/ping")

    def iter_records(
        self,
        resource: str,
        *,
        where: str | None = None,
        order_by: str | None = None,
        page_size: int | None = None,
        reconcile_total: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Every record of ``GET /hubs/finance/{resource}`` (§3.1, §3.3, §3.4), page by page.

        Rules: send ``pageSize``; follow ``Elements-Next-Page-Token`` (as ``nextPage``) while present and
        ``Elements-Returned-Count`` > 0; without a token, ask ``page=n+1`` while the page came back full;
        an ``Elements-Error`` header with a short page means the server capped ``pageSize``: the hook
        logs a warning and continues with the size that came back; a page starting with a record
        already seen (a server ignoring ``page``) or a repeated cursor raises instead of looping.

        Input is validated when called (before the first request); requests happen while iterating.
        When the element is not known yet (a hook built with only an ``element_token``), it is resolved
        before the first page (:meth:`resolve_element_key`) and ``where`` is checked again for that
        element, so a QuickBooks Online ``OR`` never reaches the server. QuickBooks Enterprise listings
        page by cursor only: a page without ``Elements-Next-Page-Token`` is the last one.

        :param resource: Finance-hub resource (``invoices``, ``customers`` …).
        :param where: CEQL clause (validated with sqlglot; ``OR`` rejected for QuickBooks Online when the
            element is known).
        :param order_by: CEQL ``orderBy`` (``"TxnDate asc"``).
        :param page_size: records per page (default: connection ``page_size``, 200).
        :param reconcile_total: send ``returnCount=true`` and compare the yielded count with
            ``Elements-Total-Count`` at the end.
        :raises CloudElementsConfigError: bad resource or page size; :class:`CloudElementsCEQLError` for
            a bad ``where``.
        :raises CloudElementsReconciliationError: count mismatch with ``reconcile_total``.
        :raises CloudElementsApiError: API errors (after retries) and paging loops.
        """
        check_resource_name(resource, self.element_key)
        size = check_page_size(page_size if page_size is not None else self.settings.page_size)
        if where is not None:
            ceql.validate_where(where, self.element_key)
        return self._iter_records(resource, where, order_by, size, reconcile_total)

    def _iter_records(
        self, resource: str, where: str | None, order_by: str | None, size: int, reconcile_total: bool
    ) -> Iterator[dict[str, Any]]:
        key = self.resolve_element_key()  # the catalog check stays call-time (a 404 names unknown resources)
        params: dict[str, Any] = {}
        if where is not None:
            params["where"] = ceql.validate_where(where, key)
        if order_by:
            params["orderBy"] = order_by
        yield from self._paginate(
            f"{HUB_PREFIX}/{resource}",
            params,
            hub=True,
            page_size=size,
            reconcile_total=reconcile_total,
            cursor_only=key in CURSOR_ONLY_ELEMENTS,
        )

    def get_record(self, resource: str, record_id: str) -> dict[str, Any]:
        """``GET /hubs/finance/{resource}/{id}`` (§3.1). Ids are strings (QBO ``22|33``, QBE
        ``16D1-1484948017``) and are URL-quoted.

        :raises CloudElementsNotFoundError: unknown id.
        """
        path = self._record_path(resource, record_id)
        return json_object(self._call("GET", path, hub=True), f"GET {path}")

    def create_record(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /hubs/finance/{resource}`` (§3.1); not retried once the request may have been sent."""
        check_resource_name(resource, self.element_key)
        path = f"{HUB_PREFIX}/{resource}"
        return json_object(self._call("POST", path, hub=True, json_body=dict(body)), f"POST {path}")

    def update_record(self, resource: str, record_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``PATCH /hubs/finance/{resource}/{id}`` (§3.1). QBO needs the current ``syncToken`` / the
        ``id|syncToken`` id and QBE the current ``EditSequence`` (§3.5): read right before updating."""
        path = self._record_path(resource, record_id)
        return json_object(self._call("PATCH", path, hub=True, json_body=dict(body)), f"PATCH {path}")

    def delete_record(self, resource: str, record_id: str) -> None:
        """``DELETE /hubs/finance/{resource}/{id}`` (§3.1)."""
        self._call("DELETE", self._record_path(resource, record_id), hub=True)

    def _record_path(self, resource: str, record_id: str) -> str:
        check_resource_name(resource, self.element_key)
        if record_id is None or not str(record_id).strip():
            raise CloudElementsConfigError("record_id must not be empty")
        return f"{HUB_PREFIX}/{resource}/{quote(str(record_id), safe='')}"

    # ------------------------------------------------------------------------------------ discovery, reports
    def list_objects(self) -> list[str]:
        """Object (resource) names the instance's element serves: ``GET /hubs/finance/objects`` (§3.1, §4.1).

        :return: names as Cloud Elements spells them, e.g. ``["bill-payments", "bills", "classes", …]``
            (a JSON array of strings; entries given as ``{"name": …}`` objects are reduced to the name).
        :raises CloudElementsApiError: the body is not a JSON array.
        """
        path = f"{HUB_PREFIX}/objects"
        names = []
        for item in json_array(self._call("GET", path, hub=True), f"GET {path}"):
            name = item.get("name") if isinstance(item, Mapping) else item
            if isinstance(name, str) and name:
                names.append(name)
        return names

    def get_object_metadata(self, resource: str) -> dict[str, Any]:
        """Field metadata of one object: ``GET /hubs/finance/objects/{resource}/metadata`` (§3.1).

        Shape: ``{"objectName": "invoices", "primaryKey": "id", "fields": [{"vendorPath": "customerRef.value",
        "type": "string"|"number"|"boolean"|"date"|"array", "vendorNativeType": …, "vendorReadOnly": bool,
        "vendorDisplayName": …}, …]}`` (nested fields are dotted ``vendorPath`` s).

        :param resource: a resource of the element's catalog (:data:`~..utils.elements.ElementSpec.all_resources`).
        :raises CloudElementsConfigError: bad or unsupported resource (before any call).
        :raises CloudElementsNotFoundError: the element has no such object.
        :raises CloudElementsApiError: the body is not an object with a ``fields`` list.
        """
        check_resource_name(resource, self.resolve_element_key())
        path = f"{HUB_PREFIX}/objects/{resource}/metadata"
        meta = json_object(self._call("GET", path, hub=True), f"GET {path}")
        if not isinstance(meta.get("fields"), list):
            raise CloudElementsApiError(f"GET {path} returned no 'fields' list")
        return meta

    def get_report(
        self,
        report_id: str,
        *,
        start_date: date | str | None = None,
        end_date: date | str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One QuickBooks Online report: ``GET /hubs/finance/reports/{reportId}?startDate=…&endDate=…`` (§10.5).

        Shape (Intuit's report JSON, camelCased): ``{"header": {"reportName", "startPeriod", "endPeriod",
        "currency", "reportBasis", "time", …}, "columns": {"column": [{"colTitle", "colType"}, …]},
        "rows": {"row": [{"type": "Section", "header": {"colData": […]}, "rows": {"row": […]},
        "summary": {"colData": […]}} | {"type": "Data", "colData": [{"value"}, …]}, …]}}``.

        :param report_id: report id of ``GET /reports/metadata`` (``profit-and-loss``, ``balance-sheet`` …).
        :param start_date: first day of the period (inclusive), ``date`` or ``yyyy-MM-dd``.
        :param end_date: last day of the period (inclusive).
        :param params: further query parameters (``accountingMethod``, ``dateMacro`` …).
        :raises CloudElementsConfigError: bad report id or dates, start after end (before any call).
        :raises CloudElementsNotFoundError: unknown report id (or an element without QBO reports).
        """
        if not isinstance(report_id, str) or not _RESOURCE_RE.match(report_id):
            raise CloudElementsConfigError(f"Invalid report id {report_id!r}")
        query = dict(params or {})
        start = _report_day(start_date, "start_date")
        end = _report_day(end_date, "end_date")
        if start and end and start > end:
            raise CloudElementsConfigError(f"start_date {start} is after end_date {end}")
        query.update({k: v for k, v in (("startDate", start), ("endDate", end)) if v})
        path = f"{HUB_PREFIX}/reports/{report_id}"
        return json_object(self._call("GET", path, hub=True, params=query), f"GET {path}")

    def list_report_metadata(self) -> list[dict[str, Any]]:
        """QuickBooks Online report catalog: ``GET /hubs/finance/reports/metadata`` (§10.5) →
        ``[{"id": "profit-and-loss", "name", "reportName", "dateFilters": [...]}, …]``."""
        path = f"{HUB_PREFIX}/reports/metadata"
        return json_array(self._call("GET", path, hub=True), f"GET {path}")

    def query_reports(
        self,
        report_name: str,
        *,
        period_start: date | str | None = None,
        period_end: date | str | None = None,
        fiscal_year: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """QuickBooks Enterprise reports: ``GET /hubs/finance/reports?where=ReportName='…' and
        ReportPeriodStart='yyyy-MM-dd' and ReportPeriodEnd='yyyy-MM-dd'`` (§10.5; or ``FiscalYear=n``).

        Shape: a list holding one QBXML-style report ``{"ReportName", "ReportTitle", "ReportSubtitle",
        "ReportBasis", "NumRows", "NumColumns", "ColDesc": [{"colID", "ColTitle": {"value"}, "ColType"}],
        "ReportData": {"DataRow": [{"rowNumber", "RowData": {"rowType", "value"}, "ColData": [{"colID",
        "value"}]}], "TotalRow": {…}}}``.

        :param report_name: a ``ReportName`` of ``GET /report-types`` (``Profit and Loss Standard`` …).
        :param period_start: first day (inclusive); ``period_end``: last day (inclusive).
        :param fiscal_year: instead of the period.
        :param extra: more CEQL equalities (``ReportBasis``, ``SummarizeColumnsBy``).
        :raises CloudElementsConfigError: empty name, bad dates, start after end (before any call).
        """
        if not isinstance(report_name, str) or not report_name.strip():
            raise CloudElementsConfigError(f"report_name must be a non-empty string, got {report_name!r}")
        start = _report_day(period_start, "period_start")
        end = _report_day(period_end, "period_end")
        if start and end and start > end:
            raise CloudElementsConfigError(f"period_start {start} is after period_end {end}")
        conditions: dict[str, Any] = {"ReportName": report_name.strip()}
        conditions.update({k: v for k, v in (("ReportPeriodStart", start), ("ReportPeriodEnd", end)) if v})
        if fiscal_year is not None:
            conditions["FiscalYear"] = _positive_int(fiscal_year, "fiscal_year")
        conditions.update(extra or {})
        path = f"{HUB_PREFIX}/reports"
        where = ceql.build_where(conditions)
        return json_array(self._call("GET", path, hub=True, params={"where": where}), f"GET {path}")

    def list_report_types(self) -> list[dict[str, Any]]:
        """QuickBooks Enterprise report catalog: ``GET /hubs/finance/report-types`` (§10.5) →
        ``[{"ReportName": "Balance Sheet Standard", "ReportTitle": "Balance Sheet"}, …]``."""
        path = f"{HUB_PREFIX}/report-types"
        return json_array(self._call("GET", path, hub=True), f"GET {path}")

    # ------------------------------------------------------------------------------------ bulk
    def start_bulk_query(
        self,
        resource: str,
        *,
        where: str | None = None,
        from_: datetime | str | None = None,
        to: datetime | str | None = None,
        callback_url: str | None = None,
    ) -> str:
        """Submit a bulk download: ``POST /hubs/finance/bulk/query?q=select * from <resource> [where ...]``
        (§4.1). QuickBooks/FreshBooks bulk support ``select *`` only (§4.4).

        Not retried once the request may have reached the server (a retry could start a duplicate job);
        429 and connection failures are retried. After an AMBIGUOUS failure (a read timeout, the attempt
        deadline or a 5xx: the server may have created the job), the hook looks the job up
        (:meth:`_find_submitted_job`, ``GET /hubs/finance/bulk/jobs``) and REUSES it: the same query
        submitted in the same seconds is the job this call created (or an identical snapshot a
        concurrent run created, equally valid), so no orphan job keeps scanning the provider and no
        duplicate is started. When none is found, the original error is raised.

        :param resource: object name (``invoices``).
        :param where: CEQL clause (validated; no ``OR`` for QuickBooks Online).
        :param from_: bulk ``from`` bound (datetime or ISO-8601 string; sent as UTC with offset).
        :param to: bulk ``to`` bound.
        :param callback_url: sent as ``Elements-Async-Callback-Url``.
        :return: the job id (string).
        :raises CloudElementsConfigError: bad resource, CEQL or dates (before any call).
        """
        check_resource_name(resource, self.element_key)
        if where is not None:
            ceql.validate_where(where, self.element_key)
        params: dict[str, Any] = {}
        if from_ is not None:
            params["from"] = bulk_date(from_, "bulk from_")
        if to is not None:
            params["to"] = bulk_date(to, "bulk to")
        key = self.resolve_element_key()
        where_clean = ceql.validate_where(where, key) if where is not None else None
        params = {"q": ceql.select_query(resource, where_clean), **params}
        headers = {H_CALLBACK_URL: callback_url} if callback_url else None
        submitted = time.monotonic()
        try:
            job = self._call("POST", f"{HUB_PREFIX}/bulk/query", hub=True, params=params, headers=headers)
        except (CloudElementsServerError, CloudElementsConnectionError) as exc:
            if isinstance(exc, CloudElementsThrottledError):
                raise
            found = self._find_submitted_job(resource, params, callback_url, submitted, exc)
            if found is None:
                raise
            return found
        job_id = job.get("id") if isinstance(job, Mapping) else None
        if job_id in (None, ""):
            raise CloudElementsApiError("POST /bulk/query returned no job id")
        self._jobs_started.add(str(job_id))
        self.log.info("Started Cloud Elements bulk job %s: %s", job_id, params["q"])
        return str(job_id)

    def _find_submitted_job(
        self,
        resource: str,
        params: Mapping[str, Any],
        callback_url: str | None,
        submitted: float,
        error: CloudElementsError,
    ) -> str | None:
        """The job an ambiguously failed ``POST /bulk/query`` created, or ``None`` (best effort, never
        raises): ``GET /hubs/finance/bulk/jobs?where=object_name = '<resource>' AND job_direction =
        'DOWNLOAD'`` (paged), keeping jobs with the same ``job_query`` (and ``from``/``to`` and
        ``notification_url`` where the listing shows them), not FAILED/ABORTED/CANCELLED, created no
        earlier than the submit on the SERVER clock: the listing's ``Date`` (floored to the second, so
        the server clock was at least that when it answered) minus the local time elapsed since the
        submit started, minus :data:`_SUBMIT_CLOCK_SLACK` (the ``Date`` of a gateway and the
        ``createdDate`` of the job service may come from different clocks), and not submitted earlier by
        this hook. The NEWEST such job wins (the one this call created, unless a concurrent run
        submitted the same query later: an equally valid snapshot).
        """
        path = f"{HUB_PREFIX}/bulk/jobs"
        where = f"object_name = {ceql.quote_value(resource)} AND job_direction = 'DOWNLOAD'"
        matches: list[tuple[datetime, str]] = []
        try:
            jobs = list(self._paginate(path, {"where": where}, hub=True, page_size=DEFAULT_PAGE_SIZE, cursor_only=True))
            if self._server_date is None:
                return None
            listed_at, received = self._server_date
            lower = listed_at - timedelta(seconds=received - submitted + _SUBMIT_CLOCK_SLACK)
            for job in jobs:
                if not isinstance(job, Mapping) or job.get("job_query", job.get("query")) != params["q"]:
                    continue
                if str(job.get("status") or job.get("job_status") or "").upper() in _DEAD_JOB_STATUSES:
                    continue
                if any(name in job and job[name] != params.get(name) for name in ("from", "to")):
                    continue
                if "notification_url" in job and (job["notification_url"] or None) != callback_url:
                    continue
                try:
                    created = ceql.to_datetime(str(job.get("createdDate") or ""), what="createdDate")
                except CloudElementsConfigError:
                    continue
                if created >= lower and job.get("id") not in (None, "") and str(job["id"]) not in self._jobs_started:
                    matches.append((created, str(job["id"])))
        except CloudElementsError as lookup_error:
            self.log.warning(
                "POST %s/bulk/query failed ambiguously (%s) and the job lookup failed too (%s); a job may "
                "have been created: check GET %s",
                HUB_PREFIX,
                type(error).__name__,
                type(lookup_error).__name__,
                path,
            )
            return None
        if not matches:
            self.log.warning(
                "POST %s/bulk/query failed ambiguously (%s); no job with that query was created",
                HUB_PREFIX,
                type(error).__name__,
            )
            return None
        job_id = max(matches, key=lambda m: (m[0], int(m[1]) if m[1].isdigit() else 0))[1]
        self._jobs_started.add(job_id)
        self.log.warning(
            "POST %s/bulk/query failed ambiguously (%s) but the server created job %s for it; reusing that "
            "job instead of leaving it orphaned: %s",
            HUB_PREFIX,
            type(error).__name__,
            job_id,
            params["q"],
        )
        return job_id

    def get_bulk_status(self, job_id: str) -> dict[str, Any]:
        """``GET /hubs/finance/bulk/{id}/status`` (§4.1): raw JSON (``id``, ``status``, ``recordsCount``,
        ``recordsFailedCount`` …)."""
        path = f"{HUB_PREFIX}/bulk/{_job(job_id)}/status"
        return json_object(self._call("GET", path, hub=True), f"GET {path}")

    def wait_for_bulk_job(self, job_id: str, *, poll_interval: float = 5, timeout: float | None = None) -> dict:
        """Poll :meth:`get_bulk_status` until the job is terminal (§4.2).

        :param poll_interval: seconds between polls.
        :param timeout: seconds in total, ``None`` = no limit.
        :return: the final status JSON of a COMPLETED (or ``COMPLETE``) job.
        :raises CloudElementsBulkJobError: FAILED, ABORTED, CANCELLED or an unknown status.
        :raises CloudElementsTimeoutError: ``timeout`` passed.
        """
        if poll_interval <= 0:
            raise CloudElementsConfigError(f"poll_interval must be positive, got {poll_interval!r}")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            status_json = self.get_bulk_status(job_id)
            status = CloudElementsBulkJobStatus.parse(status_json.get("status"))
            self.log.info(
                "Bulk job %s: %s (records=%s, failed=%s)",
                job_id,
                status.value,
                status_json.get("recordsCount"),
                status_json.get("recordsFailedCount"),
            )
            if status.is_success():
                return status_json
            if status.is_terminal():
                raise CloudElementsBulkJobError(
                    f"Bulk job {job_id} ended {status.value}"
                    + (
                        f": {safe_excerpt(str(status_json['message']), self._secrets())}"
                        if status_json.get("message")
                        else ""
                    )
                )
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CloudElementsTimeoutError(
                        f"Bulk job {job_id} still {status.value} after {timeout} s; cancel it with "
                        f"PUT /bulk/{job_id}/cancel if it is no longer needed"
                    )
                time.sleep(min(poll_interval, remaining))
            else:
                time.sleep(poll_interval)

    def download_bulk(
        self,
        job_id: str,
        resource: str,
        fileobj: BinaryIO,
        *,
        fmt: str = "json",
        progress: Callable[[int, int], None] | None = None,
        expected_records: int | None = None,
    ) -> BulkDownloadResult:
        """Stream a finished job's file: ``GET /hubs/finance/bulk/{id}/{resource}`` (§4.1) into ``fileobj``.

        The body is written chunk by chunk (:data:`DOWNLOAD_CHUNK_BYTES`, 1 MiB), never held in memory.
        ``fmt="json"`` sends
        ``Accept: application/json`` (the file is NDJSON, one record per line); ``"csv"`` sends
        ``Accept: text/csv``. The read timeout is at least 300 s.

        Truncation: a connection dropped mid-stream, a body shorter than its ``Content-Length`` or an
        NDJSON file ending in a partial line is never returned as success. When ``fileobj`` is seekable
        the hook rewinds to where it started (``seek``; ``truncate``) and downloads again under the retry
        policy; when it is not seekable and bytes were already written it raises
        :class:`CloudElementsConnectionError`.

        :param job_id: bulk job id.
        :param resource: the job's object name.
        :param fileobj: binary file object opened for writing.
        :param fmt: ``"json"`` or ``"csv"``.
        Records are counted while streaming (:class:`~..utils.http.RecordCounter`: NDJSON non-blank lines,
        CSV records parsed with :mod:`csv`, header excluded). With ``expected_records`` (the job's
        ``recordsCount``) reading stops at the first chunk that brings more records than that (a body
        that never ends cannot fill the disk); that chunk is never written and a seekable ``fileobj``
        is rewound to where it started. Fewer records than expected is the caller's check
        (:attr:`BulkDownloadResult.records`).

        :param progress: called after every chunk with ``(records, bytes)`` written so far in this attempt.
        :param expected_records: stop (typed error) once more records than this arrived; ``None`` = no cap.
        :return: :class:`BulkDownloadResult`.
        :raises CloudElementsConfigError: unknown ``fmt``, bad resource, negative ``expected_records``.
        :raises CloudElementsReconciliationError: more records than ``expected_records`` (not retried).
        :raises CloudElementsConnectionError: download still truncated when the retry budget is spent.
        """
        if fmt not in _FORMATS:
            raise CloudElementsConfigError(f"fmt must be one of {sorted(_FORMATS)}, got {fmt!r}")
        if expected_records is not None and (
            isinstance(expected_records, bool) or not isinstance(expected_records, int) or expected_records < 0
        ):
            raise CloudElementsConfigError(f"expected_records must be an integer >= 0, got {expected_records!r}")
        check_resource_name(resource, self.element_key)
        path = f"{HUB_PREFIX}/bulk/{_job(job_id)}/{resource}"
        try:
            start_pos: int | None = fileobj.tell()
            seekable = bool(getattr(fileobj, "seekable", lambda: True)())
        except (OSError, AttributeError, ValueError):
            start_pos, seekable = None, False
        attempts = 0
        read_timeout = max(self.settings.read_timeout, BULK_DOWNLOAD_READ_TIMEOUT)

        def attempt() -> BulkDownloadResult:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and seekable and start_pos is not None:
                fileobj.seek(start_pos)
                fileobj.truncate()
            return self._send_once(
                "GET",
                path,
                hub=True,
                headers={"Accept": _FORMATS[fmt]},
                read_timeout=read_timeout,
                stream_consume=lambda resp: _stream_to_file(
                    resp,
                    fileobj,
                    fmt=fmt,
                    progress=progress,
                    seekable=seekable and start_pos is not None,
                    counter=RecordCounter(fmt, expected=expected_records, what=f"Bulk job {job_id} download"),
                ),
            )

        try:
            result = self._with_retry(attempt, method="GET", path=path, read_timeout=read_timeout)
        except CloudElementsError:
            if seekable and start_pos is not None:  # leave no partial file behind
                fileobj.seek(start_pos)
                fileobj.truncate()
            raise
        self.log.info(
            "Downloaded bulk job %s (%s): %s records, %s bytes in %s attempt(s)",
            job_id,
            resource,
            result.records,
            result.bytes,
            attempts,
        )
        return result

    def iter_bulk_errors(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Failed records of a bulk job: paged ``GET /hubs/finance/bulk/{id}/errors`` (§4.1)."""
        return self._paginate(
            f"{HUB_PREFIX}/bulk/{_job(job_id)}/errors",
            {},
            hub=True,
            page_size=self.settings.page_size,
            cursor_only=True,
        )

    def cancel_bulk_job(self, job_id: str) -> None:
        """``PUT /hubs/finance/bulk/{id}/cancel`` (§4.1); the status becomes ``CANCELLED``."""
        self._call("PUT", f"{HUB_PREFIX}/bulk/{_job(job_id)}/cancel", hub=True)
        self.log.info("Cancelled bulk job %s", job_id)

    def upload_bulk(
        self, resource: str, fileobj: IO[bytes], *, fmt: str = "json", identifier_field_name: str | None = None
    ) -> str:
        """Bulk upload: ``POST /hubs/finance/bulk/{resource}`` multipart ``file`` + ``metaData``
        ``{"format": fmt[, "identifierFieldName": …]}`` (§4.1). The file is read once into memory
        (``requests`` builds multipart bodies in memory anyway) so that a retry after a 429 resends the
        same bytes.

        :param fileobj: binary file with NDJSON / a JSON array (``fmt="json"``) or CSV with a header row.
        :param identifier_field_name: upsert key: a record whose value of this field matches an existing
            record updates it instead of creating a new one.
        :return: the job id.
        """
        if fmt not in _FORMATS:
            raise CloudElementsConfigError(f"fmt must be one of {sorted(_FORMATS)}, got {fmt!r}")
        check_resource_name(resource, self.element_key)
        metadata = {"format": fmt}
        if identifier_field_name:
            metadata["identifierFieldName"] = identifier_field_name
        content = fileobj.read()
        if isinstance(content, str):
            content = content.encode("utf-8")
        path = f"{HUB_PREFIX}/bulk/{resource}"
        job = self._with_retry(
            lambda: self._send_once(
                "POST",
                path,
                hub=True,
                files={"file": (f"{resource}.{fmt}", content, _FORMATS[fmt])},
                data={"metaData": json.dumps(metadata)},
                consume=self._json,
            ),
            method="POST",
            path=path,
        )
        job_id = job.get("id") if isinstance(job, Mapping) else None
        if job_id in (None, ""):
            raise CloudElementsApiError(f"POST {path} returned no job id")
        return str(job_id)

    # ------------------------------------------------------------------------------------ events
    def iter_events(
        self,
        *,
        instance_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        object_types: list[str] | None = None,
        event_types: list[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Events received by Cloud Elements (§5.6): ``GET /instances/{id}/events`` (platform headers),
        or ``GET /instances/events`` for all instances when neither ``instance_id`` nor the hook's
        instance is set. Paged; filtered client-side (:func:`event_matches`: ``[since, until)`` on
        ``eventDate``, ``objectType``/``eventType`` anywhere in the event). The listing pages by cursor
        only (it ignores ``page``): a page without ``Elements-Next-Page-Token`` is the last one.
        """
        iid = instance_id if instance_id is not None else self.instance_id
        path = f"/instances/{_positive_int(iid, 'instance_id')}/events" if iid is not None else "/instances/events"
        for value, what in ((since, "since"), (until, "until")):
            if value is not None:
                ceql.to_datetime(value, what=what)
        records = self._paginate(
            path, event_window_params(since, until), hub=False, page_size=self.settings.page_size, cursor_only=True
        )
        return (
            dict(e)
            for e in records
            if isinstance(e, Mapping)
            and event_matches(e, since=since, until=until, object_types=object_types, event_types=event_types)
        )

    # ------------------------------------------------------------------------------------ test
    def test_connection(self) -> tuple[bool, str]:
        """Used by ``airflow connections test``: ``GET /instances?pageSize=1`` with the platform header
        and, when an instance id or element token is configured, ``GET /hubs/finance/ping``.
        Never raises; retries for at most 10 s.

        :return: ``(ok, message)``.
        """
        saved = self._retry_budget_arg
        try:
            self._retry_budget_arg = min(
                TEST_CONNECTION_RETRY_BUDGET, saved if saved is not None else self.settings.retry_budget
            )
            self._call("GET", "/instances", hub=False, params={"pageSize": 1})
            message = f"Cloud Elements platform API reachable at {self.base_url} (user/organization secrets accepted)"
            if self._static_token() or self.instance_id is not None:
                self.ping()
                target = f"instance {self.instance_id}" if self.instance_id is not None else "the element token"
                message += f"; hub ping OK for {target}"
            return True, message
        except Exception as exc:
            try:
                secrets = self._secrets()
            except Exception:
                secrets = []
            return False, redact(f"{type(exc).__name__}: {exc}", secrets)
        finally:
            self._retry_budget_arg = saved


def _positive_int(value: Any, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CloudElementsConfigError(f"{what} must be a positive integer, got {value!r}") from None
    if isinstance(value, bool) or number <= 0 or (isinstance(value, float) and number != value):
        raise CloudElementsConfigError(f"{what} must be a positive integer, got {value!r}")
    return number


def _report_day(value: date | str | None, what: str) -> str | None:
    """A report period day as ``yyyy-MM-dd`` (``None`` stays ``None``).

    :raises CloudElementsConfigError: not a date or an ISO ``yyyy-MM-dd`` string.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value).strip()[:10]).isoformat()
    except ValueError:
        raise CloudElementsConfigError(f"{what} must be a date or yyyy-MM-dd, got {value!r}") from None


def _job(job_id: str) -> str:
    if job_id is None or not str(job_id).strip():
        raise CloudElementsConfigError("job_id must not be empty")
    return quote(str(job_id).strip(), safe="")


def _describe_transport(exc: BaseException) -> str:
    if isinstance(exc, TruncatedDownloadError):
        return f"download truncated: {exc}"
    if isinstance(exc, AttemptDeadlineError):
        return f"attempt deadline passed: {exc}"
    return type(exc).__name__


def _stream_to_file(
    resp: requests.Response,
    fileobj: BinaryIO,
    *,
    fmt: str,
    progress: Callable[[int, int], None] | None,
    seekable: bool,
    counter: RecordCounter,
) -> BulkDownloadResult:
    """Copy a streamed response into ``fileobj`` while ``counter`` counts its records; raise
    :class:`TruncatedDownloadError` (retryable) or :class:`CloudElementsConnectionError` (not retryable:
    bytes written to a non-seekable file) on truncation, and let ``counter``'s
    :class:`CloudElementsReconciliationError` (too many records) through. A chunk is written only after
    the counter accepted it."""
    expected = None if resp.headers.get("Content-Encoding") else header_int(resp.headers, "Content-Length")
    written = 0
    tail = bytearray()  # bytes after the last newline (a partial NDJSON record)

    def truncated(reason: str) -> Exception:
        if written and not seekable:
            return CloudElementsConnectionError(
                f"Bulk download interrupted after {written} bytes ({reason}); the target file object is not "
                "seekable, so it cannot be rewound and downloaded again: retry the task"
            )
        return TruncatedDownloadError(f"{reason} after {written} bytes")

    def chunks() -> Iterator[bytes]:
        nonlocal written, tail
        for chunk in resp.iter_content(chunk_size=DOWNLOAD_CHUNK_BYTES):
            if not chunk:
                continue
            yield chunk  # counted (and maybe refused) before it is written
            fileobj.write(chunk)
            written += len(chunk)
            cut = chunk.rfind(b"\n")
            if cut >= 0:
                tail = bytearray(chunk[cut + 1 :])
            else:
                tail.extend(chunk)
            if progress is not None:
                progress(counter.records, written)

    try:
        counter.consume(chunks())
    except (
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ConnectionError,
        urllib3.exceptions.HTTPError,
    ) as exc:
        raise truncated(f"connection dropped mid-stream: {type(exc).__name__}") from exc
    if expected is not None and written != expected:
        raise truncated(f"got {written} of {expected} bytes announced by Content-Length")
    if fmt == "json" and tail.strip():
        try:
            json.loads(bytes(tail))
        except ValueError:
            raise truncated("the NDJSON body ends in a partial record") from None
    return BulkDownloadResult(records=counter.records, lines=counter.lines, bytes=written)
