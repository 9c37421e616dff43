"""The base of both Cloud Elements hooks: connection, auth, tokens, ids, errors, retries and budget in ONE place.

Connection settings, auth, element tokens, instance ids, error mapping, retries and the client-side
budget live here, so the sync hook (:class:`~.cloudelements.CloudElementsHook`) and the async hook
(:class:`~.cloudelements_async.CloudElementsAsyncHook`) cannot drift.

* **Connection** (``cloudelements``): ``host`` = base URL, extras ``user_secret`` and
  ``organization_secret`` (required), ``element_token``, ``instance_id``, ``connect_timeout`` (s, 10),
  ``read_timeout`` (s, 120), ``page_size`` (200), ``retry_budget`` (s, 300), ``max_requests_per_minute``
  (500), ``max_concurrent_requests`` (10), ``budget_store`` (:func:`settings_from_connection`).
* **Headers** (§1.2): platform calls send ``User <u>, Organization <o>``; hub/bulk calls send
  ``User <u>, Organization <o>, Element <t>``, attached by an :class:`httpx.Auth` whose repr never
  shows it (never in call arguments or logs).
* **Element token**: the hook argument ``element_token``, else the connection extra, else fetched
  once with ``GET /instances/{instance_id}`` (masked, validated, cached per instance).
* **Secrets**: masked with ``mask_secret`` the moment they are read; error texts are redacted
  (:func:`~..client.protocol.redact`) before they are truncated.
* **Retries**: :mod:`airflow_provider_cloudelements.client.retry` (one policy for both hooks: time
  budget 300 s, ``Retry-After`` capped at 60 s, plain 500s on GETs retried 3 times, never a POST that
  may have been processed; a host that never answered fails fast).
* **Budget**: :mod:`airflow_provider_cloudelements.client.budget`, ONE registry with the same scope for
  both hooks (per party and process: a worker's tasks and a triggerer's triggers share 500 requests/min
  and 10 in flight per instance by default).

The HTTP client itself (httpx) is in :mod:`..client.transport`; nothing under ``client/`` imports Airflow.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from airflow_provider_cloudelements.client import budget_store
from airflow_provider_cloudelements.client.budget import (
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_REQUESTS_PER_MINUTE,
    RequestBudget,
    budget_party,
    get_request_budget,
)
from airflow_provider_cloudelements.client.budget_store import check_budget_store
from airflow_provider_cloudelements.client.protocol import (
    DEFAULT_BASE_URL,
    Reply,
    check_credential,
    decode_json_reply,
    error_from_reply,
    hub_authorization,
    log_reply,
    platform_authorization,
    redact,
    transport_failure_message,
)
from airflow_provider_cloudelements.client.retry import (
    DEFAULT_RETRY_BUDGET,
    DEFAULT_UNREACHABLE_BUDGET,
    AttemptDeadlineError,
    RetryPolicy,
    TruncatedDownloadError,
    call_deadline,
    host_has_answered,
    is_transport_error,
    note_host_answered,
    parse_http_date,
    retries_server_errors,
)
from airflow_provider_cloudelements.client.transport import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT
from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsConfigError,
    CloudElementsConnectionError,
    CloudElementsError,
    as_instance_id,
)

CONN_TYPE = "cloudelements"
DEFAULT_PAGE_SIZE = 200  # records: CE hub default and QBO maximum (reference §3.3)


def _metadata_database_url() -> str:
    from airflow.configuration import conf

    return str(conf.get("database", "sql_alchemy_conn"))


budget_store.set_metadata_url_resolver(_metadata_database_url)


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
        (``"metadata"`` or a SQLAlchemy URL; :func:`~..client.budget_store.check_budget_store`).
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


def _number(
    extras: Mapping[str, Any], key: str, default: float, *, integer: bool = False, allow_zero: bool = False
) -> float:
    value = extras.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        number = float(value)
        if not math.isfinite(number):  # NaN/inf: httpx rejects NaN, inf would wait forever
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
        budget_store=check_budget_store(extras.get("budget_store"), mask=mask_secret),
    )


class _HeaderAuth(httpx.Auth):
    """Sets the Cloud Elements ``Authorization`` header; its repr never shows the value."""

    def __init__(self, value: str) -> None:
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._value
        yield request

    def __repr__(self) -> str:
        return "<CloudElementsAuthorization ***>"


class CloudElementsBaseHook(BaseHook):
    """What the sync and async Cloud Elements hooks share (no I/O of its own).

    :param cloudelements_conn_id: Airflow connection of type ``cloudelements`` (extras in the module
        docstring).
    :param instance_id: element instance for hub/bulk calls (overrides the connection extra).
    :param element_token: element token for hub/bulk calls (overrides the connection extra); when
        neither gives a token it is fetched once with ``GET /instances/{instance_id}``.
    :param retry_budget: override the connection's retry time budget (seconds; 0 = no retries).
    :raises CloudElementsConfigError: a bad ``instance_id``, an ``element_token`` with a space, line
        break, control or non-ASCII character, a negative ``retry_budget`` (before any call).
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
            element_token = check_credential(element_token.strip(), "element_token", f"{type(self).__name__} argument")
        self._element_token_arg = element_token or None
        if retry_budget is not None and retry_budget < 0:
            raise CloudElementsConfigError(f"retry_budget must be >= 0 seconds, got {retry_budget!r}")
        self._retry_budget_arg = retry_budget
        self._settings: CloudElementsSettings | None = None
        self._tokens: dict[int, str] = {}
        self._element_keys: dict[int, str] = {}
        self._token_lock = threading.Lock()
        self._server_date: tuple[datetime, float] | None = None  # (Date header, monotonic when received)
        self._token_element_key: str | None = None  # element of the static token (GET /hubs/finance/ping)
        self._token_key_looked_up = False
        self._jobs_started: set[str] = set()  # bulk jobs this hook submitted (never "found" again)
        self._client: Any = None  # the subclass's pooled httpx client, opened on first use

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"<{name} conn_id={self.cloudelements_conn_id!r} instance_id={self._instance_id_arg}>"

    # ------------------------------------------------------------------------------------ settings
    def _instance_of(self, s: CloudElementsSettings) -> int | None:
        """Element instance id: constructor argument, else the connection extra ``instance_id``."""
        return self._instance_id_arg if self._instance_id_arg is not None else s.instance_id

    def _instance_arg_or(self, instance_id: Any, default: int | None) -> int | None:
        """A method's ``instance_id`` argument validated like the constructor's, else ``default``.

        :raises CloudElementsConfigError: not a positive integer.
        """
        return as_instance_id(instance_id) if instance_id is not None else default

    def _static_token_of(self, s: CloudElementsSettings) -> str | None:
        """The element token given to the hook or in the connection (not one fetched for an instance)."""
        return self._element_token_arg or s.element_token

    def _secrets(self) -> list[str | None]:
        s = self._settings
        with self._token_lock:
            fetched = list(self._tokens.values())
        if s is None:
            return [self._element_token_arg, *fetched]
        return [s.user_secret, s.organization_secret, s.element_token, self._element_token_arg, *fetched]

    def _retry_policy_of(self, s: CloudElementsSettings) -> RetryPolicy:
        budget = self._retry_budget_arg if self._retry_budget_arg is not None else s.retry_budget
        # fail fast on a host that never answered in this process (a wrong Base URL), see client/retry.py
        unreachable = None if host_has_answered(s.base_url) else DEFAULT_UNREACHABLE_BUDGET
        return RetryPolicy(budget=budget, unreachable_budget=unreachable)

    def _call_plan(
        self, s: CloudElementsSettings, start: float, read_timeout: float | None = None
    ) -> tuple[RetryPolicy, float]:
        """Return the retry policy of a logical call started at ``start`` (monotonic seconds) and its end.

        The end is :func:`~..client.retry.call_deadline`: the retry budget, at least one read timeout.
        """
        policy = self._retry_policy_of(s)
        return policy, call_deadline(start, budget=policy.budget, read_timeout=read_timeout or s.read_timeout)

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

    def _known_token(self, s: CloudElementsSettings) -> tuple[str | None, int | None]:
        """Return ``(token, None)`` when the hub token is known without a call, else ``(None, instance_id)``.

        In the second case :meth:`_token_from_instance` must read the instance's token from
        ``GET /instances/{id}``.

        :raises CloudElementsConfigError: neither a token nor an instance id is configured.
        """
        static = self._static_token_of(s)
        if static:
            return static, None
        iid = self._instance_of(s)
        if iid is None:
            raise CloudElementsConfigError(
                "Hub calls need an element instance: pass instance_id or element_token to the hook, "
                "or set the "
                "connection extra instance_id or element_token"
            )
        with self._token_lock:
            token = self._tokens.get(iid)
        return (token, None) if token else (None, iid)

    def _token_from_instance(self, instance: Any, iid: int) -> str:
        """The element token of ``GET /instances/{iid}``'s JSON, masked, validated and cached.

        :raises CloudElementsApiError: no token in the JSON.
        :raises CloudElementsConfigError: a token that cannot go into a header.
        """
        if not isinstance(instance, Mapping) or not instance.get("token"):
            raise CloudElementsApiError(f"GET /instances/{iid} returned no element token")
        token = str(instance["token"])
        mask_secret(token)
        check_credential(token, "token", f"The instance JSON of GET /instances/{iid}:")
        self._cache_instance(instance)
        return token

    @staticmethod
    def _auth_of(s: CloudElementsSettings, token: str | None) -> _HeaderAuth:
        """The ``Authorization`` of a platform call (``token=None``) or a hub call (§1.2)."""
        if token is None:
            return _HeaderAuth(platform_authorization(s.user_secret, s.organization_secret))
        return _HeaderAuth(hub_authorization(s.user_secret, s.organization_secret, token))

    def _budget_of(self, s: CloudElementsSettings, hub: bool) -> RequestBudget:
        """The process-wide budget of the call's party: the SAME object for the sync and async hook."""
        party = budget_party(
            s.base_url,
            hub=hub,
            instance_id=self._instance_of(s),
            token=self._static_token_of(s) if hub else None,
            user_secret=s.user_secret,
        )
        return get_request_budget(
            party,
            max_per_minute=s.max_requests_per_minute,
            max_concurrent=s.max_concurrent_requests,
            store=s.budget_store,
        )

    # ------------------------------------------------------------------------------------ replies
    def _note_reply(self, s: CloudElementsSettings, headers: Mapping[str, str]) -> None:
        """A response arrived (any status): the host answers, and its ``Date`` is the server clock."""
        note_host_answered(s.base_url)
        when = parse_http_date(headers.get("Date"))
        if when is not None:
            self._server_date = (when, time.monotonic())

    def _error_of(
        self, s: CloudElementsSettings, reply: Reply, *, method: str, path: str, hub: bool
    ) -> CloudElementsApiError:
        """The typed, redacted exception of an error reply (:func:`~..client.protocol.error_from_reply`)."""
        return error_from_reply(
            reply.status_code,
            reply.headers,
            reply.content,
            method=method,
            path=path,
            instance_id=self._instance_of(s) if hub else None,
            hub=hub,
            secrets=self._secrets(),
            base_url=s.base_url,
        )

    def _ok(self, method: str, path: str, reply: Reply) -> Reply:
        log_reply(self.log, method, path, reply.status_code, reply.headers)
        return reply

    def _json(self, reply: Reply) -> Any:
        """The decoded JSON body (``None`` when empty).

        :raises CloudElementsApiError: not JSON (redacted excerpt).
        """
        return decode_json_reply(reply, self._secrets())

    def _retry_args(self, method: str, what: str, idempotent: bool) -> dict[str, Any]:
        """Arguments of :meth:`RetryPolicy.retrying` / :meth:`RetryPolicy.async_retrying` for one call.

        Plain HTTP 500s are retried for ``GET`` only (:func:`~..client.retry.retries_server_errors`).
        """
        return {
            "idempotent": idempotent,
            "logger": self.log,
            "what": what,
            "retry_server_error": retries_server_errors(method),
        }

    @contextlib.contextmanager
    def _converting_failures(
        self, s: CloudElementsSettings, *, what: str, idempotent: bool, start: float
    ) -> Iterator[None]:
        """Wrap one logical call (sync or async) so a transport error leaving it becomes a connection error.

        A transport error (no usable response, :func:`~..client.retry.is_transport_error`) becomes a redacted
        :class:`CloudElementsConnectionError` naming the host; anything else (the typed API errors included)
        passes unchanged.
        """
        try:
            yield
        except Exception as exc:
            if isinstance(exc, CloudElementsError) or not is_transport_error(exc):
                raise
            raise self._connection_error(s, exc, what=what, idempotent=idempotent, start=start) from exc

    def _connection_error(
        self, s: CloudElementsSettings, exc: BaseException, *, what: str, idempotent: bool, start: float
    ) -> CloudElementsConnectionError:
        """The :class:`CloudElementsConnectionError` of a call that got no usable response."""
        hint = "" if idempotent else " (not retried after the request may have been sent: POST is not idempotent)"
        message = transport_failure_message(
            what, exc, base_url=s.base_url, elapsed=time.monotonic() - start, described=_describe_transport(exc)
        )
        return CloudElementsConnectionError(redact(f"{message}{hint}", self._secrets()))

    def _server_time_value(self) -> datetime | None:
        if self._server_date is None:
            return None
        return self._server_date[0].astimezone(timezone.utc).replace(microsecond=0)


def _describe_transport(exc: BaseException) -> str:
    if isinstance(exc, TruncatedDownloadError):
        return f"download truncated: {exc}"
    if isinstance(exc, AttemptDeadlineError):
        return f"attempt deadline passed: {exc}"
    return type(exc).__name__
