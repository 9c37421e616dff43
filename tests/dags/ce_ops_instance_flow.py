"""Test DAG for tests/operators: create an instance, extract with templated ids, delete it.

CE_OPS_FLOW_NAME names the instance. Output goes to CLOUDELEMENTS_OUTPUT_BASE.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from airflow.sdk import DAG

from airflow_provider_cloudelements.operators.instances import CloudElementsCreateInstanceOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator

with DAG(
    dag_id="ce_ops_instance_flow",
    schedule=None,
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
):
    create = CloudElementsCreateInstanceOperator(
        task_id="create",
        body={
            "element": {"key": "freshbooksv2"},
            "name": os.environ.get("CE_OPS_FLOW_NAME", "flow"),
            "tags": ["ce-ops"],
            "configuration": {
                "oauth.api.key": "id",
                "oauth.api.secret": "flow-app-secret-987",
                "oauth.callback.url": "https://example.com/cb",
                "business.name": "Flow Inc",
            },
            "providerData": {"code": "flow-code-123"},
        },
    )
    instance = "{{ ti.xcom_pull(task_ids='create')['id'] }}"
    bulk = CloudElementsBulkExtractOperator(
        task_id="bulk", instance_id=instance, resource="{{ 'invoices' }}", deferrable=True, poll_interval=0.2
    )
    paged = CloudElementsPagedExtractOperator(task_id="paged", instance_id=instance, resource="invoices")
    create >> [bulk, paged]
