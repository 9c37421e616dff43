"""Asynchronous hook (httpx) for triggers: only idempotent polling calls plus best-effort cancel.

Same connection settings (and credential validation), headers, error mapping (redacted before it is
truncated), retry policy (:mod:`..utils.retry`, via ``tenacity.AsyncRetrying``: plain 500s on GETs
retried 3 times, ``Retry-After`` 0/negative/past falls back to the backoff), per-attempt total deadline
(``asyncio.timeout``), 16 MiB body cap, pagination rules (:class:`..utils.http.Pager`, event listings
cursor-only) and client-side budget (:class:`..utils.budget.AsyncRequestBudget`) as
:class:`~.cloudelements.CloudElementsHook`. The
connection is resolved with ``get_async_connection`` / ``get_async_extra_dejson`` (the sync lookup
raises inside the triggerer's event loop, see airflow-provider-guide "Imports"). Never does a POST
(a trigger may run twice after a triggerer restart, airflow#67945).
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import httpx
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson
from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsConfigError,
    CloudElementsConnectionError,
    CloudElementsError,
    as_instance_id,
)
from airflow_provider_cloudelements.hooks.cloudelements import (
    CONN_TYPE,
    USER_AGENT,
    CloudElementsSettings,
    check_page_size,
    event_matches,
    event_window_params,
    settings_from_connection,
)
from airflow_provider_cloudelements.utils import ceql
from airflow_provider_cloudelements.utils.budget import AsyncRequestBudget, budget_party, new_async_request_budget
from airflow_provider_cloudelements.utils.http import (
    HUB_PREFIX,
    MAX_ERROR_BODY_BYTES,
    MAX_RESPONSE_BYTES,
    PageInfo,
    Pager,
    Reply,
    check_body_size,
    check_credential,
    decode_json_reply,
    error_from_reply,
    hub_authorization,
    json_object,
    log_reply,
    parse_http_date,
    platform_authorization,
    redact,
    transport_failure_message,
)
from airflow_provider_cloudelements.utils.retry import (
    AttemptDeadlineError,
    RetryPolicy,
    attempt_deadline,
    call_deadline,
    is_transport_error,
    retries_server_errors,
)


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process, with httpx's default CA bundle (certifi). Building one per
    client costs ~0.9 MB and 10-17 ms CPU: 1,000 deferred triggers would hold ~0.9 GB
    (benchmarks/RESULTS.md, triggers)."""
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


