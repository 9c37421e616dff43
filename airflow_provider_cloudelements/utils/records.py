"""Reading well-known fields out of Finance-hub records (reference §3.5, §7 items 5-7).

The one place that knows how each element spells ids, last-modified times and soft deletes; the
extract operators, the SQL loader and the tests all read records through it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.models.timestamps import parse_timestamp
from airflow_provider_cloudelements.utils.elements import ElementSpec, get_element


def field_value(record: Mapping[str, Any], path: str) -> Any:
    """Value at a dotted ``path`` (``metaData.lastUpdatedTime``), or ``None`` when any step is missing."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _spec(element: str | ElementSpec) -> ElementSpec:
    return element if isinstance(element, ElementSpec) else get_element(element)


def updated_at(
    record: Mapping[str, Any], element: str | ElementSpec, *, naive_tz: str | None = None
) -> datetime | None:
    """Return the record's last-modified instant (UTC) from the element's updated field, or ``None``.

    ``None`` when missing or unparseable; numbers are epoch milliseconds, naive times are read in
    ``naive_tz``.
    """
    spec = _spec(element)
    value = field_value(record, spec.updated_field)
    return parse_timestamp(value, naive_tz=naive_tz or spec.naive_timezone, strict=False)


#: Largest version number stored (``version_num`` is a signed 64-bit ``BIGINT``).
_MAX_VERSION = 2**63 - 1
_INTEGER = re.compile(r"^[+-]?\d+$")


def record_version(record: Mapping[str, Any], element: str | ElementSpec) -> int | None:
    """The record's own version number (``ElementSpec.version_field``), or ``None``.

    QuickBooks Online ``syncToken`` and QuickBooks Enterprise ``EditSequence`` are integers written as
    strings (``"3"``, ``"1484948017"``) that grow on every change (reference §3.5); FreshBooks has no
    version field. A missing value, a boolean, a non-integer (``"3a"``, ``2.5``) or a value outside the
    signed 64-bit range gives ``None`` (the record is then ordered by its times alone).
    """
    field = _spec(element).version_field
    if not field:
        return None
    value = field_value(record, field)
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INTEGER.match(value.strip()):
        number = int(value.strip())
    else:
        return None
    return number if -_MAX_VERSION - 1 <= number <= _MAX_VERSION else None


def _falsy_flag(value: Any) -> bool:
    """True for ``false``/``"false"``/``0``/``"0"`` (an explicit inactive flag), false when missing."""
    if isinstance(value, bool):
        return value is False
    if isinstance(value, (int, float)):
        return value == 0
    if isinstance(value, str):
        return value.strip().lower() in {"false", "0", "no", "n"}
    return False


def is_soft_deleted(record: Mapping[str, Any], element: str | ElementSpec) -> bool:
    """Whether the source marks the record inactive/deleted without removing it.

    QuickBooks Online ``active == false``; QuickBooks Enterprise ``IsActive == false`` (transactions
    carry no ``IsActive``: live); FreshBooks ``vis_state == 1`` (0 active, 2 archived: both live).
    A missing field means live.
    """
    field = _spec(element).soft_delete_field
    if not field:
        return False
    value = field_value(record, field)
    if field == "vis_state":
        try:
            return value is not None and not isinstance(value, bool) and int(value) == 1
        except (TypeError, ValueError):
            return False
    return _falsy_flag(value)


def stable_id(raw_id: Any, element: str | ElementSpec) -> str:
    """Return a record id that survives updates: the part before ``|``.

    QuickBooks Online reads may return ``<id>|<syncToken>`` (reference §3.5) and the sync token changes on
    every update, so only the part before ``|`` counts.
    """
    text = str(raw_id)
    if _spec(element).key == "quickbooks" and "|" in text:
        return text.split("|", 1)[0]
    return text


def record_id(record: Mapping[str, Any], element: str | ElementSpec) -> str:
    """The record's stable id (``id``, ``ListID`` or ``TxnID`` per element, reference §3.5).

    :raises CloudElementsConfigError: if the record carries none of the element's id fields.
    """
    spec = _spec(element)
    for name in spec.id_fields:
        value = record.get(name)
        if value is not None and value != "":
            return stable_id(value, spec)
    raise CloudElementsConfigError(f"Record has no id field ({', '.join(spec.id_fields)})")
