"""OpenLineage facets of the extract and load operators, with the OpenLineage provider installed and with its
import blocked (the provider is optional: the operators run and report no lineage). The flagship DAG's
events through the real listener are in ``test_flagship_lineage.py``."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements import openlineage as ce_lineage
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator
from tests.conftest import ROOT
from tests.operators.conftest import Ctx, run_operator

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
END = datetime(2025, 7, 1, tzinfo=timezone.utc)
#: What "not installed" looks like to our imports: the OpenLineage client and the provider's extractors raise
#: ImportError (the provider package itself stays importable: Airflow's provider discovery loads its info).
BLOCKED = (
    "openlineage",
    "openlineage.client",
    "openlineage.client.event_v2",
    "openlineage.client.facet_v2",
    "airflow.providers.openlineage.extractors",
)


def extract_and_load(emu: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> tuple[Any, Any, int]:
    iid = emu.state.create_instance("quickbooks", name)["id"]
    extract = CloudElementsPagedExtractOperator(task_id="invoices", instance_id=iid, resource="invoices", page_size=9)
    manifest = run_operator(extract, Ctx(data_interval_start=START, data_interval_end=END), expect_defer=False)
    db = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_CE_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    load = CloudElementsSqlUpsertOperator(task_id="load", manifest=manifest, conn_id="ce_warehouse")
    summary = load.execute(Ctx().context)
    assert summary["inserted"] == len(emu.state.records(iid, "invoices"))
    return extract, load, iid


def test_facets_with_the_openlineage_provider(emu: Any, conn: str, out: Path, tmp_path: Path, monkeypatch: Any) -> None:
    pytest.importorskip("airflow.providers.openlineage")
    extract, load, iid = extract_and_load(emu, tmp_path, monkeypatch, "ol-installed")
    truth = emu.state.records(iid, "invoices")

    lineage = extract.get_openlineage_facets_on_complete(None)
    (source,) = lineage.inputs
    (files,) = lineage.outputs
    assert (source.namespace, source.name) == ("cloudelements://quickbooks", f"{iid}/invoices")
    assert (files.namespace, files.name) == ("file", f"{out}/quickbooks/instance={iid}/invoices")
    assert files.outputFacets["outputStatistics"].rowCount == len(truth)

    lineage = load.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [(files.namespace, files.name)]
    (table,) = lineage.outputs
    assert (table.namespace, table.name) == (f"sqlite://{tmp_path / 'warehouse.db'}", "ce_quickbooks_invoices")
    assert table.outputFacets["outputStatistics"].rowCount == len(truth)


def test_object_store_files_are_named_by_bucket_and_key() -> None:
    manifest = {
        "manifest_path": "s3://lineage_only_s3@landing/base/quickbooks/instance=7/invoices/window=a_b/_manifest.json"
    }
    assert ce_lineage.file_dataset_name(manifest) == ("s3://landing", "base/quickbooks/instance=7/invoices")


def test_without_the_openlineage_provider_the_operators_run_and_report_no_lineage(
    emu: Any, conn: str, out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in BLOCKED:
        monkeypatch.setitem(sys.modules, name, None)  # import of a None entry raises ImportError
    assert ce_lineage.openlineage_available() is False
    extract, load, _ = extract_and_load(emu, tmp_path, monkeypatch, "ol-missing")
    assert extract.get_openlineage_facets_on_complete(None) is None
    assert load.get_openlineage_facets_on_complete(None) is None


def test_provider_modules_import_without_openlineage() -> None:
    """A fresh interpreter where OpenLineage cannot be imported imports every operator module."""
    code = f"""
import sys
for name in {BLOCKED!r}:
    sys.modules[name] = None
import airflow_provider_cloudelements.operators.extract, airflow_provider_cloudelements.operators.sql
import airflow_provider_cloudelements.openlineage as ol
assert ol.openlineage_available() is False
assert ol.extract_lineage({{"manifest_path": "file:///x/a/b/_manifest.json"}}) is None
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
