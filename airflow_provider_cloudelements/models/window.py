"""Incremental extract windows from a DAG run's data interval.

A window is half-open ``[start, end)`` on the element's updated-date field (QBO
``metaData.lastUpdatedTime``, QBE ``TimeModified``, FreshBooks ``updated``; reference §3.4/§3.5),
widened backwards by a lookback overlap (default :data:`DEFAULT_LOOKBACK`, 10 minutes, for windows taken
from the data interval) so a record stamped by a server clock that runs behind the worker's is still
extracted; the overlap is harmless because the loader orders versions. Reruns of the same interval
produce the same window, so they land in the same partition folder.

Full refreshes are open-ended: they select every record regardless of its updated time (a record
edited after the interval end is still in the snapshot); ``end`` is kept only for the partition label.

Naive element times (FreshBooks ``updated``, written without an offset) are read in one zone, the
extract's ``naive_timezone`` (default: the element's :attr:`ElementSpec.naive_timezone`). The server-side
filter for such elements is widened by :data:`NAIVE_MARGIN` on each side (a superset whatever zone the
server assumes) and the exact half-open window is applied client-side with :func:`in_window`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.models.timestamps import parameter_time
from airflow_provider_cloudelements.utils.elements import ElementSpec
from airflow_provider_cloudelements.utils.records import updated_at
from airflow_provider_cloudelements.utils.validation import check_timezone, positive_number

#: Overlap subtracted from the start of windows taken from the data interval when ``lookback`` is not
#: given: covers a Cloud Elements / provider clock up to 10 minutes behind the Airflow worker's.
DEFAULT_LOOKBACK = timedelta(minutes=10)
#: Widening of the server-side filter on each side for elements with naive updated times (any UTC
#: offset is within a day); the exact window is then applied client-side.
NAIVE_MARGIN = timedelta(days=1)


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
        """``{"start": ISO|None, "end": ISO|None, "full_refresh": bool}`` (ISO with microseconds when set)."""
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "full_refresh": self.full_refresh,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ExtractWindow:
        """Inverse of :meth:`as_dict` (a window persisted across a deferral or a retry).

        :raises CloudElementsConfigError: not a window dict.
        """
        if not isinstance(data, dict) or not isinstance(data.get("full_refresh"), bool):
            raise CloudElementsConfigError(f"Not a persisted extract window: {data!r}")
        return cls(
            start=parameter_time(data.get("start"), what="window start"),
            end=parameter_time(data.get("end"), what="window end"),
            full_refresh=data["full_refresh"],
        )


def check_lookback(value: Any) -> timedelta | None:
    """Validate a ``lookback`` parameter (before any call).

    Accepted: ``None`` (the default), a timedelta >= 0, or a number of seconds >= 0, also as text
    (``"600"``: what a template such as ``"{{ var.value.ce_lookback_seconds }}"`` renders to).

    :raises CloudElementsConfigError: anything else (other text, booleans, negative or non-finite values).
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise CloudElementsConfigError(
                f"lookback must be a timedelta or a number of seconds, got {value!r}"
            ) from None
    if isinstance(value, timedelta):
        if value < timedelta(0):
            raise CloudElementsConfigError(f"lookback must not be negative, got {value!r}")
        return value
    return timedelta(seconds=positive_number(value, "lookback", allow_zero=True))


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
        updates and a server clock behind the worker's; rows are deduplicated downstream by (instance,
        record id) and ordered by version. ``None``: :data:`DEFAULT_LOOKBACK` for a start taken from
        the data interval, no overlap for an explicit ``window_start``.
    :param window_start: explicit start (overrides the data interval).
    :param window_end: explicit end (overrides the data interval).
    :raises CloudElementsConfigError: on unparseable dates, a negative lookback or start >= end.
    """
    ctx = context or {}
    start = parameter_time(
        window_start if window_start is not None else ctx.get("data_interval_start"), what="window start"
    )
    end = parameter_time(window_end if window_end is not None else ctx.get("data_interval_end"), what="window end")
    if window_start is None and start is not None and start == end:
        # Zero-width interval (Airflow 3's CronTriggerTimetable, manual and `dags test` runs): the
        # window runs from the previous successful run's interval end, so consecutive runs tile.
        previous = ctx.get("prev_data_interval_end_success")
        prev_end = parameter_time(previous, what="previous interval end") if previous else None
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
    delta = check_lookback(lookback)
    if delta is None:
        delta = DEFAULT_LOOKBACK if window_start is None else timedelta(0)
    if start is not None and delta:
        start = start - delta
    if full:
        return ExtractWindow(start=None, end=end, full_refresh=True)
    return ExtractWindow(start=start, end=end, full_refresh=False)


def naive_times(spec: ElementSpec) -> bool:
    """Whether the element writes its updated time without an offset (FreshBooks ``updated``, day-precision CEQL).

    Such windows are filtered client-side in the naive zone.
    """
    return spec.ceql_date_format == "date"


def check_naive_timezone(value: Any) -> str | None:
    """Validate a ``naive_timezone`` parameter (IANA name or ``UTC``; ``None`` = element default).

    :raises CloudElementsConfigError: not a string, or an unknown zone.
    """
    if value is None:
        return None
    return check_timezone(value, "naive_timezone")


class ServerBounds(NamedTuple):
    """The updated-time bounds sent to the server (``None``: open)."""

    start: datetime | None
    end: datetime | None


def server_bounds(window: ExtractWindow, spec: ElementSpec) -> ServerBounds:
    """Return the ``(start, end)`` to send to the server for ``window``.

    Open for a full refresh, the window itself for elements with zoned times, widened by
    :data:`NAIVE_MARGIN` for naive ones (client-side :func:`in_window` then selects the exact window).
    """
    if window.full_refresh:
        return ServerBounds(None, None)
    start, end = window.start, window.end
    if naive_times(spec):
        start = start - NAIVE_MARGIN if start is not None else None
        end = end + NAIVE_MARGIN if end is not None else None
    return ServerBounds(start, end)


def in_window(record: Any, spec: ElementSpec, window: ExtractWindow, naive_tz: str) -> bool:
    """Half-open ``[start, end)`` check on the record's updated instant, naive times read in ``naive_tz``.

    A full refresh keeps every record; a record without a readable updated time is kept (never
    silently dropped; the loader orders it by the snapshot time).
    """
    if window.full_refresh or not isinstance(record, dict):
        return True
    instant = updated_at(record, spec, naive_tz=naive_tz)
    if instant is None:
        return True
    if window.start is not None and instant < window.start:
        return False
    return not (window.end is not None and instant >= window.end)
