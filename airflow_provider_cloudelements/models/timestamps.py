"""The one timestamp parser of the provider: every date the code reads goes through :func:`parse_timestamp`.

Callers differ in what a bare number means and in how forgiving they are with text, so both are
explicit parameters instead of separate parsers:

* ``numbers="epoch_ms"`` (default): every number, and every digit string, is epoch **milliseconds**.
  Element record fields are (QuickBooks Online ``metaData.lastUpdatedTime``, reference §3.5), and so
  are bulk ``createdDate`` values and the loader's manifest times.
* ``numbers="epoch_guess"``: numbers above 10^11 are epoch milliseconds, smaller ones epoch seconds.
  Event dates (``eventDate``/``date``/``createdDate`` of ``GET /instances/{id}/events``, reference
  §5.6) arrive either way depending on the element's poller; 10^11 s is the year 5138 and 10^11 ms is
  1973, so the split is unambiguous for any date this provider meets.
* ``numbers=None``: numbers are rejected (user parameters such as ``window_start`` and ``since``).
* ``lenient=True``: text that is not ISO-8601 is given to pendulum's non-strict parser (``2026-03-01
  10:00``, ``20260301``); for user parameters and API request values. Record data stays strict ISO.

Naive values (a datetime without ``tzinfo``, text without an offset, a ``date``) are read in
``naive_tz`` (default UTC: Airflow's own times are aware, FreshBooks' naive record times pass the
extract's ``naive_timezone``). The result is always an aware datetime in ``timezone.utc`` (never a
pendulum subclass).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any, Literal, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError

__all__ = ["EPOCH_MS_THRESHOLD", "NumberRule", "format_utc", "parameter_time", "parse_timestamp", "zone"]

#: Numbers above this are epoch milliseconds under ``numbers="epoch_guess"``, below it epoch seconds.
EPOCH_MS_THRESHOLD = 1e11
NumberRule = Literal["epoch_ms", "epoch_guess"] | None
_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def zone(name: str) -> ZoneInfo | timezone:
    """``timezone.utc`` or a ``ZoneInfo``. :raises CloudElementsConfigError: unknown zone name."""
    if name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CloudElementsConfigError(f"Unknown time zone {name!r}") from None


def parse_timestamp(
    value: Any,
    *,
    what: str = "timestamp",
    naive_tz: str = "UTC",
    numbers: NumberRule = "epoch_ms",
    lenient: bool = False,
    strict: bool = True,
) -> datetime | None:
    """Parse ``value`` into an aware UTC datetime (``None`` for ``None`` or an empty string).

    Accepted: a ``datetime`` (pendulum included), a ``date`` (midnight), a number or digit string
    (see ``numbers``), ISO-8601 text with ``Z``, an offset or none (``yyyy-MM-dd[THH:mm:ss[.fff]]``,
    ``yyyy-MM-dd HH:mm:ss``), and with ``lenient`` whatever pendulum parses non-strictly.

    :param what: the value's name in the error message (``window start``, ``since`` …).
    :param naive_tz: IANA zone naive values are read in.
    :param numbers: ``"epoch_ms"``, ``"epoch_guess"`` or ``None`` (module docstring).
    :param lenient: fall back to pendulum's non-strict parser for non-ISO text.
    :param strict: raise for an unparseable value; ``False`` returns ``None`` instead.
    :raises CloudElementsConfigError: (``strict``) a value that is none of the above, naming ``what``;
        an unknown ``naive_tz`` always raises.
    """
    if value is None or value == "":
        return None
    try:
        moment = _parse(value, numbers=numbers, lenient=lenient)
    except (ValueError, TypeError, OverflowError, OSError) as err:
        if not strict:
            return None
        raise CloudElementsConfigError(f"Unparseable {what}: {str(value)[:80]!r} ({err})") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone(naive_tz))
    utc = moment.astimezone(timezone.utc)
    return datetime(
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=timezone.utc
    )


@overload
def parameter_time(value: Any, *, what: str, required: Literal[True]) -> datetime: ...
@overload
def parameter_time(value: Any, *, what: str, required: bool = False) -> datetime | None: ...
def parameter_time(value: Any, *, what: str, required: bool = False) -> datetime | None:
    """Parse a time given as a parameter or taken from the task context; naive means UTC.

    Such times are window bounds, ``since``, request ``from``/``to`` values: :func:`parse_timestamp` with
    numbers rejected and lenient text.

    :param required: raise for ``None``/empty instead of returning ``None``.
    :raises CloudElementsConfigError: unparseable (or missing with ``required``), naming ``what``.
    """
    moment = parse_timestamp(value, what=what, numbers=None, lenient=True)
    if moment is None and required:
        raise CloudElementsConfigError(f"Missing {what}: expected a date-time, got {value!r}")
    return moment


def _parse(value: Any, *, numbers: NumberRule, lenient: bool) -> datetime:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a timestamp")
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    text = value.strip() if isinstance(value, str) else None
    if isinstance(value, (int, float)) or (numbers is not None and text is not None and _NUMBER.match(text)):
        if numbers is None:
            raise TypeError("expected a date-time, not a number")
        number = float(value)
        seconds = number / 1000.0 if numbers == "epoch_ms" or number > EPOCH_MS_THRESHOLD else number
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    if text is None:
        raise TypeError(f"expected ISO-8601 text or a datetime, got {type(value).__name__}")
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        if not lenient:
            raise ValueError("expected ISO-8601") from None
    import pendulum

    try:
        parsed = pendulum.parse(text, strict=False)
    except Exception as err:  # pendulum raises ParserError and several ValueError subclasses
        raise ValueError("expected ISO-8601") from err
    if isinstance(parsed, datetime):
        return parsed
    if isinstance(parsed, date):
        return datetime(parsed.year, parsed.month, parsed.day)
    raise ValueError("expected a date or date-time")


def format_utc(moment: datetime) -> str:
    """Fixed-width ISO-8601 UTC with milliseconds (``2026-01-01T10:00:00.000Z``): sorts as text."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
