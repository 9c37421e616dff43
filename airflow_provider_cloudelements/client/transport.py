"""The HTTP transport of the client core: httpx clients (sync and async), timeouts, TLS, pooling, body caps.

It also holds the one TLS context per process and the total deadline of one sync attempt.

* **One library**: both hooks use httpx (:func:`sync_client` → :class:`httpx.Client`,
  :func:`async_client` → :class:`httpx.AsyncClient`), one pooled client per hook (a new client per
  request costs a TLS context and a connection each time: ~10 ms CPU per trigger poll,
  benchmarks/RESULTS.md).
* **Timeouts** (seconds): connect :data:`DEFAULT_CONNECT_TIMEOUT` (10), between bytes
  :data:`DEFAULT_READ_TIMEOUT` (120), bulk downloads at least :data:`BULK_DOWNLOAD_READ_TIMEOUT` (300).
* **Total deadline**: httpx's timeouts are per socket operation, so a server sending one byte every
  0.5 s never trips a 2 s read timeout. A sync attempt runs inside an :class:`AttemptDeadline`: the
  network streams of :func:`sync_client` cut every read to the time left once the request has been
  SENT (``deadline_for(now)``, :func:`~.retry.attempt_deadline`) and raise a read timeout when it has
  passed; the hook then raises :class:`~.retry.AttemptDeadlineError` (retried like a read timeout
  inside the retry budget). The async hook wraps each attempt in ``asyncio.timeout`` instead.
  Connections through a proxy from the environment keep the per-read timeouts only.
* **Body caps**: a non-download body is refused beyond ``MAX_RESPONSE_BYTES`` (16 MiB, by
  ``Content-Length`` before reading, else while reading: :class:`BodyBuffer`); an error body is read to
  ``MAX_ERROR_BODY_BYTES`` (64 KiB) at most.

Part of the client core: no Airflow import.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any

import httpcore
import httpx

from airflow_provider_cloudelements import __version__
from airflow_provider_cloudelements.client.protocol import H_REQUEST_ID, MAX_ERROR_BODY_BYTES, Reply, header_int
from airflow_provider_cloudelements.exceptions import CloudElementsResponseTooLargeError

DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds: a TCP+TLS handshake to CE takes well under 1 s; 10 s = network trouble
DEFAULT_READ_TIMEOUT = 120.0  # seconds between bytes: CE pages the provider synchronously, QBO/QBE pages can be slow
BULK_DOWNLOAD_READ_TIMEOUT = 300.0  # seconds: CE may assemble a bulk file before the first byte
USER_AGENT = f"airflow-provider-cloudelements/{__version__}"

_ACTIVE: ContextVar[AttemptDeadline | None] = ContextVar("cloudelements_attempt_deadline", default=None)


@functools.lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """Return the one TLS context of the process, with httpx's default CA bundle (certifi).

    Building one per client costs ~0.9 MB and 10-17 ms CPU: 1,000 deferred triggers would hold ~0.9 GB
    (benchmarks/RESULTS.md, triggers).
    """
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def client_timeout(*, connect_timeout: float, read_timeout: float) -> httpx.Timeout:
    """Build the httpx timeouts of a client.

    ``connect_timeout`` seconds to connect, ``read_timeout`` seconds for every read, write and pool wait.
    """
    return httpx.Timeout(read_timeout, connect=connect_timeout)


def _client_kwargs(connect_timeout: float, read_timeout: float) -> dict[str, Any]:
    return {
        "timeout": client_timeout(connect_timeout=connect_timeout, read_timeout=read_timeout),
        "headers": {"User-Agent": USER_AGENT, "Accept": "application/json"},
        "follow_redirects": True,  # httpx drops the Authorization header on a redirect to another origin
    }


def sync_client(
    *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, read_timeout: float = DEFAULT_READ_TIMEOUT
) -> httpx.Client:
    """A pooled :class:`httpx.Client` whose reads honour the active :class:`AttemptDeadline`.

    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds between bytes (a request may pass its own).
    """
    transport = httpx.HTTPTransport(verify=ssl_context())
    pool = getattr(transport, "_pool", None)  # httpcore.ConnectionPool: its streams get the deadline
    backend = getattr(pool, "_network_backend", None)
    if pool is not None and backend is not None:
        pool._network_backend = _DeadlineBackend(backend)
    return httpx.Client(transport=transport, **_client_kwargs(connect_timeout, read_timeout))


def async_client(
    *, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT, read_timeout: float = DEFAULT_READ_TIMEOUT
) -> httpx.AsyncClient:
    """A pooled :class:`httpx.AsyncClient` (the caller bounds each attempt with ``asyncio.timeout``).

    :param connect_timeout: seconds to establish a connection.
    :param read_timeout: seconds between bytes.
    """
    return httpx.AsyncClient(verify=ssl_context(), **_client_kwargs(connect_timeout, read_timeout))


class AttemptDeadline:
    """The total deadline of one sync attempt, around the request and the body read in the calling thread.

    Use it as ``with AttemptDeadline(deadline_for) as clock:``.

    The clock starts when the request has been SENT (at the first read of the response): a large
    upload body is not cut off by its own transfer time, while the response (headers and body) must
    arrive by ``deadline_for(now)`` (monotonic seconds). :attr:`fired` tells whether the deadline cut
    a read; :meth:`disarm` stops it early (e.g. a download once its headers arrived: the body is
    bounded by record caps and the per-read timeout, not by time).

    :param deadline_for: monotonic "now" when the request was sent -> monotonic deadline.
    """

    def __init__(self, deadline_for: Callable[[float], float]) -> None:
        self._deadline_for = deadline_for
        self.deadline: float | None = None
        self.fired = False
        self._disarmed = False
        self._token: Token[AttemptDeadline | None] | None = None

    def __enter__(self) -> AttemptDeadline:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disarm()
        if self._token is not None:
            _ACTIVE.reset(self._token)
            self._token = None

    def disarm(self) -> None:
        """Stop enforcing the deadline; reads keep their per-read timeout only."""
        self._disarmed = True

    def left(self) -> float | None:
        """Seconds left (<= 0: passed), starting the clock on the first call; ``None`` once disarmed."""
        if self._disarmed:
            return None
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = self._deadline_for(now)
        return self.deadline - now


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose reads end by the deadline of the active :class:`AttemptDeadline`."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        clock = _ACTIVE.get()
        left = clock.left() if clock is not None else None
        if clock is None or left is None:
            return self._stream.read(max_bytes, timeout)
        if left <= 0:
            clock.fired = True
            raise httpcore.ReadTimeout("the attempt deadline passed")
        try:
            return self._stream.read(max_bytes, left if timeout is None else min(timeout, left))
        except httpcore.ReadTimeout:
            now_left = clock.left()
            if now_left is not None and now_left <= 0:
                clock.fired = True
            raise

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """Wraps httpcore's network backend so every stream is a :class:`_DeadlineStream`."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self._backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._backend.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


