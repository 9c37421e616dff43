"""One RequestBudget for blocking callers and coroutines (client/budget.py): the concurrency slots and the
rate window are the same whether a thread or an event loop takes them."""

from __future__ import annotations

import asyncio
import threading

import pytest

from airflow_provider_cloudelements.client.budget import RequestBudget, budget_party, get_request_budget
from airflow_provider_cloudelements.exceptions import CloudElementsThrottledError


async def _take(budget: RequestBudget) -> str:
    async with budget.acquire_async():
        return "in"


def test_a_slot_held_by_a_thread_blocks_a_coroutine_until_released() -> None:
    budget = RequestBudget(1000, 1)
    held, release, done = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with budget.acquire():
            held.set()
            release.wait(10)
        done.set()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(10)

    async def main() -> str:
        task = asyncio.create_task(_take(budget))
        with pytest.raises(TimeoutError):  # the only slot is the thread's
            await asyncio.wait_for(asyncio.shield(task), 0.3)
        release.set()
        return await asyncio.wait_for(task, 0.8)  # woken by the release (well before the 1 s recheck)

    assert asyncio.run(main()) == "in"
    thread.join(10)
    assert done.is_set() and budget.in_window() == 2


def test_a_cancelled_waiter_leaves_nothing_behind() -> None:
    budget = RequestBudget(1000, 1)

    async def main() -> None:
        async with budget.acquire_async():
            waiter = asyncio.create_task(_take(budget))
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(waiter, 0.2)  # cancels the waiting coroutine
        assert waiter.cancelled()

    asyncio.run(main())
    assert budget._async_waiters == [] and budget._in_flight == 0
    with budget.acquire(timeout=0.5):  # the slot is free for a thread again
        pass


def test_the_registry_gives_both_hooks_the_same_budget() -> None:
    party = budget_party("http://x/elements/api-v2", hub=True, instance_id=7, token=None, user_secret="u")
    budget = get_request_budget(party, max_per_minute=3, max_concurrent=2)
    assert get_request_budget(party, max_per_minute=3, max_concurrent=2) is budget

    async def two() -> None:
        await _take(budget)
        await _take(budget)

    asyncio.run(two())
    with budget.acquire():
        pass
    assert budget.in_window() == 3
    with pytest.raises(CloudElementsThrottledError, match="3 requests/min spent"):  # the window is full for threads too
        with budget.acquire(timeout=0.2):
            pass
