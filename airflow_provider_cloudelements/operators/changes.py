"""Old import path of the changed-records operator, kept for users' DAGs.

It lives in :mod:`airflow_provider_cloudelements.transfers.cloudelements_to_storage.changes`.
"""

from __future__ import annotations

from airflow_provider_cloudelements.transfers.cloudelements_to_storage.changes import (
    CloudElementsChangedRecordsOperator,
    events_from_context,
    latest_changes,
)

__all__ = ["CloudElementsChangedRecordsOperator", "events_from_context", "latest_changes"]
