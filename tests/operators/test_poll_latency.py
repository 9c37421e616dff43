"""Bulk status polling starts fast and backs off to ``poll_interval`` (1, 2, 4 … s) in the trigger, the
operator's sync loop and the bulk sensor, so a job that finishes in under a second is noticed in
seconds even with the example DAG's ``poll_interval=30`` (issue 16, latency)."""

from __future__ import annotations

import itertools
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.sensors.bulk import CloudElementsBulkJobSensor
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger
from airflow_provider_cloudelements.utils.polling import TRIGGER_SETTLE_DELAY, poll_delay, poll_delays
from tests.operators.conftest import Ctx, first_event, roundtrip, run_operator

END = datetime(2026, 1, 1, tzinfo=timezone.utc)
SLOW_INTERVAL = 30.0  # the example DAG's default: a fixed wait would make every test below take >= 30 s
#: Upper bound on "noticed within seconds": the emulator job takes 0.3 s, the first re-poll comes after 1 s.
NOTICED_WITHIN = 6.0


def test_poll_delays_start_fast_and_cap_at_the_interval() -> None:
    assert list(itertools.islice(poll_delays(30), 8)) == [1, 2, 4, 8, 16, 30, 30, 30]
    assert list(itertools.islice(poll_delays(5), 5)) == [1, 2, 4, 5, 5]
    assert list(itertools.islice(poll_delays(0.5), 3)) == [0.5, 0.5, 0.5]  # never above the interval
    assert [poll_delay(30, n) for n in range(8)] == list(itertools.islice(poll_delays(30), 8))
    assert poll_delay(30, 10_000) == 30
    # the trigger's settle: first poll at 5 s, then the schedule's next points (7, 15, 31, 61 s)
    assert list(itertools.accumulate(itertools.islice(poll_delays(30, settle=5), 5))) == [5, 7, 15, 31, 61]
    assert list(itertools.islice(poll_delays(1, settle=5), 3)) == [1, 1, 1]  # never above the interval
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError):
            next(poll_delays(bad))


def test_trigger_notices_a_finished_job_within_seconds(emu: Any, conn: str) -> None:
    inst = emu.state.create_instance("quickbooks", "latency-trigger")
    job_id = CloudElementsHook(conn, instance_id=inst["id"]).start_bulk_query("invoices")
    trigger = roundtrip(
        CloudElementsBulkJobTrigger(
            job_id=job_id,
            instance_id=inst["id"],
            cloudelements_conn_id=conn,
            poll_interval=SLOW_INTERVAL,
            end_time=time.time() + 120,
        )
    )
    started = time.monotonic()
    event = first_event(trigger)
    elapsed = time.monotonic() - started
    assert event["status"] == "success" and event["records"] == len(emu.state.records(inst["id"], "invoices"))
    # first poll after the 5 s settle (TRIGGER_SETTLE_DELAY), not after 30 s
    assert elapsed < TRIGGER_SETTLE_DELAY + 3, f"trigger took {elapsed:.1f} s for a 0.3 s job"


def test_sync_operator_notices_a_finished_job_within_seconds(emu: Any, conn: str, out: Any) -> None:
    inst = emu.state.create_instance("quickbooks", "latency-sync")
    op = CloudElementsBulkExtractOperator(
        task_id="extract",
        instance_id=inst["id"],
        resource="invoices",
        poll_interval=SLOW_INTERVAL,
        timeout=120,
        full_refresh=True,
        deferrable=False,
    )
    started = time.monotonic()
    manifest = run_operator(op, Ctx(data_interval_end=END), expect_defer=False)
    elapsed = time.monotonic() - started
    assert manifest["records"] == len(emu.state.records(inst["id"], "invoices"))
    assert elapsed < NOTICED_WITHIN, f"sync extract took {elapsed:.1f} s for a 0.3 s job"


def test_bulk_sensor_poke_mode_notices_a_finished_job_within_seconds(emu: Any, conn: str) -> None:
    inst = emu.state.create_instance("quickbooks", "latency-sensor")
    job_id = CloudElementsHook(conn, instance_id=inst["id"]).start_bulk_query("invoices")
    sensor = CloudElementsBulkJobSensor(
        task_id="wait",
        job_id=job_id,
        instance_id=inst["id"],
        poke_interval=SLOW_INTERVAL,
        timeout=120,
        mode="poke",
        deferrable=False,
    )
    ctx = Ctx(data_interval_end=END)
    started = time.monotonic()
    status = sensor.execute(ctx.context)
    elapsed = time.monotonic() - started
    assert status["status"] in ("COMPLETED", "COMPLETE")
    assert elapsed < NOTICED_WITHIN, f"sensor took {elapsed:.1f} s for a 0.3 s job"
    # reschedule mode and exponential_backoff keep Airflow's own schedule
    assert CloudElementsBulkJobSensor(
        task_id="r", job_id="1", poke_interval=SLOW_INTERVAL, mode="reschedule"
    )._get_next_poke_interval(time.time(), lambda: 0.0, 1) == pytest.approx(SLOW_INTERVAL)
