"""The sensor-based event-driven sync DAG, with ``dag.test()`` against the emulator.

Activity simulated after the run's watermark produces events; the deferrable sensor fires on them,
the changed records and tombstones land, and the warehouse ends up equal to the emulator for the
changed ids.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from airflow_provider_cloudelements.utils.records import is_soft_deleted, record_id, stable_id

DAG_ID = "cloudelements_event_sensor_sync"


def test_sensor_variant_lands_exactly_the_changed_records(
    sync_env: dict[str, Any], load_dag: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = emulator.state.create_instance("quickbooks", "event sync e2e")
    instance_id = int(instance["id"])
    resources = ["customers", "invoices"]
    for resource in resources:  # generate the base data before the watermark
        emulator.state.records(instance_id, resource)
    monkeypatch.setenv("CLOUDELEMENTS_EVENTS_INSTANCE_ID", str(instance_id))
    monkeypatch.setenv("CLOUDELEMENTS_EVENTS_POLL_INTERVAL", "0.2")
    watermark = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=1)
    changes = emulator.state.simulate_activity(instance_id, resources=resources, creates=2, updates=2, deletes=1)

    dag = load_dag(DAG_ID, file="cloudelements_event_driven_sync")
    run = dag.test(logical_date=watermark)
    assert run.state == "success"

    with sqlite3.connect(sync_env["warehouse"]) as conn:
        for resource in resources:
            existing = {record_id(r, "quickbooks"): r for r in emulator.state.records(instance_id, resource)}
            # served ids are "<id>|<syncToken>" (the token grows on update): the warehouse keys by the stable id
            changed = {
                stable_id(i, "quickbooks")
                for kind in ("created", "updated", "deleted")
                for i in changes[resource][kind]
            }
            table = f"ce_quickbooks_{resource}".replace("-", "_")
            rows = {
                rid: (deleted, json.loads(data))
                for rid, deleted, data in conn.execute(
                    f'select record_id, is_deleted, data from "{table}" where instance_id = ?',
                    (instance_id,),
                )
            }
            assert set(rows) <= changed, f"{resource}: only changed ids may be touched"
            for rid in changed:
                if rid in existing:  # live or soft-deleted at the source: present, same content and flag
                    assert rid in rows, f"{resource}/{rid}: changed record missing"
                    deleted, data = rows[rid]
                    assert data == existing[rid], f"{resource}/{rid}: content differs from the emulator"
                    assert bool(deleted) == is_soft_deleted(existing[rid], "quickbooks")
                else:  # hard-deleted at the source: never live in the warehouse
                    assert rid not in rows or rows[rid][0] == 1, f"{resource}/{rid}: deleted record is live"


def test_a_qbo_record_changed_twice_lands_once(
    sync_env: dict[str, Any], load_dag: Any, emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two updates of one QBO record give two events whose ``objectId`` differ (``<id>|<syncToken>``, the
    token moves): the changed-records task fetches the record once and lands it once, with its newest
    content, keyed by the stable id (issue 13)."""
    instance = emulator.state.create_instance("quickbooks", "event sync twice")
    instance_id = int(instance["id"])
    emulator.state.records(instance_id, "customers")
    monkeypatch.setenv("CLOUDELEMENTS_EVENTS_INSTANCE_ID", str(instance_id))
    monkeypatch.setenv("CLOUDELEMENTS_EVENTS_POLL_INTERVAL", "0.2")
    watermark = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(seconds=1)
    first = emulator.state.edit_record(instance_id, "customers", "7", {"companyName": "First Rename"})
    second = emulator.state.edit_record(instance_id, "customers", "7", {"companyName": "Second Rename"})
    assert first["record"]["id"] != second["record"]["id"] and first["id"] == second["id"] == "7"
    gets = "GET /elements/api-v2/hubs/{hub}/{resource}/{record_id}"
    before = emulator.state.stats()["requests"].get(gets, 0)

    run = load_dag(DAG_ID, file="cloudelements_event_driven_sync").test(logical_date=watermark)
    assert run.state == "success"
    assert emulator.state.stats()["requests"].get(gets, 0) - before == 1, "one GET per changed record"
    [landed_file] = [p for p in sync_env["landing"].rglob("customers.*.ndjson") if ".deleted." not in p.name]
    lines = [json.loads(line) for line in landed_file.read_text().splitlines() if line.strip()]
    assert lines == [second["record"]]
    with sqlite3.connect(sync_env["warehouse"]) as conn:
        rows = list(
            conn.execute(
                "select record_id, is_deleted, data from ce_quickbooks_customers where instance_id = ?", (instance_id,)
            )
        )
    assert [(rid, deleted, json.loads(data)) for rid, deleted, data in rows] == [("7", 0, second["record"])]
