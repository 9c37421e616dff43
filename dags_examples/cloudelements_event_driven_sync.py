"""Event-driven finance sync: pull only the records Cloud Elements events say changed.

Two DAGs:

* ``cloudelements_event_driven_sync`` — scheduled on an Asset whose ``AssetWatcher`` runs
  :class:`CloudElementsEventTrigger` in the triggerer (Airflow 3 event-driven scheduling). Each batch
  of new events starts one run; the watermark lives in the asset state store, so no event starts two.
* ``cloudelements_event_sensor_sync`` — the sensor-based variant: an hourly run waits (deferrable) for
  events in its data interval, then lands the changed records.

Both land the changed records plus tombstones and upsert them into ``cloudelements_warehouse``.
Set ``CLOUDELEMENTS_EVENTS_INSTANCE_ID`` to the element instance to watch.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Asset, AssetWatcher

from airflow_provider_cloudelements.sensors.events import CloudElementsEventSensor
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.changes import (
    CloudElementsChangedRecordsOperator,
)
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator
from airflow_provider_cloudelements.triggers.events import CloudElementsEventTrigger

INSTANCE_ID = int(os.environ.get("CLOUDELEMENTS_EVENTS_INSTANCE_ID", "1"))
OBJECT_TYPES = ["customers", "invoices", "payments"]
POLL_SECONDS = float(os.environ.get("CLOUDELEMENTS_EVENTS_POLL_INTERVAL", "60"))

changes = Asset(
    name=f"cloudelements_events_{INSTANCE_ID}",
    uri=f"cloudelements://events/{INSTANCE_ID}",
    watchers=[
        AssetWatcher(
            name=f"cloudelements_events_{INSTANCE_ID}",
            trigger=CloudElementsEventTrigger(
                instance_id=INSTANCE_ID, object_types=OBJECT_TYPES, poll_interval=POLL_SECONDS, watch=True
            ),
        )
    ],
)

with DAG(
    dag_id="cloudelements_event_driven_sync",
    schedule=[changes],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["cloudelements", "finance", "events"],
):
    land = CloudElementsChangedRecordsOperator(task_id="land_changes", instance_id=INSTANCE_ID)
    CloudElementsSqlUpsertOperator(task_id="load", manifest=land.output, conn_id="cloudelements_warehouse")

with DAG(
    dag_id="cloudelements_event_sensor_sync",
    schedule=timedelta(hours=1),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["cloudelements", "finance", "events"],
):
    wait = CloudElementsEventSensor(
        task_id="wait_for_events",
        instance_id=INSTANCE_ID,
        object_types=OBJECT_TYPES,
        deferrable=True,
        poke_interval=POLL_SECONDS,
        timeout=timedelta(minutes=55),
        soft_fail=True,
    )
    land_changes = CloudElementsChangedRecordsOperator(
        task_id="land_changes", instance_id=INSTANCE_ID, events=wait.output
    )
    CloudElementsSqlUpsertOperator(task_id="load", manifest=land_changes.output, conn_id="cloudelements_warehouse")
