"""Test DAG for tests/operators: one QuickBooks Online and one QuickBooks Enterprise report per half-year
data interval (``[Jan 1, Jul 1)`` and ``[Jul 1, Jan 1)``, UTC). Knobs read from the environment at parse
time: CE_OPS_QBO_INSTANCE_ID, CE_OPS_QBE_INSTANCE_ID. Output goes to CLOUDELEMENTS_OUTPUT_BASE.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone

from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

from airflow_provider_cloudelements.operators.reports import CloudElementsReportOperator

with DAG(
    dag_id="ce_ops_reports",
    schedule=CronDataIntervalTimetable("0 0 1 1,7 *", timezone="UTC"),
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
):
    CloudElementsReportOperator(
        task_id="qbo_profit_and_loss",
        report="profit-and-loss",
        instance_id=os.environ.get("CE_OPS_QBO_INSTANCE_ID", "1"),
        element_key="quickbooks",
        retries=0,
    )
    CloudElementsReportOperator(
        task_id="qbe_profit_and_loss",
        report="Profit and Loss Standard",
        instance_id=os.environ.get("CE_OPS_QBE_INSTANCE_ID", "2"),
        retries=0,
    )
