"""The bulk-job wait (:class:`BulkWait`) and its poll schedule, shared by the bulk trigger, operator and sensor.

The operator uses it in its sync loop.

A bulk job of a few hundred records finishes in seconds (the emulator's and Cloud Elements' typical
job times), so waiting a fixed ``poll_interval`` (30 s in the example DAG) before the first status GET
made the demo sync of 17 extracts take ~3 min for jobs that ran a few seconds each. Polls therefore
start fast and back off: 1, 2, 4, … seconds, capped at ``poll_interval``, which stays the steady-state
rate (and the load on ``GET /hubs/finance/bulk/{id}/status``) for long jobs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_cloudelements.models.status import CloudElementsBulkJobStatus

#: Seconds before the first re-poll of a job that was still running at submit time.
FIRST_POLL_DELAY = 1.0
#: Seconds the *trigger* waits before its first poll (capped at ``poll_interval``). A trigger that fires
#: within ~3 s of its task's deferral races the scheduler on a loaded box: the executor's late "success"
#: report of the deferring process arrives after the task was re-queued and the scheduler fails the try
#: ("finished with state success, but the task instance's state attribute is queued", the Airflow race
#: tests/deployment names apache/airflow#72716): 9 of 17 demo extracts hit it with a 1 s first poll and
#: waited out the 2-minute retry delay. 5 s from the trigger's start (itself >= 1 s after the deferral)
#: gives the scheduler time to record the deferral first.
TRIGGER_SETTLE_DELAY = 5.0


def poll_delays(poll_interval: float, *, first: float = FIRST_POLL_DELAY, settle: float = 0.0) -> Iterator[float]:
    """Seconds to wait before each successive status poll: ``first``, doubling, capped at ``poll_interval``.

    ``poll_delays(30)`` yields 1, 2, 4, 8, 16, 30, 30, … (polls at 1, 3, 7, 15, 31, 61 … s);
    ``poll_delays(0.5)`` yields 0.5 forever. With ``settle`` the first poll waits that long (capped at
    ``poll_interval``) and the schedule then resumes at its next point: ``poll_delays(30, settle=5)``
    polls at 5, 7, 15, 31, 61 … s. Infinite: the caller stops at its deadline.

    :param poll_interval: the steady-state interval in seconds (> 0).
    :param first: the first delay in seconds (> 0), never more than ``poll_interval``.
    :param settle: minimum seconds before the first poll (>= 0; :data:`TRIGGER_SETTLE_DELAY` in triggers).
    :raises ValueError: a non-positive interval or first delay, a negative settle.
    """
    if not poll_interval > 0 or not first > 0 or not settle >= 0:
        raise ValueError(
            f"poll_interval and first must be positive and settle >= 0, got {poll_interval!r}, {first!r}, {settle!r}"
        )
    waited = 0.0
    settle = min(settle, poll_interval)
    if settle > 0:
        yield settle
        waited = settle
    planned, delay = 0.0, min(first, poll_interval)
    while True:
        planned += delay
        if planned > waited:
            yield planned - waited
            waited = planned
        delay = min(delay * 2, poll_interval)


def poll_delay(poll_interval: float, poll_number: int, *, first: float = FIRST_POLL_DELAY) -> float:
    """Return the ``poll_number``-th (0-based) delay of :func:`poll_delays`.

    For loops that only keep a count (a sensor's ``poke_count``).
    """
    start = next(poll_delays(poll_interval, first=first))  # validates both arguments
    return min(start * 2 ** min(max(poll_number, 0), 64), poll_interval)


@dataclass(frozen=True)
class BulkPollStep:
    """What one ``GET /hubs/finance/bulk/{id}/status`` answer means for the waiter.

    :param outcome: ``"success"`` (COMPLETED/COMPLETE), ``"failed"`` (FAILED/ABORTED),
        ``"cancelled"`` (CANCELLED) or ``"running"`` (any in-progress status).
    :param status: the parsed status.
    :param delay: seconds to wait before the next poll (``running`` only; 0 otherwise), never past the
        deadline.
    """

    outcome: str
    status: CloudElementsBulkJobStatus
    delay: float = 0.0

    @property
    def done(self) -> bool:
        return self.outcome != "running"


class BulkWait:
    """The one bulk-job wait of the operator's sync loop, the bulk trigger and the bulk sensor.

    All three classify status payloads with :meth:`decide` and wait the :func:`poll_delays` schedule it
    hands out.

    A loop polls, calls :meth:`decide`, stops when the step is ``done`` and otherwise sleeps
    ``step.delay`` and checks :meth:`expired` (a timeout) before the next poll. No I/O, no sleeping:
    sync and async loops share it unchanged.

    :param poll_interval: steady-state seconds between polls (> 0).
    :param deadline: absolute deadline, epoch seconds (``time.time()`` clock); ``None`` = none.
    :param settle: minimum seconds before the first re-poll (:data:`TRIGGER_SETTLE_DELAY` in triggers).
    :param clock: the clock (tests pass a fake one).
    :raises ValueError: a non-positive interval, a negative settle (:func:`poll_delays`).
    """

    def __init__(
        self,
        poll_interval: float,
        *,
        deadline: float | None = None,
        settle: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.deadline = deadline
        self.clock = clock
        self._delays = poll_delays(poll_interval, settle=settle)

    @staticmethod
    def classify(payload: Mapping[str, Any]) -> BulkPollStep:
        """The outcome of one status payload, without a delay (the sensor's poke uses only this).

        :raises CloudElementsBulkJobError: an unknown status (never polled forever).
        """
        status = CloudElementsBulkJobStatus.parse(payload.get("status"))
        if status.is_success():
            return BulkPollStep("success", status)
        if status is CloudElementsBulkJobStatus.CANCELLED:
            return BulkPollStep("cancelled", status)
        if status.is_terminal():
            return BulkPollStep("failed", status)
        return BulkPollStep("running", status)

    def decide(self, payload: Mapping[str, Any]) -> BulkPollStep:
        """:meth:`classify` plus, while running, the next delay of the schedule capped at the deadline."""
        step = self.classify(payload)
        if step.done:
            return step
        delay = next(self._delays)
        if self.deadline is not None:
            delay = max(min(delay, self.deadline - self.clock()), 0.0)
        return BulkPollStep("running", step.status, delay)

    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self.deadline is not None and self.clock() >= self.deadline


def wait_until_done(
    poll: Callable[[], dict[str, Any]],
    wait: BulkWait,
    step: BulkPollStep,
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any] | None:
    """The synchronous bulk wait (operators in the worker): poll until the job is done or the deadline passed.

    After a ``running`` ``step`` it sleeps the step's delay, calls ``poll()`` again and
    :meth:`BulkWait.decide`, until the job is done or the deadline passed.

    :param poll: one ``GET /hubs/finance/bulk/{id}/status`` (the caller wraps its own error handling).
    :returns: the final status payload, or ``None`` when the deadline passed first (the caller cancels).
    :raises CloudElementsBulkJobError: an unknown status.
    """
    while not wait.expired():
        sleep(step.delay)
        payload = poll()
        step = wait.decide(payload)
        if step.done:
            return payload
    return None
