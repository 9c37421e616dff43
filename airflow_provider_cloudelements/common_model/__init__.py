"""Common-resource models: common resources with typed fields and their per-element mappings.

Common-resource models: declared common resources with typed fields and, per element, the vendor resource and field
mapping (reference §10; devportal ``docs/guides/common-resources/*``).

A model is data (JSON, see ``finance.json`` for the built-in finance model, documented in
``docs/common-model.md``)::

    {"name": "finance", "version": "1.0.0", "updated_field": "updated_at", "active_field": "active",
     "resources": {"common-invoices": {
         "description": "...",
         "fields": [{"path": "id", "type": "string", "description": "..."}, ...],
         "mappings": {"quickbooks": {"resource": "invoices",
                                     "fields": {"id": "id", "issue_date": {"vendorPath": "txnDate",
                                                                            "vendorType": "yyyy-MM-dd"}},
                                     "script": [{"op": "map", ...}]}}}}}

:func:`load_model` parses and validates it **without any network call** against the element catalog
(``utils/elements.py``) and the vendor field catalog ``vendor_fields.json`` (every field path of the
element's objects with its JSON type, ``[*]`` for array items; the fields the emulator serves, built
from the vendor documents and test assets — a guard test keeps both in step). Problems raise
:class:`~airflow_provider_cloudelements.exceptions.CloudElementsModelError` naming the resource,
element and field.

:meth:`CommonResource.definition_body` / :meth:`CommonResource.transformation_body` give the Cloud
Elements request bodies; :func:`resolve_common` answers "is this resource name a common resource, and
which field is its updated / id / active field" for the extract operators.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

from airflow_provider_cloudelements.catalog import VENDOR_OBJECT_NAMES
from airflow_provider_cloudelements.exceptions import CloudElementsModelError
from airflow_provider_cloudelements.utils.elements import ELEMENTS, ElementSpec, get_element

COMMON_TYPES: tuple[str, ...] = ("string", "number", "boolean", "date")
#: Common type → vendor JSON types the element can convert from (reference §10.3: CE converts, e.g. a
#: vendor string to a date). Objects and arrays convert to nothing scalar.
CONVERTIBLE: dict[str, frozenset[str]] = {
    "string": frozenset({"string", "number", "boolean", "date"}),
    "number": frozenset({"number", "string"}),
    "boolean": frozenset({"boolean", "string", "number"}),
    "date": frozenset({"date", "string", "number"}),
}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]*$")
_PATH_RE = re.compile(r"^[A-Za-z_][\w\-]*(\[(\d+|\*)\])?(\.[A-Za-z_@$][\w\-]*(\[(\d+|\*)\])?)*$")
_VENDOR_SEGMENT = re.compile(r"\[(\d+|\?\([^)]*\))\]")
SCRIPT_OPS = frozenset({"set", "default", "remove", "copy", "concat", "sum", "map", "extend"})
BUILTIN_MODELS = {"finance": "finance.json"}
#: Common resources of every model loaded in this process (besides the built-in ones), by name.
_REGISTERED: dict[str, CommonResource] = {}


@dataclass(frozen=True)
class CommonField:
    """One typed field of a common resource (``path`` in dot notation, ``lines[*].amount`` for array items)."""

    path: str
    type: str
    description: str = ""


@dataclass(frozen=True)
class FieldMapping:
    """Common ``path`` ← vendor ``vendor_path`` (with a date mask in ``vendor_type`` when needed)."""

    path: str
    vendor_path: str
    vendor_type: str | None = None


@dataclass(frozen=True)
class ElementMapping:
    """How one element serves a common resource: its hub ``resource``, field mappings and script steps."""

    element: str
    resource: str
    fields: tuple[FieldMapping, ...]
    script: tuple[dict[str, Any], ...] = ()

    @property
    def vendor_name(self) -> str:
        """The element's own object name (``ReceivePayment``, ``Invoice``, ``client`` …), the ``vendorName``."""
        return VENDOR_OBJECT_NAMES.get(self.element, {}).get(self.resource, self.resource)


