"""Extract over real HTTP from the emulator, raw load, typed projection: typed rows equal the emulator's.

The object metadata comes from the emulator's ``GET /hubs/finance/objects/invoices/metadata`` too, so
the metadata path (``vendorPath``/``type``) is exercised end to end.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.storage_to_sql.load import load_manifest
from airflow_provider_cloudelements.transfers.storage_to_sql.rows import loadable_manifest
from airflow_provider_cloudelements.typed import child_table_name
from airflow_provider_cloudelements.utils.records import is_soft_deleted, record_id, stable_id
from tests.operators.conftest import Ctx, run_operator
from tests.typed.conftest import Target
from tests.typed.test_typed_tables import ARRAY_OF, assert_typed_matches

END = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _metadata(emu: Any, token: str, resource: str) -> dict[str, Any]:
    auth = f"User {emu.user_secret}, Organization {emu.organization_secret}, Element {token}"
    resp = httpx.get(f"{emu.base_url}/hubs/finance/objects/{resource}/metadata", headers={"Authorization": auth})
    resp.raise_for_status()
    return dict(resp.json())


@pytest.mark.parametrize("element_key", ["quickbooks", "quickbooksonprem", "freshbooksv2"])
def test_extract_load_project_matches_the_emulator(
    target: Target, element_key: str, emu: Any, conn: str, out: Any
) -> None:
    inst = emu.state.create_instance(element_key, f"typed-{element_key}-{target.name}")
    op = CloudElementsBulkExtractOperator(
        task_id="extract",
        instance_id=inst["id"],
        resource="invoices",
        poll_interval=0.1,
        timeout=30,
        full_refresh=True,
        deferrable=False,
    )
    manifest = run_operator(op, Ctx(data_interval_end=END), expect_defer=False)
    metadata = _metadata(emu, inst["token"], "invoices")
    load_manifest(target.loader_conn, target.dialect, loadable_manifest(manifest), table_prefix=target.prefix)
    summary = target.project(element_key, "invoices", instance_id=inst["id"], metadata=metadata)

    truth = emu.state.records(inst["id"], "invoices")
    assert truth and summary["projected"] == len(truth)
    assert_typed_matches(target, element_key, "invoices", truth, instance_id=inst["id"])
    parent = target.table(f"typed_{element_key}_invoices")
    lines = dict(
        target.query(
            f'SELECT parent_id, COUNT(*) FROM "{child_table_name(parent, ARRAY_OF[element_key])}" '
            "WHERE instance_id = ? GROUP BY parent_id",
            (inst["id"],),
        )
    )
    assert lines == {record_id(r, element_key): len(r[ARRAY_OF[element_key]]) for r in truth}


@pytest.mark.parametrize("element_key", ["quickbooks", "quickbooksonprem", "freshbooksv2"])
def test_sql_operator_typed_true_keeps_typed_tables_equal_to_the_emulator(
    element_key: str, emu: Any, conn: str, out: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``CloudElementsSqlUpsertOperator(typed=True)``: full load, then creates/updates/deletes and a
    second full refresh: typed parent and child rows equal the emulator's live records after each load
    (deleted parents flagged, their lines gone), and loading the same manifest again projects nothing."""
    import json
    import sqlite3

    from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator

    db = tmp_path / "typed.db"
    monkeypatch.setenv("AIRFLOW_CONN_CE_TYPED_DB", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    inst = emu.state.create_instance(element_key, f"typed-op-{element_key}")
    iid = int(inst["id"])
    array = ARRAY_OF[element_key]

    def extract_and_load(end: datetime) -> tuple[dict[str, Any], dict[str, Any]]:
        op = CloudElementsBulkExtractOperator(
            task_id="extract",
            instance_id=iid,
            resource="invoices",
            poll_interval=0.1,
            timeout=30,
            full_refresh=True,
            deferrable=False,
        )
        manifest = run_operator(op, Ctx(data_interval_end=end), expect_defer=False)
        load = CloudElementsSqlUpsertOperator(task_id="load", manifest=manifest, conn_id="ce_typed_db", typed=True)
        return manifest, load.execute({})

    def typed_rows() -> tuple[dict[str, int], dict[str, int]]:
        with sqlite3.connect(db) as c:
            parents = dict(c.execute(f"SELECT record_id, is_deleted FROM ce_typed_{element_key}_invoices"))
            child = child_table_name(f"ce_typed_{element_key}_invoices", array)
            lines = dict(c.execute(f'SELECT parent_id, COUNT(*) FROM "{child}" GROUP BY parent_id'))
        return parents, lines

    def assert_matches_truth() -> None:
        # the emulator serves soft-deleted records too (QBO active=false, FreshBooks vis_state=1)
        live = [r for r in emu.state.records(iid, "invoices") if not is_soft_deleted(r, element_key)]
        parents, lines = typed_rows()
        assert {rid for rid, deleted in parents.items() if not deleted} == {record_id(r, element_key) for r in live}
        assert lines == {record_id(r, element_key): len(r[array]) for r in live if r.get(array)}

    manifest, summary = extract_and_load(END)
    assert summary["typed"]["projected"] == summary["inserted"] > 0
    assert_matches_truth()

    changed = emu.state.simulate_activity(iid, ["invoices"], creates=2, updates=2, deletes=1)["invoices"]
    _, summary = extract_and_load(datetime.now(timezone.utc))
    assert summary["typed"]["projected"] >= len(changed["created"]) + len(changed["updated"])
    assert_matches_truth()
    parents, lines = typed_rows()
    for raw in changed["deleted"]:  # hard or soft deletes alike: flagged, lines gone (keyed by the stable id)
        rid = stable_id(raw, element_key)
        assert parents.get(rid) == 1 and rid not in lines

    again = CloudElementsSqlUpsertOperator(task_id="load", manifest=manifest, conn_id="ce_typed_db", typed=True)
    assert again.execute({})["typed"]["projected"] == 0  # a late, older manifest changes nothing
    assert_matches_truth()
