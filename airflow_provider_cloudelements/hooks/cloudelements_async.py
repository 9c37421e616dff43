"""Asynchronous hook (httpx) for triggers: only idempotent polling calls plus best-effort cancel.

Same connection settings, headers, error mapping, retry policy (:mod:`..utils.retry`, via
``tenacity.AsyncRetrying``), pagination rules (:class:`..utils.http.Pager`) and client-side budget
(:class:`..utils.budget.AsyncRequestBudget`) as :class:`~.cloudelements.CloudElementsHook`. The
connection is resolved with ``get_async_connection`` / ``get_async_extra_dejson`` (the sync lookup
raises inside the triggerer's event loop, see airflow-provider-guide "Imports"). Never does a POST
(a trigger may run twice after a triggerer restart, airflow#67945).
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import time
from collections.abc import Mapping
from datetime import datetime
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
from airflow_provider_cloudelements.utils.budget import AsyncRequestBudget
from airflow_provider_cloudelements.utils.http import (
    H_REQUEST_ID,
    HUB_PREFIX,
    PageInfo,
    Pager,
    exception_for_response,
    excerpt,
    hub_authorization,
    json_object,
    parse_error_body,
    parse_retry_after,
    platform_authorization,
    redact,
)
from airflow_provider_cloudelements.utils.retry import RETRY_AFTER_ATTR, RetryPolicy, is_transport_error


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
            self._token = str(token)
            token = self._token
        return hub_authorization(s.user_secret, s.organization_secret, token)

    def _budget(self, hub: bool, s: CloudElementsSettings) -> AsyncRequestBudget:
        budget = self._budgets.get(hub)
        if budget is None:
            budget = self._budgets[hub] = AsyncRequestBudget(s.max_requests_per_minute, s.max_concurrent_requests)
        return budget

    async def _send_once(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        hub: bool,
        params: Mapping[str, Any] | None,
    ) -> httpx.Response:
        s = await self.get_settings()
        authorization = await self._authorization(hub)
        async with self._budget(hub, s).acquire():
            resp = await client.request(
                method, s.base_url + path, params=params, headers={"Authorization": authorization}
            )
        if resp.status_code >= 400:
            info = parse_error_body(
                resp.content,
                content_type=resp.headers.get("Content-Type"),
                request_id_header=resp.headers.get(H_REQUEST_ID),
                secrets=self._secrets(),
            )
            exc = exception_for_response(
                resp.status_code,
                info,
                method=method,
                path=path,
                instance_id=await self.get_instance_id() if hub else None,
                hub=hub,
            )
            setattr(exc, RETRY_AFTER_ATTR, parse_retry_after(resp.headers.get("Retry-After")))
            raise exc
        self.log.debug(
            "Cloud Elements %s %s -> %s (requestId=%s)",
            method,
            path,
            resp.status_code,
            resp.headers.get(H_REQUEST_ID),
        )
        return resp

    async def _request(
        self, method: str, path: str, *, hub: bool, params: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        s = await self.get_settings()
        budget = self._retry_budget_arg if self._retry_budget_arg is not None else s.retry_budget
        policy = RetryPolicy(budget=budget)
        what = f"{method} {path}"
        start = time.monotonic()
        try:
            client = await self._http_client(s)
            async for attempt in policy.async_retrying(idempotent=method != "POST", logger=self.log, what=what):
                with attempt:
                    resp = await self._send_once(client, method, path, hub=hub, params=params)
            return resp
        except CloudElementsError:
            raise
        except Exception as exc:
            if not is_transport_error(exc):
                raise
            raise CloudElementsConnectionError(
                redact(
                    f"Cloud Elements {what}: no usable response ({type(exc).__name__}) after "
                    f"{time.monotonic() - start:.1f} s",
                    self._secrets(),
                )
            ) from exc

    async def _call(self, method: str, path: str, *, hub: bool, params: Mapping[str, Any] | None = None) -> Any:
        resp = await self._request(method, path, hub=hub, params=params)
        return self._decode(resp)

    def _decode(self, resp: httpx.Response) -> Any:
        if not resp.content.strip():
            return None
        try:
            return json.loads(resp.content)
        except ValueError:
            snippet = redact(excerpt(resp.text), self._secrets())
            raise CloudElementsApiError(
                f"Cloud Elements answered HTTP {resp.status_code} with a non-JSON body: {snippet}",
                status_code=resp.status_code,
                request_id=resp.headers.get(H_REQUEST_ID),
            ) from None

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
        pager = Pager(path, event_window_params(since, until), page_size=size, logger=self.log)
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
