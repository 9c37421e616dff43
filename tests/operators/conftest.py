"""Fixtures for operator/trigger/sensor tests against the emulator over real HTTP.

Test doubles are used only for Airflow's own machinery (the task instance's ``xcom_push`` and the
task state store); every Cloud Elements call goes over HTTP to an emulator.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, connection_json

BUNDLES = json.dumps(
    [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(ROOT / "dags_examples")},
        },
        {
            "name": "ce-operator-tests",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(ROOT / "tests" / "dags")},
        },
    ]
)


class FakeTI:
    """Records ``xcom_push`` calls (Airflow machinery double)."""

    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}
        self.pushes: list[tuple[str, Any]] = []

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value
        self.pushes.append((key, value))


class FakeTaskStateStore:
    """Dict-backed task state store (shared across tries of one task instance)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def set(self, key: str, value: Any, retention: Any = None) -> None:
        self.data[key] = json.loads(json.dumps(value))


class FakeAssetStateStore:
    """In-memory asset state store with the async API triggers use."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    async def aget(self, key: str) -> Any:
        return self.data.get(key)

    async def aset(self, key: str, value: Any) -> None:
        self.data[key] = json.loads(json.dumps(value))


@dataclass
class Ctx:
    """A hand-built task context: ``ctx.context`` is what execute() gets."""

    data_interval_start: datetime | None = None
    data_interval_end: datetime | None = None
    prev_start_success: datetime | None = None
    prev_end_success: datetime | None = None
    ti: FakeTI = field(default_factory=FakeTI)
    store: FakeTaskStateStore = field(default_factory=FakeTaskStateStore)

    @property
    def context(self) -> dict[str, Any]:
        return {
            "ti": self.ti,
            "task_state_store": self.store,
            "data_interval_start": self.data_interval_start,
            "data_interval_end": self.data_interval_end,
            "prev_data_interval_start_success": self.prev_start_success,
            "prev_data_interval_end_success": self.prev_end_success,
        }


def first_event(trigger: Any) -> dict[str, Any]:
    """Run a trigger until its first event (real HTTP); returns the payload."""

    async def go() -> dict[str, Any]:
        gen = trigger.run()
        try:
            event = await gen.__anext__()
        finally:
            await gen.aclose()
        return event.payload

    return asyncio.run(go())


def run_operator(op: Any, ctx: Ctx, *, expect_defer: bool | None = None) -> Any:
    """execute(); on TaskDeferred run the trigger, then execute_complete(). Returns the result."""
    from airflow.sdk.exceptions import TaskDeferred

    try:
        result = op.execute(ctx.context)
    except TaskDeferred as deferred:
        assert expect_defer is not False, "the task deferred but should not have"
        trigger = roundtrip(deferred.trigger)
        event = first_event(trigger)
        # what the task runner does on resume: resume_execution(next_method, {"event": ...})
        return op.resume_execution(deferred.method_name, {"event": event}, ctx.context)
    assert expect_defer is not True, "the task finished without deferring"
    return result


def roundtrip(trigger: Any) -> Any:
    """Serialize a trigger as the triggerer would (JSON kwargs) and rebuild it from its classpath."""
    import importlib

    classpath, kwargs = trigger.serialize()
    kwargs = json.loads(json.dumps(kwargs))  # must be plain JSON
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)(**kwargs)


def wait_for(predicate: Any, timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll a real condition (emulator state) until true; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def set_connection(monkeypatch: pytest.MonkeyPatch, emu: Any, **extra: Any) -> str:
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT",
        connection_json(emu.base_url, emu.user_secret, emu.organization_secret, **extra),
    )
    return "cloudelements_default"


@pytest.fixture(scope="module")
def emu() -> Iterator[Any]:
    """A private emulator per test module (faults are global to an emulator)."""
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(seed=11, records_per_resource=30, bulk_min_seconds=0.3)) as server:
        yield server


@pytest.fixture
def conn(emu: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``cloudelements_default`` → the module emulator, short retry budget; faults reset after."""
    conn_id = set_connection(monkeypatch, emu, retry_budget=3)
    emu.state.reset_faults()
    yield conn_id
    emu.state.reset_faults()


@pytest.fixture
def out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    landing = tmp_path / "landing"
    monkeypatch.setenv("CLOUDELEMENTS_OUTPUT_BASE", f"file://{landing}")
    return landing


@pytest.fixture
def dag_bundles(airflow_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``dag.test()`` serialize DAGs from ``tests/dags`` (a second local bundle)."""
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", BUNDLES)
