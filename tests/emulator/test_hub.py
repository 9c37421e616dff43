"""Hub list/paging/CEQL/orderBy/CRUD and per-element record conventions (reference §3)."""

from __future__ import annotations

import re
from datetime import datetime

import pytest
from cloudelements_emulator.qbo_ids import bare_id

from airflow_provider_cloudelements.catalog import (
    FRESHBOOKS_CLASSIC_ALL_RESOURCES,
    QBE_ALL_RESOURCES,
    QBO_ALL_RESOURCES,
)

from .conftest import Api


def _ids(items: list[dict], field: str = "id") -> list[str]:
    return [str(i[field]) for i in items]


def test_page_and_cursor_paging_cover_ground_truth(api: Api) -> None:
    inst = api.instance()
    truth = _ids(api.emu.state.records(inst["id"], "invoices"))
    assert len(truth) == 450
    by_page: list[str] = []
    page = 1
    while True:
        r = api.get("/hubs/finance/invoices", inst["token"], params={"page": page, "pageSize": 100})
        assert int(r.headers["Elements-Returned-Count"]) == len(r.json())
        by_page += _ids(r.json())
        if "Elements-Next-Page-Token" not in r.headers:
            break
        page += 1
    assert by_page == truth and page == 5
    by_cursor: list[str] = []
    params: dict = {"pageSize": 200}
    while True:
        r = api.get("/hubs/finance/invoices", inst["token"], params=params)
        by_cursor += _ids(r.json())
        token = r.headers.get("Elements-Next-Page-Token")
        if not token:
            break
        params = {"pageSize": 200, "nextPage": token}
    assert by_cursor == truth
    assert api.get("/hubs/finance/invoices", inst["token"], params={"nextPage": "garbage!"}).status_code == 400


def test_default_page_size_cap_and_counts(api: Api) -> None:
    qbo, fb = api.instance(), api.instance("freshbooksv2")
    r = api.get("/hubs/finance/invoices", qbo["token"])
    assert len(r.json()) == 200 and "Elements-Error" not in r.headers
    r = api.get("/hubs/finance/invoices", qbo["token"], params={"pageSize": 5000, "returnCount": "true"})
    assert len(r.json()) == 450 and "Elements-Error" in r.headers  # cap 1000 exceeded, truncated
    assert r.headers["Elements-Total-Count"] == "450"
    r = api.get("/hubs/finance/invoices", fb["token"], params={"pageSize": 150})
    assert len(r.json()) == 100 and "100" in r.headers["Elements-Error"]
    assert api.get("/hubs/finance/invoices", fb["token"], params={"pageSize": 0}).status_code == 400
    assert api.get("/hubs/finance/invoices", fb["token"], params={"page": "x"}).status_code == 400


def test_qbe_is_cursor_only(api: Api) -> None:
    qbe = api.instance("quickbooksonprem")
    first = api.get("/hubs/finance/customers", qbe["token"], params={"pageSize": 10})
    assert first.status_code == 200 and "Elements-Next-Page-Token" in first.headers
    assert api.get("/hubs/finance/customers", qbe["token"], params={"page": 2, "pageSize": 10}).status_code == 400
    nxt = api.get(
        "/hubs/finance/customers",
        qbe["token"],
        params={"pageSize": 10, "nextPage": first.headers["Elements-Next-Page-Token"]},
    )
    assert _ids(nxt.json(), "ListID") == _ids(api.emu.state.records(qbe["id"], "customers")[10:20], "ListID")


