"""Synchronous hook for the Cloud Elements REST API (platform + Finance hub + bulk + events).

References in docstrings (``§n``) point at the sections of docs/api-facts.md. The hook is composed of
one mixin per API area over the shared machinery:

* :mod:`.base` (:class:`~.base.CloudElementsBaseHook`, shared with the async hook): connection
  settings, auth headers (§1.2), element token resolution, instance-id validation, error mapping,
  the retry policy (:mod:`~..client.retry`) and the client-side budget (:mod:`~..client.budget`);
* :mod:`.sync_base`: the blocking request loop on :class:`httpx.Client` (total per-attempt deadline,
  16 MiB cap on non-download bodies), paging, element key resolution, ``server_time`` and
  ``test_connection``;
* :mod:`.platform` (instances, elements), :mod:`.hub` (records, objects, reports), :mod:`.bulk`
  (bulk jobs, downloads, uploads) and :mod:`.events` (event listings).

Names that used to live in this module stay importable from it.
"""

from __future__ import annotations

from airflow_provider_cloudelements.client.transport import (
    BULK_DOWNLOAD_READ_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_READ_TIMEOUT,
    USER_AGENT,
)
from airflow_provider_cloudelements.hooks.base import (
    CONN_TYPE,
    DEFAULT_PAGE_SIZE,
    CloudElementsSettings,
    normalize_base_url,
    settings_from_connection,
)
from airflow_provider_cloudelements.hooks.bulk import DOWNLOAD_CHUNK_BYTES, BulkDownloadResult, BulkMixin
from airflow_provider_cloudelements.hooks.events import EventsMixin, event_window_params
from airflow_provider_cloudelements.hooks.hub import HubMixin
from airflow_provider_cloudelements.hooks.params import (
    CURSOR_ONLY_ELEMENTS,
    bulk_date,
    check_page_size,
    check_resource_name,
)
from airflow_provider_cloudelements.hooks.platform import PlatformMixin
from airflow_provider_cloudelements.hooks.sync_base import TEST_CONNECTION_RETRY_BUDGET
from airflow_provider_cloudelements.hooks.transformations import CommonResourcesHookMixin
from airflow_provider_cloudelements.models.events import event_date, event_matches

__all__ = [
    "BULK_DOWNLOAD_READ_TIMEOUT",
    "CONN_TYPE",
    "CURSOR_ONLY_ELEMENTS",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_READ_TIMEOUT",
    "DOWNLOAD_CHUNK_BYTES",
    "TEST_CONNECTION_RETRY_BUDGET",
    "USER_AGENT",
    "BulkDownloadResult",
    "CloudElementsHook",
    "CloudElementsSettings",
    "bulk_date",
    "check_page_size",
    "check_resource_name",
    "event_date",
    "event_matches",
    "event_window_params",
    "normalize_base_url",
    "settings_from_connection",
]


class CloudElementsHook(PlatformMixin, HubMixin, BulkMixin, EventsMixin, CommonResourcesHookMixin):
    """Talks to the Cloud Elements REST API (api-v2) for one connection and (optionally) one element instance.

    :param cloudelements_conn_id: Airflow connection of type ``cloudelements``; ``host`` is the base URL
        (default ``https://api.cloud-elements.com/elements/api-v2``), extras ``user_secret``,
        ``organization_secret`` (required), ``element_token``, ``instance_id``, ``connect_timeout``
        (s, default 10), ``read_timeout`` (s, default 120), ``page_size`` (default 200),
        ``retry_budget`` (s, default 300), optional ``max_requests_per_minute`` (500),
        ``max_concurrent_requests`` (10) and ``budget_store``.
    :param instance_id: element instance for hub/bulk calls (overrides the connection extra).
    :param element_token: element token for hub/bulk calls (overrides the connection extra); when
        neither gives a token it is fetched once with ``GET /instances/{instance_id}``.
    :param retry_budget: override the connection's retry time budget (seconds; 0 = no retries).
    :raises CloudElementsConfigError: bad ``instance_id``, ``element_token`` or ``retry_budget``.
    """
