"""The provisioning example DAG against the emulator: three elements' instance bodies, reuse, delete."""

from __future__ import annotations

from typing import Any

import httpx

DAG_ID = "cloudelements_provision_instances"


def _instances(emulator: Any) -> list[dict[str, Any]]:
    auth = {"Authorization": f"User {emulator.user_secret}, Organization {emulator.organization_secret}"}
    resp = httpx.get(f"{emulator.base_url}/instances", headers=auth, timeout=10)
    resp.raise_for_status()
    return resp.json()


def test_provisions_each_element_once_and_deletes_the_scratch_instance(
    sync_env: dict[str, Any], load_dag: Any, emulator: Any
) -> None:
    for attempt in range(2):  # the second run must reuse, not duplicate
        run = load_dag(DAG_ID).test()
        assert run.state == "success", f"run {attempt + 1}"
        provisioned = [i for i in _instances(emulator) if "provisioned" in (i.get("tags") or [])]
        keys = sorted((i.get("element") or {}).get("key") for i in provisioned)
        assert keys == ["freshbooksv2", "quickbooks", "quickbooksonprem"]
        assert not [i for i in _instances(emulator) if "scratch" in (i.get("tags") or [])]

    qbo = next(i for i in provisioned if i["element"]["key"] == "quickbooks")
    auth = {"Authorization": f"User {emulator.user_secret}, Organization {emulator.organization_secret}"}
    detail = httpx.get(f"{emulator.base_url}/instances/{qbo['id']}", headers=auth, timeout=10).json()
    # the app secret merged from the configuration connection reached Cloud Elements, masked on the way back
    assert detail["configuration"].get("oauth.api.secret") == "********"
