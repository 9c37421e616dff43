"""Test DAG for tests/operators: a paged extract that lands, and two extracts (paged, bulk) that fail
before they learn anything (an instance that does not exist). Knobs read from the environment at
parse time: CE_OPS_INSTANCE_ID (the real instance), CE_OPS_MISSING_INSTANCE_ID. Output goes to
CLOUDELEMENTS_OUTPUT_BASE.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator

with DAG(
    dag_id="ce_ops_paged_extract",
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
):
    CloudElementsPagedExtractOperator(
        task_id="paged",
        resource="invoices",
        instance_id=os.environ.get("CE_OPS_INSTANCE_ID", "1"),
        full_refresh=True,
        retries=0,
    )
    missing = os.environ.get("CE_OPS_MISSING_INSTANCE_ID", "999999")
    CloudElementsPagedExtractOperator(
        task_id="paged_fails", resource="invoices", instance_id=missing, full_refresh=True, retries=0
    )
    CloudElementsBulkExtractOperator(
        task_id="bulk_fails", resource="invoices", instance_id=missing, full_refresh=True, retries=0
    )