# --------------------------------------------------------------------------------------------- bodies
def check_body_size(headers: Mapping[str, str], *, received: int, limit: int, what: str) -> None:
    """Refuse a response body beyond ``limit`` bytes.

    Checked by its ``Content-Length`` before reading (when announced) or by the bytes ``received`` so far.

    :param headers: response headers.
    :param received: bytes read so far (0 before reading).
    :param limit: the cap (``MAX_RESPONSE_BYTES`` for JSON calls).
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


class BodyBuffer:
    """Collects a response body chunk by chunk up to a cap.

    The sync and async hooks feed it from ``iter_bytes()`` / ``aiter_bytes()``.

    :param headers: response headers (``Content-Length`` beyond ``limit`` is refused before reading).
    :param limit: the cap in bytes.
    :param what: the call, for the message.
    :param truncate: keep the first ``limit`` bytes and report :attr:`full` instead of raising (error
        bodies: only an excerpt is used).
    :raises CloudElementsResponseTooLargeError: from the constructor or :meth:`add`, unless ``truncate``.
    """

    def __init__(self, headers: Mapping[str, str], *, limit: int, what: str, truncate: bool = False) -> None:
        self.headers, self.limit, self.what, self.truncate = headers, limit, what, truncate
        self._body = bytearray()
        if not truncate:
            check_body_size(headers, received=0, limit=limit, what=what)

    @classmethod
    def for_error(cls, headers: Mapping[str, str]) -> BodyBuffer:
        """A buffer for an error body: the first ``MAX_ERROR_BODY_BYTES`` bytes."""
        return cls(headers, limit=MAX_ERROR_BODY_BYTES, what="error body", truncate=True)

    @property
    def full(self) -> bool:
        """A truncating buffer holds ``limit`` bytes: stop reading."""
        return self.truncate and len(self._body) >= self.limit

    def add(self, chunk: bytes) -> bool:
        """Append ``chunk``; return :attr:`full` (a truncating buffer has enough: stop reading).

        :raises CloudElementsResponseTooLargeError: past the cap (unless ``truncate``).
        """
        self._body += chunk
        if len(self._body) > self.limit and not self.truncate:
            check_body_size(self.headers, received=len(self._body), limit=self.limit, what=self.what)
        return self.full

    def content(self) -> bytes:
        """The bytes collected (at most ``limit`` for a truncating buffer)."""
        return bytes(self._body[: self.limit] if self.truncate else self._body)

    def reply(self, status_code: int) -> Reply:
        """The response as a :class:`~.protocol.Reply` with the bytes collected."""
        return Reply(status_code, self.headers, self.content())
