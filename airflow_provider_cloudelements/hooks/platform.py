"""Platform API methods of the sync hook: element instances and the element catalog (reference §2).

Platform calls send ``User <u>, Organization <o>`` (no element token).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from airflow.sdk.log import mask_secret

from airflow_provider_cloudelements.client.protocol import json_array, json_object, sensitive_values, strip_instance
from airflow_provider_cloudelements.exceptions import CloudElementsApiError, CloudElementsConfigError, as_instance_id
from airflow_provider_cloudelements.hooks.base import DEFAULT_PAGE_SIZE
from airflow_provider_cloudelements.hooks.sync_base import CloudElementsSyncBase


class PlatformMixin(CloudElementsSyncBase):
    """``/instances`` and ``/elements`` calls of :class:`~.cloudelements.CloudElementsHook`."""

    def create_instance(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create (provision) an element instance: ``POST /instances`` (§2.2, §2.2.1).

        The returned ``token`` is masked, cached on the hook for hub calls on that instance, and removed
        from the result. Not retried after the request may have reached the server (no duplicate
        instances); beware that authorizing a second QBO instance for the same QuickBooks user
        invalidates the oldest (reference §7 item 10).

        :param body: ``{"element": {"key": ...}, "name": ..., "configuration": {...}, "providerData":
            {...}, "tags": [...]}``.
        :return: the instance JSON without ``token``, credential configuration values masked.
        :raises CloudElementsConfigError: body without ``element``.
        :raises CloudElementsApiError: subclasses per status (400 missing config, 401 bad secrets, 409 …).
        """
        if not isinstance(body, Mapping) or not isinstance(body.get("element"), Mapping):
            raise CloudElementsConfigError("create_instance body needs an 'element': {'key': ...} object")
        for value in sensitive_values(body):
            mask_secret(value)
        instance = self._call("POST", "/instances", hub=False, json_body=dict(body))
        if not isinstance(instance, Mapping):
            raise CloudElementsApiError("POST /instances returned no instance object")
        self._cache_instance(instance)
        self.log.info("Created Cloud Elements instance %s (%s)", instance.get("id"), instance.get("name"))
        return strip_instance(instance)

    def get_instance(self, instance_id: int) -> dict[str, Any]:
        """``GET /instances/{id}`` (§2.2); token cached (masked) and stripped from the result.

        :param instance_id: element instance id.
        :raises CloudElementsNotFoundError: unknown instance.
        """
        return strip_instance(self._fetch_instance(as_instance_id(instance_id)))

    def find_instances(self, *, name: str | None = None, tags: list[str] | None = None) -> list[dict[str, Any]]:
        """``GET /instances?tags[]=..`` (§2.2), then keep instances whose ``name`` equals ``name`` exactly.

        :param name: exact instance name to keep, or ``None`` for all.
        :param tags: tags passed as ``tags[]`` (server-side filter).
        :return: instances, tokens stripped.
        """
        params: dict[str, Any] = {}
        if tags:
            params["tags[]"] = list(tags)
        out = []
        for inst in self._paginate("/instances", params, hub=False, page_size=DEFAULT_PAGE_SIZE):
            if not isinstance(inst, Mapping):
                continue
            if name is not None and inst.get("name") != name:
                continue
            self._cache_instance(inst)
            out.append(strip_instance(inst))
        return out

    def update_instance(self, instance_id: int, body: Mapping[str, Any], *, partial: bool = True) -> dict[str, Any]:
        """``PATCH /instances/{id}`` (``partial=True``) or ``PUT /instances/{id}`` (§2.2).

        :param body: fields to change (``name``, ``tags`` (replaced wholesale), ``configuration``,
            ``providerData``).
        :return: the instance without ``token``.
        """
        iid = as_instance_id(instance_id)
        for value in sensitive_values(body):
            mask_secret(value)
        instance = self._call("PATCH" if partial else "PUT", f"/instances/{iid}", hub=False, json_body=dict(body))
        if isinstance(instance, Mapping):
            self._cache_instance(instance)
            return strip_instance(instance)
        return {}

    def delete_instance(self, instance_id: int) -> None:
        """``DELETE /instances/{id}`` (§2.2); later hub calls with its token get 401."""
        iid = as_instance_id(instance_id)
        self._call("DELETE", f"/instances/{iid}", hub=False)
        with self._token_lock:
            self._tokens.pop(iid, None)

    def enable_instance(self, instance_id: int) -> None:
        """``PUT /instances/{id}/enabled`` (§2.2)."""
        self._call("PUT", f"/instances/{as_instance_id(instance_id)}/enabled", hub=False)

    def disable_instance(self, instance_id: int) -> None:
        """``DELETE /instances/{id}/enabled`` (§2.2); hub calls then get 403."""
        self._call("DELETE", f"/instances/{as_instance_id(instance_id)}/enabled", hub=False)

    def list_elements(self) -> list[dict[str, Any]]:
        """``GET /elements`` (§2.1): element catalog objects."""
        return json_array(self._call("GET", "/elements", hub=False), "GET /elements")

    def get_element(self, key: str) -> dict[str, Any]:
        """``GET /elements/{keyOrId}`` (§2.1)."""
        if not key or not str(key).strip():
            raise CloudElementsConfigError("Element key must not be empty")
        path = f"/elements/{quote(str(key), safe='')}"
        return json_object(self._call("GET", path, hub=False), f"GET {path}")