def test_record_conventions_per_element(api: Api) -> None:
    qbo = api.emu.state.records(api.instance()["id"], "invoices")[0]
    assert isinstance(qbo["id"], str) and qbo["syncToken"] == "0" and qbo["domain"] == "QBO"
    assert isinstance(qbo["metaData"]["lastUpdatedTime"], int) and qbo["metaData"]["createTime"] > 1.7e12
    assert qbo["customerRef"]["value"] and qbo["line"][0]["detailType"] == "SALES_ITEM_LINE_DETAIL"
    assert api.emu.state.records(api.instance()["id"], "customers")[0]["active"] is True
    qbe_inst = api.instance("quickbooksonprem")
    cust = api.emu.state.records(qbe_inst["id"], "customers")[0]
    inv = api.emu.state.records(qbe_inst["id"], "invoices")[0]
    assert re.fullmatch(r"[0-9A-F]{8}-\d{10}", cust["ListID"]) and re.fullmatch(r"[0-9A-F]{8}-\d{10}", inv["TxnID"])
    assert cust["IsActive"] is True and isinstance(inv["TotalAmount"], str) and "EditSequence" in inv
    assert datetime.strptime(inv["TimeModified"], "%Y-%m-%dT%H:%M:%S%z")
    fb = api.emu.state.records(api.instance("freshbooksv2")["id"], "invoices")[0]
    assert isinstance(fb["id"], int) and fb["vis_state"] == 0
    assert datetime.strptime(fb["updated"], "%Y-%m-%d %H:%M:%S")
    classic = api.emu.state.records(api.instance("freshbooks")["id"], "taxes")[0]
    assert isinstance(classic["id"], str) and "compound" in classic


def test_generation_is_deterministic_and_lazy(api: Api) -> None:
    a, b = api.instance(), api.instance()
    assert not api.emu.state.record_repo.is_generated(a["id"], "bills")
    ra = api.emu.state.records(a["id"], "bills")
    assert api.emu.state.record_repo.is_generated(a["id"], "bills")
    assert ra == api.emu.state.records(a["id"], "bills")
    assert ra != api.emu.state.records(b["id"], "bills")  # per-instance datasets
    anchor = 1767225600000
    assert all(anchor - 366 * 86400_000 <= r["metaData"]["lastUpdatedTime"] < anchor for r in ra)


@pytest.mark.parametrize(
    ("where", "check"),
    [
        ("totalAmt > 1000", lambda r: r["totalAmt"] > 1000),
        ("totalAmt >= 1000 AND totalAmt <= 2000", lambda r: 1000 <= r["totalAmt"] <= 2000),
        ("id = '7'", lambda r: bare_id(r["id"]) == "7"),
        ("id != '7'", lambda r: bare_id(r["id"]) != "7"),
        ("id IN ('3', '5', '8')", lambda r: bare_id(r["id"]) in ("3", "5", "8")),
        ("docNumber LIKE '10%'", lambda r: r["docNumber"].startswith("10")),
        ("privateNote IS NULL", lambda r: "privateNote" not in r),
        ("privateNote IS NOT NULL", lambda r: "privateNote" in r),
        ("(totalAmt < 500) AND (`customerRef.value` = '3' OR 1 = 1) ", None),
        (
            "`metaData.lastUpdatedTime` >= '2025-07-01T00:00:00Z'",
            lambda r: r["metaData"]["lastUpdatedTime"] >= 1751328000000,
        ),
        (
            "metaData.lastUpdatedTime < 1751328000000",
            lambda r: r["metaData"]["lastUpdatedTime"] < 1751328000000,
        ),
        ("customerRef = '3'", lambda r: r["customerRef"]["value"] == "3"),
        ("customerRef.value = '3'", lambda r: r["customerRef"]["value"] == "3"),
        ("`customerRef.value` = 'O''Brien'", lambda r: r["customerRef"]["value"] == "O'Brien"),
    ],
)
def test_qbo_ceql(api: Api, where: str, check) -> None:  # type: ignore[no-untyped-def]
    inst = api.instance()
    truth = api.emu.state.records(inst["id"], "invoices")
    r = api.get("/hubs/finance/invoices", inst["token"], params={"where": where, "pageSize": 1000})
    if check is None:  # contains OR → QBO rejects
        assert r.status_code == 400 and "OR" in r.json()["message"] and "providerMessage" in r.json()
        return
    assert r.status_code == 200, r.text
    assert _ids(r.json()) == _ids([x for x in truth if check(x)])


