"""Reading well-known fields out of Finance-hub records (reference §3.5, §7 item 5)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from airflow_provider_cloudelements.utils.elements import get_element


def field_value(record: dict[str, Any], path: str) -> Any:
    """Value at a dotted ``path`` (``metaData.lastUpdatedTime``), or ``None`` when absent."""
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def parse_instant(value: Any) -> datetime | None:
    """Parse the date formats Cloud Elements elements use into an aware UTC datetime.

    Accepts epoch milliseconds (QBO ``metaData``, numbers or digit strings), ISO-8601 with ``Z`` or an
    offset (QBE ``yyyy-MM-dd'T'HH:mm:ssXXX``), ``yyyy-MM-dd HH:mm:ss`` and ``yyyy-MM-dd`` (FreshBooks,
    taken as UTC). Returns ``None`` for ``None``/empty/unparseable values.
    """
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value) / 1000.0, tz=timezone.utc)
    text = str(value).strip()
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000.0, tz=timezone.utc)
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def updated_at(record: dict[str, Any], element_key: str) -> datetime | None:
    """The record's last-modified instant from the element's updated field (UTC), or ``None``."""
    return parse_instant(field_value(record, get_element(element_key).updated_field))


def is_soft_deleted(record: dict[str, Any], element_key: str) -> bool:
    """True when the element's soft-delete field marks the record inactive/deleted
    (QBO ``active`` false, QBE ``IsActive`` false, FreshBooks ``vis_state`` 1)."""
    spec = get_element(element_key)
    if spec.soft_delete_field is None or spec.soft_delete_field not in record:
        return False
    value = record[spec.soft_delete_field]
    if spec.soft_delete_field == "vis_state":
        return str(value) == "1"
    return value is False or str(value).lower() == "false"
