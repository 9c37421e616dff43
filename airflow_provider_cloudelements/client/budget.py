"""Client-side request budget per element instance: at most N requests per rolling minute and M in flight.

Cloud Elements' QuickBooks/FreshBooks "bulk" and hub calls page the provider's API, so the provider's
limits apply (reference §4.4, §6.3). Intuit allows 500 requests per minute and 10 concurrent requests
per realm; staying under those on the client avoids 429/``ThrottleExceeded`` storms instead of
reacting to them. Budgets are shared process-wide per key (base URL + instance) by ONE registry
(:func:`get_request_budget`) for the sync and the async hook alike: several hooks, threads and event
loops in one process (a worker, the triggerer with all its triggers) draw from the same budget, through
:meth:`RequestBudget.acquire` (blocking) or :meth:`RequestBudget.acquire_async` (``await``).

Across processes (several Celery/Local workers plus the triggerer) a per-process budget is spent once
per process. The connection extra ``budget_store`` selects a shared store instead
(:class:`~.budget_store.SharedBudgetStore`, docs/multi-tenant.md): a SQLAlchemy URL (``sqlite:////shared/ce-budget.db``
on a shared path for local deployments, ``postgresql+psycopg2://…`` elsewhere) or ``metadata`` (the Airflow
metadata database, where the process has it configured: scheduler, triggerer, LocalExecutor workers).
Every process then takes its rate and concurrency slots from the same tables, so the limits hold for
the deployment as a whole.

Part of the client core: no Airflow import (``budget_store="metadata"`` is resolved through
:func:`~.budget_store.set_metadata_url_resolver`, installed by the hooks).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsThrottledError

DEFAULT_MAX_REQUESTS_PER_MINUTE = 500  # Intuit QBO: 500 requests / minute / realm
DEFAULT_MAX_CONCURRENT_REQUESTS = 10  # Intuit QBO: 10 concurrent requests / realm
WINDOW_SECONDS = 60.0


def _validate(max_per_minute: int, max_concurrent: int) -> None:
    if int(max_per_minute) <= 0 or int(max_concurrent) <= 0:
        raise CloudElementsConfigError(
            f"Request budget must be positive (max_per_minute={max_per_minute}, max_concurrent={max_concurrent})"
        )


class RequestBudget:
    """Thread-safe rolling-window rate limit plus a concurrency cap.

    Serves blocking callers (:meth:`acquire`) and coroutines on any event loop (:meth:`acquire_async`) at
    once, from the same slots.

    :param max_per_minute: requests allowed in any 60-second window (default 500).
    :param max_concurrent: requests allowed in flight at once (default 10).
    :param clock: monotonic clock in seconds (injectable for tests).
    :param sleep: sleep function in seconds (injectable for tests).
    :raises CloudElementsConfigError: for non-positive limits.
    """

    def __init__(
        self,
        max_per_minute: int = DEFAULT_MAX_REQUESTS_PER_MINUTE,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        _validate(max_per_minute, max_concurrent)
        self.max_per_minute = int(max_per_minute)
        self.max_concurrent = int(max_concurrent)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)  # notified when a concurrency slot is given back
        self._starts: collections.deque[float] = collections.deque()
        self._in_flight = 0
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.waited_seconds = 0.0  # total time callers spent waiting for the rate window

    def _take_slot(self) -> bool:
        """Take a concurrency slot if one is free (the caller holds ``_lock``)."""
        if self._in_flight < self.max_concurrent:
            self._in_flight += 1
            return True
        return False

    def _give_slot(self) -> None:
        """Give a concurrency slot back and wake the waiters (threads and coroutines)."""
        with self._lock:
            self._in_flight -= 1
            self._freed.notify()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # its event loop has closed meanwhile
                loop.call_soon_threadsafe(_wake, future)

    def _reserve(self) -> float:
        """Reserve a start slot now, or return how long to wait (> 0) before trying again."""
        with self._lock:
            now = self._clock()
            while self._starts and self._starts[0] <= now - WINDOW_SECONDS:
                self._starts.popleft()
            if len(self._starts) < self.max_per_minute:
                self._starts.append(now)
                return 0.0
            return self._starts[0] + WINDOW_SECONDS - now

    @contextmanager
    def acquire(self, *, timeout: float | None = None) -> Iterator[None]:
        """Hold one concurrency slot and one rate slot for the duration of a request.

        :param timeout: seconds to wait at most, ``None`` = no limit.
        :raises CloudElementsThrottledError: when ``timeout`` passes before a slot is free.
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._freed:
            if not self._freed.wait_for(self._take_slot, timeout=timeout):
                raise CloudElementsThrottledError(
                    f"Client-side budget: no free concurrency slot within {timeout} s ({self.max_concurrent} max)"
                )
        try:
            self._wait_for(
                self._reserve,
                deadline,
                lambda wait: (
                    f"Client-side budget: {self.max_per_minute} requests/min spent; a slot frees in "
                    f"{wait:.1f} s, beyond the {timeout} s timeout"
                ),
            )
            yield
        finally:
            self._give_slot()

    @asynccontextmanager
    async def acquire_async(self) -> AsyncIterator[None]:
        """:meth:`acquire` for a coroutine: waits with ``await``, never blocking the event loop.

        It draws from the same slots and rate window as blocking callers in other threads.
        """
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if self._take_slot():
                    break
                waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] = (loop, loop.create_future())
                self._async_waiters.append(waiter)
            try:  # woken by _give_slot; the timeout is a safety net, the slot is looked at again anyway
                await asyncio.wait_for(waiter[1], _ASYNC_SLOT_RECHECK_SECONDS)
            except TimeoutError:
                pass
            finally:  # also when cancelled: never leave a waiter behind
                with self._lock:
                    if waiter in self._async_waiters:
                        self._async_waiters.remove(waiter)
        try:
            while (wait := self._reserve()) > 0:
                self.waited_seconds += wait
                await asyncio.sleep(wait)
            yield
        finally:
            self._give_slot()

    def _wait_for(self, take: Callable[[], float], deadline: float | None, message: Callable[[float], str]) -> None:
        """Call ``take`` (0 = got the slot, else seconds to wait) until it succeeds, sleeping in between.

        :raises CloudElementsThrottledError: ``message(wait)`` when the next wait would pass ``deadline``.
        """
        while (wait := take()) > 0:
            if deadline is not None and self._clock() + wait > deadline:
                raise CloudElementsThrottledError(message(wait))
            self.waited_seconds += wait
            self._sleep(wait)

    def in_window(self) -> int:
        """Requests started in the current 60-second window."""
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._starts if t > now - WINDOW_SECONDS)


