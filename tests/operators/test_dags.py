"""Operators inside real DAG runs (``dag.test()``: triggers run inline, XCom and task state stores are
Airflow's own) against the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.operators.links import BULK_JOB_URL_KEY, INSTANCE_URL_KEY
from tests.conftest import ROOT
from tests.e2e.conftest import forget_runs


def load(dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    forget_runs(dag_id)
    bag = DagBag(dag_folder=str(ROOT / "tests" / "dags" / f"{dag_id}.py"))
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def xcoms(dag_id: str, run_id: str) -> dict[tuple[str, str], Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == dag_id, XComModel.run_id == run_id).all()
        return {(r.task_id, r.key): r.value for r in rows}


def value(raw: Any) -> Any:
    if isinstance(raw, (str, bytes)):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


@pytest.mark.usefixtures("dag_bundles")
def test_bulk_extract_in_a_dag_run_deferrable_and_sync(
    emu: Any, conn: str, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = emu.state.create_instance("quickbooks", "dag-run")
    monkeypatch.setenv("CE_OPS_INSTANCE_ID", str(inst["id"]))
    results = {}
    for deferrable in ("1", "0"):
        monkeypatch.setenv("CE_OPS_DEFERRABLE", deferrable)
        before = emu.state.stats()["requests"].get("GET /elements/api-v2/hubs/{hub}/bulk/{job_id}/status", 0)
        run = load("ce_ops_bulk_extract").test()
        assert run.state == "success"
        found = xcoms("ce_ops_bulk_extract", run.run_id)
        manifest = value(found[("extract", "return_value")])
        assert manifest["records"] == 30 and Path(manifest["path"].removeprefix("file://")).exists()
        job_id = value(found[("extract", "bulk_job_id")])
        assert manifest["job_id"] == str(job_id)
        assert value(found[("extract", BULK_JOB_URL_KEY)]).endswith(f"/hubs/finance/bulk/{job_id}/status")
        assert value(found[("extract", INSTANCE_URL_KEY)]).endswith(f"/instances/{inst['id']}")
        assert emu.state.stats()["requests"]["GET /elements/api-v2/hubs/{hub}/bulk/{job_id}/status"] > before
        results[deferrable] = manifest
    assert set(results["1"]) == set(results["0"])
    for key in ("records", "full_refresh", "failed_records", "format", "resource"):
        assert results["1"][key] == results["0"][key]


@pytest.mark.usefixtures("dag_bundles")
def test_templated_instance_id_from_xcom(emu: Any, conn: str, out: Path) -> None:
    run = load("ce_ops_instance_flow").test()
    assert run.state == "success"
    found = xcoms("ce_ops_instance_flow", run.run_id)
    created = value(found[("create", "return_value")])
    assert set(created) == {"id", "name", "element_key", "reused"}
    truth = {r["id"] for r in emu.state.records(created["id"], "invoices")}
    for task in ("bulk", "paged"):
        manifest = value(found[(task, "return_value")])
        assert manifest["instance_id"] == created["id"] and manifest["element_key"] == "freshbooksv2"
        assert manifest["records"] == len(truth)
        assert value(found[(task, INSTANCE_URL_KEY)]).endswith(f"/instances/{created['id']}")
    token = emu.state.instances.get(created["id"])["token"]
    everything = json.dumps({f"{k}": str(v) for k, v in found.items()})
    assert token not in everything and "flow-app-secret-987" not in everything
