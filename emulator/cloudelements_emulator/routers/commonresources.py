"""HTTP routes of common-resource definitions and transformations (reference §10.2).

Common-resource definitions and transformations (reference §10.2; devportal
``docs/guides/common-resources/createapi.md``, ``mappingapi.md``, ``_includes/transformations.md``). Platform auth
(``User …, Organization …``). Semantics in :mod:`..commonresources`.

Definitions, per level (``{L}`` = ``/organizations``, ``/accounts``, ``/accounts/{accountId}``,
``/instances/{instanceId}``):

* ``POST {L}/objects/{name}/definitions`` (409 when it exists), ``PUT`` (replace), ``GET``,
  ``DELETE`` (404 when unknown);
* ``GET {L}/objects/definitions`` (map name → definition; organization: ``systemOnly=true`` → the
  vendor's own templates, none here), ``DELETE {L}/objects/definitions`` (all);
* ``POST /organizations/objects/definitions`` (and per account): several at once
  ``{"<name>": {"fields": [...]}}``, all or nothing.

Transformations: ``{T}/{name}`` with ``{T}`` = ``/organizations/elements/{keyOrId}/transformations``,
``/accounts[/{accountId}]/elements/{keyOrId}/transformations`` or ``/instances/{instanceId}/transformations``:
``POST`` (409 when it exists), ``PUT`` (replace), ``GET``, ``DELETE`` (404 when unknown); ``GET {T}``
(map name → transformation) and ``DELETE {T}`` (all).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from cloudelements_emulator.commonresources import ACCOUNT_ID, CommonResources
from cloudelements_emulator.deps import API, JsonBody, PlatformState
from cloudelements_emulator.elements import ELEMENTS

router = APIRouter(prefix=API, tags=["common resources"])

_SCOPES = {
    "organization": ["/organizations"],
    "account": ["/accounts", "/accounts/{scope_id:int}"],
    "instance": ["/instances/{scope_id:int}"],
}


def _store(state: Any) -> CommonResources:
    return state.hub.transforms  # type: ignore[no-any-return]


def _scope(request: Request, state: Any, level: str) -> int:
    return _store(state).scope(level, request.path_params.get("scope_id"))


def _element(request: Request, state: Any, level: str, scope: int) -> str:
    return _store(state).element_key(level, scope, request.path_params.get("element"))


def _ok() -> Response:
    return Response(status_code=200)


_TAGS: list[str | Enum] = ["common resources"]


def _openapi(path: str) -> dict[str, Any]:
    """Describe a route's path parameters for ``/openapi.json``.

    Path parameters the shared handlers read from ``request.path_params``, described for ``/openapi.json`` (element keys
    and the one account id as enums); ``/accounts`` without an id is an alias of ``/accounts/{accountId}`` and stays out
    of the schema.
    """
    params: list[dict[str, Any]] = []
    if "{scope_id:int}" in path:
        schema = {"type": "integer", "enum": [ACCOUNT_ID]} if path.startswith("/accounts") else {"type": "integer"}
        params.append({"name": "scope_id", "in": "path", "required": True, "schema": schema})
    if "{element}" in path:
        keys = sorted(ELEMENTS)
        params.append({"name": "element", "in": "path", "required": True, "schema": {"type": "string", "enum": keys}})
    return {"parameters": params}  # ``name`` is declared by the handlers themselves


def _add(path: str, fn: Any, method: str, name: str) -> None:
    hidden = path.startswith("/accounts/") and "{scope_id" not in path
    router.add_api_route(
        path, fn, methods=[method], tags=_TAGS, name=name, include_in_schema=not hidden, openapi_extra=_openapi(path)
    )


def _crud_routes(level: str, kind: str, item: str, collection: str, handlers: tuple[Any, ...]) -> None:
    """POST/PUT/GET/DELETE on ``item`` and GET/DELETE on ``collection``, handlers in that order."""
    create, replace, read, drop, list_all, drop_all = handlers
    for fn, method, path in (
        (create, "POST", item),
        (replace, "PUT", item),
        (read, "GET", item),
        (drop, "DELETE", item),
        (list_all, "GET", collection),
        (drop_all, "DELETE", collection),
    ):
        _add(path, fn, method, f"{level}_{fn.__name__}_{kind}{path}")


def _definition_routes(level: str, prefix: str) -> None:
    item, collection = prefix + "/objects/{name}/definitions", prefix + "/objects/definitions"

    def create(name: str, request: Request, body: JsonBody, state: PlatformState) -> dict[str, Any]:
        return _store(state).define(level, _scope(request, state, level), name, body)

    def replace(name: str, request: Request, body: JsonBody, state: PlatformState) -> dict[str, Any]:
        return _store(state).define(level, _scope(request, state, level), name, body, replace=True)

    def read(name: str, request: Request, state: PlatformState) -> dict[str, Any]:
        return _store(state).definition(level, _scope(request, state, level), name)

    def drop(name: str, request: Request, state: PlatformState) -> Response:
        _store(state).drop_definitions(level, _scope(request, state, level), name)
        return _ok()

    def list_all(request: Request, state: PlatformState) -> dict[str, Any]:
        scope = _scope(request, state, level)
        if str(request.query_params.get("systemOnly", "")).lower() == "true":
            return {}
        return _store(state).list_definitions(level, scope)

    def drop_all(request: Request, state: PlatformState) -> Response:
        _store(state).drop_definitions(level, _scope(request, state, level))
        return _ok()

    def create_many(request: Request, body: JsonBody, state: PlatformState) -> dict[str, Any]:
        return _store(state).define_many(level, _scope(request, state, level), body)

    _crud_routes(level, "definition", item, collection, (create, replace, read, drop, list_all, drop_all))
    if level != "instance":
        _add(collection, create_many, "POST", f"{level}_define_many{collection}")


def _transformation_routes(level: str, prefix: str) -> None:
    collection = prefix + ("/transformations" if level == "instance" else "/elements/{element}/transformations")
    item = collection + "/{name}"

    def where(request: Request, state: Any) -> tuple[int, str]:
        scope = _scope(request, state, level)
        return scope, _element(request, state, level, scope)

    def create(name: str, request: Request, body: JsonBody, state: PlatformState) -> dict[str, Any]:
        return _store(state).transform(level, *where(request, state), name, body)

    def replace(name: str, request: Request, body: JsonBody, state: PlatformState) -> dict[str, Any]:
        return _store(state).transform(level, *where(request, state), name, body, replace=True)

    def read(name: str, request: Request, state: PlatformState) -> dict[str, Any]:
        return _store(state).transformation(level, *where(request, state), name)

    def drop(name: str, request: Request, state: PlatformState) -> Response:
        _store(state).drop_transformations(level, *where(request, state), name)
        return _ok()

    def list_all(request: Request, state: PlatformState) -> dict[str, Any]:
        return _store(state).list_transformations(level, *where(request, state))

    def drop_all(request: Request, state: PlatformState) -> Response:
        _store(state).drop_transformations(level, *where(request, state))
        return _ok()

    _crud_routes(level, "transformation", item, collection, (create, replace, read, drop, list_all, drop_all))


for _level, _prefixes in _SCOPES.items():
    for _prefix in _prefixes:
        _definition_routes(_level, _prefix)
        _transformation_routes(_level, _prefix)
