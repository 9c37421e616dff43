"""Client-side request budget: at most N requests per rolling minute and M in flight, per element
instance (user-needs §4 item 8).

Cloud Elements' QuickBooks/FreshBooks "bulk" and hub calls page the provider's API, so the provider's
limits apply (reference §4.4, §6.3). Intuit allows 500 requests per minute and 10 concurrent requests
per realm; staying under those on the client avoids 429/``ThrottleExceeded`` storms instead of
reacting to them. Budgets are shared process-wide per key (base URL + instance), so several hooks and
threads in one worker cooperate; the async variant is per event loop.
"""

from __future__ import annotations

import asyncio
import collections
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
            "Request budget must be positive "
            f"(max_per_minute={max_per_minute}, max_concurrent={max_concurrent})"
        )


class RequestBudget:
    """Thread-safe rolling-window rate limit plus a concurrency cap.

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
        self._starts: collections.deque[float] = collections.deque()
        self._slots = threading.BoundedSemaphore(self.max_concurrent)
        self.waited_seconds = 0.0  # total time callers spent waiting for the rate window

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
        if not self._slots.acquire(timeout=timeout):
            raise CloudElementsThrottledError(
                f"Client-side budget: no free concurrency slot within {timeout} s ({self.max_concurrent} max)"
            )
        try:
            while True:
                wait = self._reserve()
                if wait <= 0:
                    break
                if deadline is not None and self._clock() + wait > deadline:
                    raise CloudElementsThrottledError(
                        f"Client-side budget: {self.max_per_minute} requests/min spent; a slot frees in "
                        f"{wait:.1f} s, beyond the {timeout} s timeout"
                    )
                self.waited_seconds += wait
                self._sleep(wait)
            yield
        finally:
            self._slots.release()

    def in_window(self) -> int:
        """Requests started in the current 60-second window."""
        with self._lock:
            now = self._clock()
            return sum(1 for t in self._starts if t > now - WINDOW_SECONDS)


class AsyncRequestBudget:
    """The asyncio twin of :class:`RequestBudget` (one instance per event loop; not thread-safe).

    :param max_per_minute: requests allowed in any 60-second window (default 500).
    :param max_concurrent: requests allowed in flight at once (default 10).
    :param clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        max_per_minute: int = DEFAULT_MAX_REQUESTS_PER_MINUTE,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _validate(max_per_minute, max_concurrent)
        self.max_per_minute = int(max_per_minute)
        self.max_concurrent = int(max_concurrent)
        self._clock = clock
        self._starts: collections.deque[float] = collections.deque()
        self._slots: asyncio.Semaphore | None = None

    def _reserve(self) -> float:
        now = self._clock()
        while self._starts and self._starts[0] <= now - WINDOW_SECONDS:
            self._starts.popleft()
        if len(self._starts) < self.max_per_minute:
            self._starts.append(now)
            return 0.0
        return self._starts[0] + WINDOW_SECONDS - now

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[None]:
        """Hold one concurrency slot and one rate slot for the duration of a request."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrent)
        async with self._slots:
            while (wait := self._reserve()) > 0:
                await asyncio.sleep(wait)
            yield


_REGISTRY: dict[Hashable, RequestBudget] = {}
_REGISTRY_LOCK = threading.Lock()


def get_request_budget(
    key: Hashable,
    *,
    max_per_minute: int = DEFAULT_MAX_REQUESTS_PER_MINUTE,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
) -> RequestBudget:
    """The process-wide :class:`RequestBudget` for ``key`` (e.g. ``(base_url, instance_id)``), created
    on first use. Hooks configured with different limits get different budgets.

    :param key: hashable identity of the rate-limited party; must not contain a secret.
    """
    full_key = (key, int(max_per_minute), int(max_concurrent))
    with _REGISTRY_LOCK:
        budget = _REGISTRY.get(full_key)
        if budget is None:
            budget = _REGISTRY[full_key] = RequestBudget(max_per_minute, max_concurrent)
        return budget
