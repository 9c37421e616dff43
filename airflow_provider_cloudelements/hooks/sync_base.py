"""The request machinery of the synchronous hook (:class:`httpx.Client`).

It covers one attempt, the retry loop, JSON calls and paged listings, element key and token resolution,
the server clock and the connection test. The API methods are mixins by area (:mod:`.platform`,
:mod:`.hub`, :mod:`.bulk`, :mod:`.events`) composed in :class:`~.cloudelements.CloudElementsHook`.

Every response has a TOTAL deadline (the read timeout once the request is sent, within the retry
budget; :class:`~..client.transport.AttemptDeadline`), so a trickling server cannot hold a call;
non-download bodies are capped at 16 MiB (``CloudElementsResponseTooLargeError``).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any, TypeVar

import httpx

from airflow_provider_cloudelements.client.paging import PageInfo, Pager
from airflow_provider_cloudelements.client.protocol import HUB_PREFIX, MAX_RESPONSE_BYTES, Reply, json_object, redact
from airflow_provider_cloudelements.client.retry import (
    AttemptDeadlineError,
    RetryPolicy,
    attempt_deadline,
)
from airflow_provider_cloudelements.client.transport import AttemptDeadline, BodyBuffer, sync_client
from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsConfigError,
    CloudElementsNotFoundError,
)
from airflow_provider_cloudelements.hooks.base import (
    CloudElementsBaseHook,
    CloudElementsSettings,
    settings_from_connection,
)

T = TypeVar("T")

TEST_CONNECTION_RETRY_BUDGET = 10.0  # seconds: a connection test must answer quickly
#: End (monotonic seconds) of the logical call the current attempt belongs to (set by ``_with_retry``).
_CALL_DEADLINE: ContextVar[float | None] = ContextVar("cloudelements_call_deadline", default=None)
_DEADLINE_TEXT = "the attempt deadline (the read timeout once the request was sent, within the retry budget)"


class CloudElementsSyncBase(CloudElementsBaseHook):
    """:class:`~.base.CloudElementsBaseHook` with blocking calls over a pooled :class:`httpx.Client`."""

    _client: httpx.Client | None

    # ------------------------------------------------------------------------------------ settings
    @property
    def settings(self) -> CloudElementsSettings:
        """Resolved connection settings (read once).

        :raises CloudElementsConfigError: see :func:`~.base.settings_from_connection`.
        """
        if self._settings is None:
            self._settings = settings_from_connection(self.get_connection(self.cloudelements_conn_id))
        return self._settings

    @property
    def base_url(self) -> str:
        """API base URL without trailing slash."""
        return self.settings.base_url

    @property
    def instance_id(self) -> int | None:
        """Element instance id: constructor argument, else the connection extra ``instance_id``."""
        return self._instance_of(self.settings)

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy of the next call (:mod:`~..client.retry`)."""
        return self._retry_policy_of(self.settings)

    @property
    def session(self) -> httpx.Client:
        """The hook's pooled :class:`httpx.Client` (:func:`~..client.transport.sync_client`)."""
        if self._client is None or self._client.is_closed:
            s = self.settings
            self._client = sync_client(connect_timeout=s.connect_timeout, read_timeout=s.read_timeout)
        return self._client

    def close(self) -> None:
        """Close the pooled HTTP client (a later call opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def _static_token(self) -> str | None:
        return self._static_token_of(self.settings)

    # ------------------------------------------------------------------------------------ auth
    def _hub_token(self) -> str:
        token, iid = self._known_token(self.settings)
        if token is not None:
            return token
        assert iid is not None
        return self._token_from_instance(self._call("GET", f"/instances/{iid}", hub=False), iid)

    def _fetch_instance(self, iid: int) -> Mapping[str, Any]:
        """``GET /instances/{iid}``: the instance JSON, its token and element key cached.

        :raises CloudElementsApiError: not an object.
        """
        instance = self._call("GET", f"/instances/{iid}", hub=False)
        if not isinstance(instance, Mapping):
            raise CloudElementsApiError(f"GET /instances/{iid} returned no instance object")
        self._cache_instance(instance)
        return instance

    @property
    def element_key(self) -> str | None:
        """Return the element key of the hook's instance (or of its element token) when already known, else ``None``.

        Makes no network call.
        """
        iid = self.instance_id
        if iid is not None:
            return self._element_keys.get(iid)
        return self._token_element_key

    def resolve_element_key(self) -> str | None:
        """Resolve the element key for element-specific behaviour (QBO ``OR`` check, cursor-only paging), once.

        It is fetched with ``GET /instances/{id}`` for a hook with an instance id (the call that fetches its
        token anyway), else ``GET /hubs/finance/ping`` for a hook with only an ``element_token`` (its
        ``endpoint`` names the element). ``None`` when neither is configured or the ping does not name the
        element.
        """
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
        self._fetch_instance(iid)
        key = self._element_keys.get(iid)
        if not key:
            raise CloudElementsApiError(f"GET /instances/{iid} did not name its element")
        return key

    def ping(self) -> dict[str, Any]:
        """``GET /hubs/finance/ping`` (§3.1): checks the instance is still connected."""
        return json_object(self._call("GET", f"{HUB_PREFIX}/ping", hub=True), f"GET {HUB_PREFIX}/ping")

    # ------------------------------------------------------------------------------------ core
    def _send_once(
        self,
        method: str,
        path: str,
        *,
        hub: bool,
        consume: Callable[[Reply], T] | None = None,
        stream_consume: Callable[[httpx.Response], T] | None = None,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        data: Any = None,
        files: Any = None,
        headers: Mapping[str, str] | None = None,
        read_timeout: float | None = None,
    ) -> T:
        """Make one attempt: send, then read and ``consume`` the whole body, or stream it to ``stream_consume``.

        The whole body is capped at ``MAX_RESPONSE_BYTES``; ``stream_consume`` gets the streamed response
        (bulk downloads).

        The response has a TOTAL deadline (:func:`~..client.retry.attempt_deadline`: the read timeout
        from the moment the request was sent, within the logical call's budget) enforced by an
        :class:`~..client.transport.AttemptDeadline` (connecting is bounded by the connect timeout); a
        streamed download is released from it once its headers arrived (its body is bounded by record
        counts and the per-read timeout).

        :raises AttemptDeadlineError: the deadline passed (retried like a read timeout).
        """
        s = self.settings
        auth = self._auth_of(s, self._hub_token() if hub else None)
        timeout = read_timeout or s.read_timeout
        request = self.session.build_request(
            method,
            s.base_url + path,
            params=params,
            json=json_body,
            data=data,
            files=files,
            headers=dict(headers or {}),
            timeout=httpx.Timeout(timeout, connect=s.connect_timeout),
        )
        with self._budget_of(s, hub).acquire():
            # the clock starts once the request is sent (connecting is bounded by connect_timeout)
            deadline_for = functools.partial(
                attempt_deadline, call_deadline=_CALL_DEADLINE.get(), connect_timeout=0.0, read_timeout=timeout
            )
            with AttemptDeadline(deadline_for) as clock:
                try:
                    resp = self.session.send(request, auth=auth, stream=True)
                except httpx.TransportError as exc:
                    if clock.fired:
                        raise AttemptDeadlineError(f"no response headers within {_DEADLINE_TEXT}") from exc
                    raise
                try:
                    self._note_reply(s, resp.headers)
                    if resp.status_code >= 400:
                        raise self._error_of(s, self._read_error(resp), method=method, path=path, hub=hub)
                    if stream_consume is not None:
                        self._ok(method, path, Reply(resp.status_code, resp.headers, b""))
                        clock.disarm()
                        return stream_consume(resp)
                    assert consume is not None
                    body = BodyBuffer(resp.headers, limit=MAX_RESPONSE_BYTES, what=f"{method} {path}")
                    for chunk in resp.iter_bytes(chunk_size=64 * 1024):
                        body.add(chunk)
                    return consume(self._ok(method, path, Reply(resp.status_code, resp.headers, body.content())))
                except httpx.TransportError as exc:
                    if clock.fired:
                        raise AttemptDeadlineError(f"response not complete within {_DEADLINE_TEXT}") from exc
                    raise
                finally:
                    resp.close()

    @staticmethod
    def _read_error(resp: httpx.Response) -> Reply:
        """The error response, its body cut at ``MAX_ERROR_BODY_BYTES`` (:meth:`BodyBuffer.for_error`)."""
        body = BodyBuffer.for_error(resp.headers)
        with contextlib.suppress(httpx.HTTPError):  # only an excerpt ends up in the exception
            any(body.add(chunk) for chunk in resp.iter_bytes(chunk_size=8192))
        return body.reply(resp.status_code)

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
        deadline (:func:`~..client.retry.call_deadline`: the retry budget, at least one read timeout).
        """
        s = self.settings
        idem = method.upper() != "POST" if idempotent is None else idempotent
        what, start = f"{method} {path}", time.monotonic()
        policy, call_end = self._call_plan(s, start, read_timeout)
        token = _CALL_DEADLINE.set(call_end)
        try:
            with self._converting_failures(s, what=what, idempotent=idem, start=start):
                for attempt in policy.retrying(**self._retry_args(method, what, idem)):
                    with attempt:
                        result = fn()
            return result
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

    def server_time(self) -> datetime | None:
        """Return the Cloud Elements server clock.

        It is the ``Date`` header of the most recent response (any status), else of a cheap call made now
        (``GET /hubs/finance/ping`` when the hook has an instance or element token, else
        ``GET /instances?pageSize=1``).

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
        return self._server_time_value()

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
        """Yield every record of a paged list (§3.3); rules in :class:`~..client.paging.Pager`."""
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

    # ------------------------------------------------------------------------------------ test
    def test_connection(self) -> tuple[bool, str]:
        """Test the connection for ``airflow connections test``; never raises, retries for at most 10 s.

        It calls ``GET /instances?pageSize=1`` with the platform header and, when an instance id or element
        token is configured, ``GET /hubs/finance/ping``.

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
