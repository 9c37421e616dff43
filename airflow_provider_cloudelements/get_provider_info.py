"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

Declares the ``cloudelements`` connection type with its form (``conn-fields`` and
``ui-field-behaviour``: the Airflow 3.2+ way; the hook's deprecated ``get_connection_form_widgets`` is
not used). Every public hook, operator, sensor, trigger and extra link of the package is listed here
(tests/unit/test_provider_info.py walks the package and fails on a missing one).
"""

from __future__ import annotations

from typing import Any

_P = "airflow_provider_cloudelements"

#: The connection form (extras). Literal numbers on purpose: importing the hook here would import
#: Airflow's SDK at provider discovery; tests/unit/test_provider_info.py checks they equal the
#: hook's defaults (``DEFAULT_*`` in hooks/, client/retry.py, client/budget.py, client/transport.py).
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "user_secret": {
        "label": "User secret",
        "schema": {"type": ["string", "null"], "format": "password"},
        "description": "Required. Cloud Elements / SAP Open Connectors User secret (console: profile "
        "settings). Sent as 'User <secret>' in the Authorization header; masked in logs.",
    },
    "organization_secret": {
        "label": "Organization secret",
        "schema": {"type": ["string", "null"], "format": "password"},
        "description": "Required. Organization secret (console: profile settings). Sent as "
        "'Organization <secret>'; masked in logs.",
    },
    "element_token": {
        "label": "Element token",
        "schema": {"type": ["string", "null"], "format": "password"},
        "description": "Optional. Element instance token. Leave empty to resolve it from the instance "
        "id (GET /instances/{id}) at run time; masked in logs.",
    },
    "instance_id": {
        "label": "Element instance id",
        "schema": {"type": ["integer", "null"]},
        "description": "Optional. Default element instance id (integer) for operators that do not pass instance_id.",
    },
    "connect_timeout": {
        "label": "Connect timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 10},
        "description": "Seconds to establish a TCP/TLS connection (default 10).",
    },
    "read_timeout": {
        "label": "Read timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 120},
        "description": "Seconds to wait between bytes of a response (default 120; QuickBooks pages can be slow).",
    },
    "page_size": {
        "label": "Page size (records per hub GET)",
        "schema": {"type": ["integer", "null"], "default": 200},
        "description": "Records per Finance-hub GET page (default 200, the QuickBooks Online maximum).",
    },
    "retry_budget": {
        "label": "Retry time budget (seconds)",
        "schema": {"type": ["number", "null"], "default": 300},
        "description": "Total seconds one API call may spend retrying 429/5xx/timeouts (default 300; 0 = "
        "no retry). A refused connection or unknown host fails on the first attempt instead.",
    },
    "max_requests_per_minute": {
        "label": "Max requests per minute",
        "schema": {"type": ["integer", "null"], "default": 500},
        "description": "Client-side rate budget per element instance (default 500, Intuit's QuickBooks "
        "Online limit per realm).",
    },
    "max_concurrent_requests": {
        "label": "Max concurrent requests",
        "schema": {"type": ["integer", "null"], "default": 10},
        "description": "Client-side concurrency budget per element instance (default 10, Intuit's "
        "QuickBooks Online limit per realm).",
    },
    "budget_store": {
        "label": "Shared budget store",
        "schema": {"type": ["string", "null"], "format": "password"},
        "description": "Optional. Where the request budget is shared by every worker and the triggerer: "
        "'metadata' (Airflow's metadata database) or a SQLAlchemy URL (e.g. a SQLite file on a shared "
        "path); empty = per process. Hidden in the form because a URL may carry a password "
        "(docs/multi-tenant.md).",
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider metadata Airflow's ``ProvidersManager`` validates and reads.

    Shape: Airflow's ``provider_info.schema.json`` — ``package-name``, ``integrations``, ``hooks`` /
    ``operators`` / ``sensors`` / ``triggers`` (``python-modules`` lists), ``extra-links`` (class paths)
    and one ``connection-types`` entry with the form (:data:`CONN_FIELDS`). Modules that move data
    between systems may instead be listed under ``transfers`` (``python-module``); the test accepts
    either. Nothing here imports Airflow or the hooks, so provider discovery stays cheap.
    """
    return {
        "package-name": "airflow-provider-cloudelements",
        "name": "Cloud Elements",
        "description": "Cloud Elements Finance hub (QuickBooks Online, QuickBooks Enterprise, FreshBooks): "
        "bulk extracts to object storage, deferrable triggers, event sensors, an offline emulator.",
        "versions": ["0.1.0"],
        "integrations": [
            {
                "integration-name": "Cloud Elements",
                "external-doc-url": "https://docs.cloud-elements.com/",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Cloud Elements",
                # the two hooks, their shared base and the sync hook's API areas (mixins)
                "python-modules": [
                    f"{_P}.hooks.cloudelements",
                    f"{_P}.hooks.cloudelements_async",
                    f"{_P}.hooks.base",
                    f"{_P}.hooks.sync_base",
                    f"{_P}.hooks.platform",
                    f"{_P}.hooks.hub",
                    f"{_P}.hooks.bulk",
                    f"{_P}.hooks.events",
                ],
            }
        ],
        "operators": [
            {
                "integration-name": "Cloud Elements",
                "python-modules": [
                    f"{_P}.operators.instances",
                    f"{_P}.operators.reports",
                    f"{_P}.operators.upload",
                    f"{_P}.operators.discovery",
                    f"{_P}.operators.common_resources",
                ],
            }
        ],
        # Airflow's convention: moves between systems are "transfers" (the old import paths
        # operators.extract / operators.changes / operators.sql still re-export these classes)
        "transfers": [
            *(
                {
                    "source-integration-name": "Cloud Elements",
                    "target-integration-name": "Common IO",
                    "python-module": f"{_P}.transfers.cloudelements_to_storage.{module}",
                }
                for module in ("bulk", "paged", "changes")
            ),
            {
                "source-integration-name": "Common IO",
                "target-integration-name": "Common SQL",
                "python-module": f"{_P}.transfers.storage_to_sql.operator",
            },
        ],
        "sensors": [
            {
                "integration-name": "Cloud Elements",
                "python-modules": [f"{_P}.sensors.events", f"{_P}.sensors.bulk"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Cloud Elements",
                "python-modules": [f"{_P}.triggers.bulk", f"{_P}.triggers.events"],
            }
        ],
        "extra-links": [
            f"{_P}.operators.links.CloudElementsInstanceLink",
        ],
        "connection-types": [
            {
                "hook-name": "Cloud Elements",
                "connection-type": "cloudelements",
                "hook-class-name": f"{_P}.hooks.cloudelements.CloudElementsHook",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "password"],
                    "relabeling": {"host": "Base URL"},
                    "placeholders": {
                        "host": "https://api.cloud-elements.com/elements/api-v2",
                        "extra": '{"user_secret": "…", "organization_secret": "…", "instance_id": 12345}',
                    },
                },
            }
        ],
    }
