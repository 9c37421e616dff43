"""OpenLineage facets of the extract and load operators (optional: works without the OpenLineage provider).

The operators' ``get_openlineage_facets_on_complete`` call the builders here, which return ``None`` when
``apache-airflow-providers-openlineage`` (and so the OpenLineage client) is not installed; nothing here is
imported at module import time.

Dataset names (`OpenLineage naming`_):

* a Cloud Elements resource: namespace ``cloudelements://<element_key>``, name ``<instance_id>/<resource>``
  (the same identity as the extract's Airflow asset ``cloudelements://<element_key>/<instance_id>/<resource>``);
* the landed files of a resource: the resource folder ``<output_base>/<element_key>/instance=<id>/<resource>``
  (stable across windows and runs; the per-window partitions and run-unique files live below it):
  namespace ``s3://<bucket>`` / ``gs://<bucket>`` with the key as name, ``file`` with the absolute path
  locally; the storage connection id is not part of the name;
* a warehouse table: the common-sql hook's ``get_openlineage_database_info`` (PostgreSQL:
  ``postgres://host:port``, name ``<database>.<schema>.<table>``), else ``<conn_type>://<host>`` and the
  table name (SQLite: the database file).

Extract outputs carry ``outputStatistics`` (``rowCount`` = records landed, ``size`` = bytes of the data
file); load outputs carry ``rowCount`` = rows inserted + updated + deleted by the load.

.. _OpenLineage naming: https://openlineage.io/docs/spec/naming
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

__all__ = ["extract_lineage", "file_dataset_name", "load_lineage", "openlineage_available"]


def openlineage_available() -> bool:
    """Whether the OpenLineage provider (and its client) can be imported."""
    try:
        import airflow.providers.openlineage.extractors  # noqa: F401
        import openlineage.client.event_v2  # noqa: F401
    except ImportError:
        return False
    return True


def resource_dataset_name(element_key: str, instance_id: Any, resource: str) -> tuple[str, str]:
    """``(namespace, name)`` of a Cloud Elements resource of one instance."""
    return f"cloudelements://{element_key}", f"{instance_id}/{resource}"


def file_dataset_name(manifest: dict[str, Any]) -> tuple[str, str]:
    """``(namespace, name)`` of the landed files of the manifest's resource (its resource folder).

    :param manifest: a manifest as the extract operators return it (``manifest_path`` =
        ``<base>/<element>/instance=<id>/<resource>/window=…/_manifest.json`` or, for reports,
        ``…/reports/<slug>/period=…/_manifest.json``).
    """
    folder = ObjectStoragePath(str(manifest["manifest_path"])).parent.parent
    if folder.protocol in ("file", "local", ""):
        return "file", "/" + folder.path.lstrip("/")
    bucket, _, key = folder.path.partition("/")
    return f"{folder.protocol}://{bucket}", key.rstrip("/")


def extract_lineage(manifest: dict[str, Any] | None) -> Any:
    """``OperatorLineage`` of one extract: the Cloud Elements resource -> its landed files.

    :param manifest: the published manifest (``None``: the task landed nothing, no lineage).
    :returns: ``airflow.providers.openlineage.extractors.OperatorLineage`` or ``None`` when the OpenLineage
        provider is not installed.
    """
    if not manifest or not openlineage_available():
        return None
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset

    src_ns, src_name = resource_dataset_name(manifest["element_key"], manifest["instance_id"], manifest["resource"])
    dst_ns, dst_name = file_dataset_name(manifest)
    stats = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
        rowCount=int(manifest.get("records") or 0), size=int(manifest.get("bytes") or 0)
    )
    return OperatorLineage(
        inputs=[InputDataset(namespace=src_ns, name=src_name)],
        outputs=[OutputDataset(namespace=dst_ns, name=dst_name, outputFacets={"outputStatistics": stats})],
    )


def load_lineage(manifests: Iterable[dict[str, Any]], summaries: Iterable[dict[str, Any]], conn_id: str) -> Any:
    """``OperatorLineage`` of one SQL load: the landed files of each manifest -> its table.

    :param manifests: the manifests the load took (validated).
    :param summaries: the load's summaries (``table``, ``inserted``, ``updated``, ``deleted`` …), one per
        manifest.
    :param conn_id: the warehouse connection (its host/database name the table namespace; no secret).
    :returns: ``OperatorLineage`` or ``None`` (OpenLineage provider not installed, nothing loaded).
    """
    manifests, summaries = list(manifests), list(summaries)
    if not manifests or not openlineage_available():
        return None
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import output_statistics_output_dataset

    namespace, qualify = _table_namespace(conn_id)
    inputs: dict[tuple[str, str], Any] = {}
    rows: dict[str, int] = {}  # table -> rows written (several manifests may load one table)
    for manifest, summary in zip(manifests, summaries, strict=False):
        ns, name = file_dataset_name(manifest)
        inputs.setdefault((ns, name), InputDataset(namespace=ns, name=name))
        table = qualify(str(summary["table"]))
        rows[table] = rows.get(table, 0) + sum(int(summary.get(k) or 0) for k in ("inserted", "updated", "deleted"))
    outputs = [
        OutputDataset(
            namespace=namespace,
            name=table,
            outputFacets={
                "outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=n)
            },
        )
        for table, n in rows.items()
    ]
    return OperatorLineage(inputs=list(inputs.values()), outputs=outputs)


def _table_namespace(conn_id: str) -> tuple[str, Any]:
    """``(namespace, qualify)`` for tables of the warehouse connection; ``qualify(table)`` is the name."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    try:
        hook = conn.get_hook()
        info = hook.get_openlineage_database_info(conn)
    except Exception:  # a hook without OpenLineage support: fall back to the connection's host
        info = None
    if info is not None:
        database = getattr(info, "database", None) or conn.schema or ""
        schema = None
        try:
            schema = hook.get_openlineage_default_schema()
        except Exception:
            log.debug("No default schema from %s", conn_id)
        parts = [p for p in (database, schema) if p]
        return f"{info.scheme}://{info.authority}", lambda t: ".".join([*parts, t])
    host = conn.host or ""
    return f"{conn.conn_type}://{host}", lambda t: t
