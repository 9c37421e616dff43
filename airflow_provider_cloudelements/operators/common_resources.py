"""Transformations as code: make Cloud Elements' common resources match a declared model.

Transformations as code: make Cloud Elements' common resources match a declared model (reference §10; devportal
``docs/guides/common-resources/createapi.md``, ``mappingapi.md``). See ``docs/operators/common-resources.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_cloudelements.common_model import CommonModel, load_model
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsModelError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.hooks.transformations import LEVELS

if TYPE_CHECKING:
    from airflow.sdk import Context


def _norm_fields(fields: Any, keys: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for f in fields or []:
        if isinstance(f, Mapping) and f.get("path"):
            out[str(f["path"])] = {k: f.get(k) for k in keys if f.get(k) is not None}
    return out


def _field_changes(current: Any, desired: Any, keys: tuple[str, ...]) -> list[str]:
    have, want = _norm_fields(current, keys), _norm_fields(desired, keys)
    changes = [f"+ {p}" for p in want if p not in have]
    changes += [f"- {p}" for p in have if p not in want]
    for p in want:
        if p in have and have[p] != want[p]:
            diff = ", ".join(
                f"{k}: {have[p].get(k)!r} -> {want[p].get(k)!r}" for k in keys if have[p].get(k) != want[p].get(k)
            )
            changes.append(f"~ {p} ({diff})")
    return changes


def definition_changes(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> list[str]:
    """Field-level differences of two definitions (``+ path`` / ``- path`` / ``~ path (type: …)``)."""
    return _field_changes((current or {}).get("fields"), desired.get("fields"), ("type",))


def transformation_changes(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> list[str]:
    """Differences of two transformations: ``vendorName``, each field, the script steps."""
    current = current or {}
    out = []
    if current.get("vendorName") != desired.get("vendorName"):
        out.append(f"~ vendorName ({current.get('vendorName')!r} -> {desired.get('vendorName')!r})")
    out += _field_changes(current.get("fields"), desired.get("fields"), ("vendorPath", "type", "vendorType"))
    steps = lambda body: list((body.get("script") or {}).get("steps") or [])  # noqa: E731
    if steps(current) != steps(dict(desired)):
        out.append(f"~ script ({len(steps(current))} -> {len(steps(dict(desired)))} steps)")
    return out


class CloudElementsCommonResourceOperator(BaseOperator):
    """Apply a common-resource model: definitions plus per-element transformations, idempotently.

    For every common resource of the model it reads the definition (``GET …/objects/{name}/definitions``)
    and, per mapped element, the transformation (``GET …/elements/{key}/transformations/{name}``, or
    ``/instances/{id}/transformations/{name}``), then **creates** what is missing (``POST``), **updates**
    what differs (``PUT``: drift, logged as a warning) and **leaves** everything else — entries that the
    model does not name are never touched or deleted. ``dry_run`` does the reads and reports what it
    would do.

    The model is validated before any call (:func:`~airflow_provider_cloudelements.common_model.load_model`):
    unknown element or vendor resource, unknown vendor field, a type the element cannot convert, a
    duplicate field raise :class:`~airflow_provider_cloudelements.exceptions.CloudElementsModelError`
    naming it.

    :param model: ``"finance"`` (the built-in model, docs/common-model.md), a path to a model JSON file,
        a model dict or a :class:`~airflow_provider_cloudelements.common_model.CommonModel`.
    :param level: ``organization`` (default: one transformation per element for every account),
        ``account`` (``scope_id`` = account id, ``None``: your own account) or ``instance``.
    :param scope_id: the account id for ``level="account"``.
    :param instance_ids: ``{element_key: instance_id}`` for ``level="instance"`` (elements without an
        instance are skipped).
    :param common_resources: only these common resources (default: all of the model).
    :param elements: only these element keys (default: all the model maps).
    :param dry_run: read and diff only; nothing is written (kept as ``plan_only``:
        ``BaseOperator.dry_run`` is a method).
    :param cloudelements_conn_id: the Cloud Elements connection (platform auth: user + organization secret).
    :return: ``{"model", "version", "level", "dry_run", "created", "updated", "unchanged",
        "changes": [{"kind": "definition"|"transformation", "name", "element", "scope", "action":
        "create"|"update"|"unchanged", "details": ["+ path", "~ path (type: …)", …]}]}``.
    :raises CloudElementsModelError: a bad model (before any call).
    :raises CloudElementsConfigError: bad level / scope / filters (before any call).
    :raises CloudElementsApiError: API failures (the entries written so far stay written; a rerun
        continues, since every step is idempotent).
    """

    template_fields = ("common_resources", "elements", "scope_id", "instance_ids", "plan_only")

    def __init__(
        self,
        *,
        model: CommonModel | Mapping[str, Any] | str | Path = "finance",
        level: str = "organization",
        scope_id: int | None = None,
        instance_ids: Mapping[str, int] | None = None,
        common_resources: list[str] | None = None,
        elements: list[str] | None = None,
        dry_run: bool = False,
        cloudelements_conn_id: str = CloudElementsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if level not in LEVELS:
            raise CloudElementsConfigError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        self.model = model
        self.level = level
        self.scope_id = scope_id
        self.instance_ids = dict(instance_ids) if instance_ids else None
        self.common_resources = common_resources
        self.elements = elements
        self.plan_only = bool(dry_run)
        self.cloudelements_conn_id = cloudelements_conn_id

    # ------------------------------------------------------------ planning (no calls)
    def _plan(self) -> tuple[CommonModel, list[tuple[str, int | None, list[tuple[str, str]]]]]:
        """The model and, per scope, ``(level-scope id, [(resource, element)])``.

        :raises CloudElementsModelError / CloudElementsConfigError: before any call.
        """
        source = dict(self.model) if isinstance(self.model, Mapping) else self.model
        model = load_model(source)
        wanted = list(model.resources) if self.common_resources is None else list(self.common_resources)
        unknown = [r for r in wanted if r not in model.resources]
        if unknown:
            raise CloudElementsModelError(
                f"common_resources names {', '.join(map(repr, unknown))}, not in model {model.name!r} "
                f"({', '.join(model.resources)})",
                resource=unknown[0],
            )
        if self.elements is not None:
            bad = [e for e in self.elements if e not in model.elements()]
            if bad:
                raise CloudElementsModelError(
                    f"elements names {', '.join(map(repr, bad))}, which model {model.name!r} does not map",
                    element=bad[0],
                )
        pairs = [
            (r, e) for r in wanted for e in model.resources[r].mappings if self.elements is None or e in self.elements
        ]
        if self.level != "instance":
            return model, [(self.level, self.scope_id, pairs)]
        if not self.instance_ids:
            raise CloudElementsConfigError("level='instance' needs instance_ids={element_key: instance_id}")
        scopes: list[tuple[str, int | None, list[tuple[str, str]]]] = []
        for element, iid in sorted(self.instance_ids.items()):
            if isinstance(iid, bool) or not isinstance(iid, int) or iid < 1:
                raise CloudElementsConfigError(f"instance_ids[{element!r}] must be a positive integer, got {iid!r}")
            scopes.append(("instance", iid, [(r, e) for r, e in pairs if e == element]))
        return model, scopes

    # ------------------------------------------------------------ execution
    def execute(self, context: Context) -> dict[str, Any]:
        model, scopes = self._plan()  # every validation happens before the first call
        hook = CloudElementsHook(self.cloudelements_conn_id)
        changes: list[dict[str, Any]] = []
        for level, scope, pairs in scopes:
            names = (
                list(dict.fromkeys(r for r, _ in pairs))
                if level == "instance"
                else (list(self.common_resources) if self.common_resources is not None else list(model.resources))
            )
            for name in names:
                desired = model.resources[name].definition_body()
                current = hook.get_definition(name, level, scope)
                changes.append(
                    self._apply(
                        "definition",
                        name,
                        None,
                        level,
                        scope,
                        current,
                        desired,
                        definition_changes(current, desired),
                        partial(
                            hook.create_definition, name, desired["fields"], level, scope, replace=current is not None
                        ),
                    )
                )
            for name, element in pairs:
                desired = model.resources[name].transformation_body(element)
                key = None if level == "instance" else element
                current = hook.get_transformation(name, key, level, scope)
                changes.append(
                    self._apply(
                        "transformation",
                        name,
                        element,
                        level,
                        scope,
                        current,
                        desired,
                        transformation_changes(current, desired),
                        partial(
                            hook.create_transformation, name, desired, key, level, scope, replace=current is not None
                        ),
                    )
                )
        summary = {a: sum(1 for c in changes if c["action"] == a) for a in ("create", "update", "unchanged")}
        self.log.info(
            "Model %s %s at %s level%s: %s to create, %s to update, %s unchanged",
            model.name,
            model.version,
            self.level,
            " (dry run)" if self.plan_only else "",
            summary["create"],
            summary["update"],
            summary["unchanged"],
        )
        return {
            "model": model.name,
            "version": model.version,
            "level": self.level,
            "dry_run": bool(self.plan_only),
            "created": summary["create"],
            "updated": summary["update"],
            "unchanged": summary["unchanged"],
            "changes": changes,
        }

    def _apply(
        self,
        kind: str,
        name: str,
        element: str | None,
        level: str,
        scope: int | None,
        current: Mapping[str, Any] | None,
        desired: Mapping[str, Any],
        details: list[str],
        write: Callable[[], Any],
    ) -> dict[str, Any]:
        action = "create" if current is None else "update" if details else "unchanged"
        where = (
            f"{kind} {name!r}"
            + (f" for {element}" if element else "")
            + f" ({level}{'' if scope is None else f' {scope}'})"
        )
        if action == "update":
            self.log.warning("Drift: %s differs from the model: %s", where, "; ".join(details))
        elif action == "create":
            self.log.info("Missing: %s", where)
        if action != "unchanged" and not self.plan_only:
            write()
            self.log.info("%s %s", "Created" if action == "create" else "Updated", where)
        return {
            "kind": kind,
            "name": name,
            "element": element,
            "level": level,
            "scope": scope,
            "action": action,
            "details": details if action != "create" else [f"+ {f.get('path')}" for f in desired.get("fields") or []],
        }
