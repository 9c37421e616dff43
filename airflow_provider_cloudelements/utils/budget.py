"""Client-side request budget: at most N requests per rolling minute and M in flight, per element
instance (user-needs §4 item 8).

Cloud Elements' QuickBooks/FreshBooks "bulk" and hub calls page the provider's API, so the provider's
limits apply (reference §4.4, §6.3). Intuit allows 500 requests per minute and 10 concurrent requests
per realm; staying under those on the client avoids 429/``ThrottleExceeded`` storms instead of
reacting to them. Budgets are shared process-wide per key (base URL + instance), so several hooks and
threads in one worker cooperate; the async variant is per event loop.

Across processes (several Celery/Local workers plus the triggerer) a per-process budget is spent once
per process. The connection extra ``budget_store`` selects a shared store instead
(:class:`SharedBudgetStore`, docs/multi-tenant.md): a SQLAlchemy URL (``sqlite:////shared/ce-budget.db``
on a shared path for local deployments, ``postgresql+psycopg2://…`` elsewhere) or ``metadata`` (the Airflow
metadata database, where the process has it configured: scheduler, triggerer, LocalExecutor workers).
Every process then takes its rate and concurrency slots from the same tables, so the limits hold for
the deployment as a whole.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

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
            self._slots.release()

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


#: ``budget_store`` values that keep the default per-process budget.
PROCESS_STORE = "process"
#: ``budget_store`` value selecting the Airflow metadata database.
METADATA_STORE = "metadata"
#: A concurrency slot of a process that died is given back after this many seconds.
DEFAULT_SLOT_LEASE_SECONDS = 600.0
#: Extra seconds a shared-store start stays in the window: processes on several hosts see slightly
#: different clocks and latencies, and the provider counts arrivals, not our start times.
SHARED_WINDOW_MARGIN_SECONDS = 0.5
_SLOT_POLL_SECONDS = (0.02, 0.25)  # first and largest wait between tries for a busy concurrency slot


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


def check_budget_store(value: Any, what: str = "Connection extra 'budget_store'") -> str | None:
    """Validate a ``budget_store`` setting: ``None``/``""``/``"process"`` → ``None`` (per process),
    ``"metadata"``, or a SQLAlchemy URL (its password, if any, is masked). Never echoes the value.

    :raises CloudElementsConfigError: not a string, or not a parseable SQLAlchemy URL.
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", PROCESS_STORE)):
        return None
    if not isinstance(value, str):
        raise CloudElementsConfigError(f"{what} must be a string ('process', 'metadata' or a SQLAlchemy URL)")
    text = value.strip()
    if text.lower() == METADATA_STORE:
        return METADATA_STORE
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise CloudElementsConfigError(
            f"{what} is neither 'process', 'metadata' nor a SQLAlchemy URL (e.g. sqlite:////shared/ce-budget.db)"
        ) from None
    if url.password:
        from airflow.sdk.log import mask_secret

        mask_secret(str(url.password))
    return text


