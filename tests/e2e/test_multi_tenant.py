"""The multi-tenant example DAG end to end: discovery by tag over 21 tagged instances of the three
elements, mapped extract + load per (instance, resource), one revoked tenant (401) and one disabled
after discovery (403) failing only their own tasks, skipped untagged/disabled/invalid instances.

Runs with ``dag.test()`` against a dedicated emulator over real HTTP; warehouse rows are compared
with the emulator's ground truth (ids and content) for every healthy tenant.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from cloudelements_emulator import EmulatorConfig, EmulatorServer
from cloudelements_emulator.errors import CEError

from airflow_provider_cloudelements.utils.records import record_id
from tests.conftest import connection_json

DAG_ID = "cloudelements_multi_tenant_sync"
TAG = "mt-e2e"
RESOURCES = ["customers", "invoices"]
ELEMENTS = ["quickbooks", "quickbooksonprem", "freshbooksv2"]


@pytest.fixture
def tenant_emulator() -> Iterator[EmulatorServer]:
    """A fresh emulator per test: each test's tagged instances are the only ones."""
    with EmulatorServer(EmulatorConfig(seed=17, records_per_resource=3, bulk_min_seconds=0.05)) as server:
        yield server


@pytest.fixture
def tenants(tenant_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """21 tagged instances (7 per element) + untagged ones; one revoked, one disabled before the run
    (skipped), one disabled after discovery (403), one invalid (skipped)."""
    state = tenant_emulator.state
    tagged = [
        state.create_instance(ELEMENTS[i % 3], f"customer-{i:02d}", tags=[TAG, f"customer-{i:02d}"]) for i in range(21)
    ]
    untagged = [state.create_instance(key, f"untagged-{key}", tags=["other"]) for key in ELEMENTS]
    revoked, late_disabled, disabled, invalid = tagged[1], tagged[5], tagged[9], tagged[13]
    state.instances.set_enabled(disabled["id"], False)
    state.instances.get(invalid["id"])["valid"] = False
    original = state.instance_by_token
    faulty = {revoked["token"]: 401, late_disabled["token"]: 403}

    def by_token(token: str) -> dict[str, Any]:
        # a provider-side revoked grant (401) / an instance disabled mid-run (403): hub calls only,
        # the instance itself still lists as enabled and valid
        if token in faulty:
            raise CEError(faulty[token], "Token revoked" if faulty[token] == 401 else "Instance is disabled")
        return original(token)

    monkeypatch.setattr(state, "instance_by_token", by_token)
    return {
        "tagged": tagged,
        "untagged": untagged,
        "failed": {revoked["id"], late_disabled["id"]},
        "skipped": {disabled["id"]: "disabled", invalid["id"]: "invalid"},
    }


@pytest.mark.parametrize("per_instance", ["2", "1"])  # 1: the resource slots of a tenant run one after the other
def test_multi_tenant_dag_lands_healthy_tenants_and_reports_failed(
    per_instance: str,
    tenant_emulator: EmulatorServer,
    tenants: dict[str, Any],
    airflow_db: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    load_dag: Any,
) -> None:
    emu = tenant_emulator
    warehouse = tmp_path / "warehouse.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT", connection_json(emu.base_url, emu.user_secret, emu.organization_secret)
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDELEMENTS_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)})
    )
    monkeypatch.setenv("CLOUDELEMENTS_OUTPUT_BASE", f"file://{tmp_path / 'landing'}")
    monkeypatch.setenv("CLOUDELEMENTS_POLL_INTERVAL", "0.1")
    monkeypatch.setenv("CLOUDELEMENTS_TENANT_TAG", TAG)
    monkeypatch.setenv("CLOUDELEMENTS_TENANT_RESOURCES", ",".join(RESOURCES))
    monkeypatch.setenv("CLOUDELEMENTS_RETRIES", "0")
    # with one lane a failed slot must not stop the tenant's next slot (trigger_rule all_done): every
    # resource of a failed tenant is attempted and fails on its own
    monkeypatch.setenv("CLOUDELEMENTS_MAX_EXTRACTS_PER_INSTANCE", per_instance)

    dag = load_dag(DAG_ID)
    lane_upstreams = {t.task_id: sorted(t.upstream_task_ids) for t in dag.tasks if t.task_id.startswith("tenant.ex")}
    if per_instance == "1":
        assert lane_upstreams["tenant.extract_1"] == ["discover", "tenant.extract_0"]
    else:
        assert lane_upstreams["tenant.extract_1"] == ["discover"]
    run = dag.test(logical_date=datetime.now(timezone.utc).replace(microsecond=0))
    assert run.state == "failed"  # the report fails the run because two tenants failed

    healthy = [t for t in tenants["tagged"] if t["id"] not in tenants["failed"] and t["id"] not in tenants["skipped"]]
    assert len(healthy) == 17

    tis = {(ti.task_id, ti.map_index): ti for ti in run.get_task_instances()}
    report_ti = tis[("report", -1)]
    assert report_ti.state == "failed"
    assert tis[("discover", -1)].state == "success"
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel).filter_by(dag_id=DAG_ID, run_id=run.run_id, task_id="report", key="tenants").one()
        )
        report = row.value if isinstance(row.value, dict) else json.loads(row.value)
    assert {t["instance_id"] for t in report["failed"]} == tenants["failed"]
    assert {t["instance_id"] for t in report["synced"]} == {t["id"] for t in healthy}
    assert {t["instance_id"]: t["reason"] for t in report["skipped"]} == tenants["skipped"]
    for t in report["failed"]:
        assert sorted(t["resources"]) == sorted(RESOURCES)

    # task states: exactly the failed tenants' extracts failed, their loads upstream_failed
    # one extract_<slot>/load_<slot> task per resource slot, mapped per instance
    extracts = [ti for (task_id, _), ti in tis.items() if task_id.startswith("tenant.extract_")]
    assert len(extracts) == 19 * len(RESOURCES)  # 21 tagged - disabled - invalid
    failed_labels = {ti.rendered_map_index for ti in extracts if ti.state == "failed"}
    assert failed_labels == {f"{iid}/{r}" for iid in tenants["failed"] for r in RESOURCES}
    assert {ti.state for ti in extracts if ti.rendered_map_index not in failed_labels} == {"success"}
    loads = [ti for (task_id, _), ti in tis.items() if task_id.startswith("tenant.load_")]
    assert sum(ti.state == "success" for ti in loads) == len(healthy) * len(RESOURCES)
    assert sum(ti.state == "upstream_failed" for ti in loads) == len(tenants["failed"]) * len(RESOURCES)

    # warehouse: exactly the emulator's records for the healthy tenants, nothing for the others
    skipped_ids = set(tenants["skipped"]) | tenants["failed"] | {t["id"] for t in tenants["untagged"]}
    with sqlite3.connect(warehouse) as conn:
        for key in ELEMENTS:
            for resource in RESOURCES:
                table = f"ce_{key}_{resource}".replace("-", "_")
                rows = conn.execute(f'select instance_id, record_id, data from "{table}" where is_deleted = 0')
                by_instance: dict[int, dict[str, Any]] = {}
                for iid, rid, data in rows:
                    by_instance.setdefault(int(iid), {})[str(rid)] = json.loads(data)
                assert not set(by_instance) & skipped_ids, f"{table}: rows of a failed/skipped tenant"
                for inst in (t for t in healthy if t["element"]["key"] == key):
                    truth = {record_id(r, key): r for r in emu.state.records(inst["id"], resource)}
                    assert truth, f"emulator has no {resource} for {inst['id']}"
                    assert by_instance.get(inst["id"]) == truth, f"{table} instance {inst['id']} differs"


