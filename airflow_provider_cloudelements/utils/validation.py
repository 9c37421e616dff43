"""Parameter validators: the one place that turns user and XCom values into numbers, flags and zones.

Every validator raises a typed :class:`~airflow_provider_cloudelements.exceptions.CloudElementsConfigError`
(or the subclass given as ``error``, e.g. ``CloudElementsDataError`` for a manifest) whose message names
the parameter and the bad value, so a bad argument fails before any network call. Booleans are never
numbers here (``True`` is an ``int`` in Python, never a count or an id).
"""

from __future__ import annotations

import math
from typing import Any

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError

__all__ = [
    "as_bool",
    "as_instance_id",
    "as_int",
    "check_timezone",
    "count",
    "is_template",
    "positive_int",
    "positive_number",
]


def as_int(
    value: Any,
    what: str,
    *,
    minimum: int | None = None,
    text: bool = True,
    error: type[CloudElementsConfigError] = CloudElementsConfigError,
) -> int:
    """``value`` as an ``int``: an int, an integral float, or (``text``) its decimal text.

    :param what: the parameter's name in the message (``instance_id``, ``manifest records`` …).
    :param minimum: smallest accepted value (``None``: any).
    :param text: accept decimal text such as a rendered template (``"12"``).
    :param error: the exception class raised.
    :raises CloudElementsConfigError: (or ``error``) a boolean, a non-integer, or a value < ``minimum``.
    """
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    elif text and isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            number = None
    if number is None:
        raise error(f"{what} must be an integer, got {value!r}")
    if minimum is not None and number < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise error(f"{what} must be {bound}, got {value!r}")
    return number


def positive_int(value: Any, what: str) -> int:
    """An ``int`` (not text, not a boolean) >= 1: page sizes, batch sizes, limits.

    :raises CloudElementsConfigError: ``"<what> must be a positive integer, got …"``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CloudElementsConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def count(value: Any, what: str) -> int:
    """An ``int`` (not text, not a boolean) >= 0: tolerated failures, expected records.

    :raises CloudElementsConfigError: ``"<what> must be an integer >= 0, got …"``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise CloudElementsConfigError(f"{what} must be an integer >= 0, got {value!r}")
    return value


def as_instance_id(value: object) -> int:
    """An element instance id: a positive integer (or its decimal text, e.g. a rendered template).

    :raises CloudElementsConfigError: for booleans, non-integers and ids < 1.
    """
    return as_int(value, "instance_id", minimum=1)


def is_template(value: Any) -> bool:
    """Whether ``value`` is a Jinja template string (rendered by Airflow before ``execute``)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def positive_number(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (>= 0 with ``allow_zero``) of seconds; booleans and text are rejected.

    :raises CloudElementsConfigError: naming ``name`` and the bad value.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CloudElementsConfigError(f"{name} must be a number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise CloudElementsConfigError(f"{name} must be {'>= 0' if allow_zero else 'positive'}, got {value!r}")
    return float(value)


def as_bool(value: Any, what: str, *, error: type[CloudElementsConfigError] = CloudElementsConfigError) -> bool:
    """A flag: a bool, ``0``/``1``, or the text ``true``/``false``/``1``/``0`` (any case).

    :raises CloudElementsConfigError: (or ``error``) ``"<what> must be a boolean, got …"``.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0"}:
        return value.strip().lower() in {"true", "1"}
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise error(f"{what} must be a boolean, got {value!r}")


def check_timezone(name: Any, what: str, *, error: type[CloudElementsConfigError] = CloudElementsConfigError) -> str:
    """``name`` stripped, if it is ``UTC`` or a known IANA zone.

    :raises CloudElementsConfigError: (or ``error``) not a non-empty string, or an unknown zone; naming ``what``.
    """
    from airflow_provider_cloudelements.models.timestamps import zone

    if not isinstance(name, str) or not name.strip():
        raise error(f"{what} must be an IANA time zone name, got {name!r}")
    try:
        zone(name.strip())
    except CloudElementsConfigError:
        raise error(f"{what}: unknown time zone {name!r}") from None
    return name.strip()
