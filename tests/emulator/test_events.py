"""Events (reference §5): webhook deliveries (signed, retried, queued), polling, listing/filtering."""

from __future__ import annotations

import json
import time

from cloudelements_emulator import timefmt
from cloudelements_emulator.webhooks import sign

from .conftest import Api, Receiver


def _events(api: Api, iid: int, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    r = api.get(f"/instances/{iid}/events", params={"pageSize": 500, **params})
    assert r.status_code == 200, r.text
    return r.json()


def _wait_events(api: Api, iid: int, n: int, timeout: float = 10.0, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        events = _events(api, iid, **params)
        if len(events) >= n or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_webhook_mode_signed_delivery(api: Api, receiver: Receiver) -> None:
    key = "s3cr3t-signing-key"
    inst = api.instance(
        "freshbooksv2",
        **{
            "event.notification.enabled": "true",
            "event.vendor.type": "webhooks",
            "event.notification.callback.url": receiver.url,
            "event.notification.signature.key": key,
        },
    )
    t = inst["token"]
    created = api.post("/hubs/finance/customers", t, json={"first_name": "Ann", "email": "a@example.com"}).json()
    api.patch(f"/hubs/finance/customers/{created['id']}", t, json={"last_name": "Lee"})
    api.delete(f"/hubs/finance/customers/{created['id']}", t)
    got = receiver.wait_for(3)
    kinds = []
    for req in got:
        assert req["headers"]["Elements-Webhook-Signature"] == sign(req["body"], key)
        assert req["headers"]["Elements-Webhook-Id"]
        msg = json.loads(req["body"])["message"]
        assert msg["instanceId"] == inst["id"] and msg["raw"]["objectType"] == "customers"
        event = msg["events"][0]
        assert event["objectId"] == str(created["id"]) and event["objectType"] == "customers"
        kinds.append(event["eventType"])
    assert sorted(kinds) == ["CREATED", "DELETED", "UPDATED"]
    events = _wait_events(api, inst["id"], 3)
    assert [e["eventType"] for e in events] == ["CREATED", "UPDATED", "DELETED"]  # oldest first
    deadline = time.monotonic() + 5
    while any(e["status"] != "NOTIFIED" for e in events) and time.monotonic() < deadline:
        time.sleep(0.05)
        events = _events(api, inst["id"])
    assert {e["status"] for e in events} == {"NOTIFIED"}
    one = api.get(f"/instances/events/{events[0]['id']}").json()
    assert one["id"] == events[0]["id"] and json.loads(one["providerData"])["first_name"] == "Ann"
    assert api.get(f"/instances/{inst['id']}/events/{events[0]['id']}").status_code == 200
    assert api.get("/instances/events/999999").status_code == 404


def test_webhook_retry_then_queue(api: Api, receiver: Receiver) -> None:
    inst = api.instance(
        "quickbooks",
        **{
            "event.notification.enabled": True,
            "event.vendor.type": "webhook",
            "event.notification.callback.url": receiver.url,
        },
    )
    receiver.statuses = [500, 500]  # 2 failures, then success (max attempts 3)
    api.post("/hubs/finance/classes", inst["token"], json={"name": "Retry me"})
    assert receiver.wait_for(1, ok_only=True)[0]["status"] == 200
    assert len(receiver.requests) == 3
    ids = {r["headers"]["Elements-Webhook-Id"] for r in receiver.requests}
    assert len(ids) == 1  # same delivery retried
    receiver.statuses = [500, 500, 500]
    api.post("/hubs/finance/classes", inst["token"], json={"name": "Queue me"})
    receiver.wait_for(6)
    url_where = f"channel='webhook' and status='queued' and config.url='{receiver.url}'"
    deadline = time.monotonic() + 5
    while True:
        queued = api.get("/notifications/subscriptions/deliveries", params={"where": url_where}).json()
        if queued or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert len(queued) == 1 and queued[0]["attempts"] == 3
    assert queued[0]["payload"]["message"]["events"][0]["eventType"] == "CREATED"
    assert api.put("/notifications/subscriptions/deliveries").json()["redelivered"] == 1
    assert receiver.wait_for(7, ok_only=False)[6]["status"] == 200


def test_polling_mode_with_seconds_interval(api: Api, receiver: Receiver) -> None:
    inst = api.instance(
        "quickbooksonprem",
        **{
            "event.notification.enabled": "true",
            "event.vendor.type": "polling",
            "event.notification.callback.url": receiver.url,
        },
    )
    api.emu.state.records(inst["id"], "customers")  # generate before the poller's first watermark
    api.emu.state.records(inst["id"], "invoices")
    deadline = time.monotonic() + 5
    while inst["id"] not in api.emu.state.events._watermarks and time.monotonic() < deadline:
        time.sleep(0.02)
    done = api.emu.state.simulate_activity(inst["id"], ["customers", "invoices"], creates=2, updates=1, deletes=1)
    # customers: 2 created + 1 updated + 1 soft-deleted (UPDATED); invoices: 2 + 1 (hard delete invisible)
    events = _wait_events(api, inst["id"], 7)
    assert len(events) == 7
    by_type: dict[str, set[str]] = {}
    for e in events:
        by_type.setdefault(e["eventType"], set()).add(f"{e['objectType']}:{e['objectId']}")
    assert by_type["CREATED"] == {f"{r}:{i}" for r in done for i in done[r]["created"]}
    assert "DELETED" not in by_type
    assert f"customers:{done['customers']['deleted'][0]}" in by_type["UPDATED"]
    deliveries = receiver.wait_for(2)
    objects = {json.loads(d["body"])["message"]["raw"]["objectType"] for d in deliveries}
    assert objects == {"customers", "invoices"}
    # an event's date is >= the record's updated time (watermark safety)
    records = {r["ListID"]: r for r in api.emu.state.records(inst["id"], "customers")}
    for e in events:
        if e["objectType"] == "customers":
            rec_ms = timefmt.parse_instant(records[e["objectId"]]["TimeModified"])
            assert timefmt.parse_instant(e["eventDate"]) >= rec_ms


def test_listing_paging_and_filters(api: Api) -> None:
    inst = api.instance("freshbooks")
    api.emu.state.simulate_activity(inst["id"], ["items"], creates=3, updates=0, deletes=0)
    marker = timefmt.iso_utc(timefmt.now_ms() + 1)
    time.sleep(0.01)  # distinct eventDate for the second batch (not synchronisation)
    api.emu.state.simulate_activity(inst["id"], ["items"], creates=2, updates=0, deletes=0)
    events = _events(api, inst["id"])
    assert len(events) == 5
    assert len(_events(api, inst["id"], **{"from": marker})) == 2
    assert len(_events(api, inst["id"], to=marker)) == 3
    assert len(_events(api, inst["id"], where=f"eventDate >= '{marker}' and eventType = 'CREATED'")) == 2
    newest = _events(api, inst["id"], orderBy="eventDate desc")
    assert [e["id"] for e in newest] == [e["id"] for e in reversed(events)]
    r = api.get(f"/instances/{inst['id']}/events", params={"pageSize": 2})
    assert len(r.json()) == 2 and r.headers["Elements-Next-Page-Token"]
    r2 = api.get(
        f"/instances/{inst['id']}/events",
        params={"pageSize": 2, "nextPage": r.headers["Elements-Next-Page-Token"]},
    )
    assert [e["id"] for e in r.json() + r2.json()] == [e["id"] for e in events[:4]]
    all_events = api.get("/instances/events", params={"pageSize": 5000}).json()
    assert {e["id"] for e in events} <= {e["id"] for e in all_events}
    assert api.get(f"/instances/{inst['id']}/events", params={"from": "bad"}).status_code == 400
    assert {e["status"] for e in events} == {"RECEIVED"}  # events disabled: recorded, not delivered
