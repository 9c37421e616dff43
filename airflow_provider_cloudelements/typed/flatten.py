"""Flattening one record into scalar fields and arrays of objects (pure, hot path).

``{"customerRef": {"value": "58"}, "line": [{"amount": 5}], "tags": ["a"]}`` gives the scalars
``{"customerRef.value": "58", "tags": '["a"]'}`` and the arrays ``{"line": [{"amount": 5}]}``:

- a nested object contributes its keys under ``<path>.`` (an empty object contributes nothing);
- a non-empty array whose items are all objects is an *array of objects*: at the top level of a
  record it becomes a child table (one row per item, keyed by its position, 0-based); inside a child
  item it is kept as JSON text (one level of child tables);
- any other array (scalars, mixed, nested arrays) is kept as its compact JSON text; an empty array
  contributes nothing (the raw table keeps the record verbatim either way).

Dotted paths are the same as the ``vendorPath`` of object metadata; column names are derived from
them by :func:`airflow_provider_cloudelements.typed.schema.column_name`.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_cloudelements.utils import jsonfast


def flatten(record: dict[str, Any], *, arrays: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    """Flatten ``record`` (see the module docstring).

    :param arrays: when given, arrays of objects are put there (``{path: items}``) instead of being
        kept as JSON text.
    :returns: ``{dotted path: scalar value (bool, int, float, str)}``; ``None`` values are left out.
    """
    out: dict[str, Any] = {}
    _walk(record, "", out, arrays)
    return out


def _walk(obj: dict[str, Any], prefix: str, out: dict[str, Any], arrays: dict[str, list[Any]] | None) -> None:
    for key, value in obj.items():
        kind = type(value)
        if kind is dict:
            if value:
                _walk(value, f"{prefix}{key}.", out, arrays)
        elif kind is list:
            if not value:
                continue
            if arrays is not None and all(type(item) is dict for item in value):
                arrays[f"{prefix}{key}"] = value
            else:
                out[f"{prefix}{key}"] = jsonfast.dumps(value)
        elif value is not None:
            out[f"{prefix}{key}"] = value
