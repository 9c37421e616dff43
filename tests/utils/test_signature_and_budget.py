"""Webhook signatures (utils/signature.py) and the client-side request budget (client/budget.py)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_cloudelements.client.budget import RequestBudget, get_request_budget
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsThrottledError
from airflow_provider_cloudelements.utils.signature import compute_webhook_signature, verify_webhook_signature

BODY = b'{"message": {"eventId": "e1", "events": [{"objectType": "invoices"}]}}'


def test_signature_matches_reference_formula():
    expected = "sha256=" + base64.b64encode(hmac.new(b"k3y", BODY, hashlib.sha256).digest()).decode()
    assert compute_webhook_signature(BODY, "k3y") == expected
    assert verify_webhook_signature(BODY, expected, "k3y")
    assert verify_webhook_signature(BODY, "  SHA256=" + expected[7:] + " ", "k3y")


@pytest.mark.parametrize(
    ("body", "header", "key"),
    [
        (BODY + b" ", None, "k3y"),
        (BODY, None, "k3y"),
        (BODY, "", "k3y"),
        (BODY, "sha1=abc", "k3y"),
        (BODY, "sha256=", "k3y"),
        (BODY, "sha256=ünïcode", "k3y"),
        (BODY, "{sig}", ""),
        ("not bytes", "{sig}", "k3y"),
    ],
)
def test_signature_rejections(body, header, key):
    sig = compute_webhook_signature(BODY, "k3y")
    header = sig if header in (None,) and body != BODY else (header.replace("{sig}", sig) if header else header)
    assert verify_webhook_signature(body, header, key) is False


@given(st.binary(max_size=200), st.text(min_size=1, max_size=20))
def test_signature_property(body, key):
    sig = compute_webhook_signature(body, key)
    assert verify_webhook_signature(body, sig, key)
    assert not verify_webhook_signature(body + b"x", sig, key)


class FakeClock:
    def __init__(self):
        self.t = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def test_rate_window_without_real_sleeping():
    clock = FakeClock()
    budget = RequestBudget(3, 10, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        with budget.acquire():
            clock.t += 1
    assert clock.sleeps == []
    with budget.acquire():  # 4th in the window: waits until the first start is 60 s old
        pass
    assert clock.sleeps == [pytest.approx(57.0)]
    assert budget.in_window() == 3
    with pytest.raises(CloudElementsThrottledError):
        with budget.acquire(timeout=0.5):
            pass


def test_concurrency_cap_is_thread_safe():
    budget = RequestBudget(1000, 2)
    active, peak, lock = [0], [0], threading.Lock()
    gate = threading.Barrier(6, timeout=5)

    def work():
        gate.wait()
        with budget.acquire():
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.02)  # hold the slot (work, not synchronisation)
            with lock:
                active[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert peak[0] == 2
    with pytest.raises(CloudElementsThrottledError):
        with budget.acquire(), budget.acquire(), budget.acquire(timeout=0.01):
            pass


def test_async_budget_caps_concurrency():
    async def main():
        budget = RequestBudget(1000, 3)
        active, peak = [0], [0]

        async def work():
            async with budget.acquire_async():
                active[0] += 1
                peak[0] = max(peak[0], active[0])
                await asyncio.sleep(0.01)
                active[0] -= 1

        await asyncio.gather(*(work() for _ in range(10)))
        return peak[0]

    assert asyncio.run(main()) == 3


def test_registry_and_validation():
    a = get_request_budget(("u", 1))
    assert get_request_budget(("u", 1)) is a
    assert get_request_budget(("u", 1), max_per_minute=5) is not a
    with pytest.raises(CloudElementsConfigError):
        RequestBudget(0, 1)
