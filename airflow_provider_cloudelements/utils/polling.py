"""Status-poll schedule shared by the bulk trigger, the bulk operator's sync loop and the bulk sensor.

A bulk job of a few hundred records finishes in seconds (the emulator's and Cloud Elements' typical
job times), so waiting a fixed ``poll_interval`` (30 s in the example DAG) before the first status GET
made the demo sync of 17 extracts take ~3 min for jobs that ran a few seconds each. Polls therefore
start fast and back off: 1, 2, 4, … seconds, capped at ``poll_interval``, which stays the steady-state
rate (and the load on ``GET /hubs/finance/bulk/{id}/status``) for long jobs.
"""

from __future__ import annotations

from collections.abc import Iterator

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
    """The ``poll_number``-th (0-based) delay of :func:`poll_delays`, for loops that only keep a count
    (a sensor's ``poke_count``)."""
    start = next(poll_delays(poll_interval, first=first))  # validates both arguments
    return min(start * 2 ** min(max(poll_number, 0), 64), poll_interval)
