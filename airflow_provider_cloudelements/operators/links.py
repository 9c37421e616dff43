"""Operator extra links to the Cloud Elements console (user-needs §4 item 20)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

INSTANCE_URL_KEY = "cloudelements_instance_url"
BULK_JOB_URL_KEY = "cloudelements_bulk_job_url"


def console_base(api_base_url: str) -> str:
    """Console root for an API base URL: ``https://api.cloud-elements.com/elements/api-v2`` →
    ``https://api.cloud-elements.com/elements``."""
    base = api_base_url.rstrip("/")
    return base[: -len("/api-v2")] if base.endswith("/api-v2") else base


def instance_url(api_base_url: str, instance_id: int | str) -> str:
    return f"{console_base(api_base_url)}/#/instances/{instance_id}"


def bulk_job_url(api_base_url: str, job_id: str) -> str:
    """The job's status resource (reference §4.1 ``GET /bulk/{id}/status``); needs the element token."""
    return f"{api_base_url.rstrip('/')}/hubs/finance/bulk/{job_id}/status"


class _XComUrlLink(BaseOperatorLink):
    xcom_key: str = ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        value = XCom.get_value(key=self.xcom_key, ti_key=ti_key)
        return str(value) if value else ""


class CloudElementsInstanceLink(_XComUrlLink):
    """Link to the element instance the task used."""

    name = "Cloud Elements instance"
    xcom_key = INSTANCE_URL_KEY


class CloudElementsBulkJobLink(_XComUrlLink):
    """Link to the bulk job the task submitted."""

    name = "Cloud Elements bulk job"
    xcom_key = BULK_JOB_URL_KEY
