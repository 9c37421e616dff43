"""Lineage of the flagship DAG (``dags_examples/cloudelements_finance_sync.py``, ``dag.test()`` against the
emulator): every mapped extract emits an Airflow asset event (counted in the metadata DB), and with the
OpenLineage provider's listener on (file transport) each extract's COMPLETE event names the Cloud Elements
resource as input and its landed files as output, the load's names those files as inputs and the tables as
outputs, with row counts equal to the emulator's record counts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.transfers.plan import asset_uri

DAG_ID = "cloudelements_finance_sync"
ELEMENTS = "quickbooks,quickbooksonprem,freshbooksv2"


def _clear_openlineage_conf() -> None:
    import airflow.providers.openlineage.conf as ol_conf

    for value in vars(ol_conf).values():
        if callable(getattr(value, "cache_clear", None)):
            value.cache_clear()


@pytest.fixture
def openlineage_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The OpenLineage listener on, writing events to a file (``[openlineage] transport`` type ``file``).

    The listener is added to the task SDK's listener manager for this test only (the session's plugins
    were loaded with OpenLineage unconfigured, hence disabled) and removed afterwards.
    """
    pytest.importorskip("airflow.providers.openlineage")
    from airflow.providers.openlineage.plugins.listener import get_openlineage_listener
    from airflow.sdk.listener import get_listener_manager

    events = tmp_path / "openlineage.ndjson"
    monkeypatch.setenv(
        "AIRFLOW__OPENLINEAGE__TRANSPORT", json.dumps({"type": "file", "log_file_path": str(events), "append": True})
    )
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD", "True")
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__NAMESPACE", "ce-tests")
    _clear_openlineage_conf()
    listener = get_openlineage_listener()
    listener.adapter._client = None  # a client built from the configuration above
    manager = get_listener_manager()
    manager.add_listener(listener)
    try:
        yield events
    finally:
        manager.pm.unregister(listener)
        monkeypatch.undo()
        _clear_openlineage_conf()
        listener.adapter._client = None


def read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def asset_events(dag_id: str, run_id: str) -> list[tuple[str, str, int, dict[str, Any]]]:
    """``(asset uri, source task id, map index, extra)`` of the run's asset events in the metadata DB."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.uri, AssetEvent.source_task_id, AssetEvent.source_map_index, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetEvent.source_dag_id == dag_id, AssetEvent.source_run_id == run_id)
        ).all()
    return [(str(u), str(t), int(m), dict(e or {})) for u, t, m, e in rows]


def extract_results(dag_id: str, run_id: str) -> dict[int, dict[str, Any]]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(XComModel)
            .filter(
                XComModel.dag_id == dag_id,
                XComModel.run_id == run_id,
                XComModel.task_id == "extract",
                XComModel.key == "return_value",
            )
            .all()
        )
        out = {}
        for r in rows:
            value = r.value
            out[int(r.map_index)] = json.loads(value) if isinstance(value, (str, bytes)) else value
        return out


def map_labels(dag_id: str, run_id: str, task_id: str) -> dict[int, str | None]:
    """``{map index: rendered map index}`` of a mapped task's instances (what the UI lists)."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(TaskInstance.map_index, TaskInstance.rendered_map_index)
            .filter(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id)
            .all()
        )
    return {int(m): r for m, r in rows}


def test_flagship_dag_emits_asset_and_openlineage_events_for_every_mapped_extract(
    sync_env: dict[str, Any],
    load_dag: Any,
    emulator: Any,
    openlineage_events: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CLOUDELEMENTS_SYNC_ELEMENTS", ELEMENTS)
    dag = load_dag(DAG_ID)
    run = dag.test(logical_date=datetime.now(timezone.utc).replace(microsecond=0))
    assert run.state == "success"

    manifests = extract_results(DAG_ID, run.run_id)
    assert len(manifests) == 17  # 7 QBO + 5 QBE + 5 FreshBooks resources, one mapped task each

    # the UI lists each mapped extract by element, instance and resource (the operators' map_index_template)
    labels = map_labels(DAG_ID, run.run_id, "extract")
    assert labels == {i: f"{m['element_key']} {m['instance_id']}/{m['resource']}" for i, m in manifests.items()}, labels

    # Airflow asset events: one per mapped extract, under the extract's asset URI, with its manifest facts
    events = asset_events(DAG_ID, run.run_id)
    by_index = {m: (uri, extra) for uri, task, m, extra in events if task == "extract"}
    assert len([e for e in events if e[1] == "extract"]) == 17, events
    for index, manifest in manifests.items():
        uri, extra = by_index[index]
        assert uri == asset_uri(manifest["element_key"], manifest["instance_id"], manifest["resource"])
        assert extra["path"] == manifest["path"] and extra["records"] == manifest["records"]

    # OpenLineage: COMPLETE events of the extracts and of the load
    complete = [e for e in read_events(openlineage_events) if e.get("eventType") == "COMPLETE"]
    extracts = [e for e in complete if e["job"]["name"].startswith(f"{DAG_ID}.extract")]
    assert len(extracts) == 17, [e["job"]["name"] for e in complete]
    landing = sync_env["landing"]
    seen = set()
    for event in extracts:
        (source,) = event["inputs"]
        (target,) = event["outputs"]
        element_key = source["namespace"].removeprefix("cloudelements://")
        instance_id, resource = source["name"].split("/")
        truth = emulator.state.records(int(instance_id), resource)
        assert target["namespace"] == "file"
        assert target["name"] == f"{landing}/{element_key}/instance={instance_id}/{resource}"
        assert target["outputFacets"]["outputStatistics"]["rowCount"] == len(truth)
        seen.add((element_key, int(instance_id), resource))
    assert seen == {(m["element_key"], m["instance_id"], m["resource"]) for m in manifests.values()}

    (load,) = [e for e in complete if e["job"]["name"] == f"{DAG_ID}.load"]
    inputs = {(d["namespace"], d["name"]) for d in load["inputs"]}
    assert inputs == {(e["outputs"][0]["namespace"], e["outputs"][0]["name"]) for e in extracts}
    outputs = {d["name"]: d for d in load["outputs"]}
    assert {d["namespace"] for d in load["outputs"]} == {f"sqlite://{sync_env['warehouse']}"}
    for element_key, instance_id, resource in seen:
        table = f"ce_{element_key}_{resource}".replace("-", "_")
        rows = outputs[table]["outputFacets"]["outputStatistics"]["rowCount"]
        assert rows == len(emulator.state.records(instance_id, resource))  # first run: all inserted
