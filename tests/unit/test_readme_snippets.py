"""The README's python code blocks run as written (issue 16: "README snippets that run as written").

Every ```` ```python ```` block of README.md is executed, in order, in one namespace — the way a user pastes
them into a DAG file: blocks that open their own ``with DAG(`` run at module level, the others inside one
``with DAG(...)`` block the test opens (the README says so). The resulting DAG then runs with
``dag.test()`` against the emulator (the ``cloudelements_default`` connection) and a moto S3 server (the
``aws_default`` connection, bucket ``my-bucket``): the instance snippet creates a QuickBooks Enterprise
instance, the bulk-extract snippet lands its invoices in S3, and the landed records are the emulator's.
"""

from __future__ import annotations

import json
import re
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.utils.records import record_id
from tests.conftest import ROOT, connection_json
from tests.integration.conftest import aws_connection_json, moto_client, moto_endpoint

__all__ = ["moto_endpoint"]

README = ROOT / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
BUCKET = "my-bucket"  # the README's
DAG_ID = "readme_snippets"


def python_blocks() -> list[tuple[int, str]]:
    """``(line, code)`` of every python block of the README (line of the opening fence, 1-based)."""
    text = README.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def readme_dag_file(folder: Path) -> Path:
    """The README's blocks as one DAG file: ``with DAG(`` blocks at module level, the others (indented)
    inside the DAG the README tells the reader to put them in."""
    inside, outside = [], []
    for line, code in python_blocks():
        (outside if "with DAG(" in code else inside).append(f"# README.md:{line}\n{code}")
    body = textwrap.indent("\n".join(inside), "    ")
    path = folder / f"{DAG_ID}.py"
    path.write_text(
        "from datetime import datetime, timezone\n"
        "from airflow.sdk import DAG\n\n"
        f"with DAG({DAG_ID!r}, schedule=None, start_date=datetime(2026, 1, 1, tzinfo=timezone.utc), catchup=False)"
        " as dag:\n"
        f"{body}\n" + "\n".join(outside)
    )
    return path


def load_readme_dag(folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, dict[str, Any]]:
    """Parse the README DAG file from a DAG bundle of its own (``dag.test()`` runs serialized DAGs only);
    returns the DAG and the file's namespace."""
    import runpy

    from airflow.dag_processing.dagbag import DagBag

    from tests.e2e.conftest import forget_runs

    path = readme_dag_file(folder)
    bundles = [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(ROOT / "dags_examples")},
        },
        {
            "name": "readme-snippets",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(folder)},
        },
    ]
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", json.dumps(bundles))
    forget_runs(DAG_ID)
    bag = DagBag(dag_folder=str(path), bundle_path=folder, bundle_name="readme-snippets")
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(DAG_ID), runpy.run_path(str(path))


def test_the_readme_has_python_blocks() -> None:
    assert len(python_blocks()) >= 4


def test_readme_snippets_run_as_written(
    emulator: Any, airflow_db: str, moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    monkeypatch.setenv(
        "AIRFLOW_CONN_CLOUDELEMENTS_DEFAULT",
        connection_json(emulator.base_url, emulator.user_secret, emulator.organization_secret),
    )
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", aws_connection_json(moto_endpoint))
    from airflow.sdk.io.store import _STORE_CACHE

    _STORE_CACHE.pop("s3-aws_default", None)  # a filesystem cached before aws_default pointed at moto
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    s3 = moto_client(moto_endpoint)
    if BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)

    dag, namespace = load_readme_dag(tmp_path, monkeypatch)
    assert set(dag.task_dict) == {"qbe_instance", "invoices"}
    assert dag.task_dict["invoices"].upstream_task_ids == {"qbe_instance"}  # the snippet wires the dependency
    # the event-driven snippet: an asset watched by a serializable trigger
    trigger = namespace["trigger"]
    assert namespace["changes"].watchers[0].trigger is trigger
    classpath, kwargs = trigger.serialize()
    assert classpath.endswith("CloudElementsEventTrigger") and json.loads(json.dumps(kwargs))["watch"] is True

    run = dag.test(logical_date=datetime.now(timezone.utc).replace(microsecond=0))
    assert run.state == "success"
    with create_session() as session:
        values = {
            r.task_id: r.value
            for r in session.query(XComModel).filter(
                XComModel.dag_id == DAG_ID, XComModel.run_id == run.run_id, XComModel.key == "return_value"
            )
        }
    instance = (
        values["qbe_instance"] if isinstance(values["qbe_instance"], dict) else json.loads(values["qbe_instance"])
    )
    manifest = values["invoices"] if isinstance(values["invoices"], dict) else json.loads(values["invoices"])
    assert instance["element_key"] == "quickbooksonprem"
    assert manifest["path"].startswith(f"s3://aws_default@{BUCKET}/cloudelements/quickbooksonprem/")
    key = manifest["path"].split(f"{BUCKET}/", 1)[1]
    landed = [json.loads(x) for x in s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().splitlines() if x.strip()]
    truth = emulator.state.records(int(instance["id"]), "invoices")
    assert truth and sorted(record_id(r, "quickbooksonprem") for r in landed) == sorted(
        record_id(r, "quickbooksonprem") for r in truth
    )
    assert sorted(map(json.dumps, landed)) == sorted(map(json.dumps, truth))
