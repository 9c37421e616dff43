"""The example finance-sync DAG, run with ``dag.test()`` against the emulator over real HTTP.

Landed files and database rows are compared with the emulator's ground truth by record id.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
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
