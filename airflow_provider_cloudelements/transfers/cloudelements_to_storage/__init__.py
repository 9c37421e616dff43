"""Cloud Elements → object storage: the extract operators.

* :class:`~.bulk.CloudElementsBulkExtractOperator` (a bulk job, deferrable);
* :class:`~.paged.CloudElementsPagedExtractOperator` (paged GETs);
* :class:`~.changes.CloudElementsChangedRecordsOperator` (the records named by change events).

Each returns :meth:`~airflow_provider_cloudelements.models.manifest.ExtractManifest.to_xcom`.
"""

from __future__ import annotations

from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.changes import (
    CloudElementsChangedRecordsOperator,
)
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator

__all__ = [
    "CloudElementsBulkExtractOperator",
    "CloudElementsChangedRecordsOperator",
    "CloudElementsPagedExtractOperator",
]