@dataclass(frozen=True)
class CommonResource:
    """A common resource: typed fields plus one mapping per element."""

    name: str
    fields: tuple[CommonField, ...]
    mappings: dict[str, ElementMapping]
    description: str = ""
    id_field: str = "id"
    updated_field: str = "updated_at"
    active_field: str | None = "active"

    def field_type(self, path: str) -> str | None:
        generic = re.sub(r"\[\d+\]", "[*]", path)
        return next((f.type for f in self.fields if f.path == generic), None)

    def definition_body(self) -> dict[str, Any]:
        """``{"fields": [{"path", "type"}]}`` for ``POST …/objects/{name}/definitions``."""
        return {"fields": [{"path": f.path, "type": f.type} for f in self.fields]}

    def transformation_body(self, element: str) -> dict[str, Any]:
        """``{"vendorName", "fields": [{"path", "vendorPath", "type", "vendorType"?}], "script"?}``."""
        mapping = self.mappings[element]
        fields = []
        for fm in mapping.fields:
            item: dict[str, Any] = {"path": fm.path, "vendorPath": fm.vendor_path, "type": self.field_type(fm.path)}
            if fm.vendor_type:
                item["vendorType"] = fm.vendor_type
            fields.append(item)
        body: dict[str, Any] = {"vendorName": mapping.vendor_name, "fields": fields}
        if mapping.script:
            body["script"] = {"steps": [dict(s) for s in mapping.script]}
        return body


@dataclass(frozen=True)
class CommonModel:
    """A versioned set of common resources."""

    name: str
    version: str
    resources: dict[str, CommonResource] = field(default_factory=dict)
    description: str = ""

    def elements(self) -> list[str]:
        """Every element key the model maps (sorted)."""
        return sorted({e for r in self.resources.values() for e in r.mappings})


@cache
def vendor_fields() -> dict[str, dict[str, dict[str, str]]]:
    """``{element: {resource: {vendorPath: json type}}}`` (the shipped vendor field catalog)."""
    text = importlib_resources.files(__package__).joinpath("vendor_fields.json").read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def _err(message: str, resource: str | None = None, element: str | None = None, fld: str | None = None) -> None:
    raise CloudElementsModelError(message, resource=resource, element=element, field=fld)


def _vendor_type(element: str, resource: str, vendor_path: str) -> str | None:
    """JSON type of a vendor path in the catalog (indexes / filters read as ``[*]``), ``None`` if unknown."""
    generic = _VENDOR_SEGMENT.sub("[*]", vendor_path)
    return vendor_fields().get(element, {}).get(resource, {}).get(generic)


def _fields(name: str, raw: Any) -> tuple[CommonField, ...]:
    if not isinstance(raw, list) or not raw:
        _err(f"Common resource {name!r} needs a non-empty 'fields' list", name)
    out: list[CommonField] = []
    seen: set[str] = set()
    for i, f in enumerate(raw):
        path = f.get("path") if isinstance(f, dict) else None
        if not isinstance(path, str) or not _PATH_RE.match(path):
            _err(f"Common resource {name!r}: field #{i} has an invalid path {path!r}", name, fld=str(path))
        assert isinstance(path, str)
        if path in seen:
            _err(f"Common resource {name!r}: duplicate field {path!r}", name, fld=path)
        seen.add(path)
        ftype = f.get("type")
        if ftype not in COMMON_TYPES:
            _err(
                f"Common resource {name!r}: field {path!r} has type {ftype!r}; use one of {', '.join(COMMON_TYPES)}",
                name,
                fld=path,
            )
        out.append(CommonField(path, str(ftype), str(f.get("description") or "")))
    return tuple(out)