class CloudElementsAsyncHook(BaseHook):
    """Async twin of :class:`~.cloudelements.CloudElementsHook` for deferrable triggers.

    :param cloudelements_conn_id: Airflow connection of type ``cloudelements`` (same extras as the
        sync hook).
    :param instance_id: element instance for hub/bulk calls (overrides the connection extra).
    :param retry_budget: override the connection's retry time budget (seconds).
    """

    conn_name_attr = "cloudelements_conn_id"
    default_conn_name = "cloudelements_default"
    conn_type = CONN_TYPE
    hook_name = "Cloud Elements (async)"

    def __init__(
        self,
        cloudelements_conn_id: str = default_conn_name,
        *,
        instance_id: int | None = None,
        retry_budget: float | None = None,
    ) -> None:
        super().__init__()
        self.cloudelements_conn_id = cloudelements_conn_id
        self._instance_id_arg = as_instance_id(instance_id) if instance_id is not None else None
        self._retry_budget_arg = retry_budget
        self._settings: CloudElementsSettings | None = None
        self._token: str | None = None
        self._budgets: dict[bool, AsyncRequestBudget] = {}
        self._client: httpx.AsyncClient | None = None
        self._server_date: datetime | None = None  # Date header of the most recent response

    async def _http_client(self, s: CloudElementsSettings) -> httpx.AsyncClient:
        """One pooled client per hook (a new client per request costs an SSL context and a
        connection each time: ~10 ms CPU per trigger poll, benchmarks/RESULTS.md)."""
        if self._client is None or self._client.is_closed:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(s.read_timeout, connect=s.connect_timeout),
                headers={"User-Agent": USER_AGENT},
                verify=_ssl_context(),
            )
        return self._client

    async def aclose(self) -> None:
        """Close the pooled HTTP client (triggers call this when they stop)."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> CloudElementsAsyncHook:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"<{name} conn_id={self.cloudelements_conn_id!r} instance_id={self._instance_id_arg}>"

    async def get_settings(self) -> CloudElementsSettings:
        """Resolve (once) and validate the connection.

        :raises CloudElementsConfigError: wrong type, missing secrets, bad numbers.
        """
        if self._settings is None:
            conn = await get_async_connection(self.cloudelements_conn_id, hook=self)
            extras = await get_async_extra_dejson(conn)
            self._settings = settings_from_connection(conn, extras)
        return self._settings

    async def get_instance_id(self) -> int | None:
        """Constructor ``instance_id``, else the connection extra."""
        if self._instance_id_arg is not None:
            return self._instance_id_arg
        return (await self.get_settings()).instance_id

    def _secrets(self) -> list[str | None]:
        s = self._settings
        if s is None:
            return [self._token]
        return [s.user_secret, s.organization_secret, s.element_token, self._token]

    async def _authorization(self, hub: bool) -> str:
        s = await self.get_settings()
        if not hub:
            return platform_authorization(s.user_secret, s.organization_secret)
        token = s.element_token or self._token
        if not token:
            iid = await self.get_instance_id()
            if iid is None:
                raise CloudElementsConfigError(
                    "Hub calls need an element instance: pass instance_id or set the connection extra "
                    "instance_id or element_token"
                )
            instance = await self._call("GET", f"/instances/{iid}", hub=False)
            token = instance.get("token") if isinstance(instance, Mapping) else None
            if not token:
                raise CloudElementsApiError(f"GET /instances/{iid} returned no element token")
            mask_secret(str(token))
            check_credential(str(token), "token", f"The instance JSON of GET /instances/{iid}:")
            self._token = str(token)
            token = self._token
        return hub_authorization(s.user_secret, s.organization_secret, token)

    def _budget(self, hub: bool, s: CloudElementsSettings) -> AsyncRequestBudget:
        budget = self._budgets.get(hub)
        if budget is None:
            instance_id = self._instance_id_arg if self._instance_id_arg is not None else s.instance_id
            party = budget_party(
                s.base_url,
                hub=hub,
                instance_id=instance_id,
                token=s.element_token if hub else None,
                user_secret=s.user_secret,
            )
            budget = self._budgets[hub] = new_async_request_budget(
                party,
                max_per_minute=s.max_requests_per_minute,
                max_concurrent=s.max_concurrent_requests,
                store=s.budget_store,
            )
        return budget

    async def _send_once(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        hub: bool,
        params: Mapping[str, Any] | None,
        call_end: float,
    ) -> Reply:
        """One attempt, all of it (connect, headers, body) within its total deadline
        (:func:`~..utils.retry.attempt_deadline`), the body capped at :data:`MAX_RESPONSE_BYTES`.

        :raises AttemptDeadlineError: the deadline passed (retried like a read timeout).
        """
        s = await self.get_settings()
        authorization = await self._authorization(hub)
        what = f"{method} {path}"
        async with self._budget(hub, s).acquire():
            now = time.monotonic()
            deadline = attempt_deadline(
                now, call_deadline=call_end, connect_timeout=s.connect_timeout, read_timeout=s.read_timeout
            )
            try:
                async with asyncio.timeout(deadline - now):
                    request = client.build_request(
                        method, s.base_url + path, params=params, headers={"Authorization": authorization}
                    )
                    resp = await client.send(request, stream=True)
                    try:
                        when = parse_http_date(resp.headers.get("Date"))
                        if when is not None:
                            self._server_date = when
                        if resp.status_code >= 400:
                            raise await self._error_from(resp, method=method, path=path, hub=hub)
                        check_body_size(resp.headers, received=0, limit=MAX_RESPONSE_BYTES, what=what)
                        body = bytearray()
                        async for chunk in resp.aiter_bytes():
                            body += chunk
                            if len(body) > MAX_RESPONSE_BYTES:
                                check_body_size(resp.headers, received=len(body), limit=MAX_RESPONSE_BYTES, what=what)
                    finally:
                        await resp.aclose()
            except TimeoutError as exc:  # asyncio.timeout; httpx's own timeouts are httpx.TimeoutException
                raise AttemptDeadlineError(
                    f"response not complete within {deadline - now:.1f} s (attempt deadline)"
                ) from exc
        log_reply(self.log, method, path, resp.status_code, resp.headers)
        return Reply(resp.status_code, resp.headers, bytes(body))

    async def _error_from(self, resp: httpx.Response, *, method: str, path: str, hub: bool) -> CloudElementsApiError:
        body = bytearray()
        try:  # only an excerpt ends up in the exception: read at most MAX_ERROR_BODY_BYTES
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) >= MAX_ERROR_BODY_BYTES:
                    break
        except httpx.HTTPError:
            pass
        return error_from_reply(
            resp.status_code,
            resp.headers,
            bytes(body),
            method=method,
            path=path,
            instance_id=await self.get_instance_id() if hub else None,
            hub=hub,
            secrets=self._secrets(),
            base_url=(await self.get_settings()).base_url,
        )

    async def _request(self, method: str, path: str, *, hub: bool, params: Mapping[str, Any] | None = None) -> Reply:
        s = await self.get_settings()
        budget = self._retry_budget_arg if self._retry_budget_arg is not None else s.retry_budget
        policy = RetryPolicy(budget=budget)
        what = f"{method} {path}"
        start = time.monotonic()
        call_end = call_deadline(start, budget=policy.budget, read_timeout=s.read_timeout)
        try:
            client = await self._http_client(s)
            retrying = policy.async_retrying(
                idempotent=method != "POST",
                logger=self.log,
                what=what,
                retry_server_error=retries_server_errors(method),
            )
            async for attempt in retrying:
                with attempt:
                    resp = await self._send_once(client, method, path, hub=hub, params=params, call_end=call_end)
            return resp
        except CloudElementsError:
            raise
        except Exception as exc:
            if not is_transport_error(exc):
                raise
            detail = f"attempt deadline passed: {exc}" if isinstance(exc, AttemptDeadlineError) else type(exc).__name__
            message = transport_failure_message(
                what, exc, base_url=s.base_url, elapsed=time.monotonic() - start, described=detail
            )
            raise CloudElementsConnectionError(redact(message, self._secrets())) from exc

    async def _call(self, method: str, path: str, *, hub: bool, params: Mapping[str, Any] | None = None) -> Any:
        return self._decode(await self._request(method, path, hub=hub, params=params))

    def _decode(self, resp: Reply) -> Any:
        return decode_json_reply(resp, self._secrets())

    async def server_time(self) -> datetime | None:
        """The server clock like :meth:`CloudElementsHook.server_time`: the ``Date`` of the most recent
        response, else of ``GET /hubs/finance/ping`` (instance or token configured) or
        ``GET /instances?pageSize=1``; aware UTC floored to the second, ``None`` without a ``Date``."""
        if self._server_date is None:
            s = await self.get_settings()
            try:
                if s.element_token or await self.get_instance_id() is not None:
                    await self.ping()
                else:
                    await self._call("GET", "/instances", hub=False, params={"pageSize": 1})
            except CloudElementsApiError:
                if self._server_date is None:
                    raise
        if self._server_date is None:
            return None
        return self._server_date.astimezone(timezone.utc).replace(microsecond=0)

    # ------------------------------------------------------------------------------------ API
    async def get_bulk_status(self, job_id: str) -> dict[str, Any]:
        """``GET /hubs/finance/bulk/{id}/status`` (§4.1): raw status JSON."""
        path = f"{HUB_PREFIX}/bulk/{_job(job_id)}/status"
        return json_object(await self._call("GET", path, hub=True), f"GET {path}")

    async def cancel_bulk_job(self, job_id: str) -> None:
        """``PUT /hubs/finance/bulk/{id}/cancel`` (§4.1)."""
        await self._call("PUT", f"{HUB_PREFIX}/bulk/{_job(job_id)}/cancel", hub=True)
        self.log.info("Cancelled bulk job %s", job_id)

    async def ping(self) -> dict[str, Any]:
        """``GET /hubs/finance/ping`` (§3.1)."""
        return json_object(await self._call("GET", f"{HUB_PREFIX}/ping", hub=True), f"GET {HUB_PREFIX}/ping")

    async def list_events(
        self,
        *,
        instance_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        object_types: list[str] | None = None,
        event_types: list[str] | None = None,
        page_size: int | None = None,
    ) -> list[dict[str, Any]]:
        """All events of ``GET /instances/{id}/events`` (or ``/instances/events`` without an instance),
        paged (§3.3, §5.6) and filtered client-side like :meth:`CloudElementsHook.iter_events`.

        :param page_size: records per page (default: connection ``page_size``).
        :return: matching event records (a list: triggers need the whole poll result).
        """
        s = await self.get_settings()
        size = check_page_size(page_size if page_size is not None else s.page_size)
        for value, what in ((since, "since"), (until, "until")):
            if value is not None:
                ceql.to_datetime(value, what=what)
        iid = instance_id if instance_id is not None else await self.get_instance_id()
        path = f"/instances/{int(iid)}/events" if iid is not None else "/instances/events"
        pager = Pager(path, event_window_params(since, until), page_size=size, logger=self.log, cursor_only=True)
        out: list[dict[str, Any]] = []
        while (query := pager.next_params()) is not None:
            resp = await self._request("GET", path, hub=False, params=query)
            for event in pager.feed(PageInfo.from_response(self._decode(resp), resp.headers)):
                if isinstance(event, Mapping) and event_matches(
                    event, since=since, until=until, object_types=object_types, event_types=event_types
                ):
                    out.append(dict(event))
            await asyncio.sleep(0)
        pager.finish()
        return out


def _job(job_id: str) -> str:
    if job_id is None or not str(job_id).strip():
        raise CloudElementsConfigError("job_id must not be empty")
    return quote(str(job_id).strip(), safe="")
