"""Hourly incremental finance sync: QuickBooks Online, QuickBooks Enterprise and FreshBooks → SQL.

For each element: create (or reuse) the element instance, bulk-extract each resource for the run's
data interval into object storage (dynamic task mapping, deferrable), then upsert the landed files
into SQL tables keyed by (element instance, record id), applying soft deletes and tombstones. The
first successful run is a full load (``full_refresh="auto"``).

Connections (the demo sets them as ``AIRFLOW_CONN_*`` environment variables):

* ``cloudelements_default`` — type ``cloudelements``: host = API base URL, extras ``user_secret`` and
  ``organization_secret``.
* ``cloudelements_<element>_app`` — the provider app's OAuth client id/secret (extras
  ``oauth.api.key``/``oauth.api.secret``), merged into the instance body at run time.
* ``cloudelements_warehouse`` — any common-sql connection (SQLite by default, PostgreSQL works too).

Environment knobs: ``CLOUDELEMENTS_SYNC_ELEMENTS`` (comma list, default all three),
``CLOUDELEMENTS_OUTPUT_BASE`` (landing root URI), ``CLOUDELEMENTS_POLL_INTERVAL`` (seconds).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_cloudelements.operators.instances import CloudElementsCreateInstanceOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator

SYNC_TAG = "finance-sync"

#: Per element: the ``POST /instances`` body (reference §2.2.2, seeds 000-004; secrets come from the
#: ``configuration_conn_id`` connection) and the Finance-hub resources to sync.
ELEMENTS: dict[str, dict[str, Any]] = {
    "quickbooks": {
        "body": {
            "element": {"key": "quickbooks"},
            "name": "QuickBooks Online finance sync",
            "tags": [SYNC_TAG],
            "providerData": {
                "code": os.environ.get("CLOUDELEMENTS_QBO_CODE", "demo-oauth2-grant-code"),
                "realmId": os.environ.get("CLOUDELEMENTS_QBO_REALM_ID", "123146096291789"),
            },
            "configuration": {
                "oauth.callback.url": "https://example.com/oauth/callback",
                "authentication.type": "oauth2",
                "scope": "com.intuit.quickbooks.accounting openid profile email phone address",
            },
        },
        "resources": ["customers", "invoices", "payments", "vendors", "bills", "ledger-accounts", "journal-entries"],
    },
    "quickbooksonprem": {
        "body": {
            "element": {"key": "quickbooksonprem"},
            "name": "QuickBooks Enterprise finance sync",
            "tags": [SYNC_TAG],
            "configuration": {
                "app.name": os.environ.get("CLOUDELEMENTS_QBE_APP_NAME", "CE Finance Sync"),
                "host.ip": os.environ.get("CLOUDELEMENTS_QBE_HOST", "https://1234.g2c.cloud-elements.com"),
            },
        },
        "resources": ["customers", "invoices", "payments", "vendors", "bills"],
    },
    "freshbooksv2": {
        "body": {
            "element": {"key": "freshbooksv2"},
            "name": "FreshBooks finance sync",
            "tags": [SYNC_TAG],
            "providerData": {"code": os.environ.get("CLOUDELEMENTS_FRESHBOOKS_CODE", "demo-oauth2-grant-code")},
            "configuration": {
                "oauth.callback.url": "https://example.com/oauth/callback",
                "business.name": os.environ.get("CLOUDELEMENTS_FRESHBOOKS_BUSINESS", "Demo Company"),
            },
        },
        "resources": ["customers", "invoices", "payments", "items", "taxes"],
    },
}

SELECTED = [
    key.strip()
    for key in os.environ.get("CLOUDELEMENTS_SYNC_ELEMENTS", ",".join(ELEMENTS)).split(",")
    if key.strip() in ELEMENTS
]
POLL_INTERVAL = float(os.environ.get("CLOUDELEMENTS_POLL_INTERVAL", "30"))

with DAG(
    dag_id="cloudelements_finance_sync",
    description="Incremental Cloud Elements Finance-hub sync into SQL",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["cloudelements", "finance"],
) as dag:
    instances = [
        CloudElementsCreateInstanceOperator(
            task_id=f"instance_{key}",
            body=ELEMENTS[key]["body"],
            configuration_conn_id=f"cloudelements_{key}_app",
        )
        for key in SELECTED
    ]

    @task
    def plan(*created: dict[str, Any]) -> list[dict[str, Any]]:
        """One extract per (instance, resource): small kwargs for dynamic task mapping."""
        return [
            {"instance_id": inst["id"], "element_key": inst["element_key"], "resource": resource}
            for inst in created
            for resource in ELEMENTS[inst["element_key"]]["resources"]
        ]

    extracts = CloudElementsBulkExtractOperator.partial(
        task_id="extract",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        full_refresh="auto",
        max_active_tis_per_dagrun=8,
    ).expand_kwargs(plan(*[i.output for i in instances]))

    load = CloudElementsSqlUpsertOperator(
        task_id="load",
        manifest=extracts.output,
        conn_id="cloudelements_warehouse",
        # typed tables (docs/typed-tables.md) beside the raw ones, in the same transaction; `make demo` sets it
        typed=os.environ.get("CLOUDELEMENTS_TYPED_TABLES", "0") == "1",
    )

    @task
    def report(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Log one line per table: inserted / updated / deleted / live rows."""
        for s in summaries:
            print(
                f"{s['element_key']:<17} {s['resource']:<16} inserted={s['inserted']:<5} "
                f"updated={s['updated']:<5} deleted={s['deleted']:<5} live={s['rows_live']}"
            )
        return summaries

    report(load.output)
