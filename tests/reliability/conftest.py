"""Fixtures of the reliability and security suite (issue 7).

One emulator for the whole package (its own seed, so nothing else in the session sees the faults
injected here), fresh element instances per test, a hand-built task context for the operators
(``ti.xcom_push`` and a ``task_state_store`` shared by "retries"), and helpers that compare what
landed with the emulator's ground truth by record id **and** content hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.utils.records import record_id

API = "/elements/api-v2"
#: Fixed interval every extract in this suite runs for (full refresh up to its end covers every
#: generated record: the emulator spreads them over the year before 2026-01-01).
INTERVAL_START = datetime(2029, 12, 31, tzinfo=timezone.utc)
INTERVAL_END = datetime(2030, 1, 1, tzinfo=timezone.utc)


# ------------------------------------------------------------------------------------------- emulator
@pytest.fixture(scope="package")
def remu() -> Iterator[Any]:
    """The suite's emulator: small datasets, fast bulk jobs, fast webhook retries."""
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    cfg = EmulatorConfig(
        seed=20260707,
        records_per_resource=30,
        bulk_min_seconds=0.1,
        webhook_backoff_factor=0.001,
        webhook_max_attempts=3,
        webhook_timeout_seconds=2.0,
    )
    with EmulatorServer(cfg) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    if "remu" not in request.fixturenames:
        yield
        return
    emu = request.getfixturevalue("remu")
    emu.state.reset_faults()
    yield
    emu.state.reset_faults()


@pytest.fixture
def new_instance(remu: Any) -> Callable[..., dict[str, Any]]:
    """``new_instance(element_key, **config)``: a fresh instance (incl. ``token``) per call."""
    counter = iter(range(1, 10_000))

    def make(element_key: str = "quickbooks", **configuration: Any) -> dict[str, Any]:
        return remu.state.create_instance(
            element_key, f"rel-{element_key}-{next(counter)}", configuration=configuration or None
        )

    return make


@pytest.fixture
def rconn(remu: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``rconn(**extras)`` points connection ``ce_rel`` at the suite's emulator; returns its id."""

    def make(**extra: Any) -> str:
        extra.setdefault("retry_budget", 15)
        monkeypatch.setenv(
            "AIRFLOW_CONN_CE_REL",
            json.dumps(
                {
                    "conn_type": extra.pop("conn_type", "cloudelements"),
                    "host": remu.base_url,
                    "extra": {
                        "user_secret": remu.user_secret,
                        "organization_secret": remu.organization_secret,
                        **extra,
                    },
                }
            ),
        )
        return "ce_rel"

    return make


def requests_total(emu: Any) -> int:
    """Every Cloud Elements API request the emulator answered so far (faulted ones included)."""
    return sum(n for key, n in emu.state.stats()["requests"].items() if API in key)


def jobs_created(emu: Any, instance_id: int) -> int:
    return int(emu.state.stats()["bulk_jobs_created"].get(instance_id, 0))


# ------------------------------------------------------------------------------------------- context
class FakeTI:
    """The slice of a task instance the operators use: ``xcom_push`` (values must be JSON)."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        json.dumps(value)  # XCom values must serialize; a client object here would be a bug
        self.xcom[key] = value


class FakeStateStore:
    """``task_state_store`` stand-in: survives "retries" when the test passes it to a new context."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.data[key])) if key in self.data else default

    def set(self, key: str, value: Any, retention: timedelta | None = None) -> None:
        self.data[key] = json.loads(json.dumps(value))


def make_context(
    *,
    store: FakeStateStore | None = None,
    start: datetime = INTERVAL_START,
    end: datetime = INTERVAL_END,
    first_run: bool = True,
) -> dict[str, Any]:
    prev = None if first_run else start - (end - start)
    return {
        "ti": FakeTI(),
        "task_state_store": store if store is not None else FakeStateStore(),
        "data_interval_start": start,
        "data_interval_end": end,
        "prev_data_interval_start_success": prev,
        "prev_data_interval_end_success": start if not first_run else None,
    }


def run_operator(op: Any, context: dict[str, Any], *, max_deferrals: int = 3) -> Any:
    """``op.execute(context)``; a deferral runs its trigger inline (like ``dag.test()``), then
    resumes with the event: the deferrable path without a triggerer process."""
    from airflow.sdk.exceptions import TaskDeferred

    context.setdefault("_deferrals", 0)
    try:
        return op.execute(context)
    except TaskDeferred as deferred:
        for _ in range(max_deferrals):
            context["_deferrals"] += 1
            event = asyncio.run(first_event(deferred.trigger))
            try:
                return getattr(op, deferred.method_name)(context, event.payload)
            except TaskDeferred as again:
                deferred = again
        raise AssertionError("too many deferrals") from None


async def first_event(trigger: Any, timeout: float = 60.0) -> Any:
    gen = trigger.run()
    try:
        return await asyncio.wait_for(gen.__anext__(), timeout)
    finally:
        await gen.aclose()


# ------------------------------------------------------------------------------------------- ground truth
def content_hash(record: Any) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Comparison:
    """Landed records vs the emulator's: ``(id, content hash)`` multisets."""

    expected: int
    landed: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.lost or self.duplicated or self.changed or self.unexpected) and (self.expected == self.landed)


def compare(landed: list[dict[str, Any]], truth: list[dict[str, Any]], element_key: str) -> Comparison:
    got = Counter((record_id(r, element_key), content_hash(r)) for r in landed)
    want = Counter((record_id(r, element_key), content_hash(r)) for r in truth)
    got_ids = Counter(i for i, _ in got.elements())
    want_ids = Counter(i for i, _ in want.elements())
    return Comparison(
        expected=sum(want.values()),
        landed=sum(got.values()),
        lost=sorted(set(want_ids) - set(got_ids)),
        duplicated=sorted(i for i, n in got_ids.items() if n > 1),
        changed=sorted({i for i, _ in (got - want)} & set(want_ids)),
        unexpected=sorted(set(got_ids) - set(want_ids)),
    )


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    with path.open("rb") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def landing_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------- secrets
def count_secrets(text: str, secrets: list[str]) -> dict[str, int]:
    """Occurrences of each secret in ``text`` (also URL- and JSON-escaped forms)."""
    from urllib.parse import quote

    found: dict[str, int] = {}
    for secret in secrets:
        forms = {secret, quote(secret, safe=""), json.dumps(secret)[1:-1]}
        n = sum(text.count(f) for f in forms if f)
        if n:
            found[secret[:4] + "…"] = n
    return found


# ------------------------------------------------------------------------------------------- report
#: Filled by the tests, printed at the end of the run (``pytest_terminal_summary``).
REPORT: dict[str, list[tuple[str, ...]]] = {"fault matrix": [], "bad input": [], "secrets": []}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for title, rows in REPORT.items():
        if not rows:
            continue
        terminalreporter.section(f"reliability: {title} ({len(rows)})")
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            terminalreporter.write_line("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)))
