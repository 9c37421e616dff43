"""Old import path of the SQL upsert operator, kept for users' DAGs.

It lives in :mod:`airflow_provider_cloudelements.transfers.storage_to_sql`.
"""

from __future__ import annotations

from airflow_provider_cloudelements.transfers.storage_to_sql.load import load_manifest
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import (
    CloudElementsSqlUpsertOperator,
    get_sql_hook,
    prepare_connection,
)

__all__ = ["CloudElementsSqlUpsertOperator", "get_sql_hook", "load_manifest", "prepare_connection"]
