"""CloudElementsHook.update_record / delete_record over real HTTP against the emulator, compared with the
emulator's ground truth (``PATCH`` / ``DELETE /hubs/finance/{resource}/{id}``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cloudelements_emulator.qbo_ids import bare_id

from airflow_provider_cloudelements.exceptions import (
    CloudElementsBadRequestError,
    CloudElementsConfigError,
    CloudElementsNotFoundError,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Records by stable id (QBO serves ``<id>|<syncToken>``, and the token changes on every update)."""
    return {bare_id(r["id"]): r for r in records}


def test_update_record_changes_the_record_and_refuses_a_stale_version(emu: Any, conn: Callable[..., str]) -> None:
    inst = emu.state.create_instance("quickbooks", "records-update")
    hook = CloudElementsHook(conn(), instance_id=inst["id"])
    record_id = bare_id(emu.state.records(inst["id"], "invoices")[0]["id"])
    current = hook.get_record("invoices", record_id)
    updated = hook.update_record("invoices", record_id, {"syncToken": current["syncToken"], "privateNote": "hcore-1"})
    truth = by_id(emu.state.records(inst["id"], "invoices"))[record_id]
    assert updated["privateNote"] == truth["privateNote"] == "hcore-1"
    assert int(truth["syncToken"]) == int(current["syncToken"]) + 1 and updated["syncToken"] == truth["syncToken"]
    assert {k: v for k, v in truth.items() if k not in ("id", "privateNote", "syncToken", "metaData")} == {
        k: v for k, v in current.items() if k not in ("id", "privateNote", "syncToken", "metaData")
    }  # a merge: nothing else changed (the served id carries the new syncToken)
    with pytest.raises(CloudElementsBadRequestError):  # QBO optimistic locking: the old syncToken is stale
        hook.update_record("invoices", record_id, {"syncToken": current["syncToken"], "privateNote": "hcore-2"})
    assert by_id(emu.state.records(inst["id"], "invoices"))[record_id]["privateNote"] == "hcore-1"


def test_delete_record_hard_and_soft(emu: Any, conn: Callable[..., str]) -> None:
    inst = emu.state.create_instance("quickbooks", "records-delete")
    hook = CloudElementsHook(conn(), instance_id=inst["id"])
    invoice = bare_id(emu.state.records(inst["id"], "invoices")[1]["id"])
    assert hook.delete_record("invoices", invoice) is None
    assert invoice not in by_id(emu.state.records(inst["id"], "invoices"))  # QBO transactions: hard delete
    assert invoice in by_id(emu.state.records(inst["id"], "invoices", include_deleted=True))
    with pytest.raises(CloudElementsNotFoundError):
        hook.get_record("invoices", invoice)
    with pytest.raises(CloudElementsNotFoundError):
        hook.delete_record("invoices", invoice)

    customer = bare_id(emu.state.records(inst["id"], "customers")[0]["id"])
    hook.delete_record("customers", customer)
    assert by_id(emu.state.records(inst["id"], "customers"))[customer]["active"] is False  # QBO lists: soft


def test_bad_ids_fail_before_any_call(emu: Any, conn: Callable[..., str]) -> None:
    inst = emu.state.create_instance("quickbooks", "records-bad")
    hook = CloudElementsHook(conn(), instance_id=inst["id"])
    before = emu.state.stats()["requests"]
    for call in (
        lambda: hook.update_record("invoices", " ", {"privateNote": "x"}),
        lambda: hook.delete_record("invoices", ""),
        lambda: hook.delete_record("in/voices", "1"),
    ):
        with pytest.raises(CloudElementsConfigError):
            call()
    assert emu.state.stats()["requests"] == before
