"""Instances CRUD, validation, masking, configuration entries; element catalog (reference §2)."""

from __future__ import annotations

import copy

import pytest

from .conftest import QBO_BODY, Api


def test_create_qbo_oauth2_masks_secrets_and_returns_token(api: Api) -> None:
    r = api.post("/instances", json=QBO_BODY)
    assert r.status_code == 200, r.text
    inst = r.json()
    assert isinstance(inst["id"], int) and len(inst["token"]) >= 40
    assert inst["element"]["key"] == "quickbooks" and inst["elementId"] == 39
    assert inst["valid"] is True and inst["disabled"] is False and inst["tags"] == ["contract"]
    assert set(inst["user"]) >= {"id", "emailAddress", "firstName", "lastName"}
    assert inst["configuration"]["oauth.api.key"] == "********"
    assert inst["configuration"]["oauth.api.secret"] == "********"
    assert inst["configuration"]["oauth.callback.url"] == "https://app.example/cb"
    got = api.get(f"/instances/{inst['id']}").json()
    assert got["token"] == inst["token"] and got["configuration"]["oauth.api.secret"] == "********"
    assert "client-secret" not in api.get("/instances").text


@pytest.mark.parametrize(
    ("body", "missing"),
    [
        (
            {
                "element": {"key": "quickbooks"},
                "name": "x",
                "configuration": {"oauth.api.key": "k"},
                "providerData": {"code": "c"},
            },
            ["oauth.api.secret", "oauth.callback.url", "providerData.realmId"],
        ),
        (
            {
                "element": {"key": "quickbooks"},
                "name": "x",
                "providerData": {"oauth_token": "t", "realmId": "1"},
                "configuration": {"oauth.api.key": "k", "oauth.api.secret": "s", "oauth.callback.url": "u"},
            },
            ["providerData.oauth_verifier", "providerData.secret"],
        ),
        (
            {"element": {"key": "quickbooksonprem"}, "name": "x", "configuration": {"app.name": "a"}},
            ["host.ip"],
        ),
        (
            {
                "element": {"key": "freshbooksv2"},
                "name": "x",
                "providerData": {"code": "c"},
                "configuration": {"oauth.api.key": "k", "oauth.api.secret": "s", "oauth.callback.url": "u"},
            },
            ["business.name"],
        ),
        (
            {"element": {"key": "freshbooks"}, "name": "x", "configuration": {"oauth.api.key": "k"}},
            ["oauth.api.secret", "freshbooks.site.address", "providerData.oauth_token"],
        ),
    ],
)
def test_create_names_missing_keys(api: Api, body: dict, missing: list[str]) -> None:
    r = api.post("/instances", json=body)
    assert r.status_code == 400
    for key in missing:
        assert key in r.json()["message"]


def test_create_other_elements_and_errors(api: Api) -> None:
    qbe = api.post(
        "/instances",
        json={
            "element": {"key": "quickbooksonprem"},
            "name": "qbe",
            "configuration": {"app.name": "CE", "host.ip": "https://1.g2c.example"},
        },
    )
    assert qbe.status_code == 200 and qbe.json()["configuration"]["bulk.query.field_name"] == "TimeModified"
    oauth1 = copy.deepcopy(QBO_BODY)
    oauth1["providerData"] = {"oauth_token": "t", "oauth_verifier": "v", "secret": "s", "realmId": "1"}
    assert api.post("/instances", json=oauth1).status_code == 200
    assert api.post("/instances", json={**QBO_BODY, "name": ""}).status_code == 400
    assert api.post("/instances", json={**QBO_BODY, "element": {"key": "nope"}}).status_code == 400
    by_id = api.post("/instances", json={**QBO_BODY, "element": {"id": 39}})
    assert by_id.status_code == 200 and by_id.json()["element"]["key"] == "quickbooks"


def test_list_filter_put_patch_delete(api: Api) -> None:
    a = api.post("/instances", json={**QBO_BODY, "tags": ["alpha", "x"]}).json()
    api.post("/instances", json={**QBO_BODY, "tags": ["beta"]})
    listed = api.get("/instances", params={"tags[]": "alpha"}).json()
    assert [i["id"] for i in listed] == [a["id"]]
    patched = api.patch(
        f"/instances/{a['id']}",
        json={"name": "renamed", "tags": ["gamma"], "configuration": {"event.poller.refresh_interval": "1"}},
    )
    assert patched.status_code == 200
    p = patched.json()
    assert p["name"] == "renamed" and p["tags"] == ["gamma"]
    assert p["configuration"]["event.poller.refresh_interval"] == "1"
    assert p["configuration"]["oauth.api.secret"] == "********"
    # echoing a masked value back must not overwrite the secret
    api.patch(f"/instances/{a['id']}", json={"configuration": {"oauth.api.secret": "********"}})
    inst_state = api.emu.state.instances.get(a["id"])
    assert inst_state["configuration"]["oauth.api.secret"] == "client-secret"
    put = api.put(f"/instances/{a['id']}", json={"name": "put-name", "providerData": {"code": "fresh"}})
    assert put.status_code == 200 and put.json()["tags"] == [] and put.json()["token"] == a["token"]
    assert api.put(f"/instances/{a['id']}", json={"tags": []}).status_code == 400
    assert api.delete(f"/instances/{a['id']}").status_code == 200
    assert api.get(f"/instances/{a['id']}").status_code == 404


