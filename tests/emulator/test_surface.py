"""Contract tests for the Finance-hub surface of issue 13, over real HTTP against the emulator.

Every resource of the §3.2 matrix per element (list, get, paging, CEQL, metadata consistent with the
records), CRUD where the matrix shows it, QBO/QBE reports against the records they summarise, hub-less
paths, element metadata, token-scoped configuration PATCH, inbound vendor webhooks, instance
transformations, bulk upload upserts/unknown objects, and the documented behaviours that used to differ.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cloudelements_emulator import EmulatorConfig, EmulatorServer
from cloudelements_emulator.bulkfiles import flatten
from cloudelements_emulator.elements import ELEMENTS
from cloudelements_emulator.qbo_ids import bare_id

from airflow_provider_cloudelements.catalog import (
    FRESHBOOKS_CLASSIC_ALL_RESOURCES,
    FRESHBOOKS_V2_ALL_RESOURCES,
    QBE_ALL_RESOURCES,
    QBE_REPORT_TYPES,
    QBO_ALL_RESOURCES,
    QBO_REPORTS,
)

from .conftest import QBO_BODY, Api, Receiver

_MATRIX = [
    *(("quickbooks", r) for r in QBO_ALL_RESOURCES),
    *(("quickbooksonprem", r) for r in QBE_ALL_RESOURCES),
    *(("freshbooksv2", r) for r in FRESHBOOKS_V2_ALL_RESOURCES),
    *(("freshbooks", r) for r in FRESHBOOKS_CLASSIC_ALL_RESOURCES),
]
_INSTANCES: dict[str, dict[str, Any]] = {}


def _inst(api: Api, key: str) -> dict[str, Any]:
    """One shared read-mostly instance per element for the matrix test."""
    if key not in _INSTANCES:
        _INSTANCES[key] = api.instance(key)
    return _INSTANCES[key]


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "string"


@pytest.mark.parametrize(("key", "resource"), _MATRIX, ids=[f"{k}:{r}" for k, r in _MATRIX])
def test_every_matrix_resource_lists_pages_filters_and_describes_itself(api: Api, key: str, resource: str) -> None:
    element = ELEMENTS[key]
    inst = _inst(api, key)
    truth = api.emu.state.records(inst["id"], resource)
    id_field = element.id_field(resource)
    expected = 1 if resource in element.singletons else api.emu.config.records_for(resource)
    assert len(truth) == expected
    first = api.get(f"/hubs/finance/{resource}", inst["token"], params={"pageSize": 2, "page": 1})
    assert first.status_code == 200, first.text
    assert [r[id_field] for r in first.json()] == [r[id_field] for r in truth[:2]]
    if expected > 2:
        token = first.headers["Elements-Next-Page-Token"]
        second = api.get(f"/hubs/finance/{resource}", inst["token"], params={"pageSize": 2, "nextPage": token})
        assert [r[id_field] for r in second.json()] == [r[id_field] for r in truth[2:4]]
    target = truth[-1]
    one = api.get(f"/hubs/finance/{resource}/{target[id_field]}", inst["token"])
    assert one.status_code == 200 and one.json() == target
    quoted = target[id_field] if isinstance(target[id_field], int) else f"'{target[id_field]}'"
    found = api.get(f"/hubs/finance/{resource}", inst["token"], params={"where": f"{id_field} = {quoted}"})
    assert found.status_code == 200, found.text
    assert found.json() == [target]
    meta = api.get(f"/hubs/finance/objects/{resource}/metadata", inst["token"]).json()
    types = {f["vendorPath"]: f["type"] for f in meta["fields"]}
    dates = {element.date_field, element.created_field}
    for path, value in flatten(truth[0]).items():
        assert path in types, f"{resource}: {path} missing from metadata"
        if path not in dates and not (isinstance(value, str) and value[:1] in "[{"):
            assert types[path] == _json_type(value), (resource, path, types[path], value)


def test_objects_and_hubless_paths_match_hub_paths(api: Api) -> None:
    inst = api.instance("quickbooks")
    assert api.get("/objects", inst["token"]).json() == list(QBO_ALL_RESOURCES)
    hub = api.get("/hubs/finance/customers", inst["token"], params={"pageSize": 5})
    plain = api.get("/customers", inst["token"], params={"pageSize": 5})
    other_hub = api.get("/hubs/crm/customers", inst["token"], params={"pageSize": 5})
    assert hub.json() == plain.json() == other_hub.json() and len(hub.json()) == 5
    assert api.get("/ping", inst["token"]).json()["instanceId"] == inst["id"]
    assert api.get("/customers/1", inst["token"]).json()["id"] == "1|0"
    job = api.post("/bulk/query", inst["token"], params={"q": "select * from customers"}).json()
    assert api.wait_bulk(inst["token"], job["id"])["recordsCount"] == 40
    # singular paths the vendor's tests use (reference §9)
    assert api.get("/hubs/finance/vendor", inst["token"]).json() == api.get("/vendors", inst["token"]).json()
    created = api.post("/hubs/finance/estimate", inst["token"], json={"customerRef": {"value": "1"}})
    assert created.status_code == 200
    assert api.get(f"/estimates/{created.json()['id']}", inst["token"]).status_code == 200


def test_element_metadata(api: Api) -> None:
    for key, element in ELEMENTS.items():
        for ref in (key, str(element.id)):
            body = api.get(f"/elements/{ref}/metadata").json()
            assert body["key"] == key and body["id"] == element.id and body["description"]
            assert body["events"] == {"supported": True, "methods": list(element.event_modes)}
            assert body["objects"] == list(element.resources)
    assert api.get("/elements/quickbooks/metadata").json()["events"]["methods"] == ["polling", "webhook"]
    assert api.get("/elements/nope/metadata").status_code == 404


def test_qbo_new_resources_crud(api: Api) -> None:
    inst = api.instance("quickbooks")
    token = inst["token"]
    for resource, body, change in (
        ("departments", {"name": "R&D"}, {"name": "Research"}),
        ("estimates", {"customerRef": {"value": "3"}, "totalAmt": 200}, {"customerMemo": {"value": "hi"}}),
        (
            "purchases",
            {"paymentType": "CHECK", "accountRef": {"value": "35"}, "docNumber": "P-1", "totalAmt": "711.15"},
            {"docNumber": "P-2"},
        ),
        ("tax-agencies", {"displayName": "Denver Tax"}, {"displayName": "Denver Tax Office"}),
    ):
        created = api.post(f"/hubs/finance/{resource}", token, json=body)
        assert created.status_code == 200, created.text
        rid = created.json()["id"]
        patched = api.patch(f"/hubs/finance/{resource}/{rid}", token, json=change)
        assert patched.status_code == 200 and all(patched.json()[k] == v for k, v in change.items())
        assert api.get(f"/hubs/finance/{resource}/{rid}", token).json() == patched.json()
        assert api.delete(f"/hubs/finance/{resource}/{rid}", token).status_code == 200
    assert api.get("/hubs/finance/purchases", token, params={"where": "docNumber = 'P-2'"}).json() == []
    # created records echo the seeded JSON types: QBO amounts are numbers
    assert api.emu.state.records(inst["id"], "purchases")  # generated
    purchase = api.post(
        "/hubs/finance/purchases",
        token,
        json={"paymentType": "CASH", "accountRef": {"value": "35"}, "totalAmt": "5"},
    ).json()
    assert purchase["totalAmt"] == 5.0 and isinstance(purchase["totalAmt"], float)


def test_qbo_singletons_preferences_and_company_info(api: Api) -> None:
    inst = api.instance("quickbooks")
    token = inst["token"]
    prefs = api.get("/hubs/finance/preferences", token).json()
    assert len(prefs) == 1 and prefs[0]["Id"] == prefs[0]["id"] and prefs[0]["SyncToken"] == "0"
    patched = api.patch(
        f"/hubs/finance/preferences/{prefs[0]['Id']}",
        token,
        json={"SyncToken": prefs[0]["SyncToken"], "sparse": True, "taxPrefs": {"usingSalesTax": False}},
    )
    assert patched.status_code == 200 and patched.json()["SyncToken"] == "1"
    assert patched.json()["taxPrefs"] == {"usingSalesTax": False}
    stale = api.patch(f"/hubs/finance/preferences/{prefs[0]['Id']}", token, json={"SyncToken": "0"})
    assert stale.status_code == 400
    assert api.post("/hubs/finance/preferences", token, json={}).status_code == 405
    info = api.get("/hubs/finance/company-info", token).json()
    assert len(info) == 1 and info[0]["companyName"]
    assert api.delete(f"/hubs/finance/company-info/{info[0]['id']}", token).status_code == 405


def test_qbe_new_resources_crud_with_edit_sequence(api: Api) -> None:
    inst = api.instance("quickbooksonprem")
    token = inst["token"]
    bodies: dict[str, dict[str, Any]] = {
        "checks": {"AccountRef": {"FullName": "Checking"}, "Amount": 12.5, "RefNumber": "C1"},
        "deposits": {"DepositToAccountRef": {"FullName": "Checking"}, "DepositTotal": "10.00"},
        "creditcard-charges": {"AccountRef": {"FullName": "Visa"}, "Amount": "5.98"},
        "creditcard-credits": {"AccountRef": {"FullName": "Visa"}, "Amount": "1.00"},
        "bill-payment-checks": {"PayeeEntityRef": {"FullName": "TEST"}, "Amount": "0.01", "RefNumber": "201"},
        "bill-payment-cards": {"PayeeEntityRef": {"FullName": "TEST"}, "Amount": "0.01"},
        "inventory-adjustments": {"AccountRef": {"FullName": "Opening Balance Equity"}, "Memo": "x"},
        "time-activities": {"EntityRef": {"FullName": "TEST"}, "Duration": "PT1H0M0S"},
        "vendor-credits": {"VendorRef": {"FullName": "TEST"}, "TotalAmount": "3.00"},
        "inventory-sites": {"Name": "Back Room"},
        "payroll-wage-items": {"Name": "Hourly", "WageType": "HourlyRegular"},
        "currencies": {"Name": "Peso", "CurrencyCode": "MXP"},
        "classes": {"Name": "Remodel"},
        "sales-orders": {"CustomerRef": {"FullName": "Blue, Dale"}, "RefNumber": "SO-1"},
        "item-receipts": {"VendorRef": {"FullName": "TEST"}},
    }
    for resource, body in bodies.items():
        id_field = ELEMENTS["quickbooksonprem"].id_field(resource)
        created = api.post(f"/hubs/finance/{resource}", token, json=body)
        assert created.status_code == 200, (resource, created.text)
        rec = created.json()
        stale = api.patch(f"/hubs/finance/{resource}/{rec[id_field]}", token, json={"EditSequence": "1", "Memo": "m"})
        assert stale.status_code == 400
        ok = api.patch(
            f"/hubs/finance/{resource}/{rec[id_field]}",
            token,
            json={"EditSequence": rec["EditSequence"], "Memo": "m"},
        )
        assert ok.status_code == 200 and ok.json()["Memo"] == "m"
        assert api.delete(f"/hubs/finance/{resource}/{rec[id_field]}", token).status_code == 200
    # QBXML amounts are strings: a number sent is echoed like the seeded records
    check = api.post("/hubs/finance/checks", token, json=bodies["checks"]).json()
    assert check["Amount"] == "12.50"
    # PurchaseOrderAdd has no required VendorRef in QBXML (churros' payload has none)
    po = api.post("/hubs/finance/purchase-orders", token, json={"RefNumber": "3", "TotalAmount": 840})
    assert po.status_code == 200 and po.json()["TotalAmount"] == "840.00"


def test_qbe_seeded_lookup_data(api: Api) -> None:
    token = api.instance("quickbooksonprem")["token"]
    for resource, name in (
        ("classes", "Automatic Pool Systems"),
        ("credit-terms", "1% 10 Net 30"),
        ("ledger-accounts", "Checking"),
        ("vendors", "TEST"),
        ("customers", "Blue, Dale"),
    ):
        found = api.get(f"/hubs/finance/{resource}", token, params={"where": f"Name = '{name}'"}).json()
        assert [r["Name"] for r in found] == [name]


def test_freshbooks_vendors_and_hooks(api: Api) -> None:
    classic = api.instance("freshbooks")
    token = classic["token"]
    vendor = api.post("/hubs/finance/vendors", token, json={"email": "filler@example.com", "task_id": "180153"})
    assert vendor.status_code == 200
    body = vendor.json()
    assert body["contractor_id"] == body["id"] and body["task_id"] == 180153  # seeded type: number
    assert api.patch(f"/hubs/finance/vendors/{body['id']}", token, json={"name": "Z"}).json()["name"] == "Z"
    assert api.delete(f"/hubs/finance/vendors/{body['id']}", token).status_code == 200
    hooks = api.get("/hubs/finance/hooks", token, params={"page": 2, "pageSize": 5}).json()
    assert [h["id"] for h in hooks] == [str(i) for i in range(6, 11)]
    v2 = api.instance("freshbooksv2")
    v2_vendor = api.get("/hubs/finance/vendors/1", v2["token"]).json()
    assert v2_vendor["id"] == 1 and v2_vendor["vendor_name"]
    assert api.get("/hubs/finance/hooks", v2["token"]).status_code == 404


def test_qbo_reports_sum_the_records_of_the_period(api: Api) -> None:
    inst = api.instance("quickbooks")
    token = inst["token"]
    meta = api.get("/hubs/finance/reports/metadata", token).json()
    assert [m["id"] for m in meta] == list(QBO_REPORTS)
    invoices = api.emu.state.records(inst["id"], "invoices")
    receipts = api.emu.state.records(inst["id"], "sales-receipts")
    start, end = "2025-03-01", "2025-05-31"
    expected = sum(r["totalAmt"] for r in invoices + receipts if start <= r["txnDate"] <= end)
    for params in (
        {"startDate": start, "endDate": end},
        {"where": f"startDate = '{start}' AND endDate = '{end}'"},
    ):
        report = api.get("/hubs/finance/reports/profit-and-loss", token, params=params).json()
        assert report["header"]["startPeriod"] == start and report["header"]["endPeriod"] == end
        income = next(s for s in report["rows"]["row"] if s["group"] == "Income")
        assert float(income["summary"]["colData"][1]["value"]) == pytest.approx(expected, abs=0.01)
    for rid in QBO_REPORTS:
        assert api.get(f"/hubs/finance/reports/{rid}", token, params={"dateMacro": "Last Year"}).status_code == 200
    macro = api.get("/hubs/finance/reports/balance-sheet", token, params={"createdDateRange": "Last Week"}).json()
    assert macro["header"]["dateMacro"] == "last week"
    assert api.get("/hubs/finance/reports/nope", token).status_code == 404
    assert api.get("/hubs/finance/reports/cash-flow", token, params={"startDate": "31/01/2025"}).status_code == 400
    qbe = api.instance("quickbooksonprem")
    assert api.get("/hubs/finance/reports/metadata", qbe["token"]).status_code == 404


def test_qbe_reports_one_row_with_title_per_report_name(api: Api) -> None:
    inst = api.instance("quickbooksonprem")
    token = inst["token"]
    types = api.get("/hubs/finance/report-types", token).json()
    assert {t["ReportName"]: t["ReportTitle"] for t in types} == QBE_REPORT_TYPES
    for name, title in QBE_REPORT_TYPES.items():
        where = (
            f"ReportName='{name}' and ReportPeriodStart = '2025-01-01T00:00:00' "
            "and ReportPeriodEnd = '2025-12-31T00:00:00'"
        )
        rows = api.get("/hubs/finance/reports", token, params={"where": where})
        assert rows.status_code == 200, rows.text
        assert len(rows.json()) == 1 and rows.json()[0]["ReportTitle"] == title
    invoices = api.emu.state.records(inst["id"], "invoices")
    expected = sum(float(r["TotalAmount"]) for r in invoices if "2025-01-01" <= r["TxnDate"] <= "2025-06-30")
    aging = api.get(
        "/hubs/finance/reports",
        token,
        params={
            "where": "ReportName='AR Aging Summary' and ReportPeriodStart='2025-01-01' and ReportPeriodEnd='2025-06-30'"
        },
    ).json()[0]
    assert float(aging["ReportData"]["TotalRow"]["ColData"][1]["value"]) == pytest.approx(expected, abs=0.01)
    fiscal = api.get("/hubs/finance/reports", token, params={"where": "ReportName='Trial Balance' and FiscalYear=2024"})
    assert fiscal.json()[0]["ReportPeriodEnd"] == "2024-12-31"
    assert api.get("/hubs/finance/reports", token).status_code == 400
    assert api.get("/hubs/finance/reports", token, params={"where": "ReportName='Nope'"}).status_code == 400


def test_token_scoped_configuration_patch(api: Api) -> None:
    inst = api.instance("quickbooks")
    entries = api.get("/instances/configuration", inst["token"]).json()
    entry = next(e for e in entries if e["key"] == "event.poller.refresh_interval")
    r = api.patch(f"/instances/configuration/{entry['id']}", inst["token"], json={"propertyValue": "1"})
    assert r.status_code == 200 and r.json()["propertyValue"] == "1"
    assert api.get(f"/instances/{inst['id']}").json()["configuration"]["event.poller.refresh_interval"] == "1"
    assert api.get(f"/instances/configuration/{entry['id']}", inst["token"]).json()["propertyValue"] == "1"
    assert (
        api.patch(f"/instances/configuration/{entry['id']}", "bad-token", json={"propertyValue": "2"}).status_code
        == 401
    )
    assert api.patch("/instances/configuration/999999", inst["token"], json={"propertyValue": "2"}).status_code == 404


def test_inbound_vendor_webhooks_enter_the_event_pipeline(api: Api, receiver: Receiver) -> None:
    body = {
        **QBO_BODY,
        "name": "webhook target",
        "providerData": {"code": "c", "realmId": "realm-inbound-1"},
        "configuration": {
            **QBO_BODY["configuration"],
            "event.notification.enabled": "true",
            "event.vendor.type": "webhook",
            "event.notification.callback.url": receiver.url,
        },
    }
    inst = api.post("/instances", json=body).json()
    note = {
        "eventNotifications": [
            {
                "realmId": "realm-inbound-1",
                "dataChangeEvent": {
                    "entities": [
                        {"name": "Invoice", "id": "130", "operation": "Create"},
                        {"name": "BillPayment", "id": "7", "operation": "Delete"},
                    ]
                },
            }
        ]
    }
    r = api.s.post(api.emu.base_url + "/events/quickbooks", json=note)
    assert r.status_code == 200 and r.json()["instanceId"] == inst["id"]
    events = api.get(f"/instances/{inst['id']}/events").json()
    got = {(e["objectType"], e["objectId"], e["eventType"]) for e in events}
    assert {("invoices", "130", "CREATED"), ("bill-payments", "7", "DELETED")} <= got
    delivered = [json.loads(d["body"])["message"]["events"][0] for d in receiver.wait_for(2)]
    assert {(e["objectType"], e["objectId"]) for e in delivered} == {
        ("invoices", "130"),
        ("bill-payments", "7"),
    }
    fb = api.instance("freshbooks")
    encoded = base64.b64encode(str(fb["id"]).encode()).decode()
    form = api.s.post(
        api.emu.base_url + f"/events/freshbooks/{encoded}", data={"name": "invoice.update", "object_id": "9"}
    )
    assert form.status_code == 200
    assert ("invoices", "9", "UPDATED") in {
        (e["objectType"], e["objectId"], e["eventType"]) for e in api.get(f"/instances/{fb['id']}/events").json()
    }
    verify = api.s.post(
        api.emu.base_url + f"/events/freshbooks/{encoded}", data={"name": "callback.verify", "verifier": "x"}
    )
    assert verify.status_code == 200 and verify.json()["events"] == []
    assert api.s.post(api.emu.base_url + "/events/quickbooks", json={"what": 1}).status_code == 400
    assert api.s.post(api.emu.base_url + "/events/nope", json={}).status_code == 404


def test_instance_transformations_add_mapped_fields(api: Api) -> None:
    inst = api.instance("quickbooksonprem")
    iid, token = inst["id"], inst["token"]
    definition = {"fields": [{"path": "id", "type": "string"}]}
    assert api.post(f"/instances/{iid}/objects/invoices/definitions", json=definition).status_code == 200
    assert api.post(f"/instances/{iid}/objects/invoices/definitions", json=definition).status_code == 409
    mapping = {"vendorName": "Invoice", "fields": [{"path": "id", "vendorPath": "TxnID"}]}
    assert api.post(f"/instances/{iid}/transformations/invoices", json=mapping).json()["level"] == "instance"
    rows = api.get("/hubs/finance/invoices", token, params={"pageSize": 3}).json()
    assert rows and all(r["id"] == r["TxnID"] for r in rows)
    created = api.post("/hubs/finance/invoices", token, json={"CustomerRef": {"FullName": "Blue, Dale"}}).json()
    assert created["id"] == created["TxnID"]
    assert api.get(f"/hubs/finance/invoices/{created['id']}", token).json()["id"] == created["TxnID"]
    assert api.get(f"/instances/{iid}/transformations", token=None).json()["invoices"]["vendorName"] == "Invoice"
    assert api.delete(f"/instances/{iid}/transformations").status_code == 200
    assert "id" not in api.get("/hubs/finance/invoices", token, params={"pageSize": 1}).json()[0]


def _upload(api: Api, token: str, obj: str, content: bytes, filename: str, meta: dict | None = None) -> dict:
    files = {"file": (filename, content)}
    data = {"metaData": json.dumps(meta or {})}
    r = api.post(f"/hubs/finance/bulk/{obj}", token, files=files, data=data)
    assert r.status_code == 200, r.text
    return api.wait_bulk(token, r.json()["id"])


def test_bulk_upload_formats_and_identifier_upserts(api: Api) -> None:
    inst = api.instance("quickbooks")
    token = inst["token"]
    before = api.emu.state.records(inst["id"], "customers")
    target = before[4]
    rows = [
        {"displayName": target["displayName"], "companyName": "Upserted Co"},
        {"displayName": "Brand New"},
    ]
    status = _upload(
        api, token, "customers", json.dumps(rows).encode(), "c.json", {"identifierFieldName": "displayName"}
    )
    assert (status["recordsCount"], status["recordsFailedCount"]) == (2, 0)
    after = api.emu.state.records(inst["id"], "customers")
    assert len(after) == len(before) + 1
    # an upsert is an update: the syncToken (and with it the QBO read id "<id>|<syncToken>") moves on
    assert next(r for r in after if bare_id(r["id"]) == bare_id(target["id"]))["companyName"] == "Upserted Co"
    ndjson = b'{"displayName": "Line One"}\n{"displayName": "Line Two"}\n'
    assert _upload(api, token, "customers", ndjson, "c.ndjson", {"format": "json"})["recordsCount"] == 2
    csv_text = b"displayName,companyName\nBrand New,CSV Co\nCsv Only,X\n"
    status = _upload(
        api, token, "customers", csv_text, "c.csv", {"format": "csv", "identifierFieldName": "displayName"}
    )
    assert status["recordsCount"] == 2
    final = api.emu.state.records(inst["id"], "customers")
    assert len(final) == len(before) + 4
    assert [r["companyName"] for r in final if r["displayName"] == "Brand New"] == ["CSV Co"]


def test_bulk_upload_unknown_object_fails_every_record_with_paged_errors(api: Api) -> None:
    inst = api.instance("quickbooks")
    token = inst["token"]
    rows = [{"name": f"n{i}"} for i in range(3)]
    status = _upload(api, token, "widgets", json.dumps(rows).encode(), "w.json")
    assert status["status"] == "COMPLETED"
    assert (status["recordsCount"], status["recordsFailedCount"]) == (0, 3)
    seen, token_param = [], None
    while True:
        params = {"pageSize": 1, **({"nextPage": token_param} if token_param else {})}
        page = api.get(f"/hubs/finance/bulk/{status['id']}/errors", token, params=params)
        seen += page.json()
        token_param = page.headers.get("Elements-Next-Page-Token")
        if not token_param:
            break
    assert [e["record"]["name"] for e in seen] == ["n0", "n1", "n2"]
    assert all("widgets" in e["message"] for e in seen)


def test_documented_behaviours(api: Api) -> None:
    # names and tags: markup stripped, not HTML-escaped
    created = api.post(
        "/instances",
        json={**QBO_BODY, "name": '<a href="#" onClick="alert(1)">R&D books</a>', "tags": ["<b>A&B</b>"]},
    ).json()
    assert created["name"] == "R&D books" and created["tags"] == ["A&B"]
    # PUT answers without providerData
    put = api.put(f"/instances/{created['id']}", json={"name": "renamed", "providerData": {"code": "new"}})
    assert put.status_code == 200 and "providerData" not in put.json()
    token = created["token"]
    # QBO sales receipts need no customerRef (churros' payload has none)
    assert api.post("/hubs/finance/sales-receipts", token, json={"line": [{"amount": 2.99}]}).status_code == 200
    # QBO CEQL: non-queryable and unknown properties → 400 QueryValidationError
    for where in ("taxable = true", "customerRef.name = 'x'", "nope = 1", "line = 'x'"):
        r = api.get(
            "/hubs/finance/invoices" if "customerRef" in where else "/hubs/finance/customers",
            token,
            params={"where": where},
        )
        assert r.status_code == 400 and "QueryValidationError" in r.json()["message"], (where, r.text)
    # Accept that rules out JSON → 406; PDF for QBO transactions
    assert api.get("/hubs/finance/customers", token, headers={"Accept": "text/html"}).status_code == 406
    assert api.get("/hubs/finance/customers", token, headers={"Accept": "text/html, */*;q=0.1"}).status_code == 200
    pdf = api.get("/hubs/finance/invoices/3", token, headers={"Accept": "application/pdf"})
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF-") and b'"id":"3|0"' in pdf.content
    # bulk CSV is text/csv exactly
    job = api.post("/hubs/finance/bulk/query", token, params={"q": "select * from classes"}).json()
    api.wait_bulk(token, job["id"])
    csv_resp = api.get(f"/hubs/finance/bulk/{job['id']}/classes", token, headers={"Accept": "text/csv"})
    assert csv_resp.headers["content-type"] == "text/csv"
    # created records echo seeded JSON types (FreshBooks numbers, churros sends strings)
    fb = api.instance("freshbooks")["token"]
    item = api.post("/hubs/finance/items", fb, json={"name": "Churros", "unit_cost": "11.99", "quantity": "1"}).json()
    assert item["unit_cost"] == 11.99 and item["quantity"] == 1


def test_qbo_sync_token_ids_flag() -> None:
    """``qbo_sync_token_ids=True``: ids read ``<id>|<syncToken>`` (QBO tips page); both forms work in paths and CEQL."""
    with EmulatorServer(EmulatorConfig(seed=3, records_per_resource=6, qbo_sync_token_ids=True)) as emu:
        api = Api(emu)
        inst = api.instance("quickbooks")
        token = inst["token"]
        listed = api.get("/hubs/finance/customers", token).json()
        assert [r["id"] for r in listed] == [f"{i}|0" for i in range(1, 7)]
        assert api.get("/hubs/finance/customers/3", token).json()["id"] == "3|0"
        assert api.get("/hubs/finance/customers/3|0", token).json()["id"] == "3|0"
        assert [r["id"] for r in api.get("/customers", token, params={"where": "id = '3'"}).json()] == ["3|0"]
        updated = api.patch("/hubs/finance/customers/3|0", token, json={"companyName": "New"}).json()
        assert updated["id"] == "3|1" and updated["syncToken"] == "1"
        stale = api.patch("/hubs/finance/customers/3|0", token, json={"companyName": "Old"})
        assert stale.status_code == 400 and "syncToken" in stale.json()["message"]
        created = api.post("/hubs/finance/customers", token, json={"displayName": "Fresh"}).json()
        assert created["id"] == "7|0"
        job = api.post("/hubs/finance/bulk/query", token, params={"q": "select * from customers where id = '3'"})
        api.wait_bulk(token, job.json()["id"])
        lines = api.get(
            f"/hubs/finance/bulk/{job.json()['id']}/customers", token, headers={"Accept": "application/json"}
        )
        assert [json.loads(x)["id"] for x in lines.text.splitlines()] == ["3|1"]
        assert api.delete("/hubs/finance/customers/3", token).status_code == 200


def test_element_resource_extension_serves_qbo_query(api: Api) -> None:
    """``POST /elements/{key}/resources`` (churros ``quickbooks/customers-search.js``)."""
    inst = api.instance("quickbooks")
    definition = {
        "method": "GET",
        "path": "/customers-search",
        "vendorPath": "/v3/company/{realmID}/query",
        "vendorMethod": "GET",
        "rootKey": "|QueryResponse.Customer",
        "parameters": [{"type": "value", "vendorName": "query", "name": "select * from Customer"}],
    }
    created = api.post("/elements/quickbooks/resources", json=definition)
    assert created.status_code == 200
    rid = created.json()["id"]
    try:
        rows = api.get("/customers-search", inst["token"], params={"where": "q='test'"}).json()
        truth = api.emu.state.records(inst["id"], "customers")
        assert [r["Id"] for r in rows] == [r["id"] for r in truth] and rows[0]["DisplayName"]
        assert [r["id"] for r in api.get("/elements/39/resources").json()] == [rid]
        other = {
            **definition,
            "path": "/raw",
            "vendorPath": "/v3/company/{realmID}/customer",
            "parameters": [],
        }
        other_id = api.post("/elements/quickbooks/resources", json=other).json()["id"]
        assert api.get("/raw", inst["token"]).status_code == 501
        assert api.delete(f"/elements/quickbooks/resources/{other_id}").status_code == 200
    finally:
        assert api.delete(f"/elements/quickbooks/resources/{rid}").status_code == 200
    assert api.get("/customers-search", inst["token"]).status_code == 404
    assert api.post("/elements/quickbooks/resources", json={"path": "nope"}).status_code == 400


def test_cli_flag_for_sync_token_ids() -> None:
    from cloudelements_emulator.cli import build_parser, config_from_args

    assert config_from_args(build_parser().parse_args(["--qbo-sync-token-ids"])).qbo_sync_token_ids is True
    assert config_from_args(build_parser().parse_args([])).qbo_sync_token_ids is True  # the real element's form
    assert config_from_args(build_parser().parse_args(["--no-qbo-sync-token-ids"])).qbo_sync_token_ids is False
