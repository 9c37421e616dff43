"""Asynchronous hook (:class:`httpx.AsyncClient`) for triggers: only idempotent polling calls plus best-effort cancel.

Everything but the event loop is shared with :class:`~.cloudelements.CloudElementsHook` through
:class:`~.base.CloudElementsBaseHook`: connection settings (and credential validation), the
``element_token`` argument and token lookup, instance-id validation, headers, error mapping (redacted
before it is truncated), the retry policy (:mod:`..client.retry`, via ``tenacity.AsyncRetrying``),
the 16 MiB body cap, pagination rules (:class:`..client.paging.Pager`, event listings cursor-only) and
the client-side budget: the SAME process-wide budget as the sync hook (:mod:`..client.budget`), so a
triggerer's triggers share one 500 requests/min budget per instance instead of one each. Each attempt
has a total deadline (``asyncio.timeout``). The connection is resolved with ``get_async_connection`` /
``get_async_extra_dejson`` (the sync lookup raises inside the triggerer's event loop). Never does a
POST (a trigger may run twice after a triggerer restart, airflow#67945).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx
from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

from airflow_provider_cloudelements.client.paging import PageInfo, Pager
from airflow_provider_cloudelements.client.protocol import HUB_PREFIX, MAX_RESPONSE_BYTES, Reply, json_object
from airflow_provider_cloudelements.client.retry import AttemptDeadlineError, attempt_deadline
from airflow_provider_cloudelements.client.transport import BodyBuffer, async_client
from airflow_provider_cloudelements.exceptions import CloudElementsApiError
from airflow_provider_cloudelements.hooks.base import (
    CloudElementsBaseHook,
    CloudElementsSettings,
    settings_from_connection,
)
from airflow_provider_cloudelements.hooks.events import (
    check_event_window,
    event_window_params,
    events_path,
    matching_events,
)
from airflow_provider_cloudelements.hooks.params import check_page_size, job_path


class CloudElementsAsyncHook(CloudElementsBaseHook):
    """Async twin of :class:`~.cloudelements.CloudElementsHook` for deferrable triggers.

    :param cloudelements_conn_id: Airflow connection of type ``cloudelements`` (same extras as the
        sync hook).
    :param instance_id: element instance for hub/bulk calls (overrides the connection extra).
    :param element_token: element token for hub/bulk calls (overrides the connection extra); when
        neither gives a token it is fetched once with ``GET /instances/{instance_id}``.
    :param retry_budget: override the connection's retry time budget (seconds).
    :raises CloudElementsConfigError: bad ``instance_id``, ``element_token`` or ``retry_budget``.
    """

    hook_name = "Cloud Elements (async)"

    _client: httpx.AsyncClient | None

    async def _http_client(self, s: CloudElementsSettings) -> httpx.AsyncClient:
        """One pooled client per hook (:func:`~..client.transport.async_client`)."""
        if self._client is None or self._client.is_closed:
            self._client = async_client(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout)
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
        return self._instance_of(await self.get_settings())

    async def _hub_token(self, s: CloudElementsSettings) -> str:
        token, iid = self._known_token(s)
        if token is not None:
            return token
        assert iid is not None
        return self._token_from_instance(await self._call("GET", f"/instances/{iid}", hub=False), iid)

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
        """Make one attempt, all of it (connect, headers, body) within its total deadline.

        The deadline is :func:`~..client.retry.attempt_deadline`; the body is capped at ``MAX_RESPONSE_BYTES``.

        :raises AttemptDeadlineError: the deadline passed (retried like a read timeout).
        """
        s = await self.get_settings()
        auth = self._auth_of(s, await self._hub_token(s) if hub else None)
        async with self._budget_of(s, hub).acquire_async():
            now = time.monotonic()
            deadline = attempt_deadline(
                now, call_deadline=call_end, connect_timeout=s.connect_timeout, read_timeout=s.read_timeout
            )
            try:
                async with asyncio.timeout(deadline - now):
                    resp = await client.send(
                        client.build_request(method, s.base_url + path, params=params), auth=auth, stream=True
                    )
                    try:
                        self._note_reply(s, resp.headers)
                        if resp.status_code >= 400:
                            raise self._error_of(s, await self._read_error(resp), method=method, path=path, hub=hub)
                        body = BodyBuffer(resp.headers, limit=MAX_RESPONSE_BYTES, what=f"{method} {path}")
                        async for chunk in resp.aiter_bytes():
                            body.add(chunk)
                    finally:
                        await resp.aclose()
            except TimeoutError as exc:  # asyncio.timeout; httpx's own timeouts are httpx.TimeoutException
                raise AttemptDeadlineError(
                    f"response not complete within {deadline - now:.1f} s (attempt deadline)"
                ) from exc
        return self._ok(method, path, Reply(resp.status_code, resp.headers, body.content()))

    @staticmethod
    async def _read_error(resp: httpx.Response) -> Reply:
        """:meth:`CloudElementsHook._read_error` for the async client."""
        body = BodyBuffer.for_error(resp.headers)
        try:
            async for chunk in resp.aiter_bytes():
                if body.add(chunk):
                    break
        except httpx.HTTPError:
            pass
        return body.reply(resp.status_code)

    async def _request(self, method: str, path: str, *, hub: bool, params: Mapping[str, Any] | None = None) -> Reply:
        s = await self.get_settings()
        what, idempotent, start = f"{method} {path}", method != "POST", time.monotonic()
        policy, call_end = self._call_plan(s, start)
        with self._converting_failures(s, what=what, idempotent=idempotent, start=start):
            client = await self._http_client(s)
            async for attempt in policy.async_retrying(**self._retry_args(method, what, idempotent)):
                with attempt:
                    reply = await self._send_once(client, method, path, hub=hub, params=params, call_end=call_end)
        return reply

    async def _call(self, method: str, path: str, *, hub: bool, params: Mapping[str, Any] | None = None) -> Any:
        return self._json(await self._request(method, path, hub=hub, params=params))

    async def server_time(self) -> datetime | None:
        """Return the server clock like :meth:`CloudElementsHook.server_time`, as aware UTC floored to the second.

        It is the ``Date`` of the most recent response, else of ``GET /hubs/finance/ping`` (instance or token
        configured) or ``GET /instances?pageSize=1``; ``None`` without a ``Date``.
        """
        if self._server_date is None:
            s = await self.get_settings()
            try:
                if self._static_token_of(s) or self._instance_of(s) is not None:
                    await self.ping()
                else:
                    await self._call("GET", "/instances", hub=False, params={"pageSize": 1})
            except CloudElementsApiError:
                if self._server_date is None:
                    raise
        return self._server_time_value()

    # ------------------------------------------------------------------------------------ API
    async def get_bulk_status(self, job_id: str) -> dict[str, Any]:
        """``GET /hubs/finance/bulk/{id}/status`` (§4.1): raw status JSON."""
        path = f"{HUB_PREFIX}/bulk/{job_path(job_id)}/status"
        return json_object(await self._call("GET", path, hub=True), f"GET {path}")

    async def cancel_bulk_job(self, job_id: str) -> None:
        """``PUT /hubs/finance/bulk/{id}/cancel`` (§4.1)."""
        await self._call("PUT", f"{HUB_PREFIX}/bulk/{job_path(job_id)}/cancel", hub=True)
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
        """Return all events of ``GET /instances/{id}/events`` (or ``/instances/events`` without an instance).

        Paged (§3.3, §5.6) and filtered client-side like :meth:`CloudElementsHook.iter_events`.

        :param page_size: records per page (default: connection ``page_size``).
        :return: matching event records (a list: triggers need the whole poll result).
        :raises CloudElementsConfigError: a bad ``instance_id``, ``since``, ``until`` or ``page_size``.
        """
        s = await self.get_settings()
        size = check_page_size(page_size if page_size is not None else s.page_size)
        check_event_window(since, until)
        path = events_path(self._instance_arg_or(instance_id, self._instance_of(s)))
        pager = Pager(path, event_window_params(since, until), page_size=size, logger=self.log, cursor_only=True)
        out: list[dict[str, Any]] = []
        while (query := pager.next_params()) is not None:
            reply = await self._request("GET", path, hub=False, params=query)
            page = pager.feed(PageInfo.from_response(self._json(reply), reply.headers))
            out.extend(
                matching_events(page, since=since, until=until, object_types=object_types, event_types=event_types)
            )
            await asyncio.sleep(0)
        pager.finish()
        return out
