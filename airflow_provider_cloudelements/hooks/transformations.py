"""Hook methods for common-resource definitions and transformations at every level.

Hook methods for common-resource definitions and transformations at every level (reference §10.2; devportal
``docs/guides/common-resources/createapi.md``, ``mappingapi.md``, ``_includes/transformations.md``).

Mixed into :class:`~airflow_provider_cloudelements.hooks.cloudelements.CloudElementsHook`; every call
goes through the hook's ``_call(method, path, hub=False, ...)`` (platform auth ``User …, Organization
…``, the hook's retry policy and budget). Levels and their paths:

* organization: ``/organizations/objects/{name}/definitions``,
  ``/organizations/elements/{key}/transformations/{name}``;
* account: ``/accounts[/{accountId}]/objects/{name}/definitions``,
  ``/accounts[/{accountId}]/elements/{key}/transformations/{name}``;
* instance: ``/instances/{id}/objects/{name}/definitions``, ``/instances/{id}/transformations/{name}``.

``scope_id`` is the account id (``None``: the caller's own account) or the instance id (required).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import quote

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsNotFoundError
from airflow_provider_cloudelements.utils.elements import ELEMENTS

Level = Literal["organization", "account", "instance"] | str
LEVELS: tuple[str, ...] = ("organization", "account", "instance")


class _Caller(Protocol):
    """What the mixin needs of the hook: its JSON call helper ``_call(method, path, *, hub, ...)``."""

    def _call(
        self,
        method: str,
        path: str,
        *,
        hub: bool,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> Any: ...


def _name(name: str, what: str) -> str:
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise CloudElementsConfigError(f"Invalid {what} name {name!r}")
    return quote(name.strip(), safe="")


def scope_prefix(level: str, scope_id: int | None = None) -> str:
    """``/organizations``, ``/accounts[/{id}]`` or ``/instances/{id}``.

    :raises CloudElementsConfigError: unknown level, instance level without an id, a non-positive id.
    """
    if level not in LEVELS:
        raise CloudElementsConfigError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    if scope_id is not None and (isinstance(scope_id, bool) or not isinstance(scope_id, int) or scope_id < 1):
        raise CloudElementsConfigError(f"scope_id must be a positive integer, got {scope_id!r}")
    if level == "organization":
        return "/organizations"
    if level == "account":
        return "/accounts" if scope_id is None else f"/accounts/{scope_id}"
    if scope_id is None:
        raise CloudElementsConfigError("instance-level definitions/transformations need scope_id (the instance id)")
    return f"/instances/{scope_id}"


def transformations_path(level: str, scope_id: int | None, element_key: str | None) -> str:
    """Collection path of transformations. :raises CloudElementsConfigError: missing/unknown element."""
    prefix = scope_prefix(level, scope_id)
    if level == "instance":
        return prefix + "/transformations"
    if not element_key or element_key not in ELEMENTS:
        raise CloudElementsConfigError(
            f"{level}-level transformations need a known element key, got {element_key!r} "
            f"(known: {', '.join(sorted(ELEMENTS))})"
        )
    return f"{prefix}/elements/{element_key}/transformations"


class CommonResourcesHookMixin:
    """Definitions and transformations at organization, account and instance level (reference §10.2).

    Definitions and transformations (reference §10.2). Answers are the JSON bodies Cloud Elements returns: a definition
    ``{"fields": [{"path", "type"}], "level"}``, a transformation ``{"vendorName", "fields": [{"path", "vendorPath",
    "type"?, "vendorType"?}], "script"?, "level"}``, listings map object name → body.

    :raises CloudElementsNotFoundError: reads/deletes of unknown entries (404).
    :raises CloudElementsConflictError: ``create_*`` of an existing entry (409).
    :raises CloudElementsConfigError: bad level / scope / names, before any call.
    """

    # ------------------------------------------------------------ definitions
    def list_definitions(self: _Caller, level: Level = "organization", scope_id: int | None = None) -> dict[str, Any]:
        """``GET {level}/objects/definitions``: ``{objectName: definition}``."""
        found = self._call("GET", scope_prefix(level, scope_id) + "/objects/definitions", hub=False)
        return dict(found) if isinstance(found, Mapping) else {}

    def get_definition(
        self: _Caller, name: str, level: Level = "organization", scope_id: int | None = None
    ) -> dict[str, Any] | None:
        """``GET {level}/objects/{name}/definitions``; ``None`` when there is none (404)."""
        path = f"{scope_prefix(level, scope_id)}/objects/{_name(name, 'object')}/definitions"
        try:
            found = self._call("GET", path, hub=False)
        except CloudElementsNotFoundError:
            return None
        return dict(found) if isinstance(found, Mapping) else None

    def create_definition(
        self: _Caller,
        name: str,
        fields: Sequence[Mapping[str, Any]],
        level: Level = "organization",
        scope_id: int | None = None,
        *,
        replace: bool = False,
    ) -> dict[str, Any]:
        """``POST`` (409 when it exists) or, with ``replace``, ``PUT {level}/objects/{name}/definitions``.

        :param fields: ``[{"path": "address.city", "type": "string"}, …]``.
        """
        path = f"{scope_prefix(level, scope_id)}/objects/{_name(name, 'object')}/definitions"
        body = {"fields": [dict(f) for f in fields]}
        found = self._call("PUT" if replace else "POST", path, hub=False, json_body=body, idempotent=replace)
        return dict(found) if isinstance(found, Mapping) else {}

    def delete_definition(self: _Caller, name: str, level: Level = "organization", scope_id: int | None = None) -> None:
        """``DELETE {level}/objects/{name}/definitions`` (404 when unknown)."""
        path = f"{scope_prefix(level, scope_id)}/objects/{_name(name, 'object')}/definitions"
        self._call("DELETE", path, hub=False)

    # ------------------------------------------------------------ transformations
    def list_transformations(
        self: _Caller, element_key: str | None = None, level: Level = "organization", scope_id: int | None = None
    ) -> dict[str, Any]:
        """``GET …/transformations``: ``{objectName: transformation}`` of one element (or instance)."""
        found = self._call("GET", transformations_path(level, scope_id, element_key), hub=False)
        return dict(found) if isinstance(found, Mapping) else {}

    def get_transformation(
        self: _Caller,
        name: str,
        element_key: str | None = None,
        level: Level = "organization",
        scope_id: int | None = None,
    ) -> dict[str, Any] | None:
        """``GET …/transformations/{name}``; ``None`` when there is none (404)."""
        path = f"{transformations_path(level, scope_id, element_key)}/{_name(name, 'object')}"
        try:
            found = self._call("GET", path, hub=False)
        except CloudElementsNotFoundError:
            return None
        return dict(found) if isinstance(found, Mapping) else None

    def create_transformation(
        self: _Caller,
        name: str,
        body: Mapping[str, Any],
        element_key: str | None = None,
        level: Level = "organization",
        scope_id: int | None = None,
        *,
        replace: bool = False,
    ) -> dict[str, Any]:
        """``POST`` (409 when it exists) or, with ``replace``, ``PUT …/transformations/{name}``.

        :param body: ``{"vendorName": "Invoice", "fields": [{"path", "vendorPath", "type", "vendorType"}]}``.
        """
        path = f"{transformations_path(level, scope_id, element_key)}/{_name(name, 'object')}"
        found = self._call("PUT" if replace else "POST", path, hub=False, json_body=dict(body), idempotent=replace)
        return dict(found) if isinstance(found, Mapping) else {}

    def delete_transformation(
        self: _Caller,
        name: str,
        element_key: str | None = None,
        level: Level = "organization",
        scope_id: int | None = None,
    ) -> None:
        """``DELETE …/transformations/{name}`` (404 when unknown)."""
        path = f"{transformations_path(level, scope_id, element_key)}/{_name(name, 'object')}"
        self._call("DELETE", path, hub=False)
