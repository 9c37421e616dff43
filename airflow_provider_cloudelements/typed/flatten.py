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

from collections.abc import Callable
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


# --------------------------------------------------------------------------------------------------
# Compiled flatteners: one generated function per record shape (keys, nesting and value types)
# --------------------------------------------------------------------------------------------------

_SCALARS = (str, int, float, bool)


def _compile(sample: dict[str, Any], with_arrays: bool) -> Callable[..., dict[str, Any] | None]:
    """Generate the flattener of ``sample``'s exact shape.

    The generated function returns what :func:`flatten` returns for any record of that shape (same keys
    at every level, same value types, same empty/non-empty containers) and ``None`` for any other
    record, checking as it goes (no recursion, no path strings built).
    """
    lines: list[str] = []
    out: list[tuple[str, str]] = []
    counter = iter(range(1_000_000))

    def shape(var: str, obj: dict[str, Any], prefix: str, indent: str) -> None:
        lines.append(f"{indent}if type({var}) is not dict or len({var}) != {len(obj)}: return None")
        for key, value in obj.items():
            name = f"v{next(counter)}"
            path = f"{prefix}{key}"
            lines.append(f"{indent}{name} = {var}[{key!r}]")
            kind = type(value)
            if kind is dict:
                if value:
                    shape(name, value, f"{path}.", indent)
                else:
                    lines.append(f"{indent}if type({name}) is not dict or {name}: return None")
            elif kind is list:
                if not value:
                    lines.append(f"{indent}if type({name}) is not list or {name}: return None")
                    continue
                objects = with_arrays and all(type(item) is dict for item in value)
                test = "not _alldicts" if objects else "_alldicts"
                lines.append(f"{indent}if type({name}) is not list or not {name}: return None")
                if with_arrays:
                    lines.append(f"{indent}if {test}({name}): return None")
                if objects:
                    lines.append(f"{indent}arrays[{path!r}] = {name}")
                else:
                    out.append((path, f"_dumps({name})"))
            elif value is None:
                lines.append(f"{indent}if {name} is not None: return None")
            elif kind in _SCALARS:
                lines.append(f"{indent}if type({name}) is not {kind.__name__}: return None")
                out.append((path, name))
            else:  # pragma: no cover - JSON parsers give only these types
                raise TypeError(f"unexpected {kind.__name__} at {path}")

    shape("r", sample, "", "        ")
    body = "\n".join(lines)
    result = ", ".join(f"{path!r}: {expr}" for path, expr in out)
    # a missing key raises KeyError: with the length checks, that proves the key sets equal
    source = (
        f"def _flat(r, arrays):\n    try:\n{body}\n    except KeyError:\n        return None\n    return {{{result}}}\n"
    )
    namespace: dict[str, Any] = {
        "_dumps": jsonfast.dumps,
        "_alldicts": lambda items: all(type(item) is dict for item in items),
        "dict": dict,
        "list": list,
        "str": str,
        "int": int,
        "float": float,
        "bool": bool,
    }
    exec(compile(source, "<typed flattener>", "exec"), namespace)  # keys and paths enter the source via repr()
    return namespace["_flat"]  # type: ignore[no-any-return]


class Flattener:
    """:func:`flatten` with a compiled function per record shape (a resource's records have few shapes).

    Calling it returns ``(flat, shape)``: the same ``flat`` as :func:`flatten` and a hashable shape key
    (paths and value types, as the projection's type scan uses). A record of a new shape goes through
    :func:`flatten` once and compiles its shape's function; after ``max_shapes`` shapes, new shapes are
    flattened generically.

    :param with_arrays: ``True`` for records (arrays of objects go to ``arrays``), ``False`` for child
        items (kept as JSON text).
    """

    def __init__(self, *, with_arrays: bool, max_shapes: int = 64) -> None:
        self.with_arrays = with_arrays
        self.max_shapes = max_shapes
        self.shapes: list[tuple[Callable[..., dict[str, Any] | None], tuple[Any, ...]]] = []

    def __call__(
        self, record: dict[str, Any], arrays: dict[str, list[dict[str, Any]]] | None = None
    ) -> tuple[dict[str, Any], tuple[Any, ...]]:
        shapes = self.shapes
        for index, (function, key) in enumerate(shapes):
            flat = function(record, arrays)
            if flat is not None:
                if index > 2:  # keep the frequent shapes in front
                    shapes.insert(0, shapes.pop(index))
                return flat, key
            if arrays:
                arrays.clear()
        flat = flatten(record, arrays=arrays if self.with_arrays else None)
        key = (*flat, *map(type, flat.values()))
        if len(shapes) < self.max_shapes:
            shapes.append((_compile(record, self.with_arrays), key))
        return flat, key
