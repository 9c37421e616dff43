"""Operators inside real DAG runs (``dag.test()``: triggers run inline, XCom and task state stores are
Airflow's own) against the emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.operators.links import INSTANCE_URL_KEY
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


def task_states(dag_id: str, run_id: str) -> dict[str, str]:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(TaskInstance).filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        return {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in rows}


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
        # no link to the job's API status resource (it answers 401 in a browser)
        assert not any(key.startswith("cloudelements_bulk") for task, key in found if task == "extract"), found
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


@pytest.mark.usefixtures("dag_bundles")
def test_paged_and_failed_extracts_show_no_dead_link_and_log_no_xcom_error(
    emu: Any, conn: str, out: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """A paged extract has no bulk-job link, and no extract that failed before pushing a link logs
    ``XCom not found`` (Airflow computes every extra link at the end of a task)."""
    inst = emu.state.create_instance("quickbooks", "dag-paged")
    monkeypatch.setenv("CE_OPS_INSTANCE_ID", str(inst["id"]))
    monkeypatch.setenv("CE_OPS_MISSING_INSTANCE_ID", str(inst["id"] + 100_000))
    dag = load("ce_ops_paged_extract")
    assert [type(link).__name__ for link in dag.get_task("paged").operator_extra_links] == ["CloudElementsInstanceLink"]
    run = dag.test()
    logs = capfd.readouterr()
    text = logs.out + logs.err
    found = xcoms("ce_ops_paged_extract", run.run_id)
    manifest = value(found[("paged", "return_value")])
    assert manifest["records"] == 30 and manifest["complete"] is True
    assert value(found[("paged", INSTANCE_URL_KEY)]).endswith(f"/instances/{inst['id']}")
    assert "XCom not found" not in text, [line for line in text.splitlines() if "XCom not found" in line][:3]
    assert "Failed to push an xcom for task operator extra link" not in text
    assert task_states("ce_ops_paged_extract", run.run_id) == {
        "paged": "success",
        "paged_fails": "failed",
        "bulk_fails": "failed",
    }
    for task in ("paged_fails", "bulk_fails"):
        assert not value(found.get((task, INSTANCE_URL_KEY))), f"{task}: a link to an instance it never reached"
