"""One schema across QuickBooks Online, QuickBooks Enterprise and FreshBooks: the unified finance sync.

1. ``apply_model`` makes Cloud Elements' common resources match the provider's built-in finance model
   (docs/common-model.md): organization-level definitions and one transformation per element,
   idempotently (creates what is missing, repairs drift, leaves the rest);
2. creates (or reuses) one element instance per system;
3. extracts every common resource (``common-customers``, ``common-invoices`` …) from every instance
   with the paged extract (incremental on the common ``updated_at`` after the first full load,
   hard deletes as tombstones);
4. loads them into one table per common resource (``common_invoices`` …) with ``source_element`` and
   ``instance_id`` columns (``airflow_provider_cloudelements.common_model.unified``);
5. reports open receivables per customer across the three systems.

Connections as in ``cloudelements_finance_sync`` (``cloudelements_default``, ``cloudelements_<element>_app``,
``cloudelements_warehouse``). Environment knobs: ``CLOUDELEMENTS_UNIFIED_ELEMENTS`` (comma list, default
all three), ``CLOUDELEMENTS_OUTPUT_BASE``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, task

from airflow_provider_cloudelements.common_model import finance_model
from airflow_provider_cloudelements.operators.common_resources import CloudElementsCommonResourceOperator
from airflow_provider_cloudelements.operators.instances import CloudElementsCreateInstanceOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator

TAG = "unified-finance-sync"
WAREHOUSE_CONN_ID = "cloudelements_warehouse"

#: ``POST /instances`` bodies (reference §2.2.2; app secrets come from ``cloudelements_<element>_app``).
INSTANCES: dict[str, dict[str, Any]] = {
    "quickbooks": {
        "element": {"key": "quickbooks"},
        "name": "QuickBooks Online unified sync",
        "tags": [TAG],
        "providerData": {
            "code": os.environ.get("CLOUDELEMENTS_QBO_CODE", "demo-oauth2-grant-code"),
            "realmId": os.environ.get("CLOUDELEMENTS_QBO_REALM_ID", "123146096291790"),
        },
        "configuration": {"oauth.callback.url": "https://example.com/oauth/callback", "authentication.type": "oauth2"},
    },
    "quickbooksonprem": {
        "element": {"key": "quickbooksonprem"},
        "name": "QuickBooks Enterprise unified sync",
        "tags": [TAG],
        "configuration": {
            "app.name": os.environ.get("CLOUDELEMENTS_QBE_APP_NAME", "CE Unified Sync"),
            "host.ip": os.environ.get("CLOUDELEMENTS_QBE_HOST", "https://1234.g2c.cloud-elements.com"),
        },
    },
    "freshbooksv2": {
        "element": {"key": "freshbooksv2"},
        "name": "FreshBooks unified sync",
        "tags": [TAG],
        "providerData": {"code": os.environ.get("CLOUDELEMENTS_FRESHBOOKS_CODE", "demo-oauth2-grant-code")},
        "configuration": {
            "oauth.callback.url": "https://example.com/oauth/callback",
            "business.name": os.environ.get("CLOUDELEMENTS_FRESHBOOKS_BUSINESS", "Demo Company"),
        },
    },
}
SELECTED = [
    key.strip()
    for key in os.environ.get("CLOUDELEMENTS_UNIFIED_ELEMENTS", ",".join(INSTANCES)).split(",")
    if key.strip() in INSTANCES
]
MODEL = finance_model()

with DAG(
    dag_id="cloudelements_unified_finance_sync",
    description="Common finance model across QBO, QBE and FreshBooks into one table per common resource",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["cloudelements", "finance", "common-resources"],
) as dag:
    apply_model = CloudElementsCommonResourceOperator(task_id="apply_model", model="finance", elements=SELECTED)

    instances = [
        CloudElementsCreateInstanceOperator(
            task_id=f"instance_{key}", body=INSTANCES[key], configuration_conn_id=f"cloudelements_{key}_app"
        )
        for key in SELECTED
    ]

    @task
    def plan(*created: dict[str, Any]) -> list[dict[str, Any]]:
        """One extract per (instance, common resource the element maps)."""
        return [
            {"instance_id": inst["id"], "element_key": inst["element_key"], "resource": name}
            for inst in created
            for name, resource in MODEL.resources.items()
            if inst["element_key"] in resource.mappings
        ]

    planned = plan(*[i.output for i in instances])
    apply_model >> planned

    extracts = CloudElementsPagedExtractOperator.partial(
        task_id="extract", full_refresh="auto", max_active_tis_per_dagrun=8
    ).expand_kwargs(planned)

    @task
    def load(manifests: Any) -> list[dict[str, Any]]:
        """Upsert every landed common resource into ``common_<resource>`` (one table across systems)."""
        from airflow.sdk import BaseHook

        from airflow_provider_cloudelements.common_model.unified import load_manifests

        engine = BaseHook.get_connection(WAREHOUSE_CONN_ID).get_hook().get_sqlalchemy_engine()
        summaries = load_manifests(engine, manifests, MODEL)
        for s in summaries:
            print(
                f"{s['table']:<24} {s['source_element']:<17} instance={s['instance_id']:<6} "
                f"upserted={s['upserted']:<5} deleted={s['deleted']}"
            )
        return summaries

    @task
    def receivables(_: Any) -> list[list[Any]]:
        """Open receivables per customer across the three systems, from ``common_invoices``."""
        from airflow.sdk import BaseHook

        from airflow_provider_cloudelements.common_model.unified import open_receivables

        engine = BaseHook.get_connection(WAREHOUSE_CONN_ID).get_hook().get_sqlalchemy_engine()
        rows = open_receivables(engine)
        for element in sorted({r[0] for r in rows}):
            mine = [r for r in rows if r[0] == element]
            print(f"{element:<17} open receivables {sum(r[3] for r in mine):>12.2f} over {len(mine)} customers")
        return [list(r) for r in rows]

    receivables(load(extracts.output))
