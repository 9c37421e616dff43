"""Fixtures of the model-based test: one emulator, one Airflow DB and one parse of the model DAGs
per test session; a fresh :class:`~tests.model.harness.Harness` world per hypothesis example."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import connection_json
from tests.model.harness import MODEL_DAGS

BUNDLES = json.dumps(
    [
        {
            "name": "ce-model-tests",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(MODEL_DAGS)},
        }
    ]
)


@pytest.fixture(scope="session")
def model_emulator() -> Iterator[Any]:
    """A private emulator for the model (fault injection is global to an emulator): few records per
    resource so full refreshes stay cheap, short bulk jobs."""
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(seed=23, records_per_resource=4, bulk_min_seconds=0.05)) as server:
        yield server


@pytest.fixture(scope="session")
def model_dagbag(airflow_db: str) -> dict[str, Any]:
    """``{dag_id: DAG}`` of ``dags/ce_model_dags.py``, parsed once per session."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(MODEL_DAGS / "ce_model_dags.py"))
    assert not bag.import_errors, bag.import_errors
    return dict(bag.dags)


@pytest.fixture
def model_dags(model_dagbag: dict[str, Any], model_emulator: Any) -> Iterator[dict[str, Any]]:
    """The model DAGs with the environment ``dag.test()`` needs (connections, the DAG bundle); the
    environment, including what each :class:`~tests.model.harness.Harness` sets, is restored after."""
    saved = {k: os.environ.get(k) for k in _ENV_KEYS}
    os.environ.update(model_environment(model_emulator))
    try:
        yield model_dagbag
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_ENV_KEYS = (
    "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT",
    "AIRFLOW_CONN_CLOUDELEMENTS_WAREHOUSE",
    "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
    "CLOUDELEMENTS_OUTPUT_BASE",
)


def model_environment(emulator: Any) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT": connection_json(
            emulator.base_url, emulator.user_secret, emulator.organization_secret, retry_budget=5
        ),
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": BUNDLES,
    }