class SharedBudgetStore:
    """Rate and concurrency slots in a SQL database, shared by every process that uses the same URL.

    Tables (created on first use): ``cloudelements_budget_keys(budget_key)`` (one row per party, the
    per-key lock), ``cloudelements_budget_starts(budget_key, started_at)`` (request starts of the last
    60 s, wall-clock seconds) and ``cloudelements_budget_slots(budget_key, slot_id, lease_until)``
    (requests in flight). Each reservation is one short transaction that first ``UPDATE``-s the key's
    row, which serialises reservations of one party on PostgreSQL (row lock) and SQLite (write lock).
    A process that dies holding a slot gives it back after ``lease_seconds``.

    :param url: SQLAlchemy URL, or ``"metadata"`` for Airflow's ``[database] sql_alchemy_conn``.
    :param lease_seconds: longest time one request may hold a concurrency slot (default 600).
    :param clock: wall-clock seconds (all processes must share it; injectable for tests).
    """

    def __init__(
        self, url: str, *, lease_seconds: float = DEFAULT_SLOT_LEASE_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        import sqlalchemy as sa

        if url == METADATA_STORE:
            from airflow.configuration import conf

            url = conf.get("database", "sql_alchemy_conn")
        self.lease_seconds = float(lease_seconds)
        self._clock = clock
        self._sa = sa
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 60}
        self.engine = sa.create_engine(url, pool_pre_ping=True, **kwargs)
        if url.startswith("sqlite"):

            @sa.event.listens_for(self.engine, "connect")
            def _wal(dbapi_conn: Any, _record: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.close()

        meta = sa.MetaData()
        self.keys = sa.Table(
            "cloudelements_budget_keys", meta, sa.Column("budget_key", sa.String(200), primary_key=True)
        )
        self.starts = sa.Table(
            "cloudelements_budget_starts",
            meta,
            sa.Column("budget_key", sa.String(200), nullable=False, index=True),
            sa.Column("started_at", sa.Float, nullable=False),
        )
        self.slots = sa.Table(
            "cloudelements_budget_slots",
            meta,
            sa.Column("slot_id", sa.String(36), primary_key=True),
            sa.Column("budget_key", sa.String(200), nullable=False, index=True),
            sa.Column("lease_until", sa.Float, nullable=False),
        )
        for attempt in range(3):
            try:
                meta.create_all(self.engine, checkfirst=True)
                break
            except sa.exc.DBAPIError:  # another process created a table between check and CREATE
                names = set(sa.inspect(self.engine).get_table_names())
                if {t.name for t in meta.sorted_tables} <= names:
                    break
                if attempt == 2:
                    raise
        self._known: set[str] = set()

    def _ensure_key(self, key: str) -> None:
        if key in self._known:
            return
        sa = self._sa
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(self.keys.c.budget_key).where(self.keys.c.budget_key == key)).first()
        if found is None:
            try:
                with self.engine.begin() as conn:
                    conn.execute(self.keys.insert().values(budget_key=key))
            except sa.exc.IntegrityError:  # another process inserted it first
                pass
        self._known.add(key)

    def try_acquire(self, key: str, max_per_minute: int, max_concurrent: int) -> tuple[str | None, float]:
        """Take a concurrency slot and a rate slot for ``key`` now, or say how long to wait.

        :returns: ``(slot_id, 0.0)`` on success (give the slot back with :meth:`release`), else
            ``(None, seconds)``: the rate window frees in ``seconds``, or ``0.0`` when only the
            concurrency cap is reached (poll again shortly).
        """
        sa = self._sa
        self._ensure_key(key)
        with self.engine.begin() as conn:
            conn.execute(
                self.keys.update().where(self.keys.c.budget_key == key).values(budget_key=self.keys.c.budget_key)
            )
            now = self._clock()
            window = WINDOW_SECONDS + SHARED_WINDOW_MARGIN_SECONDS
            conn.execute(
                self.starts.delete().where(self.starts.c.budget_key == key, self.starts.c.started_at <= now - window)
            )
            conn.execute(self.slots.delete().where(self.slots.c.budget_key == key, self.slots.c.lease_until < now))
            in_flight = conn.execute(
                sa.select(sa.func.count()).select_from(self.slots).where(self.slots.c.budget_key == key)
            ).scalar_one()
            if in_flight >= max_concurrent:
                return None, 0.0
            count, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(self.starts.c.started_at)).where(self.starts.c.budget_key == key)
            ).one()
            if count >= max_per_minute:
                return None, max(float(oldest) + window - now, 0.001)
            slot_id = str(uuid.uuid4())
            conn.execute(self.starts.insert().values(budget_key=key, started_at=now))
            conn.execute(
                self.slots.insert().values(slot_id=slot_id, budget_key=key, lease_until=now + self.lease_seconds)
            )
            return slot_id, 0.0

    def release(self, slot_id: str) -> None:
        """Give a concurrency slot back (idempotent)."""
        with self.engine.begin() as conn:
            conn.execute(self.slots.delete().where(self.slots.c.slot_id == slot_id))

    def in_window(self, key: str) -> int:
        """Requests of ``key`` started in the last 60 s, across every process."""
        sa = self._sa
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(self.starts)
                    .where(self.starts.c.budget_key == key, self.starts.c.started_at > self._clock() - WINDOW_SECONDS)
                ).scalar_one()
            )

    def starts_of(self, key: str) -> list[float]:
        """Wall-clock start times (seconds) of ``key``'s requests still in the store, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                self._sa.select(self.starts.c.started_at)
                .where(self.starts.c.budget_key == key)
                .order_by(self.starts.c.started_at)
            )
            return [float(r[0]) for r in rows]


def _next_poll(previous: float) -> float:
    return min(max(previous * 2, _SLOT_POLL_SECONDS[0]), _SLOT_POLL_SECONDS[1])


class SharedRequestBudget(RequestBudget):
    """:class:`RequestBudget` whose slots live in a :class:`SharedBudgetStore` (same interface).

    :param store: the shared store.
    :param key: the party's key (:func:`budget_party` joined), no secrets.
    :raises CloudElementsConfigError: for non-positive limits.
    """

    def __init__(
        self,
        store: SharedBudgetStore,
        key: str,
        max_per_minute: int = DEFAULT_MAX_REQUESTS_PER_MINUTE,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(max_per_minute, max_concurrent, clock=time.monotonic, sleep=sleep)
        self.store = store
        self.key = key

    @contextmanager
    def acquire(self, *, timeout: float | None = None) -> Iterator[None]:
        """Hold one concurrency slot and one rate slot, deployment-wide, for the duration of a request.

        :param timeout: seconds to wait at most, ``None`` = no limit.
        :raises CloudElementsThrottledError: when ``timeout`` passes before a slot is free.
        """
        deadline = None if timeout is None else self._clock() + timeout
        poll = 0.0
        slot: str | None = None

        def take() -> float:
            nonlocal slot, poll
            slot, wait = self.store.try_acquire(self.key, self.max_per_minute, self.max_concurrent)
            if slot is None and wait <= 0:  # only the concurrency cap: poll again shortly
                wait = poll = _next_poll(poll)
            return 0.0 if slot is not None else wait

        self._wait_for(
            take,
            deadline,
            lambda _wait: (
                f"Client-side budget (shared): no free slot within {timeout} s "
                f"({self.max_per_minute} requests/min, {self.max_concurrent} in flight)"
            ),
        )
        assert slot is not None
        try:
            yield
        finally:
            self.store.release(slot)

    def in_window(self) -> int:
        """Requests started in the current 60-second window, across every process."""
        return self.store.in_window(self.key)


class AsyncSharedRequestBudget(AsyncRequestBudget):
    """The asyncio twin of :class:`SharedRequestBudget` (store calls run in a worker thread)."""

    def __init__(
        self,
        store: SharedBudgetStore,
        key: str,
        max_per_minute: int = DEFAULT_MAX_REQUESTS_PER_MINUTE,
        max_concurrent: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
    ) -> None:
        super().__init__(max_per_minute, max_concurrent)
        self.store = store
        self.key = key

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[None]:
        """Hold one concurrency slot and one rate slot, deployment-wide, for the duration of a request."""
        poll = 0.0
        while True:
            slot, wait = await asyncio.to_thread(
                self.store.try_acquire, self.key, self.max_per_minute, self.max_concurrent
            )
            if slot is not None:
                break
            if wait <= 0:
                wait = poll = _next_poll(poll)
            await asyncio.sleep(wait)
        try:
            yield
        finally:
            await asyncio.to_thread(self.store.release, slot)


_REGISTRY: dict[Hashable, RequestBudget] = {}
_REGISTRY_LOCK = threading.Lock()
_STORES: dict[tuple[str, int], SharedBudgetStore] = {}


def get_budget_store(url: str) -> SharedBudgetStore:
    """The process's :class:`SharedBudgetStore` for ``url`` (one engine per URL and process id, so a
    forked worker never reuses its parent's connections)."""
    key = (url, os.getpid())
    with _REGISTRY_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = SharedBudgetStore(url)
        return store


