"""Test DAG for tests/operators: one bulk extract, knobs read from the environment at parse time.

CE_OPS_INSTANCE_ID, CE_OPS_RESOURCE (invoices), CE_OPS_DEFERRABLE (1/0), CE_OPS_TIMEOUT (s),
CE_OPS_POLL (s), CE_OPS_MAX_FAILED (0). Output goes to CLOUDELEMENTS_OUTPUT_BASE.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator

with DAG(
    dag_id="ce_ops_bulk_extract",
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
):
    CloudElementsBulkExtractOperator(
        task_id="extract",
        resource=os.environ.get("CE_OPS_RESOURCE", "invoices"),
        instance_id=os.environ.get("CE_OPS_INSTANCE_ID", "1"),
        deferrable=os.environ.get("CE_OPS_DEFERRABLE", "1") == "1",
        poll_interval=float(os.environ.get("CE_OPS_POLL", "0.2")),
        timeout=float(os.environ.get("CE_OPS_TIMEOUT", "60")),
        max_failed_records=int(os.environ.get("CE_OPS_MAX_FAILED", "0")),
        full_refresh=True,
        retries=0,
    )
