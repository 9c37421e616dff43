"""Per-element value rules shared by hub writes and searches.

* :func:`coerce_like` — created/updated records echo the JSON types of the element's seeded records
  (QBE amounts are strings such as ``"15.00"``, QBO/FreshBooks amounts numbers, booleans booleans),
  so a client never sees one field with two types.
* :func:`qbo_check_queryable` — QuickBooks Online CEQL accepts only queryable properties: top-level
  scalar fields, reference values (``customerRef`` / ``customerRef.value``), ``id`` and the
  ``metaData`` times; anything else answers 400 ``QueryValidationError`` (reference §3.4, QBO
  ``ceql.md`` / ``tips.md``: "property 'Taxable' is not queryable", no ``customerRef.name`` search).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from cloudelements_emulator.errors import CEError

_DECIMAL2 = re.compile(r"^-?\d+\.\d{2}$")
_NUMERIC = re.compile(r"^\s*-?\d+(\.\d+)?\s*$")

#: QBO fields that exist on records but are not filterable in Intuit's query language.
QBO_NOT_QUERYABLE = frozenset(
    {
        "taxable",
        "line",
        "sparse",
        "domain",
        "billAddr",
        "shipAddr",
        "primaryPhone",
        "primaryEmailAddr",
        "webAddr",
    }
)
_QBO_ALWAYS = frozenset({"id", "syncToken", "metaData.createTime", "metaData.lastUpdatedTime", "active"})


def _coerce_scalar(value: Any, sample: Any) -> Any:
    if isinstance(sample, bool):
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return value
    if isinstance(sample, str) and isinstance(value, (int, float)) and not isinstance(value, bool):
        if _DECIMAL2.match(sample):
            return f"{value:.2f}"
        return str(value)
    if isinstance(sample, (int, float)) and not isinstance(sample, bool) and isinstance(value, str):
        if _NUMERIC.match(value):
            number = float(value)
            if isinstance(sample, int) and number.is_integer() and "." not in value:
                return int(number)
            return number
    return value


def coerce_like(value: Any, sample: Any) -> Any:
    """``value`` with every scalar converted to the JSON type of the same path in ``sample``.

    Dicts recurse key by key, lists use the sample's first item for every item; paths the sample
    does not have are left alone. Never raises.
    """
    if isinstance(value, dict) and isinstance(sample, dict):
        return {k: (coerce_like(v, sample[k]) if k in sample else v) for k, v in value.items()}
    if isinstance(value, list) and isinstance(sample, list):
        return [coerce_like(v, sample[0]) for v in value] if sample else value
    if isinstance(value, (dict, list)) or isinstance(sample, (dict, list)):
        return value
    return _coerce_scalar(value, sample)


def _pascal(path: str) -> str:
    return ".".join(p[:1].upper() + p[1:] for p in path.split("."))


def qbo_check_queryable(resource: str, template: dict[str, Any], fields: Iterable[str]) -> None:
    """:raises CEError: 400 ``QueryValidationError`` for a field QBO cannot filter on."""
    for path in fields:
        head, _, rest = path.partition(".")
        if path in _QBO_ALWAYS:
            continue
        if head not in template:
            raise CEError(
                400,
                f"Invalid query - QueryValidationError: value {path!r} is not a valid property name for {resource}",
                provider_message=f"QueryValidationError: property '{_pascal(path)}' is not a valid property",
            )
        sample = template[head]
        ref_value = isinstance(sample, dict) and "value" in sample and rest in ("", "value")
        scalar = not isinstance(sample, (dict, list)) and not rest
        if head in QBO_NOT_QUERYABLE or not (ref_value or scalar):
            raise CEError(
                400,
                f"Invalid query - QueryValidationError: property '{_pascal(path)}' is not queryable",
                provider_message=f"QueryValidationError: property '{_pascal(path)}' is not queryable",
            )
