"""Multi-tenant finance sync: every customer's element instance, discovered by tag, fanned out per resource.

Embedded integration provisions one element instance per end customer (one QuickBooks company, one
FreshBooks account each). This DAG lists them at run time from Cloud Elements (``GET /instances``
filtered by a tag and element keys; disabled or invalid instances are skipped with a warning), so a new
customer's instance is synced by the next run without a DAG change. Then, per (instance, resource), a
mapped task group bulk-extracts the run's data interval (deferrable) and upserts it into one table
family shared by all tenants (``ce_<element>_<resource>``, keyed by ``instance_id`` and record id).

A failing tenant fails only its own tasks: a revoked authorization (401) or an instance disabled after
discovery (403) fails that instance's ``tenant.extract``/``tenant.load`` map indices, every other
tenant lands. ``report`` runs regardless (``trigger_rule="all_done"``), pushes
``{"synced": [...], "failed": [...], "skipped": [...]}`` under the XCom key ``tenants`` and then fails
the run when a tenant failed (``CLOUDELEMENTS_FAIL_ON_TENANT_ERRORS``, default on) so alerting sees it.

Fairness (docs/multi-tenant.md): discovery orders the (instance, resource) rows round-robin, so the
scheduler (which starts mapped indices in order) interleaves tenants instead of draining one; extracts
are deferrable, so a tenant with a slow or huge bulk job holds a triggerer coroutine, not a worker
slot; ``max_active_tis_per_dagrun`` caps how many extracts/loads run at once and the ``pool``
(``CLOUDELEMENTS_POOL``) caps API concurrency across every DAG that talks to Cloud Elements. The
per-instance request budget (500 req/min, 10 in flight) is enforced across processes when the
connection sets the ``budget_store`` extra.

Connections: ``cloudelements_default`` (type ``cloudelements``: host = API base URL, extras
``user_secret``, ``organization_secret``, optional ``budget_store``) and ``cloudelements_warehouse``
(any common-sql connection; SQLite by default).

Environment knobs: ``CLOUDELEMENTS_TENANT_TAG`` (default ``finance-sync``), ``CLOUDELEMENTS_SYNC_ELEMENTS``
(comma list, default the three elements), ``CLOUDELEMENTS_TENANT_RESOURCES`` (comma list applied to every
element, default per element below), ``CLOUDELEMENTS_OUTPUT_BASE``, ``CLOUDELEMENTS_POLL_INTERVAL``
(seconds), ``CLOUDELEMENTS_POOL``, ``CLOUDELEMENTS_MAX_ACTIVE_EXTRACTS``, ``CLOUDELEMENTS_RETRIES``.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import DAG, XComArg, task, task_group

from airflow_provider_cloudelements.operators.discovery import SKIPPED_XCOM_KEY, CloudElementsListInstancesOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator

TENANT_TAG = os.environ.get("CLOUDELEMENTS_TENANT_TAG", "finance-sync")

#: Finance-hub resources synced per element (reference §3.2).
RESOURCES: dict[str, list[str]] = {
    "quickbooks": ["customers", "invoices", "payments", "vendors", "bills"],
    "quickbooksonprem": ["customers", "invoices", "payments", "vendors", "bills"],
    "freshbooksv2": ["customers", "invoices", "payments", "items", "taxes"],
}

ELEMENT_KEYS = [
    key.strip()
    for key in os.environ.get("CLOUDELEMENTS_SYNC_ELEMENTS", ",".join(RESOURCES)).split(",")
    if key.strip() in RESOURCES
]
_OVERRIDE = [r.strip() for r in os.environ.get("CLOUDELEMENTS_TENANT_RESOURCES", "").split(",") if r.strip()]
SELECTED_RESOURCES = {key: (_OVERRIDE or RESOURCES[key]) for key in ELEMENT_KEYS}
POLL_INTERVAL = float(os.environ.get("CLOUDELEMENTS_POLL_INTERVAL", "30"))
POOL = os.environ.get("CLOUDELEMENTS_POOL", "default_pool")
MAX_ACTIVE_EXTRACTS = int(os.environ.get("CLOUDELEMENTS_MAX_ACTIVE_EXTRACTS", "16"))
FAIL_ON_TENANT_ERRORS = os.environ.get("CLOUDELEMENTS_FAIL_ON_TENANT_ERRORS", "1").lower() not in ("0", "false", "no")

with DAG(
    dag_id="cloudelements_multi_tenant_sync",
    description="Every tagged Cloud Elements Finance-hub instance, extracted per resource into shared SQL tables",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": int(os.environ.get("CLOUDELEMENTS_RETRIES", "2")), "retry_delay": timedelta(minutes=2)},
    tags=["cloudelements", "finance", "multi-tenant"],
) as dag:
    discover = CloudElementsListInstancesOperator(
        task_id="discover",
        tags=[TENANT_TAG],
        element_keys=ELEMENT_KEYS,
        element_resources=SELECTED_RESOURCES,
    )

    @task_group(group_id="tenant")
    def tenant(instance_id: int, element_key: str, resource: str) -> None:
        """One (instance, resource): bulk extract of the data interval, then upsert into the shared table."""
        extract = CloudElementsBulkExtractOperator(
            task_id="extract",
            instance_id=instance_id,
            resource=resource,
            deferrable=True,
            poll_interval=POLL_INTERVAL,
            full_refresh="auto",
            pool=POOL,
            max_active_tis_per_dagrun=MAX_ACTIVE_EXTRACTS,
            map_index_template="{{ task.instance_id }}/{{ task.resource }}",
        )
        CloudElementsSqlUpsertOperator(
            task_id="load",
            manifest=extract.output,
            conn_id="cloudelements_warehouse",
            max_active_tis_per_dagrun=MAX_ACTIVE_EXTRACTS,
            map_index_template="{{ task.manifest['instance_id'] }}/{{ task.manifest['resource'] }}",
        )

    tenants = tenant.expand_kwargs(discover.output)

    @task(trigger_rule="all_done")
    def report(
        planned: list[dict[str, Any]], skipped: list[dict[str, Any]] | None, summaries: Any, **context: Any
    ) -> None:
        """Per tenant: synced tables, failed resources, skipped instances (XCom key ``tenants``)."""
        loaded = {(int(s["instance_id"]), s["resource"]) for s in (summaries or []) if isinstance(s, dict)}
        failed: dict[int, dict[str, Any]] = {}
        synced: dict[int, dict[str, Any]] = {}
        for row in planned or []:
            key = (int(row["instance_id"]), row["resource"])
            bucket = synced if key in loaded else failed
            entry = bucket.setdefault(
                key[0], {"instance_id": key[0], "element_key": row["element_key"], "resources": []}
            )
            entry["resources"].append(row["resource"])
        for iid in failed:  # a tenant with any failed resource counts as failed
            synced.pop(iid, None)
        result = {
            "synced": sorted(synced.values(), key=lambda t: t["instance_id"]),
            "failed": sorted(failed.values(), key=lambda t: t["instance_id"]),
            "skipped": list(skipped or []),
        }
        for s in summaries or []:
            print(
                f"{s['instance_id']:>8} {s['element_key']:<17} {s['resource']:<16} inserted={s['inserted']:<5} "
                f"updated={s['updated']:<5} deleted={s['deleted']:<5} live={s['rows_live']}"
            )
        for t in result["failed"]:
            print(f"FAILED  instance {t['instance_id']} ({t['element_key']}): {', '.join(t['resources'])}")
        for t in result["skipped"]:
            print(f"SKIPPED instance {t['instance_id']} ({t['element_key']}): {t['reason']}")
        context["ti"].xcom_push(key="tenants", value=result)
        if result["failed"] and FAIL_ON_TENANT_ERRORS:
            ids = ", ".join(str(t["instance_id"]) for t in result["failed"])
            raise AirflowFailException(f"{len(result['failed'])} tenant(s) failed to sync: instance(s) {ids}")

    report_task = report(
        discover.output,
        XComArg(discover, key=SKIPPED_XCOM_KEY),
        XComArg(dag.get_task("tenant.load")),
    )
    tenants >> report_task
