"""Trigger that waits for a Cloud Elements bulk job in the triggerer (reference §4.1/§4.2)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_cloudelements.exceptions import error_for_event
from airflow_provider_cloudelements.hooks.cloudelements_async import CloudElementsAsyncHook
from airflow_provider_cloudelements.utils.polling import TRIGGER_SETTLE_DELAY, BulkWait

#: The closed set of ``status`` values this trigger's events carry.
EVENT_STATUSES = frozenset({"success", "failed", "cancelled", "timeout", "error"})


class CloudElementsBulkJobTrigger(BaseTrigger):
    """Poll ``GET /hubs/finance/bulk/{id}/status`` until the job is terminal or ``end_time`` passes.

    It only sends idempotent GETs (a triggerer restart re-runs it safely) and never holds a secret:
    its kwargs are the job id, instance id, connection id, numbers and the operator's plan (window,
    folder, element: no credentials). It yields exactly one event::

        {"status": "success"|"failed"|"cancelled"|"timeout"|"error", "job_id": "17",
         "job_status": "COMPLETED", "records": 40, "failed_records": 0, "message": "…",
         "plan": {…} | None, "error": {…} (status "error" only)}

    A poll that still fails once the hook's retry budget is spent ends in an ``error`` event with the
    typed error; the job is left running so the operator can keep it for a retry to re-attach to, or
    cancel it
    (:class:`~airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk.CloudElementsBulkExtractOperator`).

    :param job_id: bulk job id returned by ``POST /bulk/query``.
    :param instance_id: element instance the job belongs to (its token is resolved in the triggerer).
    :param cloudelements_conn_id: Airflow connection id.
    :param poll_interval: steady-state seconds between status GETs; the first polls come sooner (at 5,
        7, 15, 31 … s from the trigger's start for 30 s: :func:`~airflow_provider_cloudelements.utils.
        polling.poll_delays` with a 5 s settle, see ``TRIGGER_SETTLE_DELAY``), so a job that ends in
        seconds is noticed in seconds.
    :param end_time: absolute deadline, epoch seconds (``time.time()`` clock, survives serialization).
    :param cancel_on_kill: ``PUT /bulk/{id}/cancel`` when a user kills the deferred task (Airflow 3.3
        ``BaseTrigger.on_kill``; not on triggerer restarts).
    :param plan: JSON-safe dict echoed in every event (what the operator resolved at submit time).
    """

    def __init__(
        self,
        *,
        job_id: str,
        instance_id: int | None,
        cloudelements_conn_id: str,
        poll_interval: float,
        end_time: float,
        cancel_on_kill: bool = True,
        plan: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.job_id = str(job_id)
        self.instance_id = instance_id
        self.cloudelements_conn_id = cloudelements_conn_id
        self.poll_interval = float(poll_interval)
        self.end_time = float(end_time)
        self.cancel_on_kill = cancel_on_kill
        self.plan = plan

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "instance_id": self.instance_id,
                "cloudelements_conn_id": self.cloudelements_conn_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "cancel_on_kill": self.cancel_on_kill,
                "plan": self.plan,
            },
        )

    def _hook(self) -> CloudElementsAsyncHook:
        return CloudElementsAsyncHook(self.cloudelements_conn_id, instance_id=self.instance_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = self._hook()
        # the shared bulk wait: polls at 5, 7, 15, 31 … s for 30 s, capped at the deadline
        wait = BulkWait(self.poll_interval, deadline=self.end_time, settle=TRIGGER_SETTLE_DELAY)
        try:
            while True:
                if wait.expired():
                    yield self._event("timeout", None, f"Bulk job {self.job_id} passed its deadline")
                    return
                payload = await hook.get_bulk_status(self.job_id)
                step = wait.decide(payload)
                if step.done:
                    ended = "" if step.outcome == "success" else "ended "
                    yield self._event(step.outcome, payload, f"Bulk job {self.job_id} {ended}{step.status.value}")
                    return
                self.log.info("Bulk job %s is %s", self.job_id, step.status.value)
                await asyncio.sleep(step.delay)
        except Exception as err:  # every failure becomes an event the operator can act on
            event = self._event("error", None, f"{type(err).__name__}: {err}")
            event.payload["error"] = error_for_event(err)  # keeps a 401/403's type across the deferral
            yield event
        finally:
            await hook.aclose()

    def _event(self, kind: str, payload: dict[str, Any] | None, message: str) -> TriggerEvent:
        payload = payload or {}
        return TriggerEvent(
            {
                "status": kind,
                "job_id": self.job_id,
                "job_status": payload.get("status"),
                "records": payload.get("recordsCount"),
                "failed_records": payload.get("recordsFailedCount"),
                "message": message,
                "plan": self.plan,
            }
        )

    async def on_kill(self) -> None:
        if not self.cancel_on_kill:
            return
        try:
            async with self._hook() as hook:
                await hook.cancel_bulk_job(self.job_id)
            self.log.info("Cancelled bulk job %s on kill", self.job_id)
        except Exception as err:  # best effort, as the base class documents
            self.log.warning("Could not cancel bulk job %s on kill: %s", self.job_id, err)
