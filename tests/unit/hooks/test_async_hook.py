"""CloudElementsAsyncHook on its own, over real HTTP against the emulator: bulk status and cancel, event
listings, the ``element_token`` argument, and the client-side budget it shares with the sync hook."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsNotFoundError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.hooks.cloudelements_async import CloudElementsAsyncHook

from .conftest import requests_to

INSTANCE = "GET /elements/api-v2/instances/{instance_id}"
PING = "GET /elements/api-v2/hubs/{hub}/ping"


def truth_job(emu: Any, inst: dict[str, Any], job_id: str) -> dict[str, Any]:
    """The emulator's own record of a bulk job (what the API serves for it)."""
    return emu.state.bulk.get(emu.state.instances.get(inst["id"]), job_id)


async def _with(hook: CloudElementsAsyncHook, coro: Callable[[CloudElementsAsyncHook], Any]) -> Any:
    async with hook:
        return await coro(hook)


def test_bulk_status_is_the_emulators_job(emu: Any, conn: Callable[..., str]) -> None:
    inst = emu.state.create_instance("quickbooks", "async-status")
    job = CloudElementsHook(conn(), instance_id=inst["id"]).start_bulk_query("customers")
    status = asyncio.run(
        _with(CloudElementsAsyncHook(conn(), instance_id=inst["id"]), lambda h: h.get_bulk_status(job))
    )
    truth = truth_job(emu, inst, job)
    assert status["id"] == truth["id"] == job
    assert status["status"] == truth["status"] and status["status"] in ("CREATED", "RUNNING")  # 60 s minimum
    assert status["job_query"] == truth["job_query"] == "select * from customers"
    with pytest.raises(CloudElementsNotFoundError):
        asyncio.run(
            _with(CloudElementsAsyncHook(conn(), instance_id=inst["id"]), lambda h: h.get_bulk_status("999999"))
        )


def test_cancel_cancels_the_job_on_the_server(emu: Any, conn: Callable[..., str]) -> None:
    inst = emu.state.create_instance("quickbooks", "async-cancel")
    job = CloudElementsHook(conn(), instance_id=inst["id"]).start_bulk_query("invoices")
    assert truth_job(emu, inst, job)["status"] in ("CREATED", "RUNNING")

    async def cancel_then_poll(hook: CloudElementsAsyncHook) -> dict[str, Any]:
        await hook.cancel_bulk_job(job)
        return await hook.get_bulk_status(job)

    status = asyncio.run(_with(CloudElementsAsyncHook(conn(), instance_id=inst["id"]), cancel_then_poll))
    assert truth_job(emu, inst, job)["status"] == "CANCELLED" == status["status"]


def test_events_match_the_emulators_events(emu: Any, conn: Callable[..., str]) -> None:
    inst = emu.state.create_instance("quickbooks", "async-events")
    emu.state.generate(inst["id"], "customers")
    emu.state.generate(inst["id"], "vendors")
    emu.state.simulate_activity(inst["id"], ["customers", "vendors"], creates=3, updates=2, deletes=1)
    truth = emu.state.events.query(inst["id"], None, None, False, lambda e: True)
    assert len(truth) >= 10

    everything = asyncio.run(
        _with(CloudElementsAsyncHook(conn(), instance_id=inst["id"]), lambda h: h.list_events(page_size=3))
    )
    assert [e["id"] for e in everything] == [e["id"] for e in truth]  # every page, in order, none twice
    vendors = asyncio.run(
        _with(CloudElementsAsyncHook(conn()), lambda h: h.list_events(instance_id=inst["id"], object_types=["VENDORS"]))
    )
    expected = [e["id"] for e in truth if str(e.get("objectType", "")).lower() == "vendors"]
    assert expected and [e["id"] for e in vendors] == expected  # objectType matched case-insensitively
    sync_vendors = CloudElementsHook(conn(), instance_id=inst["id"]).iter_events(object_types=["vendors"])
    assert [e["id"] for e in sync_vendors] == expected  # the same filter as the sync hook
    with pytest.raises(CloudElementsConfigError, match="instance_id"):
        asyncio.run(_with(CloudElementsAsyncHook(conn()), lambda h: h.list_events(instance_id="twelve")))


def test_element_token_needs_no_instance_lookup(emu: Any, conn: Callable[..., str]) -> None:
    """The async hook takes ``element_token`` like the sync hook: hub calls use it as is (no
    ``GET /instances/{id}``), also when the connection has no instance."""
    inst = emu.state.create_instance("quickbooksonprem", "async-token")
    job = CloudElementsHook(conn(), instance_id=inst["id"]).start_bulk_query("vendors")
    lookups, pings = requests_to(emu, INSTANCE), requests_to(emu, PING)

    async def run(hook: CloudElementsAsyncHook) -> tuple[dict[str, Any], dict[str, Any]]:
        return await hook.ping(), await hook.get_bulk_status(job)

    ping, status = asyncio.run(_with(CloudElementsAsyncHook(conn(), element_token=inst["token"]), run))
    assert ping["endpoint"] == "quickbooksonprem" and status["id"] == job
    assert requests_to(emu, INSTANCE) == lookups and requests_to(emu, PING) == pings + 1
    # the connection's token for another instance is overridden by the argument
    other = emu.state.create_instance("quickbooks", "async-token-other")
    hook = CloudElementsAsyncHook(conn(element_token=other["token"]), element_token=inst["token"])
    assert asyncio.run(_with(hook, lambda h: h.ping()))["endpoint"] == "quickbooksonprem"
    with pytest.raises(CloudElementsConfigError, match="element_token"):
        CloudElementsAsyncHook(conn(), element_token="two\nlines")


def test_instance_token_is_fetched_once(emu: Any, conn: Callable[..., str]) -> None:
    inst = emu.state.create_instance("freshbooksv2", "async-lookup")
    lookups = requests_to(emu, INSTANCE)

    async def run(hook: CloudElementsAsyncHook) -> None:
        for _ in range(3):
            await hook.ping()

    asyncio.run(_with(CloudElementsAsyncHook(conn(instance_id=inst["id"])), run))
    assert requests_to(emu, INSTANCE) == lookups + 1


def test_sync_and_async_hooks_draw_from_one_budget(emu: Any, conn: Callable[..., str]) -> None:
    """One budget scope for both hooks: with 4 requests/min for the instance, two sync pings and two
    async pings spend it, and a fifth request from the async hook waits for the window instead of
    being sent (a per-hook async budget would have sent it)."""
    inst = emu.state.create_instance("quickbooks", "shared-budget")
    conn_id = conn(max_requests_per_minute=4, element_token=inst["token"])
    sync_hook = CloudElementsHook(conn_id)
    pings = requests_to(emu, PING)
    sync_hook.ping()
    sync_hook.ping()

    async def run(hook: CloudElementsAsyncHook) -> bool:
        await hook.ping()
        await hook.ping()
        try:
            await asyncio.wait_for(hook.ping(), timeout=1.0)
        except TimeoutError:
            return False  # still waiting for a slot of the 60-second window
        return True

    async_hook = CloudElementsAsyncHook(conn_id)
    assert asyncio.run(_with(async_hook, run)) is False
    assert requests_to(emu, PING) == pings + 4
    budget = sync_hook._budget_of(sync_hook.settings, hub=True)
    assert budget is async_hook._budget_of(sync_hook.settings, hub=True)
    assert budget.in_window() == 4
