"""Old import path of the extract operators, kept for users' DAGs.

They live in :mod:`airflow_provider_cloudelements.transfers.cloudelements_to_storage`.
"""

from __future__ import annotations

from airflow_provider_cloudelements.models.manifest import MANIFEST_NAME, MANIFEST_VERSION, ExtractManifest
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator
from airflow_provider_cloudelements.transfers.plan import ExtractPlan, server_time, snapshot_time, tombstone

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_VERSION",
    "CloudElementsBulkExtractOperator",
    "CloudElementsPagedExtractOperator",
    "ExtractManifest",
    "ExtractPlan",
    "server_time",
    "snapshot_time",
    "tombstone",
]
