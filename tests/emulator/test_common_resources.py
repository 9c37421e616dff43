"""Contract tests of common resources and transformations (reference §10) over real HTTP.

Every read is compared with the emulator's ground truth (``EmulatorState.records``): the common
record must carry exactly the mapped vendor values. Common names are unique per test (the emulator
is shared by the session) and organization/account-level entries are removed afterwards.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cloudelements_emulator.commonresources import ACCOUNT_ID
from cloudelements_emulator.transform import iso, parse_date

from .conftest import Api, Receiver

QBE_MASK = "yyyy-MM-dd'T'HH:mm:ssXXX"


@pytest.fixture
def clean(api: Api) -> Iterator[None]:
    yield
    assert api.delete("/organizations/objects/definitions").status_code == 200
    assert api.delete("/accounts/objects/definitions").status_code == 200
    for key in ("quickbooks", "quickbooksonprem", "freshbooksv2", "freshbooks"):
        assert api.delete(f"/organizations/elements/{key}/transformations").status_code == 200
        assert api.delete(f"/accounts/{ACCOUNT_ID}/elements/{key}/transformations").status_code == 200


def _truth(api: Api, iid: int, resource: str) -> list[dict[str, Any]]:
    assert api.emu.state is not None
    return api.emu.state.records(iid, resource)


CUSTOMER_FIELDS = [
    {"path": "id", "type": "string"},
    {"path": "name", "type": "string"},
    {"path": "address.city", "type": "string"},
    {"path": "balance", "type": "number"},
    {"path": "active", "type": "boolean"},
    {"path": "updated_at", "type": "date"},
]
QBE_CUSTOMERS = {
    "vendorName": "Customer",
    "fields": [
        {"path": "id", "vendorPath": "ListID"},
        {"path": "name", "vendorPath": "Name"},
        {"path": "address.city", "vendorPath": "BillAddress.City"},
        {"path": "balance", "vendorPath": "Balance", "type": "number"},
        {"path": "active", "vendorPath": "IsActive", "type": "boolean"},
        {"path": "updated_at", "vendorPath": "TimeModified", "type": "date", "vendorType": QBE_MASK},
    ],
}


def test_definitions_crud_every_level(api: Api, clean: None) -> None:
    body = {"fields": CUSTOMER_FIELDS}
    inst = api.instance("quickbooksonprem")
    for prefix, level in (
        ("/organizations", "organization"),
        ("/accounts", "account"),
        (f"/accounts/{ACCOUNT_ID}", "account"),
        (f"/instances/{inst['id']}", "instance"),
    ):
        name = f"crDef{level.title()}"
        created = api.post(f"{prefix}/objects/{name}/definitions", json=body)
        assert created.status_code == 200, created.text
        assert created.json() == {"fields": CUSTOMER_FIELDS, "level": level}
        assert api.post(f"{prefix}/objects/{name}/definitions", json=body).status_code == 409
        assert api.get(f"{prefix}/objects/{name}/definitions").json()["fields"] == CUSTOMER_FIELDS
        assert name in api.get(f"{prefix}/objects/definitions").json()
        replaced = api.put(f"{prefix}/objects/{name}/definitions", json={"fields": CUSTOMER_FIELDS[:2]})
        assert replaced.json()["fields"] == CUSTOMER_FIELDS[:2]
        assert api.delete(f"{prefix}/objects/{name}/definitions").status_code == 200
        assert api.get(f"{prefix}/objects/{name}/definitions").status_code == 404
        assert api.delete(f"{prefix}/objects/{name}/definitions").status_code == 404
    many = {"crA": {"fields": CUSTOMER_FIELDS[:1]}, "crB": {"fields": CUSTOMER_FIELDS[:2]}}
    posted = api.post("/organizations/objects/definitions", json=many)
    assert posted.status_code == 200 and set(posted.json()) == {"crA", "crB"}
    again = api.post("/organizations/objects/definitions", json={"crC": many["crA"], "crB": many["crB"]})
    assert again.status_code == 409 and "crB" in again.json()["message"]
    assert "crC" not in api.get("/organizations/objects/definitions").json()  # all or nothing
    assert api.get("/organizations/objects/definitions", params={"systemOnly": "true"}).json() == {}
    assert api.get("/accounts/999/objects/definitions").status_code == 404
    assert api.get("/instances/999999/objects/definitions").status_code == 404
    dup = {"fields": [{"path": "id", "type": "string"}, {"path": "id", "type": "number"}]}
    assert api.post("/organizations/objects/crDup/definitions", json=dup).status_code == 400
    assert (
        api.post(
            "/organizations/objects/crBad/definitions", json={"fields": [{"path": "x", "type": "money"}]}
        ).status_code
        == 400
    )
    assert (
        api.get("/organizations/objects/definitions", token=None, headers={"Authorization": "User x"}).status_code
        == 401
    )


def test_transformations_crud_and_validation(api: Api, clean: None) -> None:
    inst = api.instance("quickbooksonprem")
    for base in (
        "/organizations/elements/quickbooksonprem/transformations",
        f"/accounts/{ACCOUNT_ID}/elements/quickbooksonprem/transformations",
        f"/instances/{inst['id']}/transformations",
    ):
        created = api.post(f"{base}/crCustomers", json=QBE_CUSTOMERS)
        assert created.status_code == 200, created.text
        assert created.json()["vendorName"] == "Customer" and created.json()["fields"] == QBE_CUSTOMERS["fields"]
        assert api.post(f"{base}/crCustomers", json=QBE_CUSTOMERS).status_code == 409
        assert api.get(base).json()["crCustomers"]["level"] == created.json()["level"]
        assert (
            api.put(f"{base}/crCustomers", json={**QBE_CUSTOMERS, "fields": QBE_CUSTOMERS["fields"][:1]}).status_code
            == 200
        )
        assert len(api.get(f"{base}/crCustomers").json()["fields"]) == 1
        assert api.delete(f"{base}/crCustomers").status_code == 200
        assert api.get(f"{base}/crCustomers").status_code == 404
        assert api.delete(f"{base}/crCustomers").status_code == 404
    assert api.get("/organizations/elements/nope/transformations").status_code == 404
    assert api.get("/organizations/elements/195/transformations").status_code == 200  # element id works too
    bad_vendor = {**QBE_CUSTOMERS, "vendorName": "NoSuchObject"}
    assert api.post("/organizations/elements/quickbooksonprem/transformations/crX", json=bad_vendor).status_code == 400
    dup = {
        "vendorName": "Customer",
        "fields": [{"path": "a", "vendorPath": "Name"}, {"path": "a", "vendorPath": "FullName"}],
    }
    r = api.post("/organizations/elements/quickbooksonprem/transformations/crX", json=dup)
    assert r.status_code == 400 and "'a'" in r.json()["message"]
    bad_path = {"vendorName": "Customer", "fields": [{"path": "a", "vendorPath": "Lines[*].x[*].y"}]}
    assert api.post("/organizations/elements/quickbooksonprem/transformations/crX", json=bad_path).status_code == 400
    bad_type = {"vendorName": "Customer", "fields": [{"path": "a", "vendorPath": "Name", "type": "money"}]}
    assert api.post("/organizations/elements/quickbooksonprem/transformations/crX", json=bad_type).status_code == 400


def _expected_customer(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"id": raw["ListID"], "name": raw["Name"], "balance": float(raw["Balance"])}
    if raw.get("BillAddress", {}).get("City"):
        out["address"] = {"city": raw["BillAddress"]["City"]}
    out["active"] = raw["IsActive"]
    ms = parse_date(raw["TimeModified"], QBE_MASK)
    assert ms is not None
    out["updated_at"] = iso(ms)
    return out


def test_common_resource_read_mapped_and_levels(api: Api, clean: None) -> None:
    inst = api.instance("quickbooksonprem")
    iid, token = inst["id"], inst["token"]
    assert api.get("/hubs/finance/crCustomers", token).status_code == 404  # nothing defined yet
    api.post("/organizations/objects/crCustomers/definitions", json={"fields": CUSTOMER_FIELDS})
    api.post("/organizations/elements/quickbooksonprem/transformations/crCustomers", json=QBE_CUSTOMERS)
    truth = _truth(api, iid, "customers")
    rows = api.get("/hubs/finance/crCustomers", token, params={"pageSize": 500}).json()
    assert rows == [_expected_customer(r) for r in truth]
    one = api.get(f"/hubs/finance/crCustomers/{truth[3]['ListID']}", token).json()
    assert one == _expected_customer(truth[3])
    # account level wins over organization, instance level over both
    account = {**QBE_CUSTOMERS, "fields": [*QBE_CUSTOMERS["fields"][:1], {"path": "name", "vendorPath": "FullName"}]}
    api.post(f"/accounts/{ACCOUNT_ID}/elements/quickbooksonprem/transformations/crCustomers", json=account)
    assert api.get("/hubs/finance/crCustomers", token, params={"pageSize": 2}).json()[0] == {
        "id": truth[0]["ListID"],
        "name": truth[0]["FullName"],
    }
    mine = {
        "vendorName": "customers",
        "fields": [{"path": "id", "vendorPath": "ListID"}, {"path": "name", "vendorPath": "LastName"}],
    }
    assert api.post(f"/instances/{iid}/transformations/crCustomers", json=mine).status_code == 200
    assert api.get("/hubs/finance/crCustomers", token, params={"pageSize": 1}).json()[0]["name"] == truth[0]["LastName"]
    # defaultTransformations=false: only the instance level; transformationsEnabled=false: none
    other = api.instance("quickbooksonprem")
    assert (
        api.get("/hubs/finance/crCustomers", other["token"], params={"pageSize": 1}).json()[0]["name"]
        == (_truth(api, other["id"], "customers")[0]["FullName"])
    )
    assert (
        api.patch(f"/instances/{other['id']}", json={"defaultTransformations": False}).json()["defaultTransformations"]
        is False
    )
    assert api.get("/hubs/finance/crCustomers", other["token"]).status_code == 404
    assert (
        api.patch(f"/instances/{iid}", json={"transformationsEnabled": False}).json()["transformationsEnabled"] is False
    )
    assert api.get("/hubs/finance/crCustomers", token).status_code == 404
    assert api.get(f"/instances/{iid}", token=None).json()["transformationsEnabled"] is False
    api.patch(f"/instances/{iid}", json={"transformationsEnabled": True})
    api.delete(f"/instances/{iid}/transformations/crCustomers")
    assert api.get("/hubs/finance/crCustomers", token, params={"pageSize": 1}).json()[0]["name"] == truth[0]["FullName"]
    # the definition limits a common resource's fields
    api.put("/organizations/objects/crCustomers/definitions", json={"fields": CUSTOMER_FIELDS[:1]})
    api.delete(f"/accounts/{ACCOUNT_ID}/elements/quickbooksonprem/transformations/crCustomers")
    assert api.get("/hubs/finance/crCustomers", token, params={"pageSize": 1}).json()[0] == {"id": truth[0]["ListID"]}


def test_paths_indexes_filters_wildcards_and_script(api: Api, clean: None) -> None:
    inst = api.instance("quickbooks")
    token = inst["token"]
    body = {
        "vendorName": "Invoice",
        "fields": [
            {"path": "id", "vendorPath": "id"},
            {"path": "customer.id", "vendorPath": "customerRef.value"},
            {"path": "first_line_amount", "vendorPath": "line[0].amount", "type": "number"},
            {
                "path": "sales_line_item",
                "vendorPath": "line[?(@.detailType=='SALES_ITEM_LINE_DETAIL')].salesItemLineDetail.itemRef.value",
            },
            {"path": "lines[*].amount", "vendorPath": "line[*].amount", "type": "string"},
            {"path": "lines[*].quantity", "vendorPath": "line[*].salesItemLineDetail.qty", "type": "number"},
            {"path": "issued", "vendorPath": "txnDate", "type": "date", "vendorType": "yyyy-MM-dd"},
            {"path": "updated_at", "vendorPath": "metaData.lastUpdatedTime", "type": "date", "vendorType": "epoch_ms"},
            {"path": "total", "vendorPath": "totalAmt", "type": "number"},
            {"path": "status", "vendorPath": "balance", "type": "number"},
        ],
        "script": {
            "steps": [
                {"op": "sum", "path": "lines_total", "from": "lines[*].amount"},
                {"op": "map", "path": "status", "values": {"0": "PAID"}, "default": "OPEN"},
                {"op": "set", "path": "source", "value": "quickbooks"},
                {"op": "concat", "path": "label", "from": ["customer.id", "issued"], "separator": "/"},
            ]
        },
    }
    assert api.post("/organizations/elements/quickbooks/transformations/crInvoices", json=body).status_code == 200
    truth = _truth(api, inst["id"], "invoices")[:50]
    rows = api.get("/hubs/finance/crInvoices", token, params={"pageSize": 50}).json()
    assert len(rows) == len(truth)
    for raw, row in zip(truth, rows, strict=True):
        assert row["id"] == raw["id"] and row["customer"] == {"id": raw["customerRef"]["value"]}
        assert row["first_line_amount"] == raw["line"][0]["amount"]
        sales = [ln for ln in raw["line"] if ln["detailType"] == "SALES_ITEM_LINE_DETAIL"]
        assert row.get("sales_line_item") == (sales[0]["salesItemLineDetail"]["itemRef"]["value"] if sales else None)
        assert [ln["amount"] for ln in row["lines"]] == [str(ln["amount"]) for ln in raw["line"]]
        assert [ln.get("quantity") for ln in row["lines"]] == [
            ln.get("salesItemLineDetail", {}).get("qty") for ln in raw["line"]
        ]
        assert row["issued"] == raw["txnDate"] + "T00:00:00Z"
        assert row["updated_at"] == iso(raw["metaData"]["lastUpdatedTime"])
        assert row["lines_total"] == pytest.approx(sum(ln["amount"] for ln in raw["line"]))
        assert row["status"] == ("PAID" if raw["balance"] == 0 else "OPEN")
        assert row["source"] == "quickbooks" and row["label"] == f"{raw['customerRef']['value']}/{row['issued']}"
        assert "docNumber" not in row  # unmapped vendor fields are not returned for a common resource


def test_ceql_paging_order_and_bulk_on_common_names(api: Api, clean: None) -> None:
    inst = api.instance("quickbooksonprem")
    iid, token = inst["id"], inst["token"]
    api.post("/organizations/elements/quickbooksonprem/transformations/crCustomers", json=QBE_CUSTOMERS)
    truth = [_expected_customer(r) for r in _truth(api, iid, "customers")]
    cut = sorted(r["updated_at"] for r in truth)[len(truth) // 2]
    want = [r for r in truth if r["updated_at"] >= cut]
    got: list[dict[str, Any]] = []
    params: dict[str, Any] = {"where": f"updated_at >= '{cut}'", "pageSize": 7}
    while True:
        r = api.get("/hubs/finance/crCustomers", token, params=params)
        assert r.status_code == 200, r.text
        got += r.json()
        nxt = r.headers.get("Elements-Next-Page-Token")
        if not nxt:
            break
        params = {**params, "nextPage": nxt}
    assert got == want and len(want) > 7
    name = truth[5]["name"].replace("'", "''")
    assert api.get("/hubs/finance/crCustomers", token, params={"where": f"name = '{name}'"}).json() == [truth[5]]
    nested = api.get(
        "/hubs/finance/crCustomers", token, params={"where": f"`address.city` = '{truth[2]['address']['city']}'"}
    )
    assert truth[2] in nested.json() and all(r["address"] == truth[2]["address"] for r in nested.json())
    ordered = api.get("/hubs/finance/crCustomers", token, params={"orderBy": "updated_at desc", "pageSize": 500}).json()
    assert [r["updated_at"] for r in ordered] == sorted((r["updated_at"] for r in truth), reverse=True)
    bad = api.get("/hubs/finance/crCustomers", token, params={"where": "nope = 1"})
    assert bad.status_code == 400 and "nope" in bad.json()["message"]
    # bulk: select * from <commonName>, NDJSON and CSV
    job = api.post(
        "/hubs/finance/bulk/query", token, params={"q": f"select * from crCustomers where updated_at >= '{cut}'"}
    )
    assert job.status_code == 200, job.text
    status = api.wait_bulk(token, job.json()["id"])
    assert status["status"] == "COMPLETED" and status["recordsCount"] == len(want)
    ndjson = api.get(
        f"/hubs/finance/bulk/{job.json()['id']}/crCustomers", token, headers={"Accept": "application/json"}
    )
    assert [json.loads(line) for line in ndjson.text.splitlines() if line] == want
    text = api.get(f"/hubs/finance/bulk/{job.json()['id']}/crCustomers", token, headers={"Accept": "text/csv"}).text
    table = list(csv.DictReader(io.StringIO(text)))
    assert [r["id"] for r in table] == [r["id"] for r in want]
    assert [r["address.city"] for r in table] == [r.get("address", {}).get("city", "") for r in want]


def test_writes_through_common_resource_and_raw_events(api: Api, clean: None, receiver: Receiver) -> None:
    inst = api.instance(
        "freshbooksv2",
        **{
            "event.notification.enabled": "true",
            "event.vendor.type": "webhooks",
            "event.notification.callback.url": receiver.url,
        },
    )
    token = inst["token"]
    body = {
        "vendorName": "client",
        "fields": [
            {"path": "id", "vendorPath": "id", "type": "string"},
            {"path": "name", "vendorPath": "organization", "type": "string"},
            {"path": "contact.first", "vendorPath": "first_name"},
            {"path": "contact.email", "vendorPath": "email"},
            {"path": "address.city", "vendorPath": "p_city"},
            {"path": "updated_at", "vendorPath": "updated", "type": "date", "vendorType": "yyyy-MM-dd HH:mm:ss"},
        ],
    }
    api.post("/organizations/elements/freshbooksv2/transformations/crClients", json=body)
    created = api.post(
        "/hubs/finance/crClients",
        token,
        json={"name": "Acme Ltd", "contact": {"first": "Ann", "email": "ann@acme.test"}, "address": {"city": "Oslo"}},
    )
    assert created.status_code == 200, created.text
    common = created.json()
    raw = next(r for r in _truth(api, inst["id"], "customers") if str(r["id"]) == common["id"])
    assert (raw["organization"], raw["first_name"], raw["email"], raw["p_city"]) == (
        "Acme Ltd",
        "Ann",
        "ann@acme.test",
        "Oslo",
    )
    assert common["name"] == "Acme Ltd" and common["address"] == {"city": "Oslo"} and "organization" not in common
    patched = api.patch(f"/hubs/finance/crClients/{common['id']}", token, json={"address": {"city": "Bergen"}})
    assert patched.json()["address"] == {"city": "Bergen"} and patched.json()["name"] == "Acme Ltd"
    raw = next(r for r in _truth(api, inst["id"], "customers") if str(r["id"]) == common["id"])
    assert raw["p_city"] == "Bergen" and raw["organization"] == "Acme Ltd"
    # events carry the raw vendor object; the common resource is read by objectId
    got = receiver.wait_for(2)
    message = json.loads(got[0]["body"])["message"]
    assert message["raw"]["objectType"] == "customers"
    assert message["raw"]["objects"][0]["organization"] == "Acme Ltd" and "name" not in message["raw"]["objects"][0]
    object_id = message["events"][0]["objectId"]
    assert api.get(f"/hubs/finance/crClients/{object_id}", token).json()["address"] == {"city": "Bergen"}
    assert api.delete(f"/hubs/finance/crClients/{object_id}", token).status_code == 200
    assert next(r for r in _truth(api, inst["id"], "customers") if str(r["id"]) == common["id"])["vis_state"] == 1
    bad = api.post("/hubs/finance/crClients", token, json={"updated_at": "not a date"})
    assert bad.status_code == 400


def test_churros_overlay_still_passes_vendor_fields(api: Api, clean: None) -> None:
    """A transformation named like the element's resource adds fields and keeps the vendor ones
    (churros ``quickbooksonprem/assets/transformations.json``), also in bulk downloads."""
    inst = api.instance("quickbooksonprem")
    token = inst["token"]
    api.post(
        f"/instances/{inst['id']}/transformations/customers",
        json={"vendorName": "Customer", "fields": [{"path": "id", "vendorPath": "ListID"}]},
    )
    truth = _truth(api, inst["id"], "customers")
    rows = api.get("/hubs/finance/customers", token, params={"pageSize": 500}).json()
    assert rows == [{**r, "id": r["ListID"]} for r in truth]
    job = api.post("/hubs/finance/bulk/query", token, params={"q": "select * from customers"}).json()
    api.wait_bulk(token, job["id"])
    lines = api.get(f"/hubs/finance/bulk/{job['id']}/customers", token, headers={"Accept": "application/json"}).text
    assert [json.loads(x) for x in lines.splitlines() if x] == rows


def test_bulk_upload_through_common_resource(api: Api, clean: None) -> None:
    """A bulk upload whose headers are the common field names (reference §10.4) creates vendor records."""
    inst = api.instance("quickbooksonprem")
    token = inst["token"]
    api.post("/organizations/elements/quickbooksonprem/transformations/crCustomers", json=QBE_CUSTOMERS)
    content = b"name,address.city\nUpload One,Turin\nUpload Two,Pisa\n"
    r = api.post("/hubs/finance/bulk/crCustomers", token, files={"file": ("c.csv", content)}, data={"metaData": "{}"})
    assert r.status_code == 200, r.text
    status = api.wait_bulk(token, r.json()["id"])
    assert status["status"] == "COMPLETED" and status["recordsCount"] == 2, status
    raw = {r["Name"]: r for r in _truth(api, inst["id"], "customers")}
    assert raw["Upload One"]["BillAddress"]["City"] == "Turin" and raw["Upload Two"]["BillAddress"]["City"] == "Pisa"
