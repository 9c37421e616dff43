"""Fixtures for end-to-end runs of the example DAGs with ``dag.test()`` against the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, connection_json


@pytest.fixture
def sync_env(emulator: Any, airflow_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Connections and knobs the example DAGs read; returns paths the test inspects."""
    landing = tmp_path / "landing"
    warehouse = tmp_path / "warehouse.db"
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT",
        connection_json(emulator.base_url, emulator.user_secret, emulator.organization_secret),
    )
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDELEMENTS_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(warehouse)})
    )
    for key in ("quickbooks", "quickbooksonprem", "freshbooksv2"):
        monkeypatch.setenv(
            f"AIRFLOW_CONN_CLOUDELEMENTS_{key.upper()}_APP",
            json.dumps(
                {
                    "conn_type": "generic",
                    "extra": {"oauth.api.key": f"{key}-id", "oauth.api.secret": "app-secret-123456"},
                }
            ),
        )
    monkeypatch.setenv("CLOUDELEMENTS_OUTPUT_BASE", f"file://{landing}")
    monkeypatch.setenv("CLOUDELEMENTS_POLL_INTERVAL", "0.2")
    return {"landing": landing, "warehouse": warehouse}


@pytest.fixture
def load_dag() -> Callable[[str], Any]:
    """Parse an example DAG file freshly (so environment knobs set by the test apply)."""

    def _load(dag_id: str, file: str | None = None) -> Any:
        from airflow.dag_processing.dagbag import DagBag

        forget_runs(dag_id)

        bag = DagBag(dag_folder=str(ROOT / "dags_examples" / f"{file or dag_id}.py"))
        assert not bag.import_errors, bag.import_errors
        dag = bag.get_dag(dag_id)
        assert dag is not None
        return dag

    return _load


def forget_runs(dag_id: str) -> None:
    """Delete a DAG's runs (and their task instances) so the next run is its first one."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import delete

    with create_session() as session:
        session.execute(delete(TaskInstance).where(TaskInstance.dag_id == dag_id))
        session.execute(delete(DagRun).where(DagRun.dag_id == dag_id))
