"""The unified finance-sync example DAG with ``dag.test()`` against the emulator over real HTTP: model
apply, paged extracts of common resources from QBO, QBE and FreshBooks, one table per common resource;
the rows are compared with the emulator's raw records (ids and mapped values) and with the loader's raw tables
they project (``ce_<element>_common_<resource>``), then an incremental run
after activity (updates, soft and hard deletes) and the cross-system open-receivables answer."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from airflow_provider_cloudelements.common_model import finance_model
from airflow_provider_cloudelements.common_model.unified import open_receivables, open_receivables_truth
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.utils.records import is_soft_deleted
from tests.operators.test_common_resources import expected_invoice
from tests.operators.test_dags import value, xcoms

DAG_ID = "cloudelements_unified_finance_sync"
ELEMENTS = ("quickbooks", "quickbooksonprem", "freshbooksv2")


def _raw_id(element: str, resource: str, record: dict[str, Any]) -> str:
    if element == "quickbooksonprem":
        return str(record.get("ListID") or record.get("TxnID"))
    return str(record["id"]).split("|", 1)[0]


def _rows(db: Path, table: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f'select * from "{table}"')]


def _instances(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {r["source_element"]: r["instance_id"] for r in rows}


def _check_tables(db: Path, emulator: Any) -> dict[str, int]:
    model = finance_model()
    invoices = _rows(db, "common_invoices")
    instances = _instances(invoices)
    assert set(instances) == set(ELEMENTS)
    for name, resource in model.resources.items():
        rows = _rows(db, name.replace("-", "_"))
        for element in ELEMENTS:
            if element not in resource.mappings:
                assert not [r for r in rows if r["source_element"] == element]
                continue
            vendor = resource.mappings[element].resource
            truth = emulator.state.records(instances[element], vendor)
            live = {_raw_id(element, vendor, r) for r in truth if not is_soft_deleted(r, element)}
            mine = [r for r in rows if r["source_element"] == element and r["instance_id"] == instances[element]]
            assert {r["id"] for r in mine if not r["is_deleted"]} == live, (name, element)
            assert {r["id"] for r in mine} >= {_raw_id(element, vendor, r) for r in truth}
            # the unified rows are the projection of the loader's raw table (same ids, deletions and times)
            raw = _rows(db, f"ce_{element}_{name.replace('-', '_')}")
            assert sorted(
                (r["record_id"], r["is_deleted"], r["deleted_at"])
                for r in raw
                if r["instance_id"] == instances[element]
            ) == sorted((r["id"], r["is_deleted"], r["deleted_at"]) for r in mine), (name, element)
    by_key = {(r["source_element"], r["id"]): r for r in invoices}
    for element in ELEMENTS:
        for raw in emulator.state.records(instances[element], "invoices"):
            want = expected_invoice(element, raw)
            row = by_key[(element, want["id"])]
            assert (row["customer_id"], row["status"], row["updated_at"]) == (
                want["customer_id"], want["status"], want["updated_at"]
            )  # fmt: skip
            assert row["total_amount"] == want["total_amount"] and row["balance"] == want["balance"]
    return instances


def test_unified_sync_full_then_incremental(sync_env: dict[str, Any], load_dag: Any, emulator: Any) -> None:
    db = sync_env["warehouse"]
    dag = load_dag(DAG_ID, "unified_finance_sync")
    first = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)
    run = dag.test(logical_date=first)
    assert run.state == "success"
    applied = value(xcoms(DAG_ID, run.run_id)[("apply_model", "return_value")])
    n_entries = len(finance_model().resources) + sum(
        len([e for e in r.mappings if e in ELEMENTS]) for r in finance_model().resources.values()
    )
    assert (applied["created"], applied["updated"], applied["unchanged"]) == (n_entries, 0, 0)
    instances = _check_tables(db, emulator)
    # drift: a mapping edited outside the DAG is repaired by the next run (and reported)
    hook = CloudElementsHook()
    tampered = hook.get_transformation("common-invoices", "quickbooks")
    assert tampered is not None
    tampered["fields"] = [f for f in tampered["fields"] if f["path"] != "balance"]
    hook.create_transformation("common-invoices", tampered, "quickbooks", replace=True)
    # activity in every system: updates, soft deletes (lists, FreshBooks) and hard deletes (QB transactions)
    changes = {
        element: emulator.state.simulate_activity(
            instances[element], resources=["customers", "invoices"], creates=2, updates=2, deletes=1
        )
        for element in ELEMENTS
    }
    # the next interval ends after the activity (the run's window is its data interval, plus the lookback)
    second = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1)
    run = dag.test(logical_date=second)
    assert run.state == "success"
    applied = value(xcoms(DAG_ID, run.run_id)[("apply_model", "return_value")])
    assert (applied["created"], applied["updated"], applied["unchanged"]) == (0, 1, n_entries - 1)
    assert [c["details"] for c in applied["changes"] if c["action"] == "update"] == [["+ balance"]]
    _check_tables(db, emulator)
    invoices = {(r["source_element"], r["id"]): r for r in _rows(db, "common_invoices")}
    customers = {(r["source_element"], r["id"]): r for r in _rows(db, "common_customers")}
    for element, change in changes.items():
        for rid in change["invoices"]["created"] + change["invoices"]["updated"]:
            assert not invoices[(element, str(rid).split("|")[0])]["is_deleted"]
        for rid in change["invoices"]["deleted"]:
            assert invoices[(element, str(rid).split("|")[0])]["is_deleted"], (element, rid)
        for rid in change["customers"]["deleted"]:
            assert customers[(element, str(rid).split("|")[0])]["is_deleted"], (element, rid)
    # the cross-system answer equals the emulator's truth
    engine = sa.create_engine(f"sqlite:///{db}")
    truth = sorted(
        row
        for element in ELEMENTS
        for row in open_receivables_truth(
            element, instances[element], emulator.state.records(instances[element], "invoices")
        )
    )
    assert open_receivables(engine) == truth and len({r[0] for r in truth}) == 3
