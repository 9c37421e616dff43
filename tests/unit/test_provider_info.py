"""The provider info lists exactly the package's public components and connection fields.

``get_provider_info`` must name every public hook, operator, sensor, trigger and extra link of the
package (found by walking it with :mod:`pkgutil` and :mod:`inspect`, so a module that moves is
followed) and nothing else, and Airflow's ProvidersManager must read it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import pkgutil
from typing import Any

import pytest

import airflow_provider_cloudelements as pkg
from airflow_provider_cloudelements.get_provider_info import CONN_FIELDS, get_provider_info

# role -> (provider-info key, base class import path)
ROLES = {
    "hooks": ("airflow.sdk", "BaseHook"),
    "operators": ("airflow.sdk", "BaseOperator"),
    "sensors": ("airflow.sdk", "BaseSensorOperator"),
    "triggers": ("airflow.triggers.base", "BaseTrigger"),
    "extra-links": ("airflow.sdk", "BaseOperatorLink"),
}


def _base(role: str) -> type:
    module, name = ROLES[role]
    return getattr(importlib.import_module(module), name)


def _role_of(cls: type) -> str | None:
    # a sensor is also a BaseOperator: test the most specific role first
    for role in ("sensors", "operators", "hooks", "triggers", "extra-links"):
        if issubclass(cls, _base(role)):
            return role
    return None


@functools.cache
def public_classes() -> dict[str, dict[str, str]]:
    """Map each role to ``{"module.Class": module}`` for every public class the package defines.

    A class counts where it is defined (``cls.__module__``), not where it is re-exported, so a module
    kept only as an import alias of a moved one lists nothing.
    """
    found: dict[str, dict[str, str]] = {role: {} for role in ROLES}
    for info in pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}."):
        module = importlib.import_module(info.name)
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if name.startswith("_") or cls.__module__ != module.__name__:
                continue
            role = _role_of(cls)
            if role is not None:
                found[role][f"{module.__name__}.{name}"] = module.__name__
    return found


def listed_module_list(info: dict[str, Any], role: str) -> list[str]:
    """Modules the provider info names for ``role``, in order (duplicates kept).

    Operators may be listed under ``operators`` or, for modules moving data between systems
    (Airflow's ``transfers/`` convention), as ``transfers[].python-module``.
    """
    modules = [m for entry in info.get(role, []) for m in entry["python-modules"]]
    if role == "operators":
        modules += [entry["python-module"] for entry in info.get("transfers", [])]
    return modules


def listed_modules(info: dict[str, Any], role: str) -> set[str]:
    return set(listed_module_list(info, role))


def test_every_public_component_is_listed() -> None:
    info = get_provider_info()
    classes = public_classes()
    missing: list[str] = []
    for role, by_class in classes.items():
        if role == "extra-links":
            listed = set(info.get("extra-links", []))
            missing += [f'add "{path}" to "extra-links"' for path in sorted(by_class) if path not in listed]
            continue
        listed = listed_modules(info, role)
        for path, module in sorted(by_class.items()):
            if module not in listed:
                missing.append(f'add "{module}" to "{role}"[0]["python-modules"] (it defines {path.rsplit(".", 1)[1]})')
    assert not missing, "airflow_provider_cloudelements/get_provider_info.py is incomplete:\n  " + "\n  ".join(
        sorted(set(missing))
    )
    # the operators found by the walk include the ones the issue named as missing
    assert (
        f"{pkg.__name__}.transfers.cloudelements_to_storage.changes.CloudElementsChangedRecordsOperator"
        in classes["operators"]
    )


def test_no_stale_entries() -> None:
    """Every listed module imports and defines a component of its role; every link path resolves."""
    info = get_provider_info()
    classes = public_classes()
    for role in ("hooks", "operators", "sensors", "triggers"):
        defining = set(classes[role].values())
        for module in listed_modules(info, role):
            importlib.import_module(module)
            assert module in defining, f'"{module}" is listed under "{role}" but defines no public {role[:-1]} class'
    for path in info["extra-links"]:
        module, _, name = path.rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), name), _base("extra-links")), path


def test_lists_exactly_the_package_components() -> None:
    """Modules per role and extra links equal what the package walk finds (no more, no less, no duplicates)."""
    info = get_provider_info()
    classes = public_classes()
    for role in ("hooks", "operators", "sensors", "triggers"):
        listed = listed_module_list(info, role)
        assert len(listed) == len(set(listed)), f'"{role}" lists a module twice: {sorted(listed)}'
        assert set(listed) == set(classes[role].values()), role
    links = info.get("extra-links", [])
    assert len(links) == len(set(links))
    assert set(links) == set(classes["extra-links"])
    # every role is non-empty: a walk that finds nothing (e.g. a broken import path) must not pass
    assert all(classes[role] for role in ROLES), {role: len(found) for role, found in classes.items()}


def test_operator_extra_links_are_declared() -> None:
    """Every link an operator shows in the UI is one the provider info declares."""
    declared = set(get_provider_info()["extra-links"])
    for path in public_classes()["operators"] | public_classes()["sensors"]:
        module, _, name = path.rpartition(".")
        operator = getattr(importlib.import_module(module), name)
        for link in getattr(operator, "operator_extra_links", ()) or ():
            cls = type(link)
            assert f"{cls.__module__}.{cls.__qualname__}" in declared, f"{path} shows undeclared link {cls.__name__}"


def test_connection_type_has_display_name_and_hook() -> None:
    from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook

    (conn_type,) = get_provider_info()["connection-types"]
    assert conn_type["hook-name"] == "Cloud Elements" == CloudElementsHook.hook_name
    assert conn_type["connection-type"] == CloudElementsHook.conn_type
    module, _, name = conn_type["hook-class-name"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is CloudElementsHook


def test_every_connection_setting_is_in_the_form_with_help_text() -> None:
    """Every extra the hook reads (``CloudElementsSettings`` minus the Host field) is a form field with
    a label and a description, and its advertised default is the hook's default."""
    from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsSettings

    settings = {f.name: f for f in dataclasses.fields(CloudElementsSettings) if f.name != "base_url"}
    assert set(CONN_FIELDS) == set(settings), "conn-fields and CloudElementsSettings disagree"
    for name, spec in CONN_FIELDS.items():
        assert spec.get("label"), name
        assert len(spec.get("description", "")) > 20, f"{name} has no help text"
        default = spec["schema"].get("default")
        if default is not None:
            assert default == settings[name].default, f"{name}: form says {default}, hook uses {settings[name].default}"
    for secret in ("user_secret", "organization_secret", "element_token"):
        assert CONN_FIELDS[secret]["schema"]["format"] == "password"
    assert {"max_requests_per_minute", "max_concurrent_requests"} <= set(CONN_FIELDS)


def test_providers_manager_reads_it() -> None:
    """Airflow itself (schema validation, hook display name, form fields) accepts the provider info."""
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-cloudelements" in manager.providers
    hook = manager.hooks.get("cloudelements")
    assert hook is not None and hook.hook_name == "Cloud Elements"
    fields = getattr(manager, "connection_form_widgets", {})
    if not fields:  # Airflow < 3.2 reads the form from the hook methods instead
        pytest.skip("this Airflow has no provider-declared connection forms")
    assert any(key.endswith("max_requests_per_minute") for key in fields)
