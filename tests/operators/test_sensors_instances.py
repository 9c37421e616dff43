"""Event/bulk-job sensors and triggers, instance operators and the changed-records operator."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowSkipException, TaskDeferred

from airflow_provider_cloudelements.exceptions import (
    CloudElementsAuthenticationError,
    CloudElementsConfigError,
    CloudElementsTimeoutError,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.operators.instances import (
    CloudElementsCreateInstanceOperator,
    CloudElementsDeleteInstanceOperator,
)
from airflow_provider_cloudelements.operators.links import INSTANCE_URL_KEY
from airflow_provider_cloudelements.sensors.bulk import CloudElementsBulkJobSensor
from airflow_provider_cloudelements.sensors.events import CloudElementsEventSensor
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.changes import (
    CloudElementsChangedRecordsOperator,
)
from airflow_provider_cloudelements.triggers.events import CloudElementsEventTrigger
from airflow_provider_cloudelements.utils.records import record_id, stable_id
from tests.operators.conftest import Ctx, FakeAssetStateStore, roundtrip, run_operator, wait_for

SUMMARY_KEYS = {"id", "objectType", "objectId", "eventType", "eventDate"}


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def event_sensor(instance_id: int, **kwargs: Any) -> CloudElementsEventSensor:
    kwargs.setdefault("object_types", ["invoices"])
    kwargs.setdefault("poke_interval", 0.1)
    kwargs.setdefault("timeout", 10)
    return CloudElementsEventSensor(task_id="wait", instance_id=instance_id, **kwargs)


@pytest.mark.parametrize("deferrable", [False, True])
def test_event_sensor_fires_on_activity_after_the_watermark(emu: Any, conn: str, deferrable: bool) -> None:
    iid = emu.state.create_instance("quickbooks", f"sensor-{deferrable}")["id"]
    emu.state.records(iid, "invoices")
    emu.state.simulate_activity(iid, resources=["invoices", "customers"], creates=2, updates=1, deletes=0)
    done = datetime.now(timezone.utc)
    wait_for(lambda: datetime.now(timezone.utc) >= done + timedelta(milliseconds=2), what="next millisecond")
    watermark = now_iso()  # only activity after the watermark counts (event dates are ms precision)
    sensor = event_sensor(iid, since=watermark, event_types=["CREATED"], deferrable=deferrable)
    ctx = Ctx()
    if deferrable:
        with pytest.raises(TaskDeferred) as deferred:  # nothing new yet: it defers
            sensor.execute(ctx.context)
        trigger = roundtrip(deferred.value.trigger)
        changed = emu.state.simulate_activity(iid, resources=["invoices", "customers"], creates=3, updates=1, deletes=0)
        events = sensor.resume_execution(
            deferred.value.method_name, {"event": asyncio.run(_first(trigger))}, ctx.context
        )
    else:
        changed = emu.state.simulate_activity(iid, resources=["invoices", "customers"], creates=3, updates=1, deletes=0)
        events = sensor.execute(ctx.context)
    assert events and all(set(e) == SUMMARY_KEYS for e in events)
    assert {e["objectType"] for e in events} == {"invoices"} and {e["eventType"] for e in events} == {"CREATED"}
    assert {str(e["objectId"]) for e in events} == {str(i) for i in changed["invoices"]["created"]}
    assert len(json.dumps(events)) < 2000  # small summaries, no record payloads


async def _first(trigger: Any) -> dict[str, Any]:
    gen = trigger.run()
    try:
        return (await asyncio.wait_for(gen.__anext__(), 15)).payload
    finally:
        await gen.aclose()


@pytest.mark.parametrize("deferrable", [False, True])
def test_events_the_hook_accepts_reach_the_sensor_and_the_trigger(emu: Any, conn: str, deferrable: bool) -> None:
    """Regression (issue 12): the sensor and the trigger re-filtered the hook's events on a top-level,
    case-sensitive ``objectType`` and silently dropped events the hook had accepted (here: the user wrote
    ``object_types=["Invoices"]``, the hook matches it case-insensitively to ``invoices``). Now all three
    use the one event filter (models/events.py)."""
    iid = emu.state.create_instance("quickbooks", f"filter-{deferrable}")["id"]
    emu.state.records(iid, "invoices")
    started = datetime.now(timezone.utc)
    wait_for(lambda: datetime.now(timezone.utc) >= started + timedelta(milliseconds=2), what="next millisecond")
    # a microsecond watermark: the one filter floors ``since`` to the millisecond (event dates' precision) for
    # the hook, the sensor and the trigger alike (before, the hook compared exactly and the others floored)
    watermark = datetime.now(timezone.utc).isoformat(timespec="microseconds")
    sensor = event_sensor(
        iid, since=watermark, object_types=["Invoices"], event_types=["created"], deferrable=deferrable, timeout=5
    )
    ctx = Ctx()
    if deferrable:
        with pytest.raises(TaskDeferred) as deferred:
            sensor.execute(ctx.context)
        trigger = roundtrip(deferred.value.trigger)
        changed = emu.state.simulate_activity(iid, resources=["invoices", "customers"], creates=2, updates=1, deletes=0)
        event = asyncio.run(_first(trigger))
        assert event["status"] == "success", event  # before the fix: no event until the deadline
        events = sensor.resume_execution(deferred.value.method_name, {"event": event}, ctx.context)
    else:
        changed = emu.state.simulate_activity(iid, resources=["invoices", "customers"], creates=2, updates=1, deletes=0)
        events = sensor.execute(ctx.context)  # before the fix: CloudElementsSensorTimeoutError after 5 s
    accepted = list(
        CloudElementsHook(conn, instance_id=iid).iter_events(
            since=datetime.fromisoformat(watermark), object_types=["Invoices"], event_types=["created"]
        )
    )
    assert accepted, "the hook's filter is case-insensitive on objectType"
    assert sorted(str(e["id"]) for e in events) == sorted(str(e["id"]) for e in accepted)
    assert {str(e["objectId"]) for e in events} == {str(i) for i in changed["invoices"]["created"]}
    assert {e["objectType"] for e in events} == {"invoices"}


@pytest.mark.parametrize("deferrable", [False, True])
def test_event_sensor_timeout_and_soft_fail(emu: Any, conn: str, deferrable: bool) -> None:
    iid = emu.state.create_instance("quickbooks", f"sensor-timeout-{deferrable}")["id"]
    kwargs = dict(since=now_iso(), deferrable=deferrable, timeout=0.6, poke_interval=0.2)
    with pytest.raises(CloudElementsTimeoutError):
        run_operator(event_sensor(iid, **kwargs), Ctx())
    with pytest.raises(AirflowSkipException):
        run_operator(event_sensor(iid, soft_fail=True, **kwargs), Ctx())


def test_event_sensor_soft_fail_does_not_hide_errors(emu: Any, conn: str) -> None:
    sensor = event_sensor(1, since=now_iso(), deferrable=True, soft_fail=True)
    with pytest.raises(Exception, match="boom") as err:
        sensor.resume_execution("execute_complete", {"event": {"status": "error", "message": "boom"}}, Ctx().context)
    assert not isinstance(err.value, AirflowSkipException)


def test_event_trigger_watch_mode_persists_its_watermark(emu: Any, conn: str) -> None:
    iid = emu.state.create_instance("quickbooks", "watcher")["id"]
    emu.state.records(iid, "invoices")
    store = FakeAssetStateStore()
    start = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()  # events are ms precision

    def make() -> CloudElementsEventTrigger:
        trigger = roundtrip(
            CloudElementsEventTrigger(
                instance_id=iid, object_types=["invoices"], since=start, poll_interval=0.1, watch=True
            )
        )
        trigger.asset_state_store = store  # what the triggerer injects (AIP-103)
        return trigger

    async def scenario() -> tuple[list[Any], list[Any], list[Any]]:
        gen = make().run()
        first = emu.state.simulate_activity(iid, resources=["invoices"], creates=2, updates=0, deletes=0)
        batch1 = (await asyncio.wait_for(gen.__anext__(), 15)).payload
        second = emu.state.simulate_activity(iid, resources=["invoices"], creates=1, updates=0, deletes=0)
        batch2 = (await asyncio.wait_for(gen.__anext__(), 15)).payload
        await gen.aclose()
        # triggerer restart: a new trigger, its `since` is later than nothing; the store remembers
        restarted = make()
        restarted.since = "2020-01-01T00:00:00+00:00"
        gen = restarted.run()
        third = emu.state.simulate_activity(iid, resources=["invoices"], creates=1, updates=0, deletes=0)
        batch3 = (await asyncio.wait_for(gen.__anext__(), 15)).payload
        await gen.aclose()
        return [first, batch1], [second, batch2], [third, batch3]

    for changed, batch in asyncio.run(scenario()):
        assert batch["status"] == "success"
        assert {str(e["objectId"]) for e in batch["events"]} == {str(i) for i in changed["invoices"]["created"]}
    assert store.data["cloudelements_event_watermark"]["at"]


@pytest.mark.parametrize("deferrable", [False, True])
def test_bulk_job_sensor_for_a_job_submitted_elsewhere(emu: Any, conn: str, deferrable: bool) -> None:
    iid = emu.state.create_instance("quickbooks", f"bulk-sensor-{deferrable}")["id"]
    job_id = CloudElementsHook(conn, instance_id=iid).start_bulk_query("customers")
    sensor = CloudElementsBulkJobSensor(
        task_id="job", job_id=job_id, instance_id=str(iid), deferrable=deferrable, poke_interval=0.1, timeout=20
    )
    result = run_operator(sensor, Ctx(), expect_defer=deferrable)
    assert result["status"] == "COMPLETED" and result["recordsCount"] == 30


def test_create_instance_reuses_by_name_and_tags_and_never_leaks_the_token(
    emu: Any, conn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body = {
        "element": {"key": "quickbooks"},
        "name": "ops-create",
        "tags": ["ops", "test"],
        "configuration": {
            "oauth.api.key": "id-123",
            "oauth.api.secret": "app-secret-abcdef",
            "oauth.callback.url": "https://example.com/cb",
        },
        "providerData": {"code": "auth-code-xyz", "realmId": "1234"},
    }
    route = "POST /elements/api-v2/instances"
    posts = emu.state.stats()["requests"].get(route, 0)
    ctx = Ctx()
    created = CloudElementsCreateInstanceOperator(task_id="create", body=body).execute(ctx.context)
    assert created["reused"] is False and emu.state.stats()["requests"][route] == posts + 1
    token = emu.state.instances.get(created["id"])["token"]
    again = CloudElementsCreateInstanceOperator(task_id="create", body=body).execute(ctx.context)
    assert again == {**created, "reused": True}
    assert emu.state.stats()["requests"][route] == posts + 1  # no second POST
    assert ctx.ti.xcoms[INSTANCE_URL_KEY].endswith(f"/instances/{created['id']}")
    different = CloudElementsCreateInstanceOperator(task_id="c", body={**body, "tags": ["ops"]}).execute(ctx.context)
    assert different["id"] != created["id"]
    captured = capsys.readouterr()
    for blob in (json.dumps([created, again, different]), json.dumps(ctx.ti.pushes), captured.out, captured.err):
        assert token not in blob and "app-secret-abcdef" not in blob

    # invalid bodies fail before any network call
    requests_before = sum(emu.state.stats()["requests"].values())
    for bad in ({**body, "element": {"key": "nope"}}, {**body, "name": ""}, {**body, "providerData": {}}):
        with pytest.raises(CloudElementsConfigError):
            CloudElementsCreateInstanceOperator(task_id="bad", body=bad)
    assert sum(emu.state.stats()["requests"].values()) == requests_before

    # delete: later hub calls with its token get 401
    CloudElementsDeleteInstanceOperator(task_id="delete", instance_id=str(created["id"])).execute(Ctx().context)
    with pytest.raises(CloudElementsAuthenticationError):
        CloudElementsHook(conn, element_token=token, retry_budget=0).ping()
    CloudElementsDeleteInstanceOperator(task_id="delete", instance_id=created["id"]).execute(Ctx().context)


def test_changed_records_operator_lands_changes_and_tombstones(emu: Any, conn: str, out: Path) -> None:
    iid = emu.state.create_instance("quickbooks", "changes")["id"]
    emu.state.records(iid, "invoices")
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    changed = emu.state.simulate_activity(iid, resources=["invoices"], creates=2, updates=2, deletes=1)["invoices"]
    hook = CloudElementsHook(conn, instance_id=iid)
    events = wait_for(lambda: list(hook.iter_events(since=since, object_types=["invoices"])), what="events")
    manifests = CloudElementsChangedRecordsOperator(task_id="changes", instance_id=iid, events=events).execute(
        Ctx().context
    )
    assert len(manifests) == 1 and manifests[0]["mode"] == "events"
    landed = [json.loads(x) for x in Path(manifests[0]["path"].removeprefix("file://")).read_text().splitlines()]
    tombs = [json.loads(x) for x in Path(manifests[0]["deleted_path"].removeprefix("file://")).read_text().splitlines()]
    # QBO ids read "<id>|<syncToken>": records and tombstones are compared by their stable ids
    deleted = {stable_id(i, "quickbooks") for i in changed["deleted"]}
    live = {stable_id(i, "quickbooks") for i in changed["created"] + changed["updated"]} - deleted
    assert {record_id(r, "quickbooks") for r in landed} == live
    assert {t["id"] for t in tombs} == deleted  # a tombstone names the stable id
    assert manifests[0]["records"] == len(live) and manifests[0]["deleted"] == len(changed["deleted"])
