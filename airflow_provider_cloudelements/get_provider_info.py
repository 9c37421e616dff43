"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

Declares the ``cloudelements`` connection type with its form (``conn-fields`` and
``ui-field-behaviour``: the Airflow 3.2+ way, see ../shared/airflow-provider-guide.md "Registration").
"""

from __future__ import annotations

from typing import Any

_P = "airflow_provider_cloudelements"


def get_provider_info() -> dict[str, Any]:
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
                "python-modules": [f"{_P}.hooks.cloudelements", f"{_P}.hooks.cloudelements_async"],
            }
        ],
        "operators": [
            {
                "integration-name": "Cloud Elements",
                "python-modules": [f"{_P}.operators.instances", f"{_P}.operators.extract", f"{_P}.operators.sql"],
            }
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
            f"{_P}.operators.links.CloudElementsBulkJobLink",
        ],
        "connection-types": [
            {
                "connection-type": "cloudelements",
                "hook-class-name": f"{_P}.hooks.cloudelements.CloudElementsHook",
                "conn-fields": {
                    "user_secret": {
                        "label": "User secret",
                        "schema": {"type": ["string", "null"], "format": "password"},
                        "description": "Cloud Elements User secret (Profile / account settings).",
                    },
                    "organization_secret": {
                        "label": "Organization secret",
                        "schema": {"type": ["string", "null"], "format": "password"},
                        "description": "Cloud Elements Organization secret.",
                    },
                    "element_token": {
                        "label": "Element token",
                        "schema": {"type": ["string", "null"], "format": "password"},
                        "description": "Element instance token (optional; resolved from the instance id).",
                    },
                    "instance_id": {
                        "label": "Element instance id",
                        "schema": {"type": ["integer", "null"]},
                    },
                    "connect_timeout": {
                        "label": "Connect timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 10},
                    },
                    "read_timeout": {
                        "label": "Read timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 120},
                    },
                    "page_size": {
                        "label": "Page size (records per hub GET)",
                        "schema": {"type": ["integer", "null"], "default": 200},
                    },
                    "retry_budget": {
                        "label": "Retry time budget (seconds)",
                        "schema": {"type": ["number", "null"], "default": 300},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "password"],
                    "relabeling": {"host": "Base URL"},
                    "placeholders": {"host": "https://api.cloud-elements.com/elements/api-v2"},
                },
            }
        ],
    }
