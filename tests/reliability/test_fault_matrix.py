"""Fault matrix: the bulk extract operator end to end (real HTTP to the emulator, a real landing dir)
under every fault the emulator can inject.

Invariant for every scenario: the task either lands **exactly** the emulator's record set (same ids,
same content hashes: 0 lost, 0 duplicated, 0 altered) or fails with the expected typed exception
from ``exceptions.py`` and leaves nothing at the final output path (no data file, no manifest, no
temporary ``.part`` file). Each scenario runs the synchronous path; the ones marked ``both`` also run
the deferrable path (trigger run inline with the async hook). Hook-level retries per fault are in
``tests/hooks``; this suite checks what *lands*.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import (
    CloudElementsAuthenticationError,
    CloudElementsBulkJobError,
    CloudElementsConnectionError,
    CloudElementsError,
    CloudElementsForbiddenError,
    CloudElementsNotFoundError,
    CloudElementsRecordFailuresError,
    CloudElementsServerError,
    CloudElementsThrottledError,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.utils.records import record_id
from tests.reliability.conftest import (
    REPORT,
    compare,
    jobs_created,
    landing_files,
    make_context,
    read_ndjson,
    run_operator,
)

pytestmark = pytest.mark.timeout(90)

BULK = "/elements/api-v2/hubs/finance/bulk"
EXACT = "exact"


@dataclass(frozen=True)
class Scenario:
    name: str
    faults: dict[str, Any] = field(default_factory=dict)
    #: EXACT, an exception class, or a tuple (EXACT and/or classes) when a random fault may hit a
    #: call that must not be retried (a POST): then either outcome is correct, nothing else is.
    expect: Any = EXACT
    element: str = "quickbooks"
    resource: str = "invoices"
    conn: dict[str, Any] = field(default_factory=dict)
    op: dict[str, Any] = field(default_factory=dict)
    #: "disable" / "delete": done through the platform API right after the job is submitted.
    mid_run: str | None = None
    modes: tuple[str, ...] = ("sync",)


SCENARIOS = [
    Scenario("baseline, no fault", modes=("sync", "deferrable")),
    Scenario("baseline qbe", element="quickbooksonprem", resource="customers"),
    Scenario("baseline freshbooks", element="freshbooksv2", resource="payments"),
    Scenario("429 burst + Retry-After", {"burst_429": 4, "retry_after_seconds": 0.2}, modes=("sync", "deferrable")),
    Scenario("429 at 30% (all calls)", {"rate_429": 0.3, "retry_after_seconds": 0.1}),
    Scenario(
        "5xx 503 at 30% (GET/PUT)",
        {"rate_5xx": 0.3, "status_5xx": 503, "methods": "GET,PUT"},
        modes=("sync", "deferrable"),
    ),
    Scenario(
        "5xx 504 at 10% (GET)",
        {"rate_5xx": 0.1, "status_5xx": 504, "methods": "GET"},
        element="quickbooksonprem",
        resource="invoices",
    ),
    # a 5xx on POST /bulk/query is not retried (a retry could start a duplicate job): either the
    # random faults spared the POST and all landed, or the task failed loudly, with at most one job
    Scenario(
        "5xx 502 at 20% (all calls)", {"rate_5xx": 0.2, "status_5xx": 502}, expect=(EXACT, CloudElementsServerError)
    ),
    Scenario(
        "5xx on submit (POST)",
        {"burst_5xx": 1, "status_5xx": 503, "path_prefix": BULK, "methods": "POST"},
        expect=CloudElementsServerError,
    ),
    Scenario("throttle text in a 500", {"burst_throttle_500": 2}, modes=("sync", "deferrable")),
    # issue 11 #10: a plain 500 on a GET (status poll, download) is retried (3x at most; the trigger's
    # async hook likewise: tests/hooks/test_hook_emulator.py)
    Scenario(
        "plain 500 on polls + download (GET)",
        {"burst_5xx": 3, "status_5xx": 500, "path_prefix": BULK, "methods": "GET"},
    ),
    # issue 11 #10: the submit was processed but answered after the read timeout: the hook finds the
    # job it created and reuses it (one job, exact landing) instead of failing and orphaning it
    Scenario(
        "submit answered after the read timeout (job created)",
        {"burst_slow_response": 1, "slow_seconds": 1.5, "path_prefix": BULK + "/query", "methods": "POST"},
        conn={"read_timeout": 0.5},
    ),
    Scenario("throttle 500 at 30%", {"rate_throttle_500": 0.3}, element="freshbooksv2", resource="invoices"),
    Scenario("HTML 502 from a proxy", {"burst_html_502": 2}),
    Scenario(
        "429 forever: budget spent",
        {"rate_429": 1.0, "retry_after_seconds": 0.2},
        conn={"retry_budget": 1},
        expect=CloudElementsThrottledError,
    ),
    Scenario(
        "503 forever on polls: budget spent",
        {"rate_5xx": 1.0, "path_prefix": BULK, "methods": "GET"},
        conn={"retry_budget": 1},
        expect=CloudElementsServerError,
    ),
    Scenario(
        "slow > read timeout (GET)",
        {"slow_seconds": 1.2, "burst_slow": 2, "methods": "GET"},
        conn={"read_timeout": 0.4},
    ),
    Scenario(
        "slow > read timeout on submit",
        {"slow_seconds": 1.2, "burst_slow": 1, "path_prefix": BULK},
        conn={"read_timeout": 0.4},
        expect=CloudElementsConnectionError,
    ),
    Scenario(
        "download dropped twice",
        {"drop_download_after_bytes": 700, "drop_download_times": 2},
        modes=("sync", "deferrable"),
    ),
    Scenario(
        "download always dropped",
        {"drop_download_after_bytes": 700},
        conn={"retry_budget": 2},
        expect=CloudElementsConnectionError,
    ),
    Scenario("bulk job FAILED", {"bulk_fail": True}, expect=CloudElementsBulkJobError, modes=("sync", "deferrable")),
    Scenario("recordsFailedCount > max", {"bulk_failed_records": 3}, expect=CloudElementsRecordFailuresError),
    Scenario("instance disabled mid-run (403)", mid_run="disable", expect=CloudElementsForbiddenError),
    Scenario(
        "instance disabled mid-run, deferred", mid_run="disable", expect=CloudElementsError, modes=("deferrable",)
    ),
    Scenario("token revoked mid-run (401)", mid_run="delete", expect=CloudElementsAuthenticationError),
    Scenario("token revoked mid-run, deferred", mid_run="delete", expect=CloudElementsError, modes=("deferrable",)),
]

CASES = [pytest.param(s, mode, id=f"{s.name} [{mode}]") for s in SCENARIOS for mode in s.modes]


def _expectations(s: Scenario) -> tuple[bool, tuple[type[BaseException], ...]]:
    options = s.expect if isinstance(s.expect, tuple) else (s.expect,)
    return EXACT in options, tuple(o for o in options if o is not EXACT)


@pytest.mark.parametrize(("scenario", "mode"), CASES)
def test_fault_matrix(
    scenario: Scenario,
    mode: str,
    remu: Any,
    rconn: Any,
    new_instance: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inst = new_instance(scenario.element)
    iid = int(inst["id"])
    truth = remu.state.records(iid, scenario.resource)
    assert truth, "the emulator generated no records"
    conn_id = rconn(**scenario.conn)
    landing = tmp_path / "landing"
    op = CloudElementsBulkExtractOperator(
        task_id=f"extract_{scenario.resource}",
        resource=scenario.resource,
        instance_id=iid,
        cloudelements_conn_id=conn_id,
        output_base=f"file://{landing}",
        full_refresh=True,
        poll_interval=0.05,
        timeout=60,
        deferrable=mode == "deferrable",
        **scenario.op,
    )
    if scenario.mid_run:
        _arm_mid_run(op, scenario.mid_run, iid, conn_id, monkeypatch, at_defer=mode == "deferrable")
    faults_before = sum(remu.state.stats()["faults_injected"].values())
    remu.state.set_faults(**scenario.faults)
    jobs_before = jobs_created(remu, iid)
    context = make_context()
    t0 = time.monotonic()
    outcome: Any
    try:
        manifest = run_operator(op, context)
        outcome = EXACT
    except CloudElementsError as err:
        manifest, outcome = None, err
    elapsed = time.monotonic() - t0
    faults = sum(remu.state.stats()["faults_injected"].values()) - faults_before
    remu.state.reset_faults()
    randomized = any(k.startswith("rate_") for k in scenario.faults)
    if mode == "deferrable" and not randomized and (outcome == EXACT or scenario.mid_run):
        assert context["_deferrals"] >= 1, "the deferrable path never deferred"
    if outcome == EXACT and not randomized:
        if "burst_slow" in scenario.faults:  # delays are not counted as faults: the clock shows them
            assert elapsed >= scenario.faults["burst_slow"] * scenario.conn["read_timeout"]
        elif scenario.faults and "drop_download_after_bytes" not in scenario.faults:
            assert faults > 0, "no fault was injected"

    may_land, may_fail = _expectations(scenario)
    jobs = jobs_created(remu, iid) - jobs_before
    assert jobs <= 1, f"{jobs} bulk jobs submitted for one task run"

    if outcome == EXACT:
        assert may_land, f"expected {scenario.expect}, but the task succeeded"
        target = Path(manifest["path"].removeprefix("file://"))
        landed = read_ndjson(target)
        result = compare(landed, truth, scenario.element)
        assert result.exact, result
        assert manifest["records"] == len(truth) and manifest["job_id"]
        assert sorted(p.name for p in target.parent.iterdir()) == ["_manifest.json", target.name]
        summary = f"landed {result.landed}/{result.expected} exact (0 lost, 0 dup)"
    else:
        assert may_fail, f"expected exact landing, got {type(outcome).__name__}: {outcome}"
        assert isinstance(outcome, may_fail), f"{type(outcome).__name__}: {outcome}"
        leftovers = [p for p in landing_files(landing) if not p.name.endswith(".errors.ndjson")]
        assert leftovers == [], f"failed task left files behind: {leftovers}"
        summary = f"failed: {type(outcome).__name__}, nothing landed"
    REPORT["fault matrix"].append((f"{scenario.name} [{mode}]", summary, f"faults={faults}", f"{elapsed:.1f}s"))


def _arm_mid_run(
    op: CloudElementsBulkExtractOperator,
    action: str,
    iid: int,
    conn_id: str,
    monkeypatch: pytest.MonkeyPatch,
    *,
    at_defer: bool,
) -> None:
    """Disable / delete the instance through the platform API between submit and download: right
    after ``POST /bulk/query`` (sync), or when the task defers (so the trigger meets the 401/403)."""
    admin = CloudElementsHook(conn_id)

    def act() -> None:
        if action == "disable":
            admin.disable_instance(iid)
        else:
            admin.delete_instance(iid)

    if at_defer:
        defer: Callable[..., Any] = op.defer

        def break_then_defer(**kwargs: Any) -> Any:
            act()
            return defer(**kwargs)

        monkeypatch.setattr(op, "defer", break_then_defer)
        return
    hook = op.hook
    submit: Callable[..., str] = hook.start_bulk_query

    def submit_then_break(*args: Any, **kwargs: Any) -> str:
        job_id = submit(*args, **kwargs)
        act()
        return job_id

    monkeypatch.setattr(hook, "start_bulk_query", submit_then_break)


def test_partial_failures_within_policy_are_accounted_for(
    remu: Any, rconn: Any, new_instance: Any, tmp_path: Path
) -> None:
    """``max_failed_records`` allows 3 failed records: the landed file plus the saved errors file
    together hold every source record exactly once (none silently dropped)."""
    inst = new_instance("quickbooks")
    iid = int(inst["id"])
    truth = remu.state.records(iid, "invoices")
    op = CloudElementsBulkExtractOperator(
        task_id="extract_invoices",
        resource="invoices",
        instance_id=iid,
        cloudelements_conn_id=rconn(),
        output_base=f"file://{tmp_path}",
        full_refresh=True,
        poll_interval=0.05,
        timeout=60,
        deferrable=False,
        max_failed_records=5,
    )
    remu.state.set_faults(bulk_failed_records=3)
    manifest = op.execute(make_context())
    landed = read_ndjson(Path(manifest["path"].removeprefix("file://")))
    errors = read_ndjson(Path(manifest["errors_path"].removeprefix("file://")))
    assert manifest["failed_records"] == 3 and len(errors) == 3
    failed_records = [e["record"] for e in errors]
    result = compare(landed + failed_records, truth, "quickbooks")
    assert result.exact, result
    assert not {record_id(r, "quickbooks") for r in landed} & {record_id(r, "quickbooks") for r in failed_records}
    REPORT["fault matrix"].append(
        (
            "recordsFailedCount <= max [sync]",
            f"landed {len(landed)} + {len(errors)} in errors file = {len(truth)} exact",
            "faults=3",
            "-",
        )
    )


def test_deferred_token_revoked_keeps_its_type(
    remu: Any, rconn: Any, new_instance: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = new_instance("quickbooks")
    iid = int(inst["id"])
    conn_id = rconn()
    op = CloudElementsBulkExtractOperator(
        task_id="extract_invoices",
        resource="invoices",
        instance_id=iid,
        cloudelements_conn_id=conn_id,
        output_base=f"file://{tmp_path}",
        full_refresh=True,
        poll_interval=0.05,
        timeout=60,
        deferrable=True,
    )
    _arm_mid_run(op, "delete", iid, conn_id, monkeypatch, at_defer=True)
    # The triggerer resolves the element token afresh: a deleted instance answers 404 on
    # GET /instances/{id} (a cached token would get 401). Either way the typed, non-retryable error
    # must survive the deferral instead of becoming a generic CloudElementsBulkJobError.
    with pytest.raises((CloudElementsAuthenticationError, CloudElementsNotFoundError)):
        run_operator(op, make_context())
