"""Daily journal-entry write-back to QuickBooks Online through a Cloud Elements bulk upload.

Flow: create (or reuse) the QuickBooks Online element instance → build the interval's journal entries
(a payroll accrual and its reversal-ready depreciation line, booked on the interval's last day against
the company's own ledger accounts, ``GET /hubs/finance/ledger-accounts``) as NDJSON in object storage →
``CloudElementsBulkUploadOperator`` posts the file to ``POST /hubs/finance/bulk/journal-entries``
(reference §4.1) with ``identifierFieldName=docNumber``, waits in the triggerer, saves failed records
beside the file and fails the run on any failure (``max_failed_records=0``).

Rerun policy: every entry has a deterministic ``docNumber`` (``WB-<yyyymmdd>-<n>``, the interval's last
day), and the upload upserts on it: rerunning a task, a run or a backfill of an interval updates the
same QuickBooks records to the same content and never creates duplicates. Entries for a day are only
ever changed by rerunning that day.

Connections: ``cloudelements_default`` (type ``cloudelements``) and ``cloudelements_quickbooks_app``
(the provider app's ``oauth.api.key``/``oauth.api.secret``, merged into the instance body).
Environment knobs: ``CLOUDELEMENTS_OUTPUT_BASE`` (where the upload files are written),
``CLOUDELEMENTS_POLL_INTERVAL`` (seconds between bulk status polls).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, ObjectStoragePath, task

from airflow_provider_cloudelements.operators.instances import CloudElementsCreateInstanceOperator
from airflow_provider_cloudelements.operators.upload import CloudElementsBulkUploadOperator

POLL_INTERVAL = float(os.environ.get("CLOUDELEMENTS_POLL_INTERVAL", "30"))
#: The journal entries booked per interval: (docNumber suffix, memo, amount, debit class, credit class).
ENTRIES: tuple[tuple[int, str, float, str, str], ...] = (
    (1, "Payroll accrual", 12500.00, "Expense", "Liability"),
    (2, "Depreciation", 830.25, "Expense", "Asset"),
)


def journal_entries(day: str, accounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The QuickBooks Online journal entries of ``day`` (``yyyy-MM-dd``): balanced debit/credit lines on
    the first ledger account of each classification (any account when a class is missing)."""

    def account(classification: str) -> dict[str, str]:
        match = next((a for a in accounts if a.get("classification") == classification), accounts[0])
        return {"value": str(match["id"]).split("|", 1)[0], "name": str(match.get("name") or "")}

    out = []
    for number, memo, amount, debit, credit in ENTRIES:
        lines = [
            {
                "id": str(i),
                "description": memo,
                "amount": amount,
                "detailType": "JOURNAL_ENTRY_LINE_DETAIL",
                "journalEntryLineDetail": {"postingType": posting, "accountRef": account(classification)},
            }
            for i, (posting, classification) in enumerate((("DEBIT", debit), ("CREDIT", credit)))
        ]
        out.append(
            {
                "docNumber": f"WB-{day.replace('-', '')}-{number}",
                "txnDate": day,
                "privateNote": f"{memo} {day} (Airflow write-back)",
                "line": lines,
            }
        )
    return out


with DAG(
    dag_id="cloudelements_journal_writeback",
    description="Write the interval's journal entries back to QuickBooks Online (bulk upload, upsert on docNumber)",
    schedule=timedelta(days=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2)},
    tags=["cloudelements", "finance", "writeback"],
) as dag:
    instance = CloudElementsCreateInstanceOperator(
        task_id="instance_quickbooks",
        configuration_conn_id="cloudelements_quickbooks_app",
        body={
            "element": {"key": "quickbooks"},
            "name": "QuickBooks Online journal write-back",
            "tags": ["journal-writeback"],
            "providerData": {
                "code": os.environ.get("CLOUDELEMENTS_QBO_CODE", "demo-oauth2-grant-code"),
                "realmId": os.environ.get("CLOUDELEMENTS_QBO_REALM_ID", "123146096291789"),
            },
            "configuration": {
                "oauth.callback.url": "https://example.com/oauth/callback",
                "authentication.type": "oauth2",
                "scope": "com.intuit.quickbooks.accounting",
            },
        },
    )

    @task
    def prepare(created: dict[str, Any], data_interval_end: Any = None) -> str:
        """Write the interval's journal entries as NDJSON; returns the file's URI (same name on a rerun)."""
        from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
        from airflow_provider_cloudelements.transfers.landing import atomic_write, write_ndjson
        from airflow_provider_cloudelements.transfers.plan import default_output_base

        day = (data_interval_end - timedelta(microseconds=1)).date().isoformat()
        hook = CloudElementsHook(instance_id=created["id"])
        accounts = list(hook.iter_records("ledger-accounts"))
        path = (
            ObjectStoragePath(default_output_base())
            / "writeback"
            / "quickbooks"
            / f"instance={created['id']}"
            / "journal-entries"
            / f"journal-entries.{day}.ndjson"
        )
        with atomic_write(path) as handle:
            write_ndjson(handle, journal_entries(day, accounts))
        return str(path)

    upload_file = prepare(instance.output)
    CloudElementsBulkUploadOperator(
        task_id="upload_journal_entries",
        resource="journal-entries",
        input_path=upload_file,
        instance_id="{{ ti.xcom_pull(task_ids='instance_quickbooks')['id'] }}",
        element_key="quickbooks",
        identifier_field_name="docNumber",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        max_failed_records=0,
    )
