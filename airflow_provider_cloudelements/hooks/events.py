"""Event listings of Cloud Elements (reference §5.6): the client-side filter, query hints and ``iter_events``.

The client-side event filter and the query hints are used by both hooks;
:meth:`EventsMixin.iter_events` is the sync hook's listing.

The one event filter and date reader are :mod:`airflow_provider_cloudelements.models.events`
(``event_matches``/``event_date``, re-exported here and from ``hooks/cloudelements.py``), shared with the
event sensor and trigger.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_cloudelements.hooks.sync_base import CloudElementsSyncBase
from airflow_provider_cloudelements.models.events import event_matches
from airflow_provider_cloudelements.utils import ceql


def event_window_params(since: datetime | None, until: datetime | None) -> dict[str, str]:
    """Build the ``from``/``to`` query hints for event listings (UTC ISO-8601, milliseconds).

    ``from`` is rounded down and ``to`` rounded up, so the server never returns less than the window. The
    devportal documents no server-side event filter (§5.6), so results are always filtered client-side too.
    """
    params = {}
    if since is not None:
        lo = ceql.to_datetime(since, what="since")
        params["from"] = lo.strftime("%Y-%m-%dT%H:%M:%S.") + f"{lo.microsecond // 1000:03d}Z"
    if until is not None:
        hi = ceql.to_datetime(until, what="until")
        if hi.microsecond % 1000:
            hi = hi + timedelta(microseconds=1000 - hi.microsecond % 1000)
        params["to"] = hi.strftime("%Y-%m-%dT%H:%M:%S.") + f"{hi.microsecond // 1000:03d}Z"
    return params


def events_path(instance_id: int | None) -> str:
    """``/instances/{id}/events`` for one instance, ``/instances/events`` for all (``None``)."""
    return f"/instances/{instance_id}/events" if instance_id is not None else "/instances/events"


def check_event_window(since: datetime | None, until: datetime | None) -> None:
    """:raises CloudElementsConfigError: ``since``/``until`` that is not a datetime or ISO-8601 text."""
    for value, what in ((since, "since"), (until, "until")):
        if value is not None:
            ceql.to_datetime(value, what=what)


def matching_events(
    records: Iterable[Any],
    *,
    since: datetime | None,
    until: datetime | None,
    object_types: list[str] | None,
    event_types: list[str] | None,
) -> Iterator[dict[str, Any]]:
    """Yield copies of the event objects of a listing that pass :func:`event_matches`, lazily.

    This is the one filter of both hooks.
    """
    for event in records:
        if isinstance(event, Mapping) and event_matches(
            event, since=since, until=until, object_types=object_types, event_types=event_types
        ):
            yield dict(event)


class EventsMixin(CloudElementsSyncBase):
    """Event listings of the sync hook."""

    def iter_events(
        self,
        *,
        instance_id: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        object_types: list[str] | None = None,
        event_types: list[str] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Iterate the events received by Cloud Elements (§5.6), paged and filtered client-side.

        The listing is ``GET /instances/{id}/events`` (platform headers), or ``GET /instances/events`` for all
        instances when neither ``instance_id`` nor the hook's instance is set. Filtered client-side
        (:func:`event_matches`: ``[since, until)`` on ``eventDate``, ``objectType``/``eventType`` anywhere in
        the event). The listing pages by cursor only (it ignores ``page``): a page without
        ``Elements-Next-Page-Token`` is the last one.

        :raises CloudElementsConfigError: a bad ``instance_id``, ``since`` or ``until`` (before any call).
        """
        path = events_path(self._instance_arg_or(instance_id, self.instance_id))
        check_event_window(since, until)
        records = self._paginate(
            path, event_window_params(since, until), hub=False, page_size=self.settings.page_size, cursor_only=True
        )
        return matching_events(records, since=since, until=until, object_types=object_types, event_types=event_types)
