"""Validators of the request parameters shared by the hooks, applied before any network call.

The parameters are resource names, page sizes, dates, job and record ids. Every function raises
:class:`~airflow_provider_cloudelements.exceptions.CloudElementsConfigError` naming the parameter; none
makes a call.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.utils import ceql, validation
from airflow_provider_cloudelements.utils.elements import ELEMENTS, check_resource

RESOURCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
#: Elements whose hub listings page by cursor only (``nextPage``; ``page=2`` is rejected), reference §3.3:
#: churros runs ``supportNextPagePagination`` for QuickBooks Enterprise.
CURSOR_ONLY_ELEMENTS = frozenset({"quickbooksonprem"})


def check_resource_name(resource: str, element_key: str | None = None) -> str:
    """Validate a Finance-hub resource name (``invoices``, ``bill-payments`` …) before any call.

    :param element_key: when known, the resource must be in the element's catalog (``utils/elements.py``).
    :raises CloudElementsConfigError: empty names, names with ``/`` or other characters, or resources
        the element does not support.
    """
    if not isinstance(resource, str) or not RESOURCE_RE.match(resource):
        raise CloudElementsConfigError(f"Invalid Finance-hub resource name {resource!r}")
    if element_key is not None and element_key in ELEMENTS:
        check_resource(element_key, resource)
    return resource


def check_page_size(page_size: Any) -> int:
    """:raises CloudElementsConfigError: unless ``page_size`` is a positive integer."""
    return validation.positive_int(page_size, "page_size")


def bulk_date(value: datetime | date | str, what: str) -> str:
    """A bulk ``from``/``to`` parameter: ISO-8601 with offset, UTC (§4.1).

    :raises CloudElementsConfigError: unparseable value.
    """
    return ceql.to_datetime(value, what=what).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def positive_int(value: Any, what: str) -> int:
    """``value`` (an int, an integral float or its decimal text) as an integer > 0 (``what`` names it in the error)."""
    return validation.as_int(value, what, minimum=1)


def report_day(value: date | str | None, what: str) -> str | None:
    """A report period day as ``yyyy-MM-dd`` (``None`` stays ``None``).

    :raises CloudElementsConfigError: not a date or an ISO ``yyyy-MM-dd`` string.
    """
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value).strip()[:10]).isoformat()
    except ValueError:
        raise CloudElementsConfigError(f"{what} must be a date or yyyy-MM-dd, got {value!r}") from None


def job_path(job_id: str) -> str:
    """A bulk job id as a URL path segment (quoted).

    :raises CloudElementsConfigError: an empty id.
    """
    if job_id is None or not str(job_id).strip():
        raise CloudElementsConfigError("job_id must not be empty")
    return quote(str(job_id).strip(), safe="")


def record_path(prefix: str, resource: str, record_id: str, element_key: str | None) -> str:
    """``{prefix}/{resource}/{id}`` with the id URL-quoted (QBO ``22|33``, QBE ``16D1-1484948017``).

    :raises CloudElementsConfigError: bad resource or an empty id.
    """
    check_resource_name(resource, element_key)
    if record_id is None or not str(record_id).strip():
        raise CloudElementsConfigError("record_id must not be empty")
    return f"{prefix}/{resource}/{quote(str(record_id), safe='')}"