def test_ceql_or_and_dates_on_other_elements(api: Api) -> None:
    qbe = api.instance("quickbooksonprem")
    truth = api.emu.state.records(qbe["id"], "invoices")
    pivot = truth[200]["TimeModified"]
    r = api.get(
        "/hubs/finance/invoices",
        qbe["token"],
        params={"where": f"TimeModified >= '{pivot}' OR TxnNumber = '1'", "pageSize": 500},
    )
    want = [
        x
        for x in truth
        if datetime.fromisoformat(x["TimeModified"]) >= datetime.fromisoformat(pivot) or x["TxnNumber"] == "1"
    ]
    assert _ids(r.json(), "TxnID") == _ids(want, "TxnID")
    fb = api.instance("freshbooksv2")
    ftruth = api.emu.state.records(fb["id"], "taxes")
    r = api.get("/hubs/finance/taxes", fb["token"], params={"where": "updated >= '2025-07-01' and compound = 0"})
    want = [x for x in ftruth if x["updated"] >= "2025-07-01 00:00:00" and x["compound"] == 0]
    assert r.status_code == 200 and _ids(r.json()) == _ids(want)
    classic = api.instance("freshbooks")
    r = api.get("/hubs/finance/taxes", classic["token"], params={"where": "updated_from = '2025-07-01'"})
    want = [x for x in api.emu.state.records(classic["id"], "taxes") if x["updated"] >= "2025-07-01 00:00:00"]
    assert r.status_code == 200 and _ids(r.json()) == _ids(want) and want


@pytest.mark.parametrize("where", ["totalAmt >", "totalAmt = = 3", "foo(", "'abc'", "a = 'unterminated"])
def test_bad_ceql_400(api: Api, where: str) -> None:
    r = api.get("/hubs/finance/invoices", api.instance()["token"], params={"where": where})
    assert r.status_code == 400 and "Error parsing query" in r.json()["message"]


def test_order_by(api: Api) -> None:
    inst = api.instance()
    truth = api.emu.state.records(inst["id"], "customers")
    r = api.get("/hubs/finance/customers", inst["token"], params={"orderBy": "balance desc", "pageSize": 100})
    assert [x["balance"] for x in r.json()] == sorted((x["balance"] for x in truth), reverse=True)
    r = api.get(
        "/hubs/finance/customers",
        inst["token"],
        params={"orderBy": "`metaData.lastUpdatedTime` asc", "pageSize": 100},
    )
    times = [x["metaData"]["lastUpdatedTime"] for x in r.json()]
    assert times == sorted(times) and len(times) == 40
    r = api.get(
        "/hubs/finance/customers",
        inst["token"],
        params={"orderBy": "displayName asc", "pageSize": 7, "page": 2},
    )
    assert _ids(r.json()) == _ids(sorted(truth, key=lambda x: x["displayName"])[7:14])
    assert api.get("/hubs/finance/customers", inst["token"], params={"orderBy": "a b c"}).status_code == 400


