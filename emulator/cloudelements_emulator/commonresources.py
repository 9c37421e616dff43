"""Common-resource definitions and transformations at organization, account and instance level.

Common-resource definitions and transformations at organization, account and instance level (reference §10.1-§10.4;
devportal ``docs/guides/common-resources/index.md``, ``createapi.md``, ``mappingapi.md``,
``_includes/transformations.md``).

* **Definitions** ``{"fields": [{"path", "type"}]}`` per ``(level, scope, objectName)``; POST of an
  existing one → 409, GET/DELETE of an unknown one → 404, PUT replaces (or creates).
* **Transformations** ``{"vendorName", "fields": [{"path", "vendorPath", "type", "vendorType"}],
  "script"?}`` per ``(level, scope, element, objectName)``: organization and account level are keyed
  by element, instance level by instance. Same 409/404/PUT rules. ``vendorName`` is the element's own
  object name (QBE ``ReceivePayment``, QBO ``Invoice``, FreshBooks ``client``; see
  ``airflow_provider_cloudelements.catalog.VENDOR_OBJECT_NAMES``) or the hub resource name.
* **Resolution** for an instance and a name: the instance-level transformation, else the account-level
  one for the instance's element, else the organization-level one (the most specific level wins).
  ``transformationsEnabled: false`` on the instance turns all of them off; ``defaultTransformations:
  false`` keeps only the instance level. The definition is resolved the same way and supplies field
  types (and, for a common resource, limits the fields returned).
* The emulator has a single account, :data:`ACCOUNT_ID` (``/accounts/objects/...`` addresses it too);
  other account ids → 404. State is in memory (lost on restart), like the instance-level subset before.

Mapping rules are in :mod:`.transform` (compiled transformations, unmapped fields), :mod:`.transform_paths`,
:mod:`.transform_types` (types, date masks) and :mod:`.transform_script` (the declarative script).
"""

from __future__ import annotations

import threading
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from airflow_provider_cloudelements.catalog import VENDOR_OBJECT_NAMES
from cloudelements_emulator import timefmt
from cloudelements_emulator.ceql import field_path
from cloudelements_emulator.elements import ElementDef, find_element
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.instances import InstanceService
from cloudelements_emulator.transform import Mapping, validate
from cloudelements_emulator.transform_types import TYPES, format_date

ACCOUNT_ID = 1
"""Id of the emulator's one account (the organization's default account)."""
LEVELS = ("organization", "account", "instance")

DefKey = tuple[str, int, str]
TransKey = tuple[str, int, str, str]


def _definition_body(body: Any, name: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("fields"), list):
        raise CEError(400, f"The object definition '{name}' needs a 'fields' list of {{path, type}}")
    seen: set[str] = set()
    for f in body["fields"]:
        if not isinstance(f, dict) or not f.get("path"):
            raise CEError(400, f"Every field of the object definition '{name}' needs a 'path'")
        if f["path"] in seen:
            raise CEError(400, f"Duplicate field path '{f['path']}' in the object definition '{name}'")
        seen.add(f["path"])
        if f.get("type") not in (None, *TYPES, "object", "array"):
            raise CEError(400, f"Unknown type {f['type']!r} for field '{f['path']}' of '{name}'")
    return {"fields": body["fields"]}


def vendor_resource(element: ElementDef, vendor_name: str) -> str | None:
    """The hub resource of a transformation's ``vendorName`` (object name or resource name), or ``None``."""
    resolved = element.resolve(vendor_name)
    if resolved in element.resources:
        return resolved
    for resource, obj in VENDOR_OBJECT_NAMES.get(element.key, {}).items():
        if obj.lower() == vendor_name.lower() and resource in element.resources:
            return resource
    return None


