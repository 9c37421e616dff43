"""Object storage → SQL: :class:`~.operator.CloudElementsSqlUpsertOperator` and its load engine.

* :mod:`.operator`: the operator and the connection helpers;
* :mod:`.load`: :func:`~.load.load_manifest`, one manifest in one transaction;
* :mod:`.rows`: the manifest argument, record and tombstone rows;
* :mod:`.statements` / :mod:`.history`: the SQL; :mod:`.dialect`: SQLite and PostgreSQL.
"""

from __future__ import annotations

from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator

__all__ = ["CloudElementsSqlUpsertOperator"]
