"""Sensor that waits for Cloud Elements events on an element instance (reference §5.6)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowSkipException, conf
from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_cloudelements.exceptions import (
    CloudElementsConfigError,
    CloudElementsError,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.models.events import floor_ms, newest_date, summarize_events
from airflow_provider_cloudelements.models.timestamps import parameter_time
from airflow_provider_cloudelements.sensors.base import (
    CloudElementsSensorTimeoutError,
    resume_skipping_only_timeouts,
    run_sensor_loop,
    timeout_seconds,
)
from airflow_provider_cloudelements.triggers.events import CloudElementsEventTrigger
from airflow_provider_cloudelements.utils.validation import as_instance_id

if TYPE_CHECKING:
    from airflow.sdk import Context

EVENT_TYPES = frozenset({"CREATED", "UPDATED", "DELETED"})


class CloudElementsEventSensor(BaseSensorOperator):
    """Wait until events for an instance, of given object and event types, appear after a watermark.

    Reads ``GET /instances/{id}/events`` (reference §5.6; events come from the instance's poller or
    webhooks, §5.1). Returns (through ``PokeReturnValue``/XCom) a small list of the matched events:
    ``[{"id", "objectType", "objectId", "eventType", "eventDate"}, …]`` — never record payloads.

    :param instance_id: element instance id. Templated.
    :param object_types: resource names, e.g. ``["invoices", "payments"]``; empty = any.
    :param event_types: subset of ``CREATED``, ``UPDATED``, ``DELETED``; empty = any.
    :param since: watermark (ISO-8601, rounded down to the millisecond like event dates); default:
        the run's ``data_interval_start``. Templated.
    :param deferrable: wait in the triggerer (:class:`CloudElementsEventTrigger`) after one
        immediate check; default ``[operators] default_deferrable``. ``poke_interval``, ``timeout``,
        ``exponential_backoff``, ``max_wait`` and ``soft_fail`` behave as in any Airflow sensor, in
        both modes, except that ``soft_fail`` skips only on a timeout (an API or trigger error fails).
    :raises CloudElementsSensorTimeoutError: no matching event before ``timeout`` (a
        ``CloudElementsTimeoutError`` and an ``AirflowSensorTimeout``: failed without retry).
    """

    template_fields: Sequence[str] = ("instance_id", "since")

    def __init__(
        self,
        *,
        instance_id: int | str,
        object_types: Sequence[str] | None = None,
        event_types: Sequence[str] | None = None,
        since: str | None = None,
        cloudelements_conn_id: str = CloudElementsHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        bad = {t.upper() for t in (event_types or [])} - EVENT_TYPES
        if bad:
            raise CloudElementsConfigError(f"Unknown event types {sorted(bad)}; use {sorted(EVENT_TYPES)}")
        self.instance_id = instance_id
        self.object_types = list(object_types or [])
        self.event_types = [t.upper() for t in (event_types or [])]
        self.since = since
        self.cloudelements_conn_id = cloudelements_conn_id
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> CloudElementsHook:
        return CloudElementsHook(
            cloudelements_conn_id=self.cloudelements_conn_id, instance_id=as_instance_id(self.instance_id)
        )

    def _watermark(self, context: Context) -> Any:
        value = parameter_time(self.since or context.get("data_interval_start"), what="since")
        if value is None:
            raise CloudElementsConfigError(
                "No watermark: pass since= or run the sensor in a DAG run with a data interval"
            )
        return floor_ms(value)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return run_sensor_loop(self, context)
        first = self.poke(context)  # events already there cost no deferral
        if first.is_done:
            return first.xcom_value
        watermark = self._watermark(context)
        self.defer(
            trigger=CloudElementsEventTrigger(
                instance_id=as_instance_id(self.instance_id),
                cloudelements_conn_id=self.cloudelements_conn_id,
                object_types=self.object_types,
                event_types=self.event_types,
                since=watermark.isoformat(),
                poll_interval=float(self.poke_interval),
                backoff=2.0 if self.exponential_backoff else 1.0,
                max_poll_interval=float(self.max_wait.total_seconds()) if self.max_wait else 600.0,
                end_time=time.time() + timeout_seconds(self),
            ),
            method_name="execute_complete",
            timeout=None,
        )

    def poke(self, context: Context) -> PokeReturnValue:
        watermark = self._watermark(context)
        # the hook applies the one event filter (models/events.py): no second, stricter filter here
        events = list(
            self.hook.iter_events(
                instance_id=as_instance_id(self.instance_id),
                since=watermark,
                object_types=self.object_types or None,
                event_types=self.event_types or None,
            )
        )
        self.log.info(
            "Poke: %s matching events for instance %s since %s (newest %s)",
            len(events),
            self.instance_id,
            watermark.isoformat(),
            newest_date(events, watermark).isoformat(),
        )
        return PokeReturnValue(is_done=bool(events), xcom_value=summarize_events(events) if events else None)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        return resume_skipping_only_timeouts(self, next_method, next_kwargs, context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[dict[str, Any]]:
        status = (event or {}).get("status")
        if status == "success":
            return list(event.get("events") or [])
        if status == "timeout":
            message = f"No matching events for instance {self.instance_id} before the timeout"
            if self.soft_fail:
                raise AirflowSkipException(message)
            raise CloudElementsSensorTimeoutError(message)
        raise CloudElementsError(f"Event trigger failed: {(event or {}).get('message', status)}")