class CommonResources:
    """All definitions and transformations; thread-safe."""

    def __init__(self, instances: InstanceService) -> None:
        self.instances = instances
        self.lock = threading.RLock()
        self.definitions: dict[DefKey, dict[str, Any]] = {}
        self.transformations: dict[TransKey, dict[str, Any]] = {}
        self._compiled: dict[tuple[int, str, bool], tuple[int, Mapping | None]] = {}
        self._version = 0

    # ------------------------------------------------------------ scopes
    def scope(self, level: str, scope_id: int | None) -> int:
        """Validated scope id: 0 for the organization. :raises CEError: 404 unknown account / instance."""
        if level == "organization":
            return 0
        if level == "account":
            if scope_id not in (None, ACCOUNT_ID):
                raise CEError(404, f"No account found with id {scope_id}")
            return ACCOUNT_ID
        return int(self.instances.get(int(scope_id or 0))["id"])

    def element_key(self, level: str, scope: int, key_or_id: str | None) -> str:
        """The element of a transformation key. :raises CEError: 404 unknown element."""
        if level == "instance":
            return str(self.instances.get(scope)["element"]["key"])
        element = find_element(str(key_or_id))
        if element is None:
            raise CEError(404, f"No element found with key or id '{key_or_id}'")
        return element.key

    def _bump(self) -> None:
        self._version += 1

    # ------------------------------------------------------------ definitions
    def define(self, level: str, scope: int, name: str, body: Any, replace: bool = False) -> dict[str, Any]:
        """Create (``replace``: or replace) one definition. :raises CEError: 400 bad body, 409 exists."""
        stored = {**_definition_body(body, name), "level": level}
        with self.lock:
            key = (level, scope, name)
            if key in self.definitions and not replace:
                raise CEError(409, f"Object definition '{name}' already exists at {level} level")
            self.definitions[key] = stored
            self._bump()
        return stored

    def define_many(self, level: str, scope: int, body: Any) -> dict[str, Any]:
        """``{"<name>": {"fields": [...]}, ...}`` at once, all or nothing (409 if any exists)."""
        if not isinstance(body, dict) or not body:
            raise CEError(400, "Expected {'<objectName>': {'fields': [...]}, ...}")
        checked = {name: _definition_body(value, name) for name, value in body.items()}
        with self.lock:
            taken = [n for n in checked if (level, scope, n) in self.definitions]
            if taken:
                raise CEError(409, f"Object definition(s) already exist at {level} level: {', '.join(taken)}")
            out = {}
            for name, value in checked.items():
                out[name] = self.definitions[(level, scope, name)] = {**value, "level": level}
            self._bump()
        return out

    def definition(self, level: str, scope: int, name: str) -> dict[str, Any]:
        """:raises CEError: 404 when absent."""
        found = self.definitions.get((level, scope, name))
        if found is None:
            raise CEError(404, f"No object definition '{name}' at {level} level")
        return found

    def list_definitions(self, level: str, scope: int) -> dict[str, Any]:
        with self.lock:
            return {n: d for (lv, s, n), d in sorted(self.definitions.items()) if lv == level and s == scope}

    def drop_definitions(self, level: str, scope: int, name: str | None = None) -> None:
        """Delete one (404 when absent) or all definitions of the scope."""
        with self.lock:
            if name is not None:
                self.definition(level, scope, name)
            for key in [k for k in self.definitions if k[:2] == (level, scope) and name in (None, k[2])]:
                del self.definitions[key]
            self._bump()

    # ------------------------------------------------------------ transformations
    def transform(
        self, level: str, scope: int, element_key: str, name: str, body: Any, replace: bool = False
    ) -> dict[str, Any]:
        """Create (``replace``: or replace) one transformation.

        :raises CEError: 400 bad body or a ``vendorName`` the element does not have, 409 exists.
        """
        stored = {**validate(body, name), "level": level}
        element = find_element(element_key)
        assert element is not None
        if vendor_resource(element, str(stored["vendorName"])) is None and vendor_resource(element, name) is None:
            known = ", ".join(VENDOR_OBJECT_NAMES.get(element.key, {}).values())
            raise CEError(400, f"Unknown vendorName '{stored['vendorName']}' for element '{element.key}' ({known})")
        with self.lock:
            key = (level, scope, element_key, name)
            if key in self.transformations and not replace:
                raise CEError(409, f"Transformation '{name}' already exists at {level} level for '{element_key}'")
            self.transformations[key] = stored
            self._bump()
        return stored

    def transformation(self, level: str, scope: int, element_key: str, name: str) -> dict[str, Any]:
        """:raises CEError: 404 when absent."""
        found = self.transformations.get((level, scope, element_key, name))
        if found is None:
            raise CEError(404, f"No transformation '{name}' at {level} level for '{element_key}'")
        return found

    def list_transformations(self, level: str, scope: int, element_key: str | None) -> dict[str, Any]:
        with self.lock:
            return {
                n: t
                for (lv, s, e, n), t in sorted(self.transformations.items())
                if lv == level and s == scope and element_key in (None, e)
            }

    def drop_transformations(self, level: str, scope: int, element_key: str | None, name: str | None = None) -> None:
        """Delete one (404 when absent) or all transformations of the scope (and element)."""
        with self.lock:
            if name is not None and element_key is not None:
                self.transformation(level, scope, element_key, name)
            for key in [
                k
                for k in self.transformations
                if k[:2] == (level, scope) and element_key in (None, k[2]) and name in (None, k[3])
            ]:
                del self.transformations[key]
            self._bump()

    # ------------------------------------------------------------ resolution
    def _levels(self, inst: dict[str, Any]) -> list[tuple[str, int]]:
        if inst.get("defaultTransformations", True) is False:
            return [("instance", int(inst["id"]))]
        return [("instance", int(inst["id"])), ("account", ACCOUNT_ID), ("organization", 0)]

    def effective(self, inst: dict[str, Any], name: str) -> Mapping | None:
        """The transformation that applies to ``name`` on ``inst`` (most specific level), or ``None``."""
        if inst.get("transformationsEnabled", True) is False:
            return None
        cache_key = (int(inst["id"]), name, inst.get("defaultTransformations", True) is not False)
        cached = self._compiled.get(cache_key)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        with self.lock:
            version = self._version
            element = self.instances.element_of(inst)
            levels = self._levels(inst)
            body = next(
                (t for lv, s in levels if (t := self.transformations.get((lv, s, element.key, name))) is not None),
                None,
            )
            mapping: Mapping | None = None
            if body is not None:
                own = element.resolve(name) in element.resources
                resource = (element.resolve(name) if own else None) or vendor_resource(element, str(body["vendorName"]))
                definition = next(
                    (d for lv, s in levels if (d := self.definitions.get((lv, s, name))) is not None), None
                )
                types = {str(f["path"]): f.get("type") for f in definition["fields"]} if definition else None
                if resource is not None:
                    mapping = Mapping(name, body, resource, overlay=own, types=types)
            self._compiled[cache_key] = (version, mapping)
        return mapping


