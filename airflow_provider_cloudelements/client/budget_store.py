"""The deployment-wide request budget: rate and concurrency slots in a SQL database shared by every process.

The store is selected by the connection extra ``budget_store`` (docs/multi-tenant.md).
:func:`~.budget.get_request_budget` returns a :class:`SharedRequestBudget` when a hook's connection names
a store; it has the interface of :class:`~.budget.RequestBudget` (blocking :meth:`~SharedRequestBudget.acquire`
and ``await``-ing :meth:`~SharedRequestBudget.acquire_async`). Part of the client core: no Airflow import.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from airflow_provider_cloudelements.client.budget import (
    DEFAULT_MAX_CONCURRENT_REQUESTS,
    DEFAULT_MAX_REQUESTS_PER_MINUTE,
    WINDOW_SECONDS,
    RequestBudget,
)
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError

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

#: ``() -> SQLAlchemy URL`` of the Airflow metadata database, for ``budget_store="metadata"``
#: (installed by the hooks, which import Airflow; this module does not).
_metadata_url: Callable[[], str] | None = None


def set_metadata_url_resolver(resolver: Callable[[], str]) -> None:
    """Install how ``budget_store="metadata"`` finds its database URL.

    The hooks pass Airflow's ``[database] sql_alchemy_conn``.
    """
    global _metadata_url
    _metadata_url = resolver


def check_budget_store(
    value: Any, what: str = "Connection extra 'budget_store'", *, mask: Callable[[str], Any] | None = None
) -> str | None:
    """Validate a ``budget_store`` setting without ever echoing its value.

    Accepted: ``None``/``""``/``"process"`` → ``None`` (per process), ``"metadata"``, or a SQLAlchemy URL
    (its password, if any, is passed to ``mask``, e.g. Airflow's ``mask_secret``).

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
    if url.password and mask is not None:
        mask(str(url.password))
    return text


class SharedBudgetStore:
    """Rate and concurrency slots in a SQL database, shared by every process that uses the same URL.

    Tables (created on first use): ``cloudelements_budget_keys(budget_key)`` (one row per party, the
    per-key lock), ``cloudelements_budget_starts(budget_key, started_at)`` (request starts of the last
    60 s, wall-clock seconds) and ``cloudelements_budget_slots(budget_key, slot_id, lease_until)``
    (requests in flight). Each reservation is one short transaction that first ``UPDATE``-s the key's
    row, which serialises reservations of one party on PostgreSQL (row lock) and SQLite (write lock).
    A process that dies holding a slot gives it back after ``lease_seconds``.

    :param url: SQLAlchemy URL, or ``"metadata"`` for Airflow's ``[database] sql_alchemy_conn``
        (:func:`set_metadata_url_resolver`).
    :param lease_seconds: longest time one request may hold a concurrency slot (default 600).
    :param clock: wall-clock seconds (all processes must share it; injectable for tests).
    """

    def __init__(
        self, url: str, *, lease_seconds: float = DEFAULT_SLOT_LEASE_SECONDS, clock: Callable[[], float] = time.time
    ) -> None:
        import sqlalchemy as sa

        if url == METADATA_STORE:
            if _metadata_url is None:
                raise CloudElementsConfigError("budget_store 'metadata' needs Airflow's metadata database URL")
            url = _metadata_url()
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
    """:class:`RequestBudget` whose slots live in a :class:`SharedBudgetStore`.

    Same interface, sync and async; the async side runs the store calls in a worker thread.

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

    @asynccontextmanager
    async def acquire_async(self) -> AsyncIterator[None]:
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

    def in_window(self) -> int:
        """Requests started in the current 60-second window, across every process."""
        return self.store.in_window(self.key)


_STORES: dict[tuple[str, int], SharedBudgetStore] = {}
_STORES_LOCK = threading.Lock()


def get_budget_store(url: str) -> SharedBudgetStore:
    """Return the process's :class:`SharedBudgetStore` for ``url``.

    There is one engine per URL and process id, so a forked worker never reuses its parent's connections.
    """
    key = (url, os.getpid())
    with _STORES_LOCK:
        store = _STORES.get(key)
        if store is None:
            store = _STORES[key] = SharedBudgetStore(url)
        return store


def shared_budget(store: str, key: str, max_per_minute: int, max_concurrent: int) -> SharedRequestBudget:
    """Return a :class:`SharedRequestBudget` of ``key`` in the process's store for the ``budget_store`` value ``store``.

    The store comes from :func:`get_budget_store`.
    """
    return SharedRequestBudget(get_budget_store(store), key, max_per_minute, max_concurrent)
