"""Incremental extract windows from a DAG run's data interval (user-needs §4 item 10).

A window is half-open ``[start, end)`` on the element's updated-date field (QBO
``metaData.lastUpdatedTime``, QBE ``TimeModified``, FreshBooks ``updated``; reference §3.4/§3.5),
optionally widened backwards by a lookback overlap. Reruns of the same interval produce the same
window, so they land in the same partition and replace it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import pendulum

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError


@dataclass(frozen=True)
class ExtractWindow:
    """``start``/``end`` are timezone-aware UTC datetimes or ``None`` (unbounded).

    ``full_refresh`` windows select every record (``start`` and ``end`` are still kept for the
    partition name, ``start`` is ``None``).
    """

    start: datetime | None
    end: datetime | None
    full_refresh: bool

    def as_dict(self) -> dict[str, str | bool | None]:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "full_refresh": self.full_refresh,
        }


def to_utc(value: Any, *, name: str = "date") -> datetime | None:
    """Parse ``value`` (datetime, pendulum, ISO-8601 string, or ``None``) into an aware UTC datetime.

    Naive datetimes are taken as UTC. :raises CloudElementsConfigError: when unparseable.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = pendulum.parse(value)  # type: ignore[assignment]
        except Exception as err:  # pendulum raises several types
            raise CloudElementsConfigError(f"Unparseable {name}: {value!r} (expected ISO-8601)") from err
        if not isinstance(dt, datetime):
            raise CloudElementsConfigError(f"Unparseable {name}: {value!r} (expected a date-time)")
    else:
        raise CloudElementsConfigError(f"Unparseable {name}: {value!r} (expected ISO-8601 or datetime)")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(dt.timestamp(), tz=timezone.utc)


def positive_number(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``); bools and text are rejected.

    :raises CloudElementsConfigError: naming ``name`` and the bad value.
    """
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CloudElementsConfigError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise CloudElementsConfigError(f"{name} must be {'>= 0' if allow_zero else 'positive'}, got {value!r}")
    return float(value)


def resolve_window(
    context: Any,
    *,
    full_refresh: bool | str = "auto",
    lookback: timedelta | float | int | None = None,
    window_start: Any = None,
    window_end: Any = None,
) -> ExtractWindow:
    """Compute the extract window for a task run.

    :param context: the Airflow task context (reads ``data_interval_start``/``data_interval_end`` and
        ``prev_data_interval_start_success``/``prev_data_interval_end_success``). A zero-width
        interval (start == end) becomes ``[previous successful interval end, end)``.
    :param full_refresh: ``True`` (always everything), ``False`` (always the interval) or ``"auto"``
        (everything on a DAG's first successful run, the interval afterwards).
    :param lookback: overlap subtracted from the window start (timedelta or seconds) to catch late
        updates; rows are deduplicated downstream by (instance, record id).
    :param window_start: explicit start (overrides the data interval).
    :param window_end: explicit end (overrides the data interval).
    :raises CloudElementsConfigError: on unparseable dates, a negative lookback or start >= end.
    """
    ctx = context or {}
    start = to_utc(window_start if window_start is not None else ctx.get("data_interval_start"), name="window start")
    end = to_utc(window_end if window_end is not None else ctx.get("data_interval_end"), name="window end")
    if window_start is None and start is not None and start == end:
        # Zero-width interval (Airflow 3's CronTriggerTimetable, manual and `dags test` runs): the
        # window runs from the previous successful run's interval end, so consecutive runs tile.
        previous = ctx.get("prev_data_interval_end_success")
        prev_end = to_utc(previous, name="previous interval end") if previous else None
        start = prev_end if prev_end is not None and prev_end < end else None
    if full_refresh not in (True, False, "auto"):
        raise CloudElementsConfigError(f"full_refresh must be True, False or 'auto', got {full_refresh!r}")
    if full_refresh == "auto":
        # a lazy proxy in Airflow 3's context: ``is None`` would never be true, truthiness resolves it
        first_run = not ctx.get("prev_data_interval_start_success")
        full = first_run or (start is None and end is None)
    else:
        full = bool(full_refresh)
    if start is not None and end is not None and start >= end:
        raise CloudElementsConfigError(f"Window start {start.isoformat()} is not before end {end.isoformat()}")
    if lookback:
        delta = (
            lookback
            if isinstance(lookback, timedelta)
            else timedelta(seconds=positive_number(lookback, "lookback", allow_zero=True))
        )
        if delta < timedelta(0):
            raise CloudElementsConfigError("lookback must not be negative")
        if start is not None:
            start = start - delta
    if full:
        return ExtractWindow(start=None, end=end, full_refresh=True)
    return ExtractWindow(start=start, end=end, full_refresh=False)
