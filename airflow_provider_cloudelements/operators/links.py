"""Operator extra links to the Cloud Elements console.

Airflow 3 computes each link once, in the worker at the end of the task (``finalize``), with the
operator instance that ran, and stores it under the link's ``xcom_key`` for the UI. The operators
record the URLs they know on themselves (:func:`push_link`), so :meth:`_XComUrlLink.get_link` answers
from memory and never asks for an XCom that was never pushed (no ``XCom not found`` error in the log
of a task that failed early); a link whose URL is unknown is empty. There is deliberately no bulk-job link
(``transfers/bulkjob.announce_job``: a job has no page a browser can open).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context
    from airflow.sdk.types import TaskInstanceKey

INSTANCE_URL_KEY = "cloudelements_instance_url"
#: Attribute of an operator holding ``{xcom_key: url}`` of the links it computed while running.
LINKS_ATTR = "_ce_links"


def console_base(api_base_url: str) -> str:
    """Return the console root for an API base URL.

    Example: ``https://api.cloud-elements.com/elements/api-v2`` → ``https://api.cloud-elements.com/elements``.
    """
    base = api_base_url.rstrip("/")
    return base[: -len("/api-v2")] if base.endswith("/api-v2") else base


def instance_url(api_base_url: str, instance_id: int | str) -> str:
    return f"{console_base(api_base_url)}/#/instances/{instance_id}"


def push_link(operator: Any, context: Context, key: str, url: str) -> None:
    """Push a link URL to XCom ``key`` and remember it on ``operator`` for :meth:`_XComUrlLink.get_link`."""
    links = getattr(operator, LINKS_ATTR, None)
    if not isinstance(links, dict):
        links = {}
        setattr(operator, LINKS_ATTR, links)
    links[key] = url
    context["ti"].xcom_push(key=key, value=url)


class _XComUrlLink(BaseOperatorLink):
    xcom_key: str = ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """The URL the running operator recorded; else (another process) the XCom, ``""`` if absent."""
        links = getattr(operator, LINKS_ATTR, None)
        if isinstance(links, dict):
            return str(links.get(self.xcom_key) or "")
        try:
            from airflow.sdk.execution_time.xcom import XCom

            value = XCom.get_value(key=self.xcom_key, ti_key=ti_key)
        except Exception:  # a link must never fail a task or a page
            return ""
        return str(value) if value else ""


class CloudElementsInstanceLink(_XComUrlLink):
    """Link to the element instance the task used."""

    name = "Cloud Elements instance"
    xcom_key = INSTANCE_URL_KEY
