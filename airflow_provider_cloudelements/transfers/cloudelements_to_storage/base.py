"""Base of the Cloud Elements → object storage extracts (bulk: :mod:`.bulk`, paged: :mod:`.paged`).

Both operators share one interface and return the same small manifest (never records) in sync and
deferred modes: :meth:`~airflow_provider_cloudelements.models.manifest.ExtractManifest.to_xcom`
(manifest v2; its shape, ``snapshot_at`` and ``complete`` are described in
:mod:`airflow_provider_cloudelements.models.manifest`).

* ``window`` is what the run resolved at submit time; a resumed deferral or a retry that re-attaches
  to its job uses exactly the persisted resolution (task state store and trigger event), never a
  recomputation from a context that may have changed meanwhile.

Files land in ``<output_base>/<element_key>/instance=<id>/<resource>/window=<start>_<end>/`` (see
:func:`~airflow_provider_cloudelements.transfers.landing.partition_path`) under run-unique names, each
written atomically, and ``_manifest.json`` is written last (publishing rule:
:func:`~airflow_provider_cloudelements.transfers.landing.publish_manifest`): a failed, partial or
unreconciled download never leaves a file a manifest names, and a rerun of an interval replaces the
folder's manifest and removes the replaced run's files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple

from airflow.sdk import AssetAlias, BaseOperator, ObjectStoragePath

from airflow_provider_cloudelements import openlineage, storage
from airflow_provider_cloudelements.common_model import spec_for, vendor_resource_for
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.models.manifest import ExtractManifest
from airflow_provider_cloudelements.models.window import (
    check_lookback,
    check_naive_timezone,
    in_window,
    naive_times,
    resolve_window,
    server_bounds,
)
from airflow_provider_cloudelements.operators.links import (
    INSTANCE_URL_KEY,
    CloudElementsInstanceLink,
    instance_url,
    push_link,
)
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.parquet import require_pyarrow
from airflow_provider_cloudelements.transfers.landing import (
    FORMAT_SUFFIX,
    landed_name,
    partition_path,
    publish_manifest,
    staged_file,
    write_ndjson,
)
from airflow_provider_cloudelements.transfers.plan import (
    DEFAULT_MAP_INDEX_TEMPLATE,
    DEFAULT_OUTLETS,
    EXTRACT_ASSET_ALIAS,
    ExtractPlan,
    asset_uri,
    default_output_base,
    tombstone,
)
from airflow_provider_cloudelements.utils import ceql
from airflow_provider_cloudelements.utils.elements import check_resource, get_element
from airflow_provider_cloudelements.utils.validation import as_instance_id, is_template

if TYPE_CHECKING:
    from airflow.sdk import Context


class Tombstones(NamedTuple):
    """The tombstones file an extract landed: its URI (``None`` when none was written) and line count."""

    path: str | None
    deleted: int


class _CloudElementsExtractBase(BaseOperator):
    """Shared parameters, window/partition resolution, landing and manifest of the extract operators.

    :param resource: Finance-hub resource, e.g. ``invoices`` (reference §3.2). Templated.
    :param instance_id: element instance id; default: the connection's ``instance_id`` extra. Templated.
    :param element_key: skip the ``GET /instances/{id}`` lookup of the element key (optional).
    :param cloudelements_conn_id: Airflow connection of type ``cloudelements``.
    :param output_base: landing root, any ``ObjectStoragePath`` URI (``file://``, or ``s3://``/``gs://``… with their
        Airflow provider installed); default env ``CLOUDELEMENTS_OUTPUT_BASE`` or ``~/cloudelements-data``. Templated.
    :param output_conn_id: Airflow connection of the object store (e.g. an ``aws`` connection for ``s3://``);
        default: the one in the URI (``s3://<conn_id>@bucket/…``), else the store's default credentials.
        The bucket must exist and be writable; checked before any job is submitted. Templated.
    :param output_format: ``ndjson`` (default), ``csv`` (bulk only) or ``parquet`` (needs pyarrow).
    :param where: extra CEQL condition ANDed with the window (reference §3.4); a filtered full refresh
        is not ``complete`` (the loader never deletes by its absence). Templated.
    :param full_refresh: ``"auto"`` (full load on the first successful run, incremental after),
        ``True`` or ``False``. Full refreshes are extracted open-ended (every record, also those edited
        after the interval end); the interval only names the partition.
    :param lookback: overlap (timedelta or seconds >= 0, also as numeric text) subtracted from the window
        start; templated (checked once rendered, before any call). Default
        ``None``: 10 minutes (:data:`~airflow_provider_cloudelements.models.window.DEFAULT_LOOKBACK`)
        for windows from the data interval, so records stamped by a server clock up to 10 minutes
        behind the worker's are not missed (the overlap is harmless: the loader orders versions);
        no overlap for an explicit ``window_start``. Validated when the operator is built.
    :param window_start: explicit window start, overrides the data interval. Templated.
    :param window_end: explicit window end, overrides the data interval. Templated.
    :param naive_timezone: IANA zone of the element's naive times (FreshBooks ``updated``); ``None``
        (default) = the element's :attr:`~airflow_provider_cloudelements.utils.elements.ElementSpec.naive_timezone`
        (UTC). Used for the window filter and written into the manifest for the loader.
    :param capture_deletes: on incremental windows, write the window's ``DELETED`` events for the
        resource (``GET /instances/{id}/events``, reference §5.6) as tombstones
        ``{"id", "deleted_at"}`` to ``<resource>.<token>.deleted.ndjson`` (manifest ``deleted_path``).
        Hard deletes no event reports (QuickBooks Enterprise polling, reference §5.2) are caught by the
        next complete full refresh. Default True.
    """

    template_fields: Sequence[str] = (
        "resource",
        "instance_id",
        "output_base",
        "output_conn_id",
        "where",
        "window_start",
        "window_end",
        "lookback",
    )
    operator_extra_links: tuple[Any, ...] = (CloudElementsInstanceLink(),)
    ui_color = "#dbeafe"
    mode = "bulk"

    def __init__(
        self,
        *,
        resource: str,
        instance_id: int | str | None = None,
        element_key: str | None = None,
        cloudelements_conn_id: str = CloudElementsHook.default_conn_name,
        output_base: str | None = None,
        output_conn_id: str | None = None,
        output_format: str = "ndjson",
        where: str | None = None,
        full_refresh: bool | str = "auto",
        lookback: timedelta | float | None = None,
        window_start: Any = None,
        window_end: Any = None,
        naive_timezone: str | None = None,
        capture_deletes: bool = True,
        outlets: Any = DEFAULT_OUTLETS,
        map_index_template: str | None = DEFAULT_MAP_INDEX_TEMPLATE,
        **kwargs: Any,
    ) -> None:
        # A signature default (not kwargs.setdefault): .partial() takes BaseOperator defaults from the
        # signature, so mapped extracts get the alias too and emit asset events (a setdefault saw the
        # partial's outlets=[] and mapped extracts emitted none). The same for the map index label.
        super().__init__(outlets=outlets, map_index_template=map_index_template, **kwargs)
        if output_format not in FORMAT_SUFFIX:
            raise CloudElementsConfigError(
                f"output_format must be one of {sorted(FORMAT_SUFFIX)}, got {output_format!r}"
            )
        if full_refresh not in (True, False, "auto"):
            raise CloudElementsConfigError(f"full_refresh must be True, False or 'auto', got {full_refresh!r}")
        if element_key is not None:
            get_element(element_key)
        if not is_template(lookback):  # a template is checked once rendered, still before any call
            check_lookback(lookback)  # before any call: a bad lookback never reaches the network
        self.resource = resource
        self.instance_id = instance_id
        self.element_key = element_key
        self.cloudelements_conn_id = cloudelements_conn_id
        self.output_base = output_base
        self.output_conn_id = output_conn_id
        self.output_format = output_format
        self.where = where
        self.full_refresh = full_refresh
        self.lookback = lookback
        self.window_start = window_start
        self.window_end = window_end
        self.naive_timezone = check_naive_timezone(naive_timezone)
        self.capture_deletes = capture_deletes
        self._ce_links: dict[str, str] = {}

    # -- resolution -------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> CloudElementsHook:
        return CloudElementsHook(cloudelements_conn_id=self.cloudelements_conn_id, instance_id=self._instance_id())

    def _instance_id(self) -> int | None:
        if self.instance_id in (None, ""):
            return None
        return as_instance_id(self.instance_id)

    def _resolve(self, context: Context) -> ExtractPlan:
        """Resolve window, element and partition folder; validates before any transfer."""
        if not isinstance(self.resource, str) or not self.resource.strip():
            raise CloudElementsConfigError(f"resource must be a non-empty string, got {self.resource!r}")
        if self.output_format == "parquet":
            require_pyarrow()  # at run time, before any call (the DAG parser need not have pyarrow)
        window = resolve_window(
            context,
            full_refresh=self.full_refresh,
            lookback=self.lookback,
            window_start=self.window_start,
            window_end=self.window_end,
        )
        hook = self.hook
        instance_id = hook.instance_id
        if instance_id is None:
            raise CloudElementsConfigError(
                "No element instance id: pass instance_id= or set the connection's instance_id extra"
            )
        element_key = self.element_key
        if element_key is None:
            instance = hook.get_instance(instance_id)
            element_key = str((instance.get("element") or {}).get("key") or "")
            if instance.get("disabled"):
                self.log.warning("Element instance %s is disabled: hub calls will fail with 403", instance_id)
        check_resource(element_key, self.resource)
        if self.where:
            ceql.validate_where(self.where, element_key)
        folder = partition_path(
            storage.output_root(self.output_base or default_output_base(), self.output_conn_id),
            element_key=element_key,
            instance_id=instance_id,
            resource=self.resource,
            window_start=window.start,
            window_end=window.end,
        )
        storage.check_output_folder(folder)  # bucket, credentials, writable: before any job is submitted
        self._push_instance_link(context, instance_id)
        return ExtractPlan(
            instance_id=instance_id,
            element_key=element_key,
            resource=self.resource,
            output_format=self.output_format,
            window=window,
            folder=str(folder),
            naive_timezone=self.naive_timezone or get_element(element_key).naive_timezone,
            where=self.where or None,
        )

    def _push_instance_link(self, context: Context, instance_id: int) -> None:
        push_link(self, context, INSTANCE_URL_KEY, instance_url(self.hook.base_url, instance_id))

    def _where_for(self, plan: ExtractPlan) -> str | None:
        """Build the CEQL for the window, ANDed with ``where``.

        The window is ``[start, end)`` on the element's updated field, widened for naive elements, none for a
        full refresh.
        """
        parts: list[str] = []
        spec = spec_for(plan.element_key, plan.resource)  # a common resource windows on its updated_at
        start, end = server_bounds(plan.window, spec)
        clause = ceql.window_clause(plan.element_key, start, end, field=spec.updated_field)
        if clause:
            parts.append(clause)
        if plan.where:
            parts.append(f"({plan.where})" if parts else plan.where)
        return " AND ".join(parts) or None

    def _record_filter(self, plan: ExtractPlan) -> Callable[[Any], bool] | None:
        """Client-side exact window for naive-time elements (``None``: the server filter is exact)."""
        spec = spec_for(plan.element_key, plan.resource)
        if plan.window.full_refresh or not naive_times(spec):
            return None
        return lambda record: in_window(record, spec, plan.window, plan.naive_timezone)

    # -- landing ----------------------------------------------------------------------------------

    def _land_tombstones(self, plan: ExtractPlan, token: str) -> Tombstones:
        """Write the window's DELETED events for this resource as tombstones; ``(path, count)``."""
        if not self.capture_deletes or plan.window.full_refresh:
            return Tombstones(None, 0)
        path = plan.folder_path / landed_name(plan.resource, token, "deleted.ndjson")
        events = self.hook.iter_events(
            instance_id=plan.instance_id,
            since=plan.window.start,
            until=plan.window.end,
            object_types=[vendor_resource_for(plan.element_key, plan.resource)],  # events name the vendor resource
            event_types=["DELETED"],
        )
        with staged_file(path, "wb") as (handle, publish):
            count, _ = write_ndjson(handle, (tombstone(e.get("objectId"), e.get("eventDate")) for e in events))
            publish()
        if count:
            self.log.info("Recorded %s hard deletes of %s as tombstones", count, plan.resource)
        return Tombstones(str(path), count)

    def _publish_manifest(self, context: Context, built: ExtractManifest) -> dict[str, Any]:
        """Publish ``built`` as the partition's ``_manifest.json``; the XCom dict of what is published."""
        manifest = built.to_xcom()
        published = publish_manifest(ObjectStoragePath(str(built.manifest_path)).parent, manifest)
        if published is not manifest:
            self.log.warning(
                "A newer snapshot of this interval (snapshot_at %s) was published meanwhile; this run's "
                "files were dropped and its manifest is returned instead",
                published.get("snapshot_at"),
            )
        self._emit_asset_event(context, published)
        self._landed_manifest = published  # for get_openlineage_facets_on_complete
        self.log.info(
            "Landed %s %s records (%s bytes) of %s/%s at %s (snapshot_at %s, complete=%s)",
            published["records"],
            published["format"],
            published["bytes"],
            published["element_key"],
            published["resource"],
            published["path"],
            published.get("snapshot_at"),
            published.get("complete"),
        )
        return published

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Return the OpenLineage facets: the Cloud Elements resource -> its landed files (``openlineage``)."""
        return openlineage.extract_lineage(getattr(self, "_landed_manifest", None))

    def _emit_asset_event(self, context: Context, manifest: dict[str, Any]) -> None:
        if not any(isinstance(o, AssetAlias) and o.name == EXTRACT_ASSET_ALIAS for o in self.outlets):
            return
        from airflow.sdk import Asset

        outlet_events = context.get("outlet_events")
        if outlet_events is None:
            return
        uri = asset_uri(manifest["element_key"], manifest["instance_id"], manifest["resource"])
        extra = {k: manifest.get(k) for k in ("path", "records", "job_id", "full_refresh", "snapshot_at", "complete")}
        extra["window"] = manifest["window"]
        outlet_events[AssetAlias(EXTRACT_ASSET_ALIAS)].add(Asset(uri=uri, name=uri), extra=extra)
