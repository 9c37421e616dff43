"""Sensor for a Cloud Elements bulk job submitted elsewhere (reference §4.1/§4.2)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import conf
from airflow.sdk import BaseSensorOperator

from airflow_provider_cloudelements.exceptions import CloudElementsBulkJobError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.sensors.base import (
    CloudElementsSensorTimeoutError,
    resume_skipping_only_timeouts,
    run_sensor_loop,
    timeout_seconds,
)
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger
from airflow_provider_cloudelements.utils.polling import BulkWait, poll_delay
from airflow_provider_cloudelements.utils.validation import as_instance_id

if TYPE_CHECKING:
    from airflow.sdk import Context


class CloudElementsBulkJobSensor(BaseSensorOperator):
    """Wait for a bulk job (by id) to finish and return its final status JSON.

    Succeeds on COMPLETED/COMPLETE, fails on FAILED, ABORTED, CANCELLED or an unknown status. The status
    JSON is ``{"id", "status", "recordsCount", "recordsFailedCount", …}``.

    :param job_id: bulk job id. Templated.
    :param instance_id: element instance the job belongs to. Templated.
    :param deferrable: wait in the triggerer (:class:`CloudElementsBulkJobTrigger`).
        The first polls come sooner than ``poke_interval`` and back off to it: after 1, 2, 4 … s in
        poke mode, at 5, 7, 15 … s in the trigger (``utils/polling.py``).
    :raises CloudElementsSensorTimeoutError: still running at ``timeout`` (``soft_fail`` skips only
        this; a failed job fails the task).
    """

    template_fields: Sequence[str] = ("job_id", "instance_id")

    def __init__(
        self,
        *,
        job_id: str,
        instance_id: int | str | None = None,
        cloudelements_conn_id: str = CloudElementsHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.instance_id = instance_id
        self.cloudelements_conn_id = cloudelements_conn_id
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> CloudElementsHook:
        instance_id = as_instance_id(self.instance_id) if self.instance_id not in (None, "") else None
        return CloudElementsHook(cloudelements_conn_id=self.cloudelements_conn_id, instance_id=instance_id)

    def _get_next_poke_interval(self, started_at: Any, run_duration: Callable[[], float], poke_count: int) -> float:
        """Poke interval of poke mode without ``exponential_backoff``: 1, 2, 4 … s up to ``poke_interval``.

        The schedule is :func:`~airflow_provider_cloudelements.utils.polling.poll_delay`, so a job that ends in
        seconds is noticed in seconds. Reschedule mode and ``exponential_backoff`` keep Airflow's own schedule
        (a rescheduled try restarts its poke count).
        """
        if self.exponential_backoff or self.reschedule:
            return super()._get_next_poke_interval(started_at, run_duration, poke_count)
        return poll_delay(float(self.poke_interval), poke_count - 1)

    def poke(self, context: Context) -> bool:
        payload = self.hook.get_bulk_status(str(self.job_id))
        step = BulkWait.classify(payload)  # the shared bulk wait's decision (utils/polling.py)
        self.log.info("Bulk job %s is %s", self.job_id, step.status.value)
        if step.done and step.outcome != "success":
            raise CloudElementsBulkJobError(f"Bulk job {self.job_id} ended {step.status.value}")
        if step.done:
            context["ti"].xcom_push(key="bulk_status", value=payload)
        return step.done

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            run_sensor_loop(self, context)
            return self.hook.get_bulk_status(str(self.job_id))
        if self.poke(context):
            return self.hook.get_bulk_status(str(self.job_id))
        self.defer(
            trigger=CloudElementsBulkJobTrigger(
                job_id=str(self.job_id),
                instance_id=self.hook.instance_id,
                cloudelements_conn_id=self.cloudelements_conn_id,
                poll_interval=float(self.poke_interval),
                end_time=time.time() + timeout_seconds(self),
                cancel_on_kill=False,
            ),
            method_name="execute_complete",
            timeout=None,
        )

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        return resume_skipping_only_timeouts(self, next_method, next_kwargs, context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        kind = (event or {}).get("status")
        if kind == "success":
            return self.hook.get_bulk_status(str(self.job_id))
        if kind == "timeout":
            raise CloudElementsSensorTimeoutError(f"Bulk job {self.job_id} did not finish before the sensor timeout")
        raise CloudElementsBulkJobError(f"Bulk job {self.job_id}: {(event or {}).get('message', kind)}")
