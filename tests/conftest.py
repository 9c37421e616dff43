"""Session-wide test setup.

AIRFLOW_HOME must point at a throwaway folder *before* anything imports airflow (Airflow reads it, and
creates its config there, on first import), so this runs at import time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="ce-test-airflow-home-")
os.environ["AIRFLOW_HOME"] = _AIRFLOW_HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags_examples")
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME}/airflow.db"

import pytest  # noqa: E402

if TYPE_CHECKING:
    from cloudelements_emulator import EmulatorServer


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """Create the Airflow metadata DB once per session (needed by ``dag.test()``)."""
    from airflow.utils import db

    db.resetdb()
    return _AIRFLOW_HOME


@pytest.fixture(scope="session")
def emulator() -> Iterator[EmulatorServer]:
    """One Cloud Elements emulator on a free loopback port for the whole session."""
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(seed=7, records_per_resource=40, bulk_min_seconds=0.2)) as server:
        yield server


def connection_json(base_url: str, user_secret: str, organization_secret: str, **extra: Any) -> str:
    """A ``cloudelements`` connection in Airflow's JSON form, for ``AIRFLOW_CONN_<ID>``."""
    import json

    return json.dumps(
        {
            "conn_type": "cloudelements",
            "host": base_url,
            "extra": {"user_secret": user_secret, "organization_secret": organization_secret, **extra},
        }
    )


@pytest.fixture
def ce_conn(emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point ``cloudelements_default`` at the session emulator; returns the conn id."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT",
        connection_json(emulator.base_url, emulator.user_secret, emulator.organization_secret),
    )
    return "cloudelements_default"
