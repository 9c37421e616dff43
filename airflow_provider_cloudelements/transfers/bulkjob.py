"""Bulk-job plumbing shared by the operators that run a Cloud Elements bulk job (bulk extract and bulk upload).

It announces the job (XCom ``bulk_job_id``) and cancels it on a best-effort
basis (``PUT /hubs/finance/bulk/{id}/cancel``, reference §4.1).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook


def announce_job(context: Context, job_id: str) -> None:
    """Push the job id to XCom (key ``bulk_job_id``).

    There is no bulk-job extra link: the job's only public address is its API status resource
    (``GET /hubs/finance/bulk/{id}/status``, reference §4.1), which answers 401 in a browser (it needs
    the ``Authorization`` header), and the console has no documented page per job. The instance link
    is the one a user can open.
    """
    context["ti"].xcom_push(key="bulk_job_id", value=job_id)


def cancel_quietly(hook: CloudElementsHook, job_id: str, log: logging.Logger | Any, what: str = "bulk job") -> None:
    """Cancel ``job_id``; a failure to cancel is logged, never raised (the original failure matters more)."""
    try:
        hook.cancel_bulk_job(job_id)
        log.info("Cancelled %s %s", what, job_id)
    except Exception as err:  # best effort
        log.warning("Could not cancel %s %s: %s", what, job_id, err)
