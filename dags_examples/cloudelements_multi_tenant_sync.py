"""Multi-tenant finance sync: every customer's element instance, discovered by tag, fanned out per resource.

Embedded integration provisions one element instance per end customer (one QuickBooks company, one
FreshBooks account each). This DAG lists them at run time from Cloud Elements (``GET /instances``
filtered by a tag and element keys; disabled or invalid instances are skipped with a warning), so a new
customer's instance is synced by the next run without a DAG change. Then, per instance, a mapped task
group bulk-extracts each resource for the run's data interval (deferrable; one ``extract_<n>`` task per
resource slot, slot ``n`` is the element's ``n``-th resource) and upserts it into one table family shared
by all tenants (``ce_<element>_<resource>``, keyed by ``instance_id`` and record id).

A failing tenant fails only its own tasks: a revoked authorization (401) or an instance disabled after
discovery (403) fails that instance's ``tenant.extract_<n>``/``tenant.load_<n>`` map index, every other
tenant lands. ``report`` runs regardless (``trigger_rule="all_done"``), pushes
``{"synced": [...], "failed": [...], "skipped": [...]}`` under the XCom key ``tenants`` and then fails
the run when a tenant failed (``CLOUDELEMENTS_FAIL_ON_TENANT_ERRORS``, default on) so alerting sees it.

Fairness and caps (docs/multi-tenant.md): **at most ``CLOUDELEMENTS_MAX_EXTRACTS_PER_INSTANCE``
(default 2) extracts of one instance are in flight at once**, whatever the number of workers: the
resource slots of a tenant form that many lanes, and slot ``n`` starts only after slot ``n - lanes`` of
the same instance has finished (``trigger_rule="all_done"``: a failed slot does not stop the next one).
Airflow 3 cannot give mapped task instances their own pool (a mapped task's ``pool`` comes from
``partial()``, apache/airflow#33657), so the cap is the DAG's dependency structure, held by the
scheduler for every executor. Every tenant's first slots are runnable at once, so one slow or huge
tenant cannot take more than its lanes; extracts are deferrable, so a waiting bulk job holds a triggerer
coroutine, not a worker slot; ``max_active_tis_per_dagrun`` caps each slot task per run and the
``pool`` (``CLOUDELEMENTS_POOL``) caps API concurrency across every DAG that talks to Cloud Elements.
The per-instance request budget (500 req/min, 10 in flight) is enforced across processes when the
connection sets the ``budget_store`` extra.

Connections: ``cloudelements_default`` (type ``cloudelements``: host = API base URL, extras
``user_secret``, ``organization_secret``, optional ``budget_store``) and ``cloudelements_warehouse``
(any common-sql connection; SQLite by default).

Environment knobs: ``CLOUDELEMENTS_TENANT_TAG`` (default ``finance-sync``), ``CLOUDELEMENTS_SYNC_ELEMENTS``
(comma list, default the three elements), ``CLOUDELEMENTS_TENANT_RESOURCES`` (comma list applied to every
element, default per element below), ``CLOUDELEMENTS_OUTPUT_BASE``, ``CLOUDELEMENTS_POLL_INTERVAL``
(seconds), ``CLOUDELEMENTS_POOL``, ``CLOUDELEMENTS_MAX_ACTIVE_EXTRACTS``,
``CLOUDELEMENTS_MAX_EXTRACTS_PER_INSTANCE``, ``CLOUDELEMENTS_RETRIES``, ``CLOUDELEMENTS_RETRY_DELAY`` (seconds).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.providers.common.compat.sdk import AirflowFailException, AirflowSkipException
from airflow.sdk import DAG, XComArg, task, task_group

from airflow_provider_cloudelements.operators.discovery import (
    SKIPPED_XCOM_KEY,
    CloudElementsListInstancesOperator,
    check_resources,
)
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
#: Per element, the resources of its slots (checked against the catalog at parse time).
SELECTED_RESOURCES: dict[str, list[str]] = check_resources(  # type: ignore[assignment]
    {key: (_OVERRIDE or RESOURCES[key]) for key in ELEMENT_KEYS}, ELEMENT_KEYS
)
#: Resource slots per tenant: the longest resource list (an element with fewer resources skips the rest).
SLOTS = max((len(r) for r in SELECTED_RESOURCES.values()), default=0)
POLL_INTERVAL = float(os.environ.get("CLOUDELEMENTS_POLL_INTERVAL", "30"))
POOL = os.environ.get("CLOUDELEMENTS_POOL", "default_pool")
MAX_ACTIVE_EXTRACTS = int(os.environ.get("CLOUDELEMENTS_MAX_ACTIVE_EXTRACTS", "16"))
#: Lanes per tenant: how many of one instance's extracts may be in flight at once (>= 1).
MAX_EXTRACTS_PER_INSTANCE = max(1, int(os.environ.get("CLOUDELEMENTS_MAX_EXTRACTS_PER_INSTANCE", "2")))
FAIL_ON_TENANT_ERRORS = os.environ.get("CLOUDELEMENTS_FAIL_ON_TENANT_ERRORS", "1").lower() not in ("0", "false", "no")


def slot_resource(ti: Any, slot: int) -> str:
    """The resource of ``slot`` for the tenant of this map index (a DAG macro: the extracts' templated
    ``resource``). The element key comes from ``discover``'s row at the task group's map index.

    :raises AirflowSkipException: the element has fewer resources than ``slot + 1``.
    """
    element_key = ti.xcom_pull(task_ids="discover")[ti.map_index]["element_key"]
    resources = SELECTED_RESOURCES.get(element_key, [])
    if slot >= len(resources):
        raise AirflowSkipException(f"{element_key} has no resource slot {slot}")
    return resources[slot]


with DAG(
    dag_id="cloudelements_multi_tenant_sync",
    description="Every tagged Cloud Elements Finance-hub instance, extracted per resource into shared SQL tables",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": int(os.environ.get("CLOUDELEMENTS_RETRIES", "2")),
        "retry_delay": timedelta(seconds=float(os.environ.get("CLOUDELEMENTS_RETRY_DELAY", "120"))),
    },
    tags=["cloudelements", "finance", "multi-tenant"],
    user_defined_macros={"slot_resource": slot_resource},
) as dag:
    discover = CloudElementsListInstancesOperator(task_id="discover", tags=[TENANT_TAG], element_keys=ELEMENT_KEYS)

    @task_group(group_id="tenant")
    def tenant(instance_id: int, element_key: str) -> None:
        """One instance: per resource slot a bulk extract of the data interval, then an upsert into the
        shared table; slot ``n`` waits for slot ``n - MAX_EXTRACTS_PER_INSTANCE`` (the per-instance cap)."""
        extracts: list[CloudElementsBulkExtractOperator] = []
        for slot in range(SLOTS):
            extract = CloudElementsBulkExtractOperator(
                task_id=f"extract_{slot}",
                instance_id=instance_id,
                resource=f"{{{{ slot_resource(ti, {slot}) }}}}",
                deferrable=True,
                poll_interval=POLL_INTERVAL,
                full_refresh="auto",
                pool=POOL,
                max_active_tis_per_dagrun=MAX_ACTIVE_EXTRACTS,
                # a lane's next slot runs after the previous one finished, failed or not
                trigger_rule="all_done" if slot >= MAX_EXTRACTS_PER_INSTANCE else "all_success",
                map_index_template="{{ task.instance_id }}/{{ task.resource }}",
            )
            if slot >= MAX_EXTRACTS_PER_INSTANCE:
                extracts[slot - MAX_EXTRACTS_PER_INSTANCE] >> extract
            extracts.append(extract)
            CloudElementsSqlUpsertOperator(
                task_id=f"load_{slot}",
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
        summaries = [s for per_slot in summaries or [] for s in per_slot or [] if isinstance(s, dict)]
        loaded = {(int(s["instance_id"]), s["resource"]) for s in summaries}
        failed: dict[int, dict[str, Any]] = {}
        synced: dict[int, dict[str, Any]] = {}
        rows = [{**i, "resource": r} for i in planned or [] for r in SELECTED_RESOURCES.get(i["element_key"], [])]
        for row in rows:
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
        for s in summaries:
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
        [XComArg(dag.get_task(f"tenant.load_{slot}")) for slot in range(SLOTS)],
    )
    tenants >> report_task
