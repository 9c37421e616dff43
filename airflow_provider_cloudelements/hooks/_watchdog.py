"""A total deadline for one synchronous HTTP attempt (``requests``/``urllib3``).

``requests`` only has per-socket-operation timeouts: a server that sends one byte every 0.5 s never
trips a 2 s read timeout, and a buffered ``read(n)`` keeps waiting for ``n`` bytes, so one call could
block for minutes. :class:`Watchdog` arms a timer for the attempt's deadline
(:func:`~airflow_provider_cloudelements.utils.retry.attempt_deadline`) once the request is sent: the
connection classes of :class:`DeadlineAdapter` hand their socket to the armed watchdog of the calling
thread/context right before the response is read, and when the timer fires the socket is shut down,
which wakes the blocked read at once. The hook then sees a transport error and raises
:class:`~airflow_provider_cloudelements.utils.retry.AttemptDeadlineError` (retried like a read timeout
inside the retry budget).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any

import requests.adapters
import urllib3
import urllib3.connection

_ACTIVE: ContextVar[Watchdog | None] = ContextVar("cloudelements_watchdog", default=None)


class Watchdog:
    """Shuts down the socket of the current attempt when its deadline passes.

    The clock starts when the request has been SENT (the connection hands over its socket right before
    reading the response): a large upload body is not cut off by its own transfer time, while the
    response (headers and body) must arrive by ``deadline_for(now)`` (monotonic seconds). Use as a
    context manager around the request and the body read; :attr:`fired` tells whether the deadline
    passed. :meth:`disarm` stops it early (e.g. a download once its headers arrived: the body is
    bounded by record caps, not by time).

    :param deadline_for: monotonic "now" when the request was sent -> monotonic deadline.
    """

    def __init__(self, deadline_for: Callable[[float], float]) -> None:
        self._deadline_for = deadline_for
        self.fired = False
        self.deadline: float | None = None
        self._sock: socket.socket | None = None
        self._timer: threading.Timer | None = None
        self._disarmed = False
        self._lock = threading.Lock()
        self._token: Any = None

    def __enter__(self) -> Watchdog:
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
        """Stop the timer; the socket is left alone from now on."""
        with self._lock:
            self._disarmed = True
            self._sock = None
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def attach(self, sock: socket.socket | None) -> None:
        """Watch ``sock`` from now on (called by the connection right before it reads the response)."""
        if sock is None:
            return
        now = time.monotonic()
        with self._lock:
            if self._disarmed:
                return
            self._sock = sock
            if self._timer is None:
                self.deadline = self._deadline_for(now)
                self._timer = threading.Timer(max(0.0, self.deadline - now), self._fire)
                self._timer.daemon = True
                self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._disarmed:
                return
            self.fired = True
            sock = self._sock
        if sock is not None:
            _shutdown(sock)


def _shutdown(sock: socket.socket) -> None:
    try:  # the plain-socket shutdown, also for an SSLSocket: wakes a recv blocked in another thread
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _Watched:
    """Mixin of the connection classes: report the socket to the armed watchdog before reading."""

    sock: socket.socket | None

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        dog = _ACTIVE.get()
        if dog is not None:
            dog.attach(self.sock)
        return super().getresponse(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(requests.adapters.HTTPAdapter):
    """:class:`requests.adapters.HTTPAdapter` whose connections report their socket to the armed
    :class:`Watchdog` (direct and HTTP-proxy connections; other proxies keep per-read timeouts only)."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, urllib3.ProxyManager):
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager
