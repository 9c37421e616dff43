"""Discover the element instances to sync from Cloud Elements itself (``GET /instances``, reference §2.2).

An embedded-integration deployment provisions one element instance per end customer; the multi-tenant
DAG lists them at run time (filtered by tags and element keys) instead of hard-coding them, so a new
customer's instance is picked up by the next run without a DAG change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook, check_resource_name
from airflow_provider_cloudelements.utils.elements import get_element

if TYPE_CHECKING:
    from airflow.sdk import Context

#: XCom key under which the operator pushes the instances it skipped (``[{"instance_id", "element_key",
#: "name", "reason"}]``).
SKIPPED_XCOM_KEY = "skipped"


def _string_list(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise CloudElementsConfigError(f"{what} must be a list of strings, got {type(value).__name__}")
    out = []
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise CloudElementsConfigError(f"{what} must be a list of non-empty strings, got {item!r}")
        out.append(item.strip())
    return out


def check_resources(
    resources: Mapping[str, Sequence[str]] | Sequence[str] | None, element_keys: Sequence[str]
) -> dict[str, list[str]] | list[str] | None:
    """Validate the ``element_resources`` argument of :class:`CloudElementsListInstancesOperator`.

    :param resources: ``None``, one list for every element, or ``{element_key: [resource, ...]}``.
    :param element_keys: the element keys the operator filters on (may be empty = all).
    :raises CloudElementsConfigError: a resource the element does not support, an unknown element key.
    """
    if resources is None:
        return None
    if isinstance(resources, Mapping):
        out: dict[str, list[str]] = {}
        for key, names in resources.items():
            spec = get_element(str(key))
            if element_keys and spec.key not in element_keys:
                raise CloudElementsConfigError(f"element_resources names element {key!r}, which element_keys excludes")
            out[spec.key] = [
                check_resource_name(r, spec.key) for r in _string_list(names, f"element_resources[{key!r}]")
            ]
        return out
    names = _string_list(resources, "element_resources")
    for key in element_keys:
        for r in names:
            check_resource_name(r, key)
    return [check_resource_name(r) for r in names]


class CloudElementsListInstancesOperator(BaseOperator):
    """List the element instances to sync: ``GET /instances?tags[]=…`` (reference §2.2), all pages.

    Keeps instances that carry **every** tag in ``tags`` (checked again client-side) and whose element
    is in ``element_keys``; skips, with a warning, instances that are ``disabled`` (hub calls would get
    403) or not ``valid`` (Cloud Elements marks an instance invalid when its provider authorization
    failed, e.g. a revoked OAuth grant). Tokens are never returned, logged or pushed.

    Returns small rows for dynamic task mapping, sorted by instance id::

        [{"instance_id": 123, "element_key": "quickbooks"}, ...]

    With ``element_resources`` one row per (instance, resource), ordered round-robin across instances (every
    instance's first resource, then every instance's second, …) so that the scheduler, which starts
    mapped task instances in map-index order, does not work through one tenant before the next::

        [{"instance_id": 123, "element_key": "quickbooks", "resource": "invoices"}, ...]

    The skipped instances are pushed under the XCom key ``"skipped"`` as
    ``[{"instance_id", "element_key", "name", "reason"}]`` (``reason`` is ``"disabled"`` or ``"invalid"``).

    :param tags: tags every instance must carry (``tags[]`` query, AND semantics). Templated.
    :param element_keys: element keys to keep, e.g. ``["quickbooks", "freshbooksv2"]``; empty or ``None``
        = every element of the provider's catalog (unknown elements are skipped). Templated.
    :param element_resources: ``None`` (instance rows), one resource list for every element, or
        ``{element_key: [resource, ...]}`` (elements missing from the mapping are skipped).
    :param cloudelements_conn_id: Airflow connection of type ``cloudelements`` (platform secrets).
    :raises CloudElementsConfigError: bad ``tags``/``element_keys``/``element_resources`` (before any call).
    :raises CloudElementsAuthenticationError: wrong user/organization secret (401 on ``GET /instances``).
    """

    template_fields: Sequence[str] = ("tags", "element_keys")

    def __init__(
        self,
        *,
        tags: Sequence[str] | None = None,
        element_keys: Sequence[str] | None = None,
        element_resources: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
        cloudelements_conn_id: str = CloudElementsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.tags = _string_list(tags, "tags")
        self.element_keys = [get_element(k).key for k in _string_list(element_keys, "element_keys")]
        self.element_resources = check_resources(element_resources, self.element_keys)
        self.cloudelements_conn_id = cloudelements_conn_id

    @cached_property
    def hook(self) -> CloudElementsHook:
        return CloudElementsHook(cloudelements_conn_id=self.cloudelements_conn_id)

    def _resources_for(self, element_key: str) -> list[str]:
        if isinstance(self.element_resources, dict):
            return self.element_resources.get(element_key, [])
        return list(self.element_resources or [])

    def discover(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(kept, skipped)``: kept ``{"instance_id", "element_key"}`` rows and skipped instances."""
        tags = _string_list(self.tags, "tags")
        wanted = {get_element(k).key for k in _string_list(self.element_keys, "element_keys")}
        kept: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for inst in self.hook.find_instances(tags=tags or None):
            element = inst.get("element")
            key = element.get("key") if isinstance(element, Mapping) else None
            try:
                iid = int(inst["id"])
            except (KeyError, TypeError, ValueError):
                self.log.warning("Skipping an instance without an integer id (element %s)", key)
                continue
            if not set(tags) <= set(inst.get("tags") or []):
                continue  # the server ignored the tags[] filter
            if not isinstance(key, str) or (wanted and key not in wanted):
                continue
            if not wanted:
                try:
                    get_element(key)
                except CloudElementsConfigError:
                    self.log.info("Ignoring instance %s of element %r (not a Finance-hub element)", iid, key)
                    continue
            reason = "disabled" if inst.get("disabled") else "invalid" if inst.get("valid") is False else None
            if reason:
                self.log.warning("Skipping element instance %s (%s, %r): it is %s", iid, key, inst.get("name"), reason)
                skipped.append({"instance_id": iid, "element_key": key, "name": inst.get("name"), "reason": reason})
                continue
            kept.append({"instance_id": iid, "element_key": key})
        kept.sort(key=lambda row: row["instance_id"])
        skipped.sort(key=lambda row: row["instance_id"])
        return kept, skipped

    def plan(self, instances: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Round-robin (instance, resource) rows for ``instances`` (see the class docstring)."""
        per_instance = [[{**row, "resource": r} for r in self._resources_for(row["element_key"])] for row in instances]
        depth = max((len(rows) for rows in per_instance), default=0)
        return [rows[i] for i in range(depth) for rows in per_instance if i < len(rows)]

    def execute(self, context: Context) -> list[dict[str, Any]]:
        kept, skipped = self.discover()
        context["ti"].xcom_push(key=SKIPPED_XCOM_KEY, value=skipped)
        self.log.info(
            "Discovered %d element instance(s) to sync (tags=%s, elements=%s); skipped %d",
            len(kept),
            self.tags,
            self.element_keys or "all",
            len(skipped),
        )
        if self.element_resources is None:
            return kept
        rows = self.plan(kept)
        self.log.info("Planned %d (instance, resource) extract(s)", len(rows))
        return rows
