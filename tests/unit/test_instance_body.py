from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.operators.instances import validate_instance_body

QBO_OAUTH2: dict[str, Any] = {
    "element": {"key": "quickbooks"},
    "name": "QBO",
    "providerData": {"code": "c", "realmId": "123"},
    "configuration": {"oauth.api.key": "k", "oauth.api.secret": "s", "oauth.callback.url": "https://x"},
}
QBO_OAUTH1: dict[str, Any] = {
    "element": {"key": "quickbooks"},
    "name": "QBO legacy",
    "providerData": {"oauth_token": "t", "oauth_verifier": "v", "secret": "s", "realmId": "1"},
    "configuration": {"oauth.api.key": "k", "oauth.api.secret": "s", "oauth.callback.url": "https://x"},
}
QBE: dict[str, Any] = {
    "element": {"key": "quickbooksonprem"},
    "name": "QBE",
    "configuration": {"app.name": "a", "host.ip": "https://1.g2c"},
}
FB2: dict[str, Any] = {
    "element": {"key": "freshbooksv2"},
    "name": "FB",
    "providerData": {"code": "c"},
    "configuration": {
        "oauth.api.key": "k",
        "oauth.api.secret": "s",
        "oauth.callback.url": "https://x",
        "business.name": "B",
    },
}


@pytest.mark.parametrize("body", [QBO_OAUTH2, QBO_OAUTH1, QBE, FB2])
def test_valid_bodies_pass(body: dict[str, Any]) -> None:
    assert validate_instance_body(body) == body["element"]["key"]


def test_external_authentication_skips_provider_data() -> None:
    body = {**QBE, "element": {"key": "quickbooks"}, "externalAuthentication": "initial", "configuration": {}}
    assert validate_instance_body(body) == "quickbooks"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({**QBE, "element": {"key": "sage"}}, "Unknown element key"),
        ({**QBE, "element": {}}, "element.key"),
        ({**QBE, "name": ""}, "name"),
        ({**QBE, "tags": "finance"}, "tags"),
        ({**QBE, "configuration": {"app.name": "a"}}, "configuration.host.ip"),
        ({**QBO_OAUTH2, "providerData": {"code": "c"}}, "providerData.realmId"),
        ({**FB2, "configuration": {**FB2["configuration"], "business.name": ""}}, "business.name"),
        ("not a dict", "JSON object"),
    ],
)
def test_invalid_bodies_name_what_is_missing(body: Any, needle: str) -> None:
    with pytest.raises(CloudElementsConfigError, match=needle.replace(".", r"\.")):
        validate_instance_body(body)
