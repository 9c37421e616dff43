"""Bulk lifecycle, downloads, errors, cancel, upload and callbacks (reference §4)."""

from __future__ import annotations

import csv
import io
import json
import time

from cloudelements_emulator.webhooks import sign

from .conftest import Api, Receiver


def _submit(api: Api, token: str, q: str, **kw) -> str:  # type: ignore[no-untyped-def]
    r = api.post("/hubs/finance/bulk/query", token, params={"q": q, **kw.pop("params", {})}, **kw)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "CREATED" and isinstance(body["id"], str)
    return body["id"]


def test_lifecycle_ndjson_equals_ground_truth(api: Api) -> None:
    inst = api.instance()
    before = api.emu.state.stats()["bulk_jobs_created"].get(inst["id"], 0)
    job = _submit(api, inst["token"], "select * from invoices")
    seen = {api.get(f"/hubs/finance/bulk/{job}/status", inst["token"]).json()["status"]}
    early = api.get(f"/hubs/finance/bulk/{job}/invoices", inst["token"], headers={"Accept": "application/json"})
    assert early.status_code in (400, 404) and "message" in early.json()
    status = api.wait_bulk(inst["token"], job)
    seen.add(status["status"])
    assert seen <= {"CREATED", "RUNNING", "COMPLETED"} and status["status"] == "COMPLETED"
    assert status["recordsCount"] == 450 and status["recordsFailedCount"] == 0
    # changes after the snapshot do not alter the file
    api.emu.state.simulate_activity(inst["id"], ["invoices"], creates=3, updates=0, deletes=0)
    r = api.get(f"/hubs/finance/bulk/{job}/invoices", inst["token"], headers={"Accept": "application/json"})
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert lines == api.emu.state.records(inst["id"], "invoices")[:450]
    assert api.emu.state.stats()["bulk_jobs_created"][inst["id"]] == before + 1


def test_where_and_from_to(api: Api) -> None:
    inst = api.instance()
    truth = api.emu.state.records(inst["id"], "invoices")
    lo, hi = "2025-03-01T00:00:00Z", "2025-09-01T00:00:00+00:00"
    lo_ms, hi_ms = 1740787200000, 1756684800000
    job = _submit(api, inst["token"], "select * from invoices where totalAmt > 500", params={"from": lo, "to": hi})
    assert api.wait_bulk(inst["token"], job)["status"] == "COMPLETED"
    got = api.get(f"/hubs/finance/bulk/{job}/invoices", inst["token"], headers={"Accept": "application/json"})
    want = [x for x in truth if x["totalAmt"] > 500 and lo_ms <= x["metaData"]["lastUpdatedTime"] < hi_ms]
    assert [json.loads(x) for x in got.text.splitlines()] == want and want
    for bad in ("select id from invoices", "delete from invoices", "select * from widgets"):
        r = api.post("/hubs/finance/bulk/query", inst["token"], params={"q": bad})
        assert r.status_code in (400, 404)
    r = api.post("/hubs/finance/bulk/query", inst["token"], params={"q": "select * from invoices where a = 1 or b = 2"})
    assert r.status_code == 400
    r = api.post("/hubs/finance/bulk/query", inst["token"], params={"q": "select * from invoices", "from": "nope"})
    assert r.status_code == 400


def test_csv_download(api: Api) -> None:
    inst = api.instance("quickbooksonprem")
    job = _submit(api, inst["token"], "select * from customers")
    api.wait_bulk(inst["token"], job)
    r = api.get(f"/hubs/finance/bulk/{job}/customers", inst["token"], headers={"Accept": "text/csv"})
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    truth = api.emu.state.records(inst["id"], "customers")
    assert [row["ListID"] for row in rows] == [t["ListID"] for t in truth]
    assert rows[0]["BillAddress.City"] == truth[0]["BillAddress"]["City"]
    assert (
        api.get(f"/hubs/finance/bulk/{job}/customers", inst["token"], headers={"Accept": "application/xml"}).status_code
        == 406
    )
    assert api.get(f"/hubs/finance/bulk/{job}/vendors", inst["token"]).status_code == 404


def test_complete_status_switch() -> None:
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(bulk_done_status="COMPLETE", bulk_min_seconds=0.05)) as emu:
        api = Api(emu)
        inst = api.instance("freshbooks")
        job = _submit(api, inst["token"], "select * from customers")
        assert api.wait_bulk(inst["token"], job)["status"] == "COMPLETE"
        r = api.get(f"/hubs/finance/bulk/{job}/customers", inst["token"], headers={"Accept": "application/json"})
        assert len(r.text.splitlines()) == 40


