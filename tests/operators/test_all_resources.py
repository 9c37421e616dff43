"""Every reference §3.2 resource of every element extracts through both extract operators (issue 13).

One bulk and one paged full refresh per (element, resource), in sync mode against a small emulator over
real HTTP; the landed ids must be exactly the emulator's ground truth for the resource.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.catalog import (
    FRESHBOOKS_CLASSIC_ALL_RESOURCES,
    FRESHBOOKS_V2_ALL_RESOURCES,
    QBE_ALL_RESOURCES,
    QBO_ALL_RESOURCES,
)
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator
from airflow_provider_cloudelements.utils.elements import ELEMENTS, check_resource
from airflow_provider_cloudelements.utils.records import record_id
from tests.operators.conftest import Ctx, run_operator, set_connection

END = datetime(2026, 1, 1, tzinfo=timezone.utc)
ALL = {
    "quickbooks": QBO_ALL_RESOURCES,
    "quickbooksonprem": QBE_ALL_RESOURCES,
    "freshbooksv2": FRESHBOOKS_V2_ALL_RESOURCES,
    "freshbooks": FRESHBOOKS_CLASSIC_ALL_RESOURCES,
}
CASES = [(key, resource) for key, resources in ALL.items() for resource in resources]


@pytest.fixture(scope="module")
def small_emu() -> Iterator[Any]:
    """A small, fast emulator: 4 records per resource, bulk jobs finish at once."""
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(seed=13, records_per_resource=4, bulk_min_seconds=0.0)) as server:
        yield server


@pytest.fixture(scope="module")
def instances(small_emu: Any) -> dict[str, int]:
    return {key: int(small_emu.state.create_instance(key, f"all-{key}")["id"]) for key in ALL}


@pytest.fixture
def small_conn(small_emu: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    return set_connection(monkeypatch, small_emu, retry_budget=3)


def landed_ids(manifest: dict[str, Any], element_key: str) -> list[str]:
    text = Path(manifest["path"].removeprefix("file://")).read_text()
    return [record_id(json.loads(line), element_key) for line in text.splitlines() if line.strip()]


def test_catalog_is_the_reference_matrix_and_polling_lists_stay_the_defaults() -> None:
    assert len(CASES) == 28 + 31 + 6 + 7
    for key, resources in ALL.items():
        spec = ELEMENTS[key]
        assert spec.all_resources == resources
        assert set(spec.resources) < set(spec.all_resources)  # defaults: the §5.2 polling lists only
    check_resource("quickbooks", "estimates")
    check_resource("quickbooksonprem", "inventory-sites")
    with pytest.raises(CloudElementsConfigError, match="'estimates' is not supported for element 'freshbooks'"):
        check_resource("freshbooks", "estimates")


@pytest.mark.parametrize(("element_key", "resource"), CASES, ids=[f"{k}-{r}" for k, r in CASES])
def test_every_resource_bulk_and_paged(
    small_emu: Any, instances: dict[str, int], small_conn: str, out: Path, element_key: str, resource: str
) -> None:
    instance_id = instances[element_key]
    truth = sorted(record_id(r, element_key) for r in small_emu.state.records(instance_id, resource))
    assert truth, f"the emulator seeds no {resource} for {element_key}"
    common: dict[str, Any] = {
        "resource": resource,
        "instance_id": instance_id,
        "element_key": element_key,
        "full_refresh": True,
    }
    bulk = run_operator(
        CloudElementsBulkExtractOperator(
            task_id="bulk", deferrable=False, poll_interval=0.02, timeout=30, output_base=f"file://{out}/bulk", **common
        ),
        Ctx(data_interval_end=END),
        expect_defer=False,
    )
    paged = run_operator(
        CloudElementsPagedExtractOperator(task_id="paged", output_base=f"file://{out}/paged", **common),
        Ctx(data_interval_end=END),
    )
    for manifest in (bulk, paged):
        assert manifest["resource"] == resource and manifest["element_key"] == element_key
        assert manifest["complete"] is True and manifest["records"] == len(truth)
        assert sorted(landed_ids(manifest, element_key)) == truth
    assert bulk["mode"] == "bulk" and paged["mode"] == "paged"


def test_qbo_sync_token_ids_land_with_their_stable_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``id|syncToken`` read ids (QBO tips page, issue 13) every QBO resource still extracts, and the
    landed records' stable ids are the emulator's."""
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    config = EmulatorConfig(seed=17, records_per_resource=2, bulk_min_seconds=0.0, qbo_sync_token_ids=True)
    with EmulatorServer(config) as emu:
        conn = set_connection(monkeypatch, emu, retry_budget=3)
        instance_id = int(emu.state.create_instance("quickbooks", "sync-token-ids")["id"])
        piped = 0
        for resource in QBO_ALL_RESOURCES:
            truth = sorted(record_id(r, "quickbooks") for r in emu.state.records(instance_id, resource))
            for mode, operator in (
                ("bulk", CloudElementsBulkExtractOperator),
                ("paged", CloudElementsPagedExtractOperator),
            ):
                extra: dict[str, Any] = {"deferrable": False, "poll_interval": 0.02} if mode == "bulk" else {}
                manifest = run_operator(
                    operator(
                        task_id=mode,
                        resource=resource,
                        instance_id=instance_id,
                        element_key="quickbooks",
                        full_refresh=True,
                        cloudelements_conn_id=conn,
                        output_base=f"file://{tmp_path}/{mode}",
                        **extra,
                    ),
                    Ctx(data_interval_end=END),
                )
                text = Path(manifest["path"].removeprefix("file://")).read_text()
                raw = [json.loads(line)["id"] for line in text.splitlines() if line.strip()]
                piped += sum("|" in str(i) for i in raw)
                assert sorted(landed_ids(manifest, "quickbooks")) == truth, (resource, mode)
        assert piped > 0  # the flag was in effect: ids really came as id|syncToken


def test_objects_and_metadata_cover_the_catalog(small_emu: Any, instances: dict[str, int], small_conn: str) -> None:
    """``list_objects()`` names every catalog resource; ``get_object_metadata`` fields match a record."""
    for key, resources in ALL.items():
        hook = CloudElementsHook(small_conn, instance_id=instances[key])
        assert set(resources) <= set(hook.list_objects()), key
    hook = CloudElementsHook(small_conn, instance_id=instances["quickbooks"])
    meta = hook.get_object_metadata("estimates")
    paths = {f["vendorPath"]: f["type"] for f in meta["fields"]}
    sample = small_emu.state.records(instances["quickbooks"], "estimates")[0]
    assert set(sample) <= {p.split(".")[0] for p in paths}
    assert paths["id"] == "string" and all(isinstance(t, str) and t for t in paths.values())
    with pytest.raises(CloudElementsConfigError, match="'hooks' is not supported for element 'quickbooks'"):
        hook.get_object_metadata("hooks")
