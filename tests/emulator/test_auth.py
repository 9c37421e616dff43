"""Authorization header forms, 401/403, hub segment ignored (reference §1.2, §2.2)."""

from __future__ import annotations

import pytest

from .conftest import Api


def test_hub_header_forms_any_order_and_case(api: Api) -> None:
    inst = api.instance()
    u, o, t = api.emu.user_secret, api.emu.organization_secret, inst["token"]
    for header in (
        f"User {u}, Element {t}",
        f"Element {t}, User {u}",
        f"user {u},element {t}",
        f"User {u}, Organization {o}, Element {t}",
        f"ELEMENT {t} , ORGANIZATION {o}, USER {u}",
    ):
        r = api.s.get(
            api.emu.base_url + "/hubs/finance/customers",
            headers={"Authorization": header},
            params={"pageSize": 1},
        )
        assert r.status_code == 200, header
        assert r.headers["Elements-Element-Instance-Id"] == str(inst["id"])


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "User nope, Element x",
        "Basic abc",
        "User {u}",
        "Element {t}",
        "User {u}, Organization wrong, Element {t}",
        "User {u}, Element unknown",
    ],
)
def test_hub_401(api: Api, header: str | None) -> None:
    inst = api.instance()
    headers = {}
    if header is not None:
        headers["Authorization"] = header.format(u=api.emu.user_secret, t=inst["token"])
    r = api.s.get(api.emu.base_url + "/hubs/finance/customers", headers=headers)
    assert r.status_code == 401
    body = r.json()
    assert set(body) >= {"message", "requestId"}
    assert r.headers["Elements-Request-Id"] == body["requestId"]


def test_platform_needs_user_and_organization(api: Api) -> None:
    assert api.get("/instances").status_code == 200
    inst = api.instance()
    hub_only = api.s.get(api.emu.base_url + "/instances", headers=api.hub_headers(inst["token"]))
    assert hub_only.status_code == 401
    wrong = api.s.get(
        api.emu.base_url + "/instances",
        headers={"Authorization": f"Organization {api.emu.organization_secret}, User wrong"},
    )
    assert wrong.status_code == 401


def test_hub_segment_is_ignored(api: Api) -> None:
    inst = api.instance()
    bodies = {
        hub: api.get(f"/hubs/{hub}/invoices", inst["token"], params={"pageSize": 3}).json()
        for hub in ("finance", "crm", "crap")
    }
    assert bodies["finance"] == bodies["crm"] == bodies["crap"]
    assert len(bodies["finance"]) == 3


def test_deleted_instance_401_disabled_403(api: Api) -> None:
    inst = api.instance()
    assert api.delete(f"/instances/{inst['id']}/enabled").status_code == 200
    assert api.get("/hubs/finance/customers", inst["token"]).status_code == 403
    assert api.put(f"/instances/{inst['id']}/enabled").status_code == 200
    assert api.get("/hubs/finance/customers", inst["token"]).status_code == 200
    assert api.delete(f"/instances/{inst['id']}").status_code == 200
    r = api.get("/hubs/finance/customers", inst["token"])
    assert r.status_code == 401 and "requestId" in r.json()
    assert api.get(f"/instances/{inst['id']}").status_code == 404


def test_every_response_has_request_id(api: Api) -> None:
    for r in (api.get("/elements"), api.get("/instances"), api.s.get(api.emu.url + "/_emulator/health")):
        assert len(r.headers["Elements-Request-Id"]) == 24
