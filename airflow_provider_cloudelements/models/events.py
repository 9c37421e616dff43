"""The one event filter: which Cloud Elements events (``GET /instances/{id}/events``, reference §5.6) match.

The sync hook, the async hook, the event sensor and the event trigger all select events with
:func:`event_matches` (the devportal documents no server-side event filter, so every listing is
filtered client-side):

* ``objectType`` / ``eventType`` are compared **case-insensitively** and found **wherever Cloud
  Elements put them**: top level, ``events[]``, ``message.events[]``, ``raw``, ``event``, or a JSON
  ``providerData``/``notifiedData`` string (webhook envelopes nest them, reference §5.4);
* the date is ``eventDate``, else ``date``, else ``createdDate`` (:func:`event_date`: ISO-8601, or epoch
  seconds/milliseconds told apart at 10^11); ``[since, until)`` is half-open, ``since`` floored to the
  millisecond;
* an event without a readable date passes the date filters (never silently dropped).

No Airflow imports: the models package is shared by hooks, sensors and triggers alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow_provider_cloudelements.models.timestamps import parameter_time, parse_timestamp

__all__ = [
    "EVENT_DATE_FIELDS",
    "event_date",
    "event_field",
    "event_matches",
    "event_values",
    "floor_ms",
    "newest_date",
    "summarize_events",
]

#: Where an event's date is read from, in order.
EVENT_DATE_FIELDS = ("eventDate", "date", "createdDate")
_NESTED = ("events", "message", "raw", "event", "providerData", "notifiedData")
_SUMMARY_KEYS = ("id", "objectType", "objectId", "eventType", "eventDate")


def _found(event: Any, key: str) -> list[str]:
    """Every non-empty string value of ``key`` in ``event`` and its nested envelopes, top level first."""
    found: list[str] = []

    def visit(node: Any, depth: int) -> None:
        if depth > 4:
            return
        if isinstance(node, str) and node[:1] in "{[":
            try:
                node = json.loads(node)
            except ValueError:
                return
        if isinstance(node, Mapping):
            value = node.get(key)
            if isinstance(value, str) and value:
                found.append(value)
            for child in _NESTED:
                if child in node:
                    visit(node[child], depth + 1)
        elif isinstance(node, list):
            for item in node:
                visit(item, depth + 1)

    visit(event, 0)
    return found


def event_values(event: Any, key: str) -> set[str]:
    """All values of ``key`` (``objectType``/``eventType``) in an event, lower-cased, wherever CE put them."""
    return {value.lower() for value in _found(event, key)}


def event_field(event: Any, key: str) -> str | None:
    """The first value of ``key`` in an event (top level first, then nested envelopes), as sent."""
    values = _found(event, key)
    return values[0] if values else None


def event_date(event: Mapping[str, Any]) -> datetime | None:
    """The event's date (``eventDate``, else ``date``/``createdDate``), aware UTC, or ``None``.

    Numbers are epoch milliseconds above 10^11 and epoch seconds below (``numbers="epoch_guess"`` of
    :func:`~airflow_provider_cloudelements.models.timestamps.parse_timestamp`); an unreadable value
    falls through to the next field.
    """
    for name in EVENT_DATE_FIELDS:
        moment = parse_timestamp(event.get(name), numbers="epoch_guess", lenient=True, strict=False)
        if moment is not None:
            return moment
    return None


def event_matches(
    event: Mapping[str, Any],
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    object_types: Sequence[str] | None = None,
    event_types: Sequence[str] | None = None,
) -> bool:
    """Whether ``event`` passes the filter (module docstring for the semantics).

    :param since: inclusive lower bound on the event date (aware, or naive = UTC), floored to the
        millisecond (:func:`floor_ms`: event dates have millisecond precision, so an event in the same
        millisecond as a microsecond watermark counts; the hooks, the sensor and the trigger agree).
    :param until: exclusive upper bound.
    :param object_types: keep events whose ``objectType`` is one of these (case-insensitive); empty = any.
    :param event_types: keep events whose ``eventType`` is one of these (``CREATED``/``UPDATED``/``DELETED``,
        case-insensitive); empty = any.
    :raises CloudElementsConfigError: an unparseable ``since``/``until``.
    """
    if since is not None or until is not None:
        when = event_date(event)
        if when is not None:
            if since is not None and when < floor_ms(parameter_time(since, what="since", required=True)):
                return False
            if until is not None and when >= parameter_time(until, what="until", required=True):
                return False
    if object_types and not (event_values(event, "objectType") & {t.lower() for t in object_types}):
        return False
    return not (event_types and not (event_values(event, "eventType") & {t.lower() for t in event_types}))


def summarize_events(events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Small per-event view safe for XCom: ``{id, objectType, objectId, eventType, eventDate}``.

    ``objectType``, ``objectId`` and ``eventType`` are taken where :func:`event_matches` found them
    (an event whose type sits in a nested envelope still names it), ``eventDate`` is as sent.
    """
    out = []
    for event in events:
        summary = {k: event.get(k) for k in _SUMMARY_KEYS}
        for key in ("objectType", "objectId", "eventType"):
            if summary[key] in (None, ""):
                summary[key] = event_field(event, key)
        out.append(summary)
    return out


def floor_ms(moment: datetime) -> datetime:
    """Round a watermark down to whole milliseconds.

    Event dates have millisecond precision (reference §5.6), so an event in the same millisecond as a
    microsecond watermark must still count (``>=``).
    """
    return moment.replace(microsecond=moment.microsecond - moment.microsecond % 1000)


def newest_date(events: Sequence[Mapping[str, Any]], default: datetime) -> datetime:
    """The newest :func:`event_date` of ``events``, ``default`` when none has a readable date."""
    dates = [d for d in (event_date(e) for e in events) if d is not None]
    return max(dates, default=default)