def _mapping(res: CommonResource, element: str, raw: Any) -> ElementMapping:
    name = res.name
    if element not in ELEMENTS:
        _err(
            f"Common resource {name!r}: unknown element {element!r} (known: {', '.join(sorted(ELEMENTS))})",
            name,
            element,
        )
    if not isinstance(raw, dict) or not isinstance(raw.get("fields"), dict) or not raw["fields"]:
        _err(f"Common resource {name!r}: mapping for {element!r} needs 'resource' and a 'fields' object", name, element)
    resource = raw.get("resource")
    spec = ELEMENTS[element]
    if resource not in spec.all_resources:
        _err(
            f"Common resource {name!r}: element {element!r} has no resource {resource!r} "
            f"(supported: {', '.join(spec.all_resources)})",
            name,
            element,
            str(resource),
        )
    assert isinstance(resource, str)
    catalog = vendor_fields().get(element, {}).get(resource)
    out: list[FieldMapping] = []
    for path, target in raw["fields"].items():
        vendor_path, vendor_type = (
            (target, None)
            if isinstance(target, str)
            else ((target.get("vendorPath"), target.get("vendorType")) if isinstance(target, dict) else (None, None))
        )
        ctype = res.field_type(path)
        if ctype is None:
            _err(
                f"Common resource {name!r}: {element!r} maps {path!r}, which is not a field of the resource",
                name,
                element,
                path,
            )
        if not isinstance(vendor_path, str) or not vendor_path:
            _err(f"Common resource {name!r}: {element!r} field {path!r} needs a vendorPath", name, element, path)
        assert isinstance(vendor_path, str) and ctype is not None
        if catalog is not None:
            vtype = _vendor_type(element, resource, vendor_path)
            if vtype is None:
                _err(
                    f"Common resource {name!r}: {element!r} {resource} has no field {vendor_path!r} (for {path!r})",
                    name,
                    element,
                    vendor_path,
                )
            if vtype not in CONVERTIBLE[ctype]:
                _err(
                    f"Common resource {name!r}: {element!r} cannot convert {resource}.{vendor_path} ({vtype}) "
                    f"to {ctype} (field {path!r})",
                    name,
                    element,
                    path,
                )
        if ("[*]" in path) != ("[*]" in vendor_path):
            _err(
                f"Common resource {name!r}: {element!r} field {path!r}: [*] must appear on both sides",
                name,
                element,
                path,
            )
        out.append(FieldMapping(path, vendor_path, vendor_type))
    script = raw.get("script") or []
    if not isinstance(script, list) or any(
        not isinstance(s, dict) or s.get("op") not in SCRIPT_OPS or not s.get("path") for s in script
    ):
        _err(
            f"Common resource {name!r}: {element!r} script steps need 'path' and 'op' "
            f"({', '.join(sorted(SCRIPT_OPS))})",
            name,
            element,
        )
    for step in script:
        if (
            catalog is not None
            and step.get("fromVendor")
            and _vendor_type(element, resource, step["fromVendor"]) is None
        ):
            _err(
                f"Common resource {name!r}: {element!r} {resource} has no field {step['fromVendor']!r} (script)",
                name,
                element,
                str(step["fromVendor"]),
            )
        if res.field_type(str(step["path"])) is None and not any(
            f.path.startswith(str(step["path"]) + "[") for f in res.fields
        ):
            _err(
                f"Common resource {name!r}: {element!r} script writes {step['path']!r}, not a field",
                name,
                element,
                str(step["path"]),
            )
    return ElementMapping(element, resource, tuple(out), tuple(dict(s) for s in script))


