"""Element instances (reference §2.2): validation, persistence, masking, configuration entries."""

from __future__ import annotations

import base64
import copy
import json
import re
import secrets
import threading
from typing import Any

from cloudelements_emulator import timefmt
from cloudelements_emulator.elements import (
    MASK,
    SECRET_CONFIG_KEYS,
    ElementDef,
    default_configuration,
    find_element,
    required_keys,
)
from cloudelements_emulator.errors import CEError
from cloudelements_emulator.store import Store

DEV_USER = {
    "id": 1001,
    "emailAddress": "developer@emulator.invalid",
    "firstName": "Emulator",
    "lastName": "Developer",
}
_MASKED_PROVIDER_KEYS = frozenset({"secret", "code", "oauth_verifier"})


def truthy(value: Any) -> bool:
    """Config booleans arrive as ``true``/``"true"`` (reference §2.2.5)."""
    return value is True or str(value).strip().lower() == "true"


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    """A boolean instance flag of a create/update body (``true``/``"true"``; absent → ``default``)."""
    return default if body.get(key) is None else truthy(body[key])


_SCRIPT = re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]*>")


def _sanitize(text: str) -> str:
    """HTML-sanitize an instance name or tag on create/update (reference §2.2.3).

    Markup is stripped, not escaped: ``<a href="#">churros-xss</a>`` → ``churros-xss`` and ``R&D``
    stays ``R&D`` (churros ``platform/elements/instances.js``).
    """
    return _TAG.sub("", _SCRIPT.sub("", str(text))).strip()


