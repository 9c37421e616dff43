"""Land only the records named by Cloud Elements events (event-driven syncs, reference §5.4/§5.6)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_provider_cloudelements import storage
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsNotFoundError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.models.events import event_date, event_field
from airflow_provider_cloudelements.models.window import ExtractWindow
from airflow_provider_cloudelements.transfers.landing import (
    landed_name,
    partition_path,
    publish_manifest,
    run_token,
    staged_file,
    write_ndjson,
)
from airflow_provider_cloudelements.transfers.plan import ExtractPlan, default_output_base, snapshot_time, tombstone
from airflow_provider_cloudelements.utils.elements import ElementSpec, get_element
from airflow_provider_cloudelements.utils.records import stable_id
from airflow_provider_cloudelements.utils.validation import as_instance_id

if TYPE_CHECKING:
    from airflow.sdk import Context


def latest_changes(
    events: Sequence[dict[str, Any]], element: str | ElementSpec | None = None
) -> dict[str, dict[str, dict[str, Any]]]:
    """Collapse events to the newest one per (objectType, objectId): ``{resource: {id: event}}``.

    Events are ``{"objectType", "objectId", "eventType", "eventDate", …}`` as returned by
    ``GET /instances/{id}/events`` or a :class:`CloudElementsEventTrigger` payload (type and id read
    where the shared event filter finds them, :mod:`~airflow_provider_cloudelements.models.events`;
    dates by :func:`~airflow_provider_cloudelements.models.events.event_date`). Events without an object
    type or id are ignored. With ``element``, ids are the stable ids
    (:func:`~airflow_provider_cloudelements.utils.records.stable_id`): QuickBooks Online events name
    ``<id>|<syncToken>`` and two updates of one record carry two different ``objectId`` values.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}

    def order(e: dict[str, Any]) -> tuple[datetime, str]:
        return event_date(e) or datetime.min.replace(tzinfo=timezone.utc), str(e.get("id"))

    for event in sorted(events, key=order):
        resource, object_id = event_field(event, "objectType"), event.get("objectId") or event_field(event, "objectId")
        if resource and object_id not in (None, ""):
            key = stable_id(object_id, element) if element is not None else str(object_id)
            out.setdefault(str(resource), {})[key] = event
    return out


def events_from_context(context: Context) -> list[dict[str, Any]]:
    """Events carried by the asset events that triggered this run (``AssetWatcher`` payloads)."""
    found: list[dict[str, Any]] = []
    for asset_events in (context.get("triggering_asset_events") or {}).values():
        for asset_event in asset_events:
            payload = (getattr(asset_event, "extra", None) or {}).get("payload") or {}
            found.extend(payload.get("events") or [])
    return found


