"""Fixtures for the hook tests of tests/unit/hooks: one emulator per module over loopback HTTP, with bulk
jobs that stay RUNNING for a minute (so status and cancel are deterministic), and a connection factory."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

try:  # the emulator's own distribution (issue 12), else its old place inside the provider package
    from cloudelements_emulator import EmulatorConfig, EmulatorServer
except ImportError:  # pragma: no cover - depends on the checkout
    from cloudelements_emulator import EmulatorConfig, EmulatorServer


@pytest.fixture(scope="module")
def emu() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=29, records_per_resource=6, bulk_min_seconds=60)) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_faults(emu: EmulatorServer) -> Iterator[None]:
    emu.state.reset_faults()
    yield
    emu.state.reset_faults()


@pytest.fixture
def conn(emu: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``conn(**extra)`` registers connection ``ce_unit`` to the emulator and returns its id."""

    def make(**extra: Any) -> str:
        extra.setdefault("retry_budget", 10)
        body = {
            "conn_type": "cloudelements",
            "host": emu.base_url,
            "extra": {"user_secret": emu.user_secret, "organization_secret": emu.organization_secret, **extra},
        }
        monkeypatch.setenv("AIRFLOW_CONN_CE_UNIT", json.dumps(body))
        return "ce_unit"

    return make


def requests_to(emu: EmulatorServer, template: str) -> int:
    """Requests the emulator served for a route template, e.g. ``"GET /elements/api-v2/hubs/{hub}/ping"``."""
    return int(emu.state.stats()["requests"].get(template, 0))