def _store_key(key: Hashable) -> str:
    return "|".join(map(str, key)) if isinstance(key, tuple) else str(key)


def get_request_budget(
    key: Hashable,
    *,
    max_per_minute: int = DEFAULT_MAX_REQUESTS_PER_MINUTE,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
    store: str | None = None,
) -> RequestBudget:
    """The process-wide :class:`RequestBudget` for ``key`` (e.g. ``(base_url, instance_id)``), created
    on first use. Hooks configured with different limits get different budgets.

    :param key: hashable identity of the rate-limited party; must not contain a secret.
    :param store: ``None`` (per process, the default) or a ``budget_store`` value
        (:func:`check_budget_store`): the budget is then a :class:`SharedRequestBudget`.
    """
    # a shared budget holds a database engine: never reuse one inherited from a parent process (fork)
    full_key = (key, int(max_per_minute), int(max_concurrent), store, os.getpid() if store else None)
    with _REGISTRY_LOCK:
        budget = _REGISTRY.get(full_key)
    if budget is None:
        fresh: RequestBudget = (
            RequestBudget(max_per_minute, max_concurrent)
            if store is None
            else SharedRequestBudget(get_budget_store(store), _store_key(key), max_per_minute, max_concurrent)
        )
        with _REGISTRY_LOCK:
            budget = _REGISTRY.setdefault(full_key, fresh)
    return budget


def new_async_request_budget(
    key: Hashable,
    *,
    max_per_minute: int = DEFAULT_MAX_REQUESTS_PER_MINUTE,
    max_concurrent: int = DEFAULT_MAX_CONCURRENT_REQUESTS,
    store: str | None = None,
) -> AsyncRequestBudget:
    """A fresh async budget for one hook: per event loop (:class:`AsyncRequestBudget`) by default, the
    shared store's (:class:`AsyncSharedRequestBudget`) with ``store``. ``key`` as for
    :func:`get_request_budget`."""
    if store is None:
        return AsyncRequestBudget(max_per_minute, max_concurrent)
    return AsyncSharedRequestBudget(get_budget_store(store), _store_key(key), max_per_minute, max_concurrent)