# ---------------------------------------------------------------- CEQL on common field names (§10.4)
def translate_where(mapping: Mapping, element: ElementDef, where: str | None) -> str | None:
    """A ``where`` on common field names as the same expression on the vendor fields.

    Date literals of fields typed ``date`` are converted: fields that are the element's updated /
    created field compare as instants (ISO passes through), other vendor dates are rewritten with the
    field's ``vendorType`` mask.

    :raises CEError: 400 for CEQL that does not parse, unknown or non-queryable common fields.
    """
    if mapping.overlay or where is None or not where.strip():
        return where
    try:
        tree = sqlglot.parse_one(f"SELECT * FROM t WHERE {where}", read="mysql")
    except SqlglotError:
        raise CEError(400, f"Error parsing query: {where}") from None
    node = tree.args.get("where")
    if node is None:
        raise CEError(400, f"Error parsing query: {where}")
    instants = {element.date_field, element.created_field}

    def rewrite(n: exp.Expression) -> exp.Expression:
        if isinstance(n, exp.Binary) and not isinstance(n, exp.Connector):
            col, lit = n.this, n.expression
            if isinstance(col, exp.Column) and isinstance(lit, exp.Literal) and lit.is_string:
                fm = mapping.vendor_field(field_path(col))
                if fm.type == "date" and fm.vendor_path not in instants:
                    ms = timefmt.parse_instant(lit.this)
                    if ms is not None:
                        n.set("expression", exp.Literal.string(str(format_date(ms, fm.vendor_type))))
        if isinstance(n, exp.Column):
            fm = mapping.vendor_field(field_path(n))
            return exp.Column(this=exp.Identifier(this=fm.vendor_path, quoted=True))
        return n

    return node.this.transform(rewrite).sql(dialect="mysql")


def translate_order(mapping: Mapping, order_by: str | None) -> str | None:
    """``orderBy`` on common names → vendor names (``updated_at desc`` → ``TimeModified desc``)."""
    if mapping.overlay or not order_by:
        return order_by
    parts = []
    for part in order_by.split(","):
        words = part.strip().split()
        if words:
            words[0] = mapping.vendor_field(words[0].strip("`")).vendor_path
            parts.append(" ".join(words))
    return ", ".join(parts)
