"""The request budget across processes (issue 17): several real processes (three sync "workers" and
one asyncio "triggerer") call the same element instance of the emulator, whose per-token rate limit
(``rate_limit_per_minute``) answers 429 above the limit.

With the connection extra ``budget_store`` (a SQLite file shared by the processes) the deployment as a
whole stays within the budget: no 429 at all, every request served, the extra requests wait for the
window. Without it (the default, per-process budgets) the same load gets 429s: the control that shows
the test can fail.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cloudelements_emulator import EmulatorConfig, EmulatorServer

from airflow_provider_cloudelements.client.budget_store import SharedBudgetStore, check_budget_store
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from tests.conftest import connection_json

LIMIT = 12  # requests per minute per token, at the emulator and in the client budget
PER_PROCESS = 4  # 4 processes x 4 = 16 requests: 4 more than one minute allows
PROCESSES = 4
PING = "GET /elements/api-v2/hubs/{hub}/ping"


@pytest.fixture(scope="module")
def budget_emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=1717, records_per_resource=2)) as server:
        server.state.set_faults(rate_limit_per_minute=LIMIT, path_prefix="/elements/api-v2/hubs")
        yield server


def _worker(conn: str, mode: str, n: int, barrier: Any, out: Any) -> None:
    """One process: ``n`` pings of the connection's instance, sync or (``mode="async"``) concurrently
    on one event loop like a triggerer. Puts ``(ok, throttled, other_errors, seconds)`` on ``out``."""
    os.environ["AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT"] = conn
    from airflow_provider_cloudelements.exceptions import CloudElementsThrottledError
    from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
    from airflow_provider_cloudelements.hooks.cloudelements_async import CloudElementsAsyncHook

    ok = throttled = other = 0
    if mode == "async":
        hook = CloudElementsAsyncHook(retry_budget=0)

        async def run() -> list[BaseException | dict[str, Any]]:
            await hook.get_settings()
            barrier.wait()
            try:
                return await asyncio.gather(*(hook.ping() for _ in range(n)), return_exceptions=True)
            finally:
                await hook.aclose()

        start = time.monotonic()
        results = asyncio.run(run())
    else:
        sync_hook = CloudElementsHook(retry_budget=0)
        sync_hook.get_instance(sync_hook.instance_id or 0)  # token lookup (a platform call) before the start
        barrier.wait()
        start = time.monotonic()
        results = []
        for _ in range(n):
            try:
                results.append(sync_hook.ping())
            except Exception as exc:  # counted below
                results.append(exc)
    for r in results:
        if isinstance(r, CloudElementsThrottledError):
            throttled += 1
        elif isinstance(r, BaseException):
            other += 1
        else:
            ok += 1
    out.put((ok, throttled, other, time.monotonic() - start))


def _run(emu: EmulatorServer, instance_id: int, store: str | None) -> tuple[list[tuple[int, int, int, float]], float]:
    extra: dict[str, Any] = {"instance_id": instance_id, "max_requests_per_minute": LIMIT}
    if store:
        extra["budget_store"] = store
    conn = connection_json(emu.base_url, emu.user_secret, emu.organization_secret, **extra)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    out = ctx.Queue()
    modes = ["sync"] * (PROCESSES - 1) + ["async"]
    procs = [ctx.Process(target=_worker, args=(conn, mode, PER_PROCESS, barrier, out)) for mode in modes]
    start = time.monotonic()
    for p in procs:
        p.start()
    results = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    return results, time.monotonic() - start


def test_shared_store_keeps_all_processes_within_the_rate_limit(
    budget_emulator: EmulatorServer, tmp_path: Path
) -> None:
    emu = budget_emulator
    inst = emu.state.create_instance("quickbooks", "budget-shared")
    before = emu.state.stats()
    results, _ = _run(emu, inst["id"], f"sqlite:///{tmp_path / 'budget.db'}")
    after = emu.state.stats()

    assert sum(r[0] for r in results) == PROCESSES * PER_PROCESS, results  # every ping served
    assert sum(r[1] + r[2] for r in results) == 0, results
    assert after["faults_injected"].get("rate_limit", 0) == before["faults_injected"].get("rate_limit", 0)
    served = after["requests"].get(PING, 0) - before["requests"].get(PING, 0)
    assert served == PROCESSES * PER_PROCESS  # no request was sent twice (no 429 then retry)
    # the requests beyond LIMIT waited for the 60-second window instead of being sent
    assert max(r[3] for r in results) >= 55

    store = SharedBudgetStore(f"sqlite:///{tmp_path / 'budget.db'}")
    starts = store.starts_of(f"{emu.base_url}|instance|{inst['id']}")
    assert len(starts) >= PROCESSES * PER_PROCESS - LIMIT  # the last minute's starts are still there
    for i, t in enumerate(starts):  # any 60-second window holds at most LIMIT starts
        assert sum(1 for u in starts[i:] if u < t + 60) <= LIMIT


def test_per_process_budgets_overrun_the_limit(budget_emulator: EmulatorServer) -> None:
    """Control: the default per-process budget lets each process spend the whole limit (429s)."""
    emu = budget_emulator
    inst = emu.state.create_instance("quickbooks", "budget-per-process")
    before = emu.state.stats()["faults_injected"].get("rate_limit", 0)
    results, _ = _run(emu, inst["id"], None)
    throttled = emu.state.stats()["faults_injected"].get("rate_limit", 0) - before
    assert throttled == PROCESSES * PER_PROCESS - LIMIT
    assert sum(r[1] for r in results) == throttled


def test_store_concurrency_slots_and_leases(tmp_path: Path) -> None:
    now = [1000.0]
    store = SharedBudgetStore(f"sqlite:///{tmp_path / 'b.db'}", lease_seconds=30, clock=lambda: now[0])
    a, _ = store.try_acquire("k", 100, 2)
    b, _ = store.try_acquire("k", 100, 2)
    assert a and b
    assert store.try_acquire("k", 100, 2) == (None, 0.0)  # two in flight: the cap
    assert store.try_acquire("other", 100, 2)[0] is not None  # other parties are independent
    store.release(a)
    c, _ = store.try_acquire("k", 100, 2)
    assert c is not None
    now[0] += 31  # b and c were never released (their process died): leases expire
    assert store.try_acquire("k", 100, 2)[0] is not None
    assert store.in_window("k") == 4
    now[0] += 0.5
    for _ in range(100 - 4):
        slot, wait = store.try_acquire("k", 100, 1000)
        assert slot is not None and wait == 0
    slot, wait = store.try_acquire("k", 100, 1000)
    assert slot is None and wait == pytest.approx(29.0)  # the first start (t=1000) leaves at t=1060.5 (margin)


@pytest.mark.parametrize("value", ["not a url", 42])
def test_bad_budget_store_is_a_config_error_without_the_value(value: Any) -> None:
    with pytest.raises(CloudElementsConfigError, match="budget_store") as err:
        check_budget_store(value)
    assert "not a url" not in str(err.value)


def test_budget_store_values() -> None:
    assert check_budget_store(None) is None
    assert check_budget_store(" process ") is None
    assert check_budget_store("metadata") == "metadata"
    assert check_budget_store("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_shared_budget_acquire_times_out_when_the_deployment_is_busy(tmp_path: Path) -> None:
    from airflow_provider_cloudelements.client.budget_store import SharedRequestBudget
    from airflow_provider_cloudelements.exceptions import CloudElementsThrottledError

    store = SharedBudgetStore(f"sqlite:///{tmp_path / 'b.db'}")
    other_process = SharedRequestBudget(store, "party", max_per_minute=100, max_concurrent=1)
    mine = SharedRequestBudget(store, "party", max_per_minute=100, max_concurrent=1)
    with other_process.acquire():
        with pytest.raises(CloudElementsThrottledError, match="shared"):
            with mine.acquire(timeout=0.3):
                pass
    with mine.acquire(timeout=0.3):  # released: free again
        assert mine.in_window() == 2


def _open_store(url: str, barrier: Any, out: Any) -> None:
    barrier.wait()
    store = SharedBudgetStore(url)
    out.put(store.try_acquire("k", 100, 100)[0] is not None)


def test_processes_creating_the_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Regression: concurrent first use raced on CREATE TABLE ("table ... already exists")."""
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(4), ctx.Queue()
    procs = [
        ctx.Process(target=_open_store, args=(f"sqlite:///{tmp_path / 'race.db'}", barrier, out)) for _ in range(4)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert [out.get(timeout=5) for _ in procs] == [True] * 4