def test_failed_records_and_paged_errors(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    faults(bulk_failed_records=5)
    inst = api.instance()
    job = _submit(api, inst["token"], "select * from customers")
    status = api.wait_bulk(inst["token"], job)
    assert status["recordsCount"] == 35 and status["recordsFailedCount"] == 5
    pages, params = [], {"pageSize": 2}
    while True:
        r = api.get(f"/hubs/finance/bulk/{job}/errors", inst["token"], params=params)
        pages.append(r.json())
        if "Elements-Next-Page-Token" not in r.headers:
            break
        params = {"pageSize": 2, "nextPage": r.headers["Elements-Next-Page-Token"]}
    assert [len(p) for p in pages] == [2, 2, 1]
    failed_ids = {e["recordId"] for p in pages for e in p}
    lines = api.get(
        f"/hubs/finance/bulk/{job}/customers", inst["token"], headers={"Accept": "application/json"}
    ).text.splitlines()
    assert len(lines) == 35 and not failed_ids & {json.loads(x)["id"] for x in lines}


def test_bulk_fail_fault(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    faults(bulk_fail=True)
    inst = api.instance()
    job = _submit(api, inst["token"], "select * from customers")
    assert api.wait_bulk(inst["token"], job)["status"] == "FAILED"


def test_cancel_and_jobs_list(api: Api) -> None:
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(bulk_min_seconds=30)) as emu:
        api2 = Api(emu)
        inst = api2.instance()
        job = _submit(api2, inst["token"], "select * from invoices")
        r = api2.put(f"/hubs/finance/bulk/{job}/cancel", inst["token"])
        assert r.status_code == 200 and r.json()["status"] == "CANCELLED"
        assert api2.get(f"/hubs/finance/bulk/{job}/status", inst["token"]).json()["status"] == "CANCELLED"
        jobs = api2.get("/hubs/finance/bulk/jobs", inst["token"]).json()
        assert [j["id"] for j in jobs] == [job]
        filtered = api2.get("/hubs/finance/bulk/jobs", inst["token"], params={"where": "job_status = 'COMPLETED'"})
        assert filtered.json() == []
        assert api2.get("/hubs/finance/bulk/999/status", inst["token"]).status_code == 404


def test_upload_csv_and_ndjson_with_failures(api: Api) -> None:
    inst = api.instance()
    csv_file = "displayName,givenName,primaryEmailAddr.address\nAcme Co,Ann,ann@example.com\n,NoName,x@y.z\n"
    r = api.post(
        "/hubs/finance/bulk/customers",
        inst["token"],
        files={"file": ("c.csv", csv_file, "text/csv")},
        data={"metaData": json.dumps({"format": "csv"})},
    )
    assert r.status_code == 200, r.text
    status = api.wait_bulk(inst["token"], r.json()["id"])
    assert status["recordsCount"] == 1 and status["recordsFailedCount"] == 1
    errors = api.get(f"/hubs/finance/bulk/{r.json()['id']}/errors", inst["token"]).json()
    assert len(errors) == 1 and "displayName" in errors[0]["message"]
    created = [c for c in api.emu.state.records(inst["id"], "customers") if c["displayName"] == "Acme Co"]
    assert created[0]["primaryEmailAddr"] == {"address": "ann@example.com"}
    ndjson = '{"customerRef": {"value": "1"}, "totalAmt": 5}\nnot json\n{"totalAmt": 3}\n'
    r = api.post("/hubs/finance/bulk/invoices", inst["token"], files={"file": ("i.json", ndjson)})
    status = api.wait_bulk(inst["token"], r.json()["id"])
    assert status["recordsCount"] == 1 and status["recordsFailedCount"] == 2
    array = json.dumps([{"name": "Array Class"}, "not an object"])
    r = api.post(
        "/hubs/finance/bulk/classes",
        inst["token"],
        files={"file": ("c.json", array)},
        data={"metaData": json.dumps({"format": "json"})},
    )
    status = api.wait_bulk(inst["token"], r.json()["id"])
    assert status["recordsCount"] == 1 and status["recordsFailedCount"] == 1
    assert api.post("/hubs/finance/bulk/invoices", inst["token"], data={"x": "1"}).status_code == 400


def test_signed_callback(api: Api, receiver: Receiver) -> None:
    key = "bulk-signing-key"
    inst = api.instance(**{"event.notification.signature.key": key})
    job = _submit(api, inst["token"], "select * from vendors", headers={"Elements-Async-Callback-Url": receiver.url})
    got = receiver.wait_for(1)[0]
    body = json.loads(got["body"])
    assert body["id"] == job and body["status"] == "COMPLETED" and body["recordsCount"] == 40
    assert got["headers"]["Elements-Webhook-Signature"] == sign(got["body"], key)
    # unsigned when the instance has no key
    plain = api.instance()
    _submit(api, plain["token"], "select * from vendors", headers={"Elements-Async-Callback-Url": receiver.url})
    second = receiver.wait_for(2)[1]
    assert "Elements-Webhook-Signature" not in second["headers"]


def test_min_seconds_respected(api: Api) -> None:
    inst = api.instance()
    started = time.monotonic()
    job = _submit(api, inst["token"], "select * from classes")
    api.wait_bulk(inst["token"], job)
    assert time.monotonic() - started >= 0.2