_ASYNC_SLOT_RECHECK_SECONDS = 1.0  # a coroutine waiting for a concurrency slot looks again at least this often


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def budget_party(
    base_url: str, *, hub: bool, instance_id: int | None, token: str | None, user_secret: str
) -> tuple[str, str, str]:
    """The rate-limited party of a call, as a key without secrets (shared by the sync and async hooks).

    Hub calls: ``(base_url, "instance", id)`` or, with a bare element token, ``(base_url, "token",
    sha256(token)[:16])``; platform calls: ``(base_url, "platform", sha256(user_secret)[:16])``.
    """
    if not hub:
        return (base_url, "platform", hashlib.sha256(user_secret.encode()).hexdigest()[:16])
    if instance_id is not None:
        return (base_url, "instance", str(instance_id))
    return (base_url, "token", hashlib.sha256((token or "").encode()).hexdigest()[:16])


_REGISTRY: dict[Hashable, RequestBudget] = {}
_REGISTRY_LOCK = threading.Lock()


def _store_key(key: Hashable) -> str:
    return "|".join(map(str, key)) if isinstance(key, tuple) else str(key)


def get_request_budget(
    key: Hashable,
    *,
    max_per_minute: int = DEFAULT_MAX_REQUESTS_PER_MINUTE,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
    store: str | None = None,
) -> RequestBudget:
    """Return the process-wide :class:`RequestBudget` for ``key`` (e.g. ``(base_url, instance_id)``).

    The budget is created on first use and used by the sync AND the async hook (the same scope: one budget
    per party and process, whatever the thread or event loop). Hooks configured with different limits get
    different budgets.

    :param key: hashable identity of the rate-limited party; must not contain a secret.
    :param store: ``None`` (per process, the default) or a ``budget_store`` value
        (:func:`~.budget_store.check_budget_store`): the budget is then a
        :class:`~.budget_store.SharedRequestBudget`.
    """
    from airflow_provider_cloudelements.client.budget_store import shared_budget

    # a shared budget holds a database engine: never reuse one inherited from a parent process (fork)
    full_key = (key, int(max_per_minute), int(max_concurrent), store, os.getpid() if store else None)
    with _REGISTRY_LOCK:
        budget = _REGISTRY.get(full_key)
    if budget is None:
        fresh: RequestBudget = (
            RequestBudget(max_per_minute, max_concurrent)
            if store is None
            else shared_budget(store, _store_key(key), max_per_minute, max_concurrent)
        )
        with _REGISTRY_LOCK:
            budget = _REGISTRY.setdefault(full_key, fresh)
    return budget
