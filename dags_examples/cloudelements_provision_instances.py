"""Provision element instances for QuickBooks Online (OAuth2), QuickBooks Enterprise and FreshBooks.

The ``POST /instances`` bodies follow the vendor pages this project started from (reference §2.2.2;
seeds 000-004). Provider app credentials (OAuth client id/secret) come from the
``cloudelements_<element>_app`` connections at run time, so they never appear in this file or in a
rendered template. Against the emulator, any values work; against the real service, ``code`` is the
OAuth grant code from the provider's redirect (``GET /elements/{key}/oauth/url`` builds the link).
The last task deletes a scratch instance to show the delete operator.
"""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_cloudelements.operators.instances import (
    CloudElementsCreateInstanceOperator,
    CloudElementsDeleteInstanceOperator,
)

CALLBACK = os.environ.get("CLOUDELEMENTS_OAUTH_CALLBACK", "https://example.com/oauth/callback")

with DAG(
    dag_id="cloudelements_provision_instances",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["cloudelements", "provisioning"],
):
    qbo = CloudElementsCreateInstanceOperator(
        task_id="quickbooks_online_oauth2",
        configuration_conn_id="cloudelements_quickbooks_app",
        body={
            "element": {"key": "quickbooks"},
            "name": "QuickBooks Online (OAuth2)",
            "tags": ["provisioned"],
            "providerData": {
                "code": os.environ.get("CLOUDELEMENTS_QBO_CODE", "demo-oauth2-grant-code"),
                "realmId": os.environ.get("CLOUDELEMENTS_QBO_REALM_ID", "123146096291789"),
            },
            "configuration": {
                "oauth.callback.url": CALLBACK,
                "authentication.type": "oauth2",
                "scope": "com.intuit.quickbooks.accounting openid profile email phone address",
                "event.notification.enabled": "true",
                "event.vendor.type": "polling",
                "event.poller.refresh_interval": "15",
            },
        },
    )
    qbe = CloudElementsCreateInstanceOperator(
        task_id="quickbooks_enterprise",
        body={
            "element": {"key": "quickbooksonprem"},
            "name": "QuickBooks Enterprise",
            "tags": ["provisioned"],
            "configuration": {
                "app.name": os.environ.get("CLOUDELEMENTS_QBE_APP_NAME", "CE Finance Sync"),
                "host.ip": os.environ.get("CLOUDELEMENTS_QBE_HOST", "https://1234.g2c.cloud-elements.com"),
            },
        },
    )
    freshbooks = CloudElementsCreateInstanceOperator(
        task_id="freshbooks_cloud_accounting",
        configuration_conn_id="cloudelements_freshbooksv2_app",
        body={
            "element": {"key": "freshbooksv2"},
            "name": "FreshBooks Cloud Accounting",
            "tags": ["provisioned"],
            "providerData": {"code": os.environ.get("CLOUDELEMENTS_FRESHBOOKS_CODE", "demo-oauth2-grant-code")},
            "configuration": {
                "oauth.callback.url": CALLBACK,
                "business.name": os.environ.get("CLOUDELEMENTS_FRESHBOOKS_BUSINESS", "Demo Company"),
            },
        },
    )
    scratch = CloudElementsCreateInstanceOperator(
        task_id="scratch_instance",
        reuse_existing=False,
        body={
            "element": {"key": "quickbooksonprem"},
            "name": "scratch",
            "tags": ["scratch"],
            "configuration": {"app.name": "scratch", "host.ip": "https://1.g2c.cloud-elements.com"},
        },
    )
    remove = CloudElementsDeleteInstanceOperator(
        task_id="delete_scratch_instance", instance_id="{{ ti.xcom_pull('scratch_instance')['id'] }}"
    )
    [qbo, qbe, freshbooks] >> scratch >> remove