def test_crud_qbo_with_sync_token(api: Api) -> None:
    inst = api.instance()
    t = inst["token"]
    created = api.post("/hubs/finance/customers", t, json={"displayName": "Doe, Jane", "givenName": "Jane"})
    assert created.status_code == 200
    c = created.json()
    assert c["syncToken"] == "0" and c["active"] is True and c["id"] == "41|0"  # QBO ids read "<id>|<syncToken>"
    assert api.get(f"/hubs/finance/customers/{c['id']}", t).json() == c
    assert api.get("/hubs/finance/customers/41", t).json() == c
    upd = api.patch("/hubs/finance/customers/41", t, json={"familyName": "Doe", "syncToken": "0"}).json()
    assert upd["syncToken"] == "1" and upd["givenName"] == "Jane" and upd["familyName"] == "Doe"
    assert upd["id"] == "41|1"
    assert upd["metaData"]["lastUpdatedTime"] >= c["metaData"]["lastUpdatedTime"]
    stale = api.patch("/hubs/finance/customers/41", t, json={"familyName": "X", "syncToken": "0"})
    assert stale.status_code == 400 and "providerMessage" in stale.json()
    assert api.post("/hubs/finance/customers", t, json={"givenName": "no display"}).status_code == 400
    assert (
        api.post(
            "/hubs/finance/customers", t, data="not json", headers={"Content-Type": "application/json"}
        ).status_code
        == 400
    )
    # list entity → soft delete
    assert api.delete("/hubs/finance/customers/41", t).status_code == 200
    soft = api.get("/hubs/finance/customers/41", t).json()
    assert soft["active"] is False and soft["syncToken"] == "2"
    # transaction → hard delete with tombstone
    inv = api.post("/hubs/finance/invoices", t, json={"customerRef": {"value": "1"}, "line": []}).json()
    assert api.delete(f"/hubs/finance/invoices/{inv['id']}", t).status_code == 200
    assert api.get(f"/hubs/finance/invoices/{inv['id']}", t).status_code == 404
    assert inv["id"] not in _ids(api.emu.state.records(inst["id"], "invoices"))
    assert inv["id"] in _ids(api.emu.state.records(inst["id"], "invoices", include_deleted=True))
    assert api.get("/hubs/finance/invoices/abc", t).status_code == 400  # QBO: id is invalid
    assert api.get("/hubs/finance/invoices/99999", t).status_code == 404
    assert api.get("/hubs/finance/widgets", t).status_code == 404


def test_crud_qbe_edit_sequence_and_fb_put(api: Api) -> None:
    qbe = api.instance("quickbooksonprem")
    c = api.post("/hubs/finance/customers", qbe["token"], json={"Name": "Blue, Dale"}).json()
    assert c["ListID"].startswith("80000029-") and c["IsActive"] is True
    bad = api.patch(f"/hubs/finance/customers/{c['ListID']}", qbe["token"], json={"EditSequence": "1", "Name": "x"})
    assert bad.status_code == 400
    ok = api.patch(
        f"/hubs/finance/customers/{c['ListID']}",
        qbe["token"],
        json={"EditSequence": c["EditSequence"], "Name": "Green, Dale"},
    ).json()
    assert int(ok["EditSequence"]) > int(c["EditSequence"]) and ok["Name"] == "Green, Dale"
    fb = api.instance("freshbooksv2")
    item = api.post("/hubs/finance/items", fb["token"], json={"name": "Widget", "unit_cost": 3.5}).json()
    replaced = api.put(f"/hubs/finance/items/{item['id']}", fb["token"], json={"name": "Gadget"}).json()
    assert replaced["name"] == "Gadget" and "unit_cost" not in replaced and replaced["id"] == item["id"]
    api.delete(f"/hubs/finance/items/{item['id']}", fb["token"])
    assert api.get(f"/hubs/finance/items/{item['id']}", fb["token"]).json()["vis_state"] == 1


def test_ping_objects_metadata(api: Api) -> None:
    inst = api.instance()
    assert api.get("/hubs/finance/ping", inst["token"]).json()["endpoint"] == "quickbooks"
    objects = api.get("/hubs/finance/objects", inst["token"]).json()
    assert objects == list(QBO_ALL_RESOURCES) and "invoices" in objects
    meta = api.get("/hubs/finance/objects/invoices/metadata", inst["token"]).json()
    paths = {f["vendorPath"]: f for f in meta["fields"]}
    assert paths["metaData.lastUpdatedTime"]["type"] == "date" and paths["totalAmt"]["type"] == "number"
    assert api.get("/hubs/finance/objects/nope/metadata", inst["token"]).status_code == 404
    qbe = api.instance("quickbooksonprem")
    assert api.get("/hubs/finance/objects", qbe["token"]).json() == list(QBE_ALL_RESOURCES)
    fb = api.get("/hubs/finance/objects", api.instance("freshbooks")["token"]).json()
    assert fb == list(FRESHBOOKS_CLASSIC_ALL_RESOURCES)