def new_token() -> str:
    """44-char base64 token (contains ``+ / =`` like the real ones)."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


class InstanceService:
    """All instances, cached in memory and written through to SQLite."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.RLock()
        self._by_id: dict[int, dict[str, Any]] = {}
        self._deleted_tokens: set[str] = set()
        for iid, deleted, data in store.conn().execute("SELECT id, deleted, data FROM instances"):
            inst = json.loads(data)
            if deleted:
                self._deleted_tokens.add(inst["token"])
            else:
                self._by_id[iid] = inst

    # ------------------------------------------------------------ helpers
    @staticmethod
    def element_of(inst: dict[str, Any]) -> ElementDef:
        element = find_element(inst["element"]["key"])
        assert element is not None
        return element

    def _save(self, inst: dict[str, Any], deleted: bool = False) -> None:
        with self.store.tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO instances (id, token, deleted, data) VALUES (?, ?, ?, ?)",
                (inst["id"], inst["token"], int(deleted), json.dumps(inst)),
            )

    def _set_config(self, inst: dict[str, Any], config: dict[str, Any]) -> None:
        ids = inst.setdefault("configIds", {})
        for key, value in config.items():
            if value == MASK and key in inst["configuration"]:
                continue  # a masked value echoed back must not overwrite the secret
            inst["configuration"][key] = (
                None
                if value is None
                else value
                if isinstance(value, str)
                else (
                    json.dumps(value)
                    if isinstance(value, (dict, list))
                    else str(value).lower()
                    if isinstance(value, bool)
                    else str(value)
                )
            )
            if key not in ids:
                ids[key] = self.store.next_counter("config_id", 5001)
        inst["eventsEnabled"] = truthy(inst["configuration"].get("event.notification.enabled"))

    @staticmethod
    def public(inst: dict[str, Any]) -> dict[str, Any]:
        """Response shape (reference §2.2.3) with secrets masked."""
        out = {k: copy.deepcopy(v) for k, v in inst.items() if k not in ("configIds",)}
        out["configuration"] = {
            k: (MASK if k in SECRET_CONFIG_KEYS and v not in (None, "") else v)
            for k, v in inst["configuration"].items()
        }
        if "providerData" in out:
            out["providerData"] = {
                k: (MASK if k in _MASKED_PROVIDER_KEYS else v) for k, v in out["providerData"].items()
            }
        return out

    # ------------------------------------------------------------ CRUD
    def create(self, body: dict[str, Any], validate: bool = True) -> dict[str, Any]:
        """Create from a ``POST /instances`` body (reference §2.2.1-2.2.2).

        :raises CEError: 400 for an unknown element, a missing name, or missing required
            configuration / providerData keys (all missing keys are named).
        """
        if not isinstance(body, dict):
            raise CEError(400, "Request body must be a JSON object")
        element_ref = body.get("element") or {}
        element = (
            find_element(element_ref.get("key") or element_ref.get("id") or "")
            if isinstance(element_ref, dict)
            else None
        )
        if element is None:
            raise CEError(
                400,
                f"Element not found: {element_ref!r}. Known keys: quickbooks, quickbooksonprem, "
                "freshbooksv2, freshbooks",
            )
        config = body.get("configuration") or {}
        provider = body.get("providerData") or {}
        if validate:
            if not str(body.get("name") or "").strip():
                raise CEError(400, "Instance 'name' is required")
            need_config, need_provider = required_keys(element, body)
            missing = [k for k in need_config if config.get(k) in (None, "")]
            missing += [f"providerData.{k}" for k in need_provider if provider.get(k) in (None, "")]
            if missing:
                raise CEError(
                    400,
                    f"Missing required configuration entries: {', '.join(missing)}",
                    provider_message=f"The following required configuration entries were not "
                    f"provided for element '{element.key}': {', '.join(missing)}",
                )
        with self._lock:
            iid = self.store.next_counter("instance_id", 10001)
            now = timefmt.now_ms()
            inst: dict[str, Any] = {
                "id": iid,
                "name": _sanitize(body.get("name") or f"{element.key}-{iid}"),
                "createdDate": timefmt.iso_utc(now),
                "updatedDate": timefmt.iso_utc(now),
                "token": new_token(),
                "element": element.public(),
                "elementId": element.id,
                "tags": [_sanitize(t) for t in body.get("tags") or []],
                "provisionInteractions": [],
                "valid": True,
                "disabled": False,
                "maxCacheSize": 0,
                "cacheTimeToLive": 0,
                "configuration": {},
                "eventsEnabled": False,
                "traceLoggingEnabled": False,
                "cachingEnabled": False,
                # common resources (reference §10.4): apply transformations / inherit the
                # organization- and account-level ones (see commonresources.py)
                "transformationsEnabled": _flag(body, "transformationsEnabled", True),
                "defaultTransformations": _flag(body, "defaultTransformations", True),
                "externalAuthentication": body.get("externalAuthentication") or "none",
                "providerData": dict(provider),
                "user": dict(DEV_USER),
            }
            defaults = default_configuration(element)
            self._set_config(inst, {**defaults, **config})
            self._by_id[iid] = inst
            self._save(inst)
            return inst

    def all(self, tags: list[str] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            out = sorted(self._by_id.values(), key=lambda i: i["id"])
        if tags:
            out = [i for i in out if set(tags) <= set(i.get("tags") or [])]
        return out

    def get(self, iid: int) -> dict[str, Any]:
        """:raises CEError: 404 for an unknown/deleted id."""
        inst = self._by_id.get(int(iid))
        if inst is None:
            raise CEError(404, f"No instance found with id {iid}")
        return inst

    def by_token(self, token: str) -> dict[str, Any]:
        """Instance of an Element token. :raises CEError: 401 unknown/deleted, 403 disabled."""
        with self._lock:
            inst = next((i for i in self._by_id.values() if i["token"] == token), None)
        if inst is None:
            raise CEError(401, "Invalid Organization or User secret, or invalid Element token provided.")
        if inst.get("disabled"):
            raise CEError(403, f"Element instance {inst['id']} is disabled")
        return inst

    def update(self, iid: int, body: dict[str, Any], full: bool) -> dict[str, Any]:
        """``PUT`` (``full``: name required, tags replaced) or ``PATCH`` (only given fields).

        Configuration maps are merged; masked values are ignored; ``providerData`` (e.g. a fresh
        ``code``) is merged too (re-authorization in place, reference §2.3).
        """
        if not isinstance(body, dict):
            raise CEError(400, "Request body must be a JSON object")
        with self._lock:
            inst = self.get(iid)
            if full and not str(body.get("name") or "").strip():
                raise CEError(400, "Instance 'name' is required")
            if body.get("name"):
                inst["name"] = _sanitize(body["name"])
            if "tags" in body or full:
                inst["tags"] = [_sanitize(t) for t in body.get("tags") or []]
            if isinstance(body.get("configuration"), dict):
                self._set_config(inst, body["configuration"])
            if isinstance(body.get("providerData"), dict):
                inst.setdefault("providerData", {}).update(body["providerData"])
            for flag in ("transformationsEnabled", "defaultTransformations"):
                if flag in body:
                    inst[flag] = _flag(body, flag, True)
            inst["updatedDate"] = timefmt.iso_utc(timefmt.now_ms())
            self._save(inst)
            return inst

    def delete(self, iid: int) -> dict[str, Any]:
        with self._lock:
            inst = self.get(iid)
            del self._by_id[inst["id"]]
            self._deleted_tokens.add(inst["token"])
            self._save(inst, deleted=True)
            return inst

    def set_enabled(self, iid: int, enabled: bool) -> dict[str, Any]:
        with self._lock:
            inst = self.get(iid)
            inst["disabled"] = not enabled
            self._save(inst)
            return inst

    # ------------------------------------------------------------ configuration entries
    def config_entries(self, iid: int) -> list[dict[str, Any]]:
        inst = self.get(iid)
        return [self._entry(inst, key) for key in sorted(inst["configuration"], key=lambda k: inst["configIds"][k])]

    @staticmethod
    def _entry(inst: dict[str, Any], key: str) -> dict[str, Any]:
        value = inst["configuration"][key]
        secret = key in SECRET_CONFIG_KEYS
        return {
            "id": inst["configIds"][key],
            "key": key,
            "name": key,
            "propertyValue": MASK if secret and value not in (None, "") else value,
            "type": "PASSWORD" if secret else "TEXTFIELD_32",
            "hideFromConsole": False,
            "required": False,
            "description": key,
        }

    def config_entry(self, iid: int, config_id: int) -> dict[str, Any]:
        inst = self.get(iid)
        key = next((k for k, v in inst["configIds"].items() if v == int(config_id)), None)
        if key is None:
            raise CEError(404, f"No configuration entry {config_id} on instance {iid}")
        return self._entry(inst, key)

    def patch_config_entry(self, iid: int, config_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """Set one entry's ``propertyValue`` (reference §2.2, §2.2.5)."""
        entry = self.config_entry(iid, config_id)
        if not isinstance(body, dict) or "propertyValue" not in body:
            raise CEError(400, "Body must carry 'propertyValue'")
        self.update(iid, {"configuration": {entry["key"]: body["propertyValue"]}}, full=False)
        return self.config_entry(iid, config_id)


def event_settings(inst: dict[str, Any]) -> dict[str, Any]:
    """Parsed events configuration of an instance (reference §2.2.5, §5.3)."""
    cfg = inst["configuration"]
    vendor = str(cfg.get("event.vendor.type") or "").lower()
    try:
        minutes = float(cfg.get("event.poller.refresh_interval") or 15)
    except ValueError:
        minutes = 15.0
    return {
        "enabled": truthy(cfg.get("event.notification.enabled")),
        "mode": "webhook" if vendor in ("webhook", "webhooks") else "polling",
        "callback_url": cfg.get("event.notification.callback.url") or None,
        "signature_key": cfg.get("event.notification.signature.key") or None,
        "refresh_minutes": minutes,
    }


# Backwards-compatible alias used by other test suites (``emu.state.instances.list()``); defined
# outside the class body so ``list[...]`` annotations inside the class keep meaning the builtin.
InstanceService.list = InstanceService.all  # type: ignore[attr-defined]
