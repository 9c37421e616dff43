"""Create and delete Cloud Elements element instances (reference §2.2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseOperator

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsNotFoundError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.operators.links import (
    INSTANCE_URL_KEY,
    CloudElementsInstanceLink,
    instance_url,
    push_link,
)
from airflow_provider_cloudelements.utils.elements import get_element
from airflow_provider_cloudelements.utils.validation import as_instance_id

if TYPE_CHECKING:
    from airflow.sdk import Context


def validate_instance_body(body: Mapping[str, Any]) -> str:
    """Check a ``POST /instances`` body before sending it (reference §2.2.1/§2.2.2).

    Requires a known ``element.key``, a non-empty ``name``, ``tags`` as a list of strings and, unless
    ``externalAuthentication`` is ``"initial"``, one complete set of the element's required
    configuration keys and provider data (QBO OAuth2 ``code``+``realmId`` or legacy OAuth1; QBE
    ``app.name``+``host.ip``; FreshBooks ``business.name``/site address).
    Returns the element key. :raises CloudElementsConfigError: naming what is missing.
    """
    if not isinstance(body, Mapping):
        raise CloudElementsConfigError("Instance body must be a JSON object")
    element = body.get("element")
    key = element.get("key") if isinstance(element, Mapping) else None
    if not key:
        raise CloudElementsConfigError("Instance body needs element.key (e.g. 'quickbooks')")
    spec = get_element(str(key))
    if not isinstance(body.get("name"), str) or not body["name"].strip():
        raise CloudElementsConfigError("Instance body needs a non-empty name")
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise CloudElementsConfigError("Instance tags must be a list of strings")
    if body.get("externalAuthentication") == "initial":
        return spec.key
    configuration = body.get("configuration") or {}
    provider_data = body.get("providerData") or {}
    if not isinstance(configuration, Mapping) or not isinstance(provider_data, Mapping):
        raise CloudElementsConfigError("configuration and providerData must be JSON objects")
    gaps: list[list[str]] = []
    for config_keys, data_keys in zip(spec.required_configuration, spec.required_provider_data, strict=False):
        missing = [f"configuration.{k}" for k in config_keys if configuration.get(k) in (None, "")]
        missing += [f"providerData.{k}" for k in data_keys if provider_data.get(k) in (None, "")]
        if not missing:
            return spec.key
        gaps.append(missing)
    best = min(gaps, key=len)
    raise CloudElementsConfigError(
        f"Instance body for element {spec.key!r} is missing required entries: {', '.join(best)}"
    )


class CloudElementsCreateInstanceOperator(BaseOperator):
    """Create (provision) an element instance, or reuse one with the same name and tags.

    Calls ``GET /instances?tags[]=…`` then, if none matches, ``POST /instances`` (reference §2.2).
    The body is validated before any network call. The returned instance token is masked at once and
    never returned, logged or pushed to XCom. Returns ``{"id": int, "name": str, "element_key": str,
    "reused": bool}``.

    :param body: the ``POST /instances`` JSON (``element.key``, ``name``, ``configuration``,
        ``providerData``, ``tags``, optional ``externalAuthentication``). Only ``name`` and ``tags``
        are templated, so secrets in ``configuration`` never appear in rendered templates.
    :param configuration_conn_id: optional Airflow connection whose extras are merged into
        ``configuration`` at run time (keep the provider app's client secret there, masked).
    :param reuse_existing: return an existing instance with the same name and tag set (default True).
        Note: authorizing a second QBO instance for the same QBO user revokes the oldest (reference §7).
    :raises CloudElementsConfigError: invalid body (unknown element key, missing configuration).
    """

    template_fields: Sequence[str] = ("name", "tags")
    operator_extra_links = (CloudElementsInstanceLink(),)

    def __init__(
        self,
        *,
        body: Mapping[str, Any],
        configuration_conn_id: str | None = None,
        reuse_existing: bool = True,
        cloudelements_conn_id: str = CloudElementsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.body = dict(body)
        self.name = self.body.get("name")
        self.tags = list(self.body.get("tags") or [])
        self.configuration_conn_id = configuration_conn_id
        self.reuse_existing = reuse_existing
        self.cloudelements_conn_id = cloudelements_conn_id
        if configuration_conn_id is None:
            validate_instance_body(self.body)

    @cached_property
    def hook(self) -> CloudElementsHook:
        return CloudElementsHook(cloudelements_conn_id=self.cloudelements_conn_id)

    def _final_body(self) -> dict[str, Any]:
        body = {**self.body, "name": self.name, "tags": list(self.tags)}
        if self.configuration_conn_id:
            extra = BaseHook.get_connection(self.configuration_conn_id).extra_dejson
            body["configuration"] = {**(body.get("configuration") or {}), **extra}
        validate_instance_body(body)
        return body

    def execute(self, context: Context) -> dict[str, Any]:
        body = self._final_body()
        element_key = body["element"]["key"]
        instance: dict[str, Any] | None = None
        reused = False
        if self.reuse_existing:
            for candidate in self.hook.find_instances(name=body["name"], tags=body["tags"] or None):
                same_tags = sorted(candidate.get("tags") or []) == sorted(body["tags"])
                same_element = (candidate.get("element") or {}).get("key") == element_key
                if same_tags and same_element and not candidate.get("disabled"):
                    instance, reused = candidate, True
                    break
        if instance is None:
            instance = self.hook.create_instance(body)
        result = {"id": int(instance["id"]), "name": instance.get("name"), "element_key": element_key, "reused": reused}
        push_link(self, context, INSTANCE_URL_KEY, instance_url(self.hook.base_url, result["id"]))
        self.log.info(
            "%s element instance %s (%s, %s)",
            "Reusing" if reused else "Created",
            result["id"],
            result["name"],
            element_key,
        )
        return result


class CloudElementsDeleteInstanceOperator(BaseOperator):
    """Delete an element instance (``DELETE /instances/{id}``, reference §2.2).

    Later hub calls with its token get 401.

    :param instance_id: the instance id. Templated.
    :param missing_ok: succeed when the instance does not exist (404). Default True.
    """

    template_fields: Sequence[str] = ("instance_id",)

    def __init__(
        self,
        *,
        instance_id: int | str,
        missing_ok: bool = True,
        cloudelements_conn_id: str = CloudElementsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.instance_id = instance_id
        self.missing_ok = missing_ok
        self.cloudelements_conn_id = cloudelements_conn_id

    def execute(self, context: Context) -> None:
        instance_id = as_instance_id(self.instance_id)
        try:
            CloudElementsHook(cloudelements_conn_id=self.cloudelements_conn_id).delete_instance(instance_id)
            self.log.info("Deleted element instance %s", instance_id)
        except CloudElementsNotFoundError:
            if not self.missing_ok:
                raise
            self.log.info("Element instance %s does not exist; nothing to delete", instance_id)
