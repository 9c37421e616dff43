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


def poll_delays(poll_interval: float, *, first: float = FIRST_POLL_DELAY) -> Iterator[float]:
    """Seconds to wait before each successive status poll: ``first``, doubling, capped at ``poll_interval``.

    ``poll_delays(30)`` yields 1, 2, 4, 8, 16, 30, 30, …; ``poll_delays(0.5)`` yields 0.5 forever.
    Infinite: the caller stops at its deadline.

    :param poll_interval: the steady-state interval in seconds (> 0).
    :param first: the first delay in seconds (> 0), never more than ``poll_interval``.
    :raises ValueError: a non-positive interval or first delay.
    """
    if not poll_interval > 0 or not first > 0:
        raise ValueError(f"poll_interval and first must be positive, got {poll_interval!r} and {first!r}")
    delay = min(first, poll_interval)
    while True:
        yield delay
        delay = min(delay * 2, poll_interval)


def poll_delay(poll_interval: float, poll_number: int, *, first: float = FIRST_POLL_DELAY) -> float:
    """The ``poll_number``-th (0-based) delay of :func:`poll_delays`, for loops that only keep a count
    (a sensor's ``poke_count``)."""
    start = next(poll_delays(poll_interval, first=first))  # validates both arguments
    return min(start * 2 ** min(max(poll_number, 0), 64), poll_interval)
