"""The ``/_emulator`` single-record routes the model drives: create, edit, delete (policy or hard),
restore — each answers the record as now served and the exact server change time, over real HTTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from airflow_provider_cloudelements.utils.records import is_soft_deleted, stable_id


@pytest.fixture
def admin(model_emulator: Any) -> Any:
    with httpx.Client(base_url=f"{model_emulator.url}/_emulator", timeout=10) as client:
        yield client


def served(admin: httpx.Client, iid: int, resource: str, include_deleted: bool = False) -> dict[str, Any]:
    rows = admin.get(f"/instances/{iid}/records/{resource}", params={"include_deleted": include_deleted}).json()
    # keyed by the stable id: QBO reads "<id>|<syncToken>" and the token moves on every change
    return {stable_id(r.get("id") or r.get("ListID") or r.get("TxnID"), "quickbooks"): r for r in rows}


def test_edit_soft_delete_restore_and_hard_delete_round_trip(admin: httpx.Client) -> None:
    iid = admin.post("/instances", json={"element_key": "quickbooks", "name": "routes"}).json()["id"]
    base = f"/instances/{iid}/records/customers"
    created = admin.post(base, json={"fields": {"displayName": "Route Test"}}).json()
    rid = str(created["id"])
    assert created["record"]["displayName"] == "Route Test" and not created["deleted"]
    edited = admin.patch(f"{base}/{rid}", json={"fields": {"privateNote": "edited"}}).json()
    assert edited["changed_ms"] >= created["changed_ms"]
    assert edited["record"]["syncToken"] == "1" and served(admin, iid, "customers")[rid] == edited["record"]

    soft = admin.delete(f"{base}/{rid}").json()  # QBO customers: soft delete by policy
    assert is_soft_deleted(soft["record"], "quickbooks") and not soft["deleted"]
    restored = admin.post(f"{base}/{rid}/restore").json()
    assert not is_soft_deleted(restored["record"], "quickbooks") and restored["record"]["syncToken"] == "3"
    assert admin.post(f"{base}/{rid}/restore").status_code == 409  # not deleted

    hard = admin.delete(f"{base}/{rid}", params={"hard": True}).json()
    assert hard["deleted"] and rid not in served(admin, iid, "customers")
    assert rid in served(admin, iid, "customers", include_deleted=True)
    assert admin.patch(f"{base}/{rid}", json={"fields": {"privateNote": "x"}}).status_code == 404
    back = admin.post(f"{base}/{rid}/restore").json()
    assert not back["deleted"] and served(admin, iid, "customers")[rid] == back["record"]
    assert back["changed_ms"] >= hard["changed_ms"] >= restored["changed_ms"]
    assert admin.patch(f"{base}/{rid}", json={"oops": 1}).status_code == 400
