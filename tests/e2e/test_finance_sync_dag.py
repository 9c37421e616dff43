"""The example finance-sync DAG, run with ``dag.test()`` against the emulator over real HTTP.

Landed files and database rows are compared with the emulator's ground truth by record id.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.utils.records import record_id

DAG_ID = "cloudelements_finance_sync"


def landed(landing: Path) -> dict[tuple[str, int, str], list[dict[str, Any]]]:
    """{(element_key, instance_id, resource): [records]} from every landed NDJSON file."""
    out: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for path in landing.glob("*/instance=*/*/window=*/*.ndjson"):
        if path.name.endswith(".errors.ndjson"):
            continue
        element_key = path.parts[-5]
        instance_id = int(path.parts[-4].split("=", 1)[1])
        resource = path.parts[-3]
        with path.open() as handle:
            out[(element_key, instance_id, resource)] = [json.loads(line) for line in handle]
    return out


def live_rows(db: Path, table: str, instance_id: int) -> set[str]:
    with sqlite3.connect(db) as conn:
        return {
            r[0]
            for r in conn.execute(
                f'select record_id from "{table}" where instance_id = ? and is_deleted = 0',
                (instance_id,),
            )
        }


@pytest.mark.parametrize("elements", ["quickbooks", "quickbooks,quickbooksonprem,freshbooksv2"])
def test_first_run_full_load_matches_emulator(
    elements: str, sync_env: dict[str, Any], load_dag: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLOUDELEMENTS_SYNC_ELEMENTS", elements)
    dag = load_dag(DAG_ID)
    run = dag.test(logical_date=datetime.now(timezone.utc).replace(microsecond=0))
    assert run.state == "success"

    files = landed(sync_env["landing"])
    expected_keys = set(elements.split(","))
    assert {key for key, _, _ in files} == expected_keys
    for (element_key, instance_id, resource), records in files.items():
        truth = emulator.state.records(instance_id, resource)
        assert truth, f"emulator has no {resource} for {element_key}"
        assert sorted(record_id(r, element_key) for r in records) == sorted(record_id(r, element_key) for r in truth), (
            f"{element_key}/{resource}: landed ids differ from the emulator's"
        )
        assert records == truth or sorted(map(json.dumps, records)) == sorted(map(json.dumps, truth))
        table = f"ce_{element_key}_{resource}".replace("-", "_")
        assert live_rows(sync_env["warehouse"], table, instance_id) == {record_id(r, element_key) for r in truth}


def warehouse_rows(db: Path, table: str, instance_id: int) -> dict[str, tuple[int, dict[str, Any]]]:
    """``{record_id: (is_deleted, data)}`` of one instance's rows."""
    with sqlite3.connect(db) as conn:
        return {
            rid: (deleted, json.loads(data))
            for rid, deleted, data in conn.execute(
                f'select record_id, is_deleted, data from "{table}" where instance_id = ?', (instance_id,)
            )
        }


def test_qbo_record_updated_between_syncs_stays_one_row_with_the_new_content(
    sync_env: dict[str, Any], load_dag: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QuickBooks Online reads ids as ``<id>|<syncToken>`` (QBO tips page) and the token moves on every
    update: an incremental sync and a later full refresh after an update keep ONE warehouse row per record,
    keyed by the stable id, with the new content, never marked deleted (issue 13)."""
    from tests.e2e.conftest import forget_runs

    assert emulator.config.qbo_sync_token_ids, "the emulator serves QBO ids as the real element does"
    monkeypatch.setenv("CLOUDELEMENTS_SYNC_ELEMENTS", "quickbooks")
    table, resource = "ce_quickbooks_customers", "customers"

    dag = load_dag(DAG_ID)

    def sync() -> int:
        """One run (a manual run: the hour before now); returns the QBO instance it synced."""
        run = dag.test(logical_date=datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=1))
        assert run.state == "success"
        [instance_id] = {iid for _, iid, res in landed(sync_env["landing"]) if res == resource}
        return instance_id

    iid = sync()  # first run: full load
    before = {record_id(r, "quickbooks"): r for r in emulator.state.records(iid, resource)}
    rid = sorted(before, key=int)[len(before) // 2]
    served_before = before[rid]["id"]
    assert served_before == f"{rid}|{before[rid]['syncToken']}"
    assert warehouse_rows(sync_env["warehouse"], table, iid)[rid] == (0, before[rid])

    changed = emulator.state.edit_record(iid, resource, rid, {"companyName": "Renamed Between Syncs Ltd"})
    served_after = changed["record"]["id"]
    assert served_after != served_before and changed["id"] == rid  # a new syncToken, the same record

    def assert_one_row_with_the_new_content(live_ids: set[str]) -> None:
        rows = warehouse_rows(sync_env["warehouse"], table, iid)
        assert not [k for k in rows if "|" in k], "a row keyed by the served id|syncToken"
        assert rows[rid] == (0, changed["record"]), "the updated record is not one live row with the new content"
        assert {k for k, (deleted, _) in rows.items() if not deleted} == live_ids

    truth = {record_id(r, "quickbooks") for r in emulator.state.records(iid, resource)}
    assert sync() == iid  # second run: incremental, lands the new version
    assert_one_row_with_the_new_content(truth)

    forget_runs(DAG_ID)  # third run: a first run again, i.e. a full refresh that reconciles deletions
    assert sync() == iid
    assert_one_row_with_the_new_content(truth)
