"""Extract over real HTTP from the emulator, raw load, typed projection: typed rows equal the emulator's.

The object metadata comes from the emulator's ``GET /hubs/finance/objects/invoices/metadata`` too, so
the metadata path (``vendorPath``/``type``) is exercised end to end.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from airflow_provider_cloudelements.operators.extract import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.operators.sql import load_manifest
from airflow_provider_cloudelements.typed import child_table_name
from airflow_provider_cloudelements.utils.records import record_id
from airflow_provider_cloudelements.utils.sqlsync import validate_manifest
from tests.operators.conftest import Ctx, run_operator
from tests.typed.conftest import Target
from tests.typed.test_typed_tables import ARRAY_OF, assert_typed_matches

END = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _metadata(emu: Any, token: str, resource: str) -> dict[str, Any]:
    auth = f"User {emu.user_secret}, Organization {emu.organization_secret}, Element {token}"
    resp = httpx.get(f"{emu.base_url}/hubs/finance/objects/{resource}/metadata", headers={"Authorization": auth})
    resp.raise_for_status()
    return dict(resp.json())


@pytest.mark.parametrize("element_key", ["quickbooks", "quickbooksonprem", "freshbooksv2"])
def test_extract_load_project_matches_the_emulator(
    target: Target, element_key: str, emu: Any, conn: str, out: Any
) -> None:
    inst = emu.state.create_instance(element_key, f"typed-{element_key}-{target.name}")
    op = CloudElementsBulkExtractOperator(
        task_id="extract",
        instance_id=inst["id"],
        resource="invoices",
        poll_interval=0.1,
        timeout=30,
        full_refresh=True,
        deferrable=False,
    )
    manifest = run_operator(op, Ctx(data_interval_end=END), expect_defer=False)
    metadata = _metadata(emu, inst["token"], "invoices")
    load_manifest(target.loader_conn, target.dialect, validate_manifest(manifest), table_prefix=target.prefix)
    summary = target.project(element_key, "invoices", instance_id=inst["id"], metadata=metadata)

    truth = emu.state.records(inst["id"], "invoices")
    assert truth and summary["projected"] == len(truth)
    assert_typed_matches(target, element_key, "invoices", truth, instance_id=inst["id"])
    parent = target.table(f"typed_{element_key}_invoices")
    lines = dict(
        target.query(
            f'SELECT parent_id, COUNT(*) FROM "{child_table_name(parent, ARRAY_OF[element_key])}" '
            "WHERE instance_id = ? GROUP BY parent_id",
            (inst["id"],),
        )
    )
    assert lines == {record_id(r, element_key): len(r[ARRAY_OF[element_key]]) for r in truth}