def test_discovery_picks_up_new_tenants_and_skips_bad_ones(
    tenant_emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_cloudelements.operators.discovery import CloudElementsListInstancesOperator

    emu = tenant_emulator
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT", connection_json(emu.base_url, emu.user_secret, emu.organization_secret)
    )
    tag = "mt-discovery"
    first = emu.state.create_instance("quickbooks", "d-1", tags=[tag])
    emu.state.create_instance("freshbooksv2", "d-other-element", tags=[tag])
    emu.state.create_instance("quickbooks", "d-untagged", tags=["mt-else"])
    op = CloudElementsListInstancesOperator(
        task_id="discover", tags=[tag], element_keys=["quickbooks"], element_resources={"quickbooks": RESOURCES}
    )
    kept, skipped = op.discover()
    assert kept == [{"instance_id": first["id"], "element_key": "quickbooks"}] and skipped == []

    second = emu.state.create_instance("quickbooks", "d-2", tags=[tag, "extra"])  # a new customer
    broken = emu.state.create_instance("quickbooks", "d-3", tags=[tag])
    emu.state.instances.get(broken["id"])["valid"] = False
    kept, skipped = op.discover()
    assert [row["instance_id"] for row in kept] == [first["id"], second["id"]]
    assert skipped == [{"instance_id": broken["id"], "element_key": "quickbooks", "name": "d-3", "reason": "invalid"}]
    assert op.plan(kept) == [  # round-robin: every tenant's first resource before anyone's second
        {"instance_id": first["id"], "element_key": "quickbooks", "resource": RESOURCES[0]},
        {"instance_id": second["id"], "element_key": "quickbooks", "resource": RESOURCES[0]},
        {"instance_id": first["id"], "element_key": "quickbooks", "resource": RESOURCES[1]},
        {"instance_id": second["id"], "element_key": "quickbooks", "resource": RESOURCES[1]},
    ]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tags": "finance-sync"}, "tags"),
        ({"element_keys": ["salesforce"]}, "salesforce"),
        ({"element_resources": {"freshbooksv2": ["bills"]}}, "bills"),
        ({"element_keys": ["quickbooks"], "element_resources": {"freshbooksv2": ["invoices"]}}, "element_keys"),
        ({"element_resources": ["no/such"]}, "no/such"),
    ],
)
def test_discovery_bad_arguments_fail_at_parse_time(kwargs: dict[str, Any], field: str) -> None:
    from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
    from airflow_provider_cloudelements.operators.discovery import CloudElementsListInstancesOperator

    with pytest.raises(CloudElementsConfigError, match=field.replace("/", ".")):
        CloudElementsListInstancesOperator(task_id="d", **kwargs)
