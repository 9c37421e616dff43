"""Element and hub catalog + OAuth helpers (reference §2.1). No Cloud Elements auth required."""

from __future__ import annotations

import secrets
import urllib.parse
from typing import Any

from fastapi import APIRouter, Request

from cloudelements_emulator.deps import API, JsonBody
from cloudelements_emulator.elements import ELEMENTS, ElementDef, find_element
from cloudelements_emulator.errors import CEError

router = APIRouter(prefix=API, tags=["elements"])

_HUB = {
    "key": "finance",
    "name": "Finance",
    "description": "Finance hub (accounting): QuickBooks Online, QuickBooks Enterprise, FreshBooks",
    "active": True,
}


def _element(key_or_id: str) -> ElementDef:
    element = find_element(key_or_id)
    if element is None:
        raise CEError(404, f"No element found with key or id '{key_or_id}'")
    return element


@router.get("/elements")
def list_elements() -> list[dict[str, Any]]:
    """All emulated elements (reference §2.1)."""
    return [e.public() for e in ELEMENTS.values()]


@router.get("/elements/keys")
def element_keys() -> list[str]:
    return list(ELEMENTS)


@router.get("/elements/{key_or_id}")
def get_element(key_or_id: str) -> dict[str, Any]:
    return _element(key_or_id).public()


def _oauth_url(element: ElementDef, params: dict[str, Any]) -> dict[str, str]:
    """Provider authorize URL per element (reference §2.1 examples).

    :raises CEError: 400 when ``apiKey``/``callbackUrl`` (or OAuth1 ``requestToken``, FreshBooks
        Classic ``siteAddress``) are missing, or for QuickBooks Enterprise (no OAuth).
    """
    missing = [k for k in ("apiKey", "apiSecret", "callbackUrl") if not params.get(k)]
    if element.style == "qbe":
        raise CEError(400, f"Element '{element.key}' does not use OAuth")
    state = params.get("state") or element.key
    callback = str(params.get("callbackUrl") or "")
    if element.key == "freshbooks":
        missing += [k for k in ("requestToken", "siteAddress") if not params.get(k)]
    if missing:
        raise CEError(400, f"Missing required parameter(s): {', '.join(missing)}")
    q = urllib.parse.urlencode
    if element.key == "freshbooks":
        url = f"https://{params['siteAddress']}.freshbooks.com/oauth/oauth_authorize.php?" + q(
            {"oauth_token": params["requestToken"], "oauth_callback": f"{callback}?state={state}"}
        )
    elif element.key == "quickbooks" and params.get("requestToken"):
        url = "https://appcenter.intuit.com/Connect/Begin?" + q(
            {"oauth_token": params["requestToken"], "oauth_callback": f"{callback}?state={state}"}
        )
    elif element.key == "quickbooks":
        url = "https://appcenter.intuit.com/connect/oauth2?" + q(
            {
                "scope": params.get("scope") or "com.intuit.quickbooks.accounting",
                "response_type": "code",
                "redirect_uri": callback,
                "state": state,
                "client_id": params["apiKey"],
            }
        )
    else:
        url = "https://my.freshbooks.com/service/auth/oauth/authorize?" + q(
            {"response_type": "code", "redirect_uri": callback, "state": state, "client_id": params["apiKey"]}
        )
    return {"element": element.key, "oauthUrl": url}


@router.get("/elements/{key_or_id}/oauth/url")
def oauth_url(key_or_id: str, request: Request) -> dict[str, str]:
    """Provider authorize URL: ``GET /elements/{key}/oauth/url?apiKey&apiSecret&callbackUrl``.

    Optional: ``state``, ``requestToken`` (OAuth1), ``siteAddress`` (FreshBooks Classic), ``scope``.
    """
    return _oauth_url(_element(key_or_id), dict(request.query_params))


@router.post("/elements/{key_or_id}/oauth/url")
async def oauth_url_post(key_or_id: str, request: Request, body: JsonBody) -> dict[str, str]:
    """Body form ``{apiKey, apiSecret, callbackUrl, ...}`` (query parameters also honoured)."""
    params = {**dict(request.query_params), **(body if isinstance(body, dict) else {})}
    return _oauth_url(_element(key_or_id), params)


@router.get("/elements/{key_or_id}/oauth/token")
def oauth_token(key_or_id: str, request: Request) -> dict[str, str]:
    """OAuth1 request token (QuickBooks Online legacy, FreshBooks Classic): ``{"token", "secret"}``."""
    element = _element(key_or_id)
    if not element.oauth1:
        raise CEError(400, f"Element '{element.key}' does not use OAuth 1.0a; use /oauth/url")
    missing = [k for k in ("apiKey", "apiSecret", "callbackUrl") if not request.query_params.get(k)]
    if missing:
        raise CEError(400, f"Missing required parameter(s): {', '.join(missing)}")
    return {"token": "qyprd" + secrets.token_urlsafe(30), "secret": secrets.token_urlsafe(27)}


@router.get("/hubs")
def list_hubs() -> list[dict[str, Any]]:
    return [{**_HUB, "elements": list(ELEMENTS)}]


@router.get("/hubs/keys")
def hub_keys() -> list[str]:
    return ["finance"]


@router.get("/hubs/{key}")
def get_hub(key: str) -> dict[str, Any]:
    if key != "finance":
        raise CEError(404, f"No hub found with key '{key}' (the emulator provides 'finance')")
    return {**_HUB, "elements": list(ELEMENTS)}


@router.get("/hubs/{key}/elements")
def hub_elements(key: str) -> list[dict[str, Any]]:
    get_hub(key)
    return [e.public() for e in ELEMENTS.values()]