def test_name_and_tags_are_sanitized(api: Api) -> None:
    r = api.post("/instances", json={**QBO_BODY, "name": "<b>x</b>", "tags": ["<i>"]}).json()
    assert "<" not in r["name"] and "<" not in r["tags"][0]


def test_configuration_entries(api: Api) -> None:
    inst = api.post("/instances", json=QBO_BODY).json()
    entries = api.get(f"/instances/{inst['id']}/configuration").json()
    by_key = {e["key"]: e for e in entries}
    assert by_key["oauth.api.secret"]["propertyValue"] == "********"
    entry = by_key["event.notification.enabled"]
    one = api.get(f"/instances/{inst['id']}/configuration/{entry['id']}").json()
    assert one == entry
    r = api.patch(f"/instances/{inst['id']}/configuration/{entry['id']}", json={**entry, "propertyValue": "true"})
    assert r.status_code == 200 and r.json()["propertyValue"] == "true"
    assert api.get(f"/instances/{inst['id']}").json()["eventsEnabled"] is True
    assert api.get(f"/instances/{inst['id']}/configuration/999999").status_code == 404


def test_element_catalog_and_oauth(api: Api) -> None:
    keys = api.get("/elements/keys").json()
    assert set(keys) == {"quickbooks", "quickbooksonprem", "freshbooksv2", "freshbooks"}
    assert api.get("/elements/39").json()["key"] == "quickbooks"
    assert api.get("/elements/nope").status_code == 404
    params = {"apiKey": "cid", "apiSecret": "sec", "callbackUrl": "https://app.example/cb"}
    url = api.get("/elements/quickbooks/oauth/url", params=params).json()
    assert url["element"] == "quickbooks"
    assert url["oauthUrl"].startswith("https://appcenter.intuit.com/connect/oauth2?")
    assert "state=quickbooks" in url["oauthUrl"] and "client_id=cid" in url["oauthUrl"]
    posted = api.post("/elements/freshbooksv2/oauth/url", json=params).json()
    assert posted["oauthUrl"].startswith("https://my.freshbooks.com/service/auth/oauth/authorize?")
    token = api.get("/elements/freshbooks/oauth/token", params=params).json()
    assert set(token) == {"token", "secret"}
    classic = api.get(
        "/elements/freshbooks/oauth/url",
        params={**params, "requestToken": token["token"], "siteAddress": "acme"},
    ).json()
    assert classic["oauthUrl"].startswith("https://acme.freshbooks.com/oauth/oauth_authorize.php?")
    assert api.get("/elements/freshbooksv2/oauth/token", params=params).status_code == 400
    assert api.get("/elements/quickbooks/oauth/url", params={"apiKey": "x"}).status_code == 400
    hubs = api.get("/hubs").json()
    assert hubs[0]["key"] == "finance" and api.get("/hubs/finance").json()["key"] == "finance"
    assert api.get("/hubs/crm").status_code == 404


def test_openapi(api: Api) -> None:
    spec = api.s.get(api.emu.url + "/openapi.json").json()
    assert "/elements/api-v2/hubs/{hub}/bulk/query" in spec["paths"]
    assert "/elements/api-v2/instances" in spec["paths"]


def test_element_scoped_instance_routes(api: Api) -> None:
    body = {k: v for k, v in QBO_BODY.items() if k != "element"}
    created = api.post("/elements/quickbooks/instances", json=body)
    assert created.status_code == 200 and created.json()["element"]["key"] == "quickbooks"
    iid = created.json()["id"]
    assert iid in [i["id"] for i in api.get("/elements/39/instances").json()]
    assert iid not in [i["id"] for i in api.get("/elements/freshbooks/instances").json()]
    assert api.get(f"/elements/quickbooks/instances/{iid}").json()["id"] == iid
    assert api.get(f"/elements/freshbooks/instances/{iid}").status_code == 404
    assert api.patch(f"/elements/quickbooks/instances/{iid}", json={"name": "n2"}).json()["name"] == "n2"
    assert api.delete(f"/elements/quickbooks/instances/{iid}").status_code == 200
    assert api.get(f"/instances/{iid}").status_code == 404


def test_stats_count_routes_and_faulted_requests(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    inst = api.instance()
    key = "GET /elements/api-v2/hubs/{hub}/{resource}"
    before = api.emu.state.stats()["requests"].get(key, 0)
    faults(burst_429=1)
    assert api.get("/hubs/finance/classes", inst["token"]).status_code == 429
    assert api.get("/hubs/finance/classes", inst["token"]).status_code == 200
    assert api.emu.state.stats()["requests"][key] == before + 2