class CloudElementsChangedRecordsOperator(BaseOperator):
    """Fetch the records named by change events and land them, plus tombstones for deletions.

    For each resource among the events: ``GET /hubs/finance/{resource}/{id}`` for every changed
    object (newest event per object wins); a record that still exists is landed as it is (a soft
    delete keeps its inactive flag), one that no longer exists (404) becomes a tombstone
    ``{"id", "deleted_at"}``. Files land atomically under run-unique names
    ``<resource>.<token>.ndjson`` and ``<resource>.<token>.deleted.ndjson`` in a partition named after
    the events' time span (the extract operators' labels: :func:`~..landing.partition_path`, with
    microseconds), ``_manifest.json`` last (:func:`~..landing.publish_manifest`). Returns a list
    of manifests (v2, same shape as the extract operators', ``mode="events"``, ``deleted_path`` set,
    ``complete`` false, ``snapshot_at`` the server time before the first record GET) for
    :class:`~airflow_provider_cloudelements.transfers.storage_to_sql.CloudElementsSqlUpsertOperator`.

    :param instance_id: element instance the events belong to. Templated.
    :param events: the events (templated, e.g. a sensor's XCom); default: the payloads of the asset
        events that triggered the run.
    :param output_base: landing root (any ``ObjectStoragePath`` URI), as for the extract operators. Templated.
    :param output_conn_id: Airflow connection of the object store (as for the extract operators). Templated.
    :param max_records: refuse more changed objects than this (use a bulk extract instead). Default 5000.
    :raises CloudElementsConfigError: too many changes, or a bad instance id.
    """

    template_fields: Sequence[str] = ("instance_id", "events", "output_base", "output_conn_id")

    def __init__(
        self,
        *,
        instance_id: int | str,
        events: Any = None,
        cloudelements_conn_id: str = CloudElementsHook.default_conn_name,
        output_base: str | None = None,
        output_conn_id: str | None = None,
        max_records: int = 5000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.instance_id = instance_id
        self.events = events
        self.cloudelements_conn_id = cloudelements_conn_id
        self.output_base = output_base
        self.output_conn_id = output_conn_id
        self.max_records = max_records

    @cached_property
    def hook(self) -> CloudElementsHook:
        return CloudElementsHook(
            cloudelements_conn_id=self.cloudelements_conn_id, instance_id=as_instance_id(self.instance_id)
        )

    def execute(self, context: Context) -> list[dict[str, Any]]:
        instance_id = as_instance_id(self.instance_id)
        events = list(self.events) if self.events else events_from_context(context)
        changes = latest_changes(events)
        total = sum(len(ids) for ids in changes.values())
        if total > self.max_records:
            raise CloudElementsConfigError(
                f"{total} changed objects > max_records={self.max_records}: run a bulk extract instead"
            )
        if not changes:
            self.log.info("No change events to land")
            return []
        root = storage.output_root(self.output_base or default_output_base(), self.output_conn_id)  # no network
        element_key = str((self.hook.get_instance(instance_id).get("element") or {}).get("key"))
        spec = get_element(element_key)
        changes = latest_changes(events, spec)  # per stable id: one GET per record, not per version
        dates = [d for d in (event_date(e) for e in events) if d]
        manifests = []
        for resource, by_id in sorted(changes.items()):
            if resource not in spec.all_resources:
                self.log.warning("Ignoring events for %s: not a Finance-hub resource of %s", resource, element_key)
                continue
            folder = partition_path(
                root,
                element_key=element_key,
                instance_id=instance_id,
                resource=resource,
                window_start=min(dates, default=None),
                window_end=max(dates, default=None),
            )
            storage.check_output_folder(folder)  # bucket, credentials, writable: before the records are read
            manifests.append(self._land(context, element_key, instance_id, resource, by_id, folder))
        return manifests

    def _land(
        self,
        context: Context,
        element_key: str,
        instance_id: int,
        resource: str,
        by_id: dict[str, dict[str, Any]],
        folder: ObjectStoragePath,
    ) -> dict[str, Any]:
        records: list[dict[str, Any]] = []
        tombstones: list[dict[str, Any]] = []
        snapshot = snapshot_time(self.hook)  # before the first GET: a lower bound
        for object_id, event in sorted(by_id.items()):
            # Fetch even for DELETED events: a soft-deleted record still exists (inactive flag),
            # only a 404 means a hard delete. At most max_records objects, so the lists stay small.
            try:
                records.append(self.hook.get_record(resource, object_id))
            except CloudElementsNotFoundError:
                tombstones.append(tombstone(object_id, event.get("eventDate")))
        token = run_token(snapshot)
        target = folder / landed_name(resource, token, "ndjson")
        deleted = folder / landed_name(resource, token, "deleted.ndjson")
        with staged_file(target) as (out, publish), staged_file(deleted) as (dead, publish_deleted):
            count, nbytes = write_ndjson(out, records)
            write_ndjson(dead, tombstones)
            publish()
            publish_deleted()
        plan = ExtractPlan(
            instance_id=instance_id,
            element_key=element_key,
            resource=resource,
            output_format="ndjson",
            window=ExtractWindow(start=None, end=None, full_refresh=False),
            folder=str(folder),
            naive_timezone=get_element(element_key).naive_timezone,
        )
        built = plan.manifest(
            mode="events",
            target=target,
            records=count,
            nbytes=nbytes,
            job_id=None,
            snapshot_at=snapshot,
            complete=False,
            deleted_path=str(deleted),
            deleted=len(tombstones),
        )
        manifest = publish_manifest(folder, built.to_xcom())
        self.log.info(
            "Landed %s changed and %s deleted %s of instance %s", count, len(tombstones), resource, instance_id
        )
        return manifest