def load_model(source: CommonModel | dict[str, Any] | str | Path) -> CommonModel:
    """Load and validate a common-resource model.

    A validated :class:`CommonModel` from a model object, a dict, a built-in name (``"finance"``) or a JSON file path.

    :raises CloudElementsModelError: unknown element or vendor resource, unknown vendor field, a type
        the element cannot convert, a duplicate / unmapped / badly typed field, a bad name — before any call.
    """
    if isinstance(source, CommonModel):
        return source
    if isinstance(source, (str, Path)):
        if str(source) in BUILTIN_MODELS:
            text = importlib_resources.files(__package__).joinpath(BUILTIN_MODELS[str(source)]).read_text("utf-8")
        else:
            path = Path(source)
            if not path.is_file():
                _err(f"No built-in model or JSON file {str(source)!r} (built-in: {', '.join(BUILTIN_MODELS)})")
            text = path.read_text(encoding="utf-8")
        try:
            source = json.loads(text)
        except ValueError as exc:
            raise CloudElementsModelError(f"Model {str(source)!r} is not valid JSON: {exc}") from None
    if not isinstance(source, dict) or not isinstance(source.get("resources"), dict) or not source["resources"]:
        _err("A model needs 'name', 'version' and a non-empty 'resources' object")
    assert isinstance(source, dict)
    defaults = {k: source.get(k) for k in ("id_field", "updated_field", "active_field") if k in source}
    resources: dict[str, CommonResource] = {}
    for name, raw in source["resources"].items():
        if not isinstance(name, str) or not _NAME_RE.match(name):
            _err(f"Invalid common resource name {name!r} (letters, digits, '-', '_')", str(name))
        if any(name in spec.all_resources for spec in ELEMENTS.values()):
            _err(
                f"Common resource name {name!r} is an element resource name; pick another (e.g. 'common-{name}')", name
            )
        if not isinstance(raw, dict):
            _err(f"Common resource {name!r} must be an object", name)
        opts = {**defaults, **{k: raw[k] for k in ("id_field", "updated_field", "active_field") if k in raw}}
        res = CommonResource(name, _fields(name, raw.get("fields")), {}, str(raw.get("description") or ""), **opts)
        for key in ("id_field", "updated_field", "active_field"):
            value = getattr(res, key)
            if value is not None and res.field_type(value) is None:
                _err(f"Common resource {name!r}: {key} {value!r} is not one of its fields", name, fld=str(value))
        if res.field_type(res.updated_field) != "date":
            _err(
                f"Common resource {name!r}: updated field {res.updated_field!r} must be typed date",
                name,
                fld=res.updated_field,
            )
        mappings = raw.get("mappings")
        if not isinstance(mappings, dict) or not mappings:
            _err(f"Common resource {name!r} needs 'mappings' per element", name)
        assert isinstance(mappings, dict)
        for element, mraw in mappings.items():
            res.mappings[element] = _mapping(res, element, mraw)
        resources[name] = res
    _REGISTERED.update(resources)
    return CommonModel(
        str(source.get("name") or "model"),
        str(source.get("version") or "0"),
        resources,
        str(source.get("description") or ""),
    )


@cache
def finance_model() -> CommonModel:
    """The built-in, versioned finance common model (``finance.json``, docs/common-model.md)."""
    return load_model("finance")


def resolve_common(resource: str, model: CommonModel | None = None) -> CommonResource | None:
    """Return the common resource named ``resource``, or ``None`` for an element resource.

    The common resource named ``resource`` in ``model`` (default: the built-in finance model), or ``None`` when
    ``resource`` is not a common resource (then it is an element resource).
    """
    return (model or finance_model()).resources.get(resource)


def is_common_resource(name: str, element_key: str | None = None) -> bool:
    """Whether ``name`` is a known common resource (mapped by ``element_key`` when given).

    Whether ``name`` is a common resource of the built-in model or of a model loaded in this process
    (:func:`load_model`) — that maps ``element_key`` when given; resource checks (``utils.elements.check_resource``)
    accept those names.
    """
    found = _REGISTERED.get(name) or finance_model().resources.get(name)
    return found is not None and (element_key is None or element_key in found.mappings)


def _registered_resource(name: str) -> CommonResource | None:
    return _REGISTERED.get(name)


def spec_for(element_key: str, resource: str) -> ElementSpec:
    """Return the record conventions (an ``ElementSpec``) for ``resource`` on ``element_key``.

    The record conventions for ``resource`` on ``element_key``: the element's
    :class:`~airflow_provider_cloudelements.utils.elements.ElementSpec`, or, for a common resource, the same spec with
    the common fields — updated field ``updated_at`` (ISO-8601 UTC), id ``id``, soft delete ``active == false``, no
    version field. CEQL date literals keep the element's format (the service translates the common field to the vendor
    one, reference §10.4).

    :raises CloudElementsConfigError: unknown element key.
    """
    spec = get_element(element_key)
    common = resolve_common(resource, None) if resource not in spec.all_resources else None
    if common is None:
        common = _registered_resource(resource)
    if common is None or resource in spec.all_resources:
        return spec
    return dataclasses.replace(
        spec,
        updated_field=common.updated_field,
        id_fields=(common.id_field,),
        soft_delete_field=common.active_field,
        version_field=None,
        naive_timezone="UTC",
        all_resources=(*spec.all_resources, resource),
    )


def vendor_resource_for(element_key: str, resource: str) -> str:
    """Return the element resource behind ``resource``.

    The element resource behind ``resource`` (itself unless it is a common resource the element maps): events
    (``objectType``) and tombstones are recorded under the vendor resource (reference §10.4).
    """
    common = _registered_resource(resource) or resolve_common(resource, None)
    if common is None or element_key not in common.mappings:
        return resource
    return common.mappings[element_key].resource
