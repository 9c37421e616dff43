"""Landing to S3 through a named Airflow connection, against a real S3 API (a moto server on loopback).

The flagship operators land a bulk extract, a paged extract and a report to ``s3://bucket/prefix`` with
``output_conn_id`` (an ``aws`` connection whose ``endpoint_url`` is the moto server), the SQL load operator
loads the extracts from S3, and the warehouse rows equal the emulator's ground truth (ids and content).
A missing bucket fails before any bulk job is submitted and is never created. A rerun of an interval is
watched call by call (a botocore hook lists the partition after every S3 write/delete): the partition
always holds a manifest naming files that exist, and no object is ever copied (data goes up once).
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.operators.reports import CloudElementsReportOperator
from airflow_provider_cloudelements.storage import output_root
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.changes import (
    CloudElementsChangedRecordsOperator,
)
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator
from airflow_provider_cloudelements.utils.records import record_id
from tests.integration.conftest import aws_connection_json, moto_client
from tests.operators.conftest import Ctx, run_operator

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

S3_CONN = "ce_s3"
BUCKET = "ce-landing"
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
END = datetime(2025, 7, 1, tzinfo=timezone.utc)


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 client of the moto server (the test's own view) and the ``ce_s3`` Airflow connection."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(f"AIRFLOW_CONN_{S3_CONN.upper()}", aws_connection_json(moto_endpoint))
    # Airflow caches one filesystem per (protocol, conn_id) for the process: drop one built before the
    # connection pointed at this server
    from airflow.sdk.io.store import _STORE_CACHE

    _STORE_CACHE.pop(f"s3-{S3_CONN}", None)
    client = moto_client(moto_endpoint)
    if BUCKET not in {b["Name"] for b in client.list_buckets()["Buckets"]}:
        client.create_bucket(Bucket=BUCKET)
    return client


def keys(client: Any, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def key_of(uri: str) -> str:
    """``s3://ce_s3@ce-landing/a/b`` -> ``a/b``."""
    assert uri.startswith(f"s3://{S3_CONN}@{BUCKET}/"), uri
    return uri.split(f"{BUCKET}/", 1)[1]


def body(client: Any, uri: str) -> bytes:
    return client.get_object(Bucket=BUCKET, Key=key_of(uri))["Body"].read()


def ndjson(client: Any, uri: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in body(client, uri).splitlines() if line.strip()]


def warehouse_rows(db: Path, table: str, instance_id: int) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        return {
            str(r[0]): json.loads(r[1])
            for r in conn.execute(
                f'select record_id, data from "{table}" where instance_id = ? and is_deleted = 0', (instance_id,)
            )
        }


def by_id(records: list[dict[str, Any]], element: str) -> dict[str, dict[str, Any]]:
    return {record_id(r, element): r for r in records}


def bulk(iid: int, prefix: str, **kwargs: Any) -> CloudElementsBulkExtractOperator:
    return CloudElementsBulkExtractOperator(
        task_id="invoices",
        instance_id=iid,
        resource=kwargs.pop("resource", "invoices"),
        output_base=f"s3://{BUCKET}/{prefix}",
        output_conn_id=S3_CONN,
        deferrable=False,
        poll_interval=0.05,
        timeout=60,
        **kwargs,
    )


def test_bulk_and_paged_extracts_land_in_s3_and_load_into_sql(
    emu: Any, conn: str, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    element = "quickbooks"
    iid = emu.state.create_instance(element, "s3-landing")["id"]
    prefix = f"run-{uuid.uuid4().hex[:8]}"
    ctx = Ctx(data_interval_start=START, data_interval_end=END)

    invoices = run_operator(bulk(iid, prefix), ctx, expect_defer=False)
    paged_op = CloudElementsPagedExtractOperator(
        task_id="customers",
        instance_id=iid,
        resource="customers",
        output_base=f"s3://{BUCKET}/{prefix}",
        output_conn_id=S3_CONN,
        page_size=7,
    )
    customers = run_operator(paged_op, Ctx(data_interval_start=START, data_interval_end=END), expect_defer=False)

    # the manifests name the files through the storage connection; the bucket holds exactly data + manifest
    for manifest, resource in ((invoices, "invoices"), (customers, "customers")):
        folder = f"{prefix}/{element}/instance={iid}/{resource}/"
        assert key_of(manifest["manifest_path"]).startswith(folder)
        assert keys(s3, folder) == sorted([key_of(manifest["path"]), key_of(manifest["manifest_path"])])
        assert json.loads(body(s3, manifest["manifest_path"]))["path"] == manifest["path"]
        truth = emu.state.records(iid, resource)
        assert truth and manifest["records"] == len(truth)
        assert by_id(ndjson(s3, manifest["path"]), element) == by_id(truth, element)

    db = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_CE_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    CloudElementsSqlUpsertOperator(task_id="load", manifest=[invoices, customers], conn_id="ce_warehouse").execute(
        Ctx().context
    )
    for resource in ("invoices", "customers"):
        truth = by_id(emu.state.records(iid, resource), element)
        assert warehouse_rows(db, f"ce_{element}_{resource}", iid) == truth


def test_report_lands_in_s3_with_the_connection_in_the_uri(emu: Any, conn: str, s3: Any) -> None:
    """``s3://<conn_id>@bucket/prefix`` (no ``output_conn_id``) reaches the same connection."""
    iid = emu.state.create_instance("quickbooks", "s3-report")["id"]
    prefix = f"rep-{uuid.uuid4().hex[:8]}"
    manifest = run_operator(
        CloudElementsReportOperator(
            task_id="pnl", report="profit-and-loss", instance_id=iid, output_base=f"s3://{S3_CONN}@{BUCKET}/{prefix}"
        ),
        Ctx(data_interval_start=START, data_interval_end=END),
        expect_defer=False,
    )
    folder = f"{prefix}/quickbooks/instance={iid}/reports/profit-and-loss/"
    landed = [key_of(manifest[k]) for k in ("path", "report_path", "manifest_path")]
    assert keys(s3, folder) == sorted(landed)
    report = json.loads(body(s3, manifest["report_path"]))
    assert (report["header"]["startPeriod"], report["header"]["endPeriod"]) == ("2025-01-01", "2025-06-30")
    rows = ndjson(s3, manifest["path"])
    assert rows and len(rows) == manifest["records"]


def test_missing_bucket_fails_before_the_job_and_is_not_created(emu: Any, conn: str, s3: Any) -> None:
    iid = emu.state.create_instance("quickbooks", "s3-missing-bucket")["id"]
    jobs_before = len(emu.state.bulk._all())
    op = CloudElementsBulkExtractOperator(
        task_id="invoices",
        instance_id=iid,
        resource="invoices",
        output_base="s3://ce-landing-misspelled/x",
        output_conn_id=S3_CONN,
        deferrable=False,
        poll_interval=0.05,
    )
    with pytest.raises(CloudElementsConfigError, match=r"bucket 'ce-landing-misspelled' does not exist.*ce_s3"):
        op.execute(Ctx(data_interval_start=START, data_interval_end=END).context)
    assert "ce-landing-misspelled" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    assert len(emu.state.bulk._all()) == jobs_before, "a bulk job was submitted for an unusable output_base"


@pytest.mark.parametrize("operator", ["bulk", "paged", "report", "changes"])
def test_missing_credentials_fail_before_the_job_naming_the_connection(
    emu: Any, conn: str, moto_endpoint: str, s3: Any, monkeypatch: pytest.MonkeyPatch, operator: str
) -> None:
    """A storage connection without credentials, on a machine with none: a typed error before any job.

    The ``aws`` connection names the S3 endpoint but no access key; the environment has no AWS variables,
    no shared credentials/config file and no instance metadata service, so botocore's chain finds nothing.
    The Amazon provider then silently falls back to anonymous access, which moto (no auth enforcement)
    would accept for the existing bucket: the operator must refuse it before it asks Cloud Elements for
    anything but the instance (no bulk job, no page, no report) and name the connection, never a secret.
    """
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    missing = str(Path(str(uuid.uuid4())).resolve())
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", missing)
    monkeypatch.setenv("AWS_CONFIG_FILE", missing)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    conn_id = "ce_s3_nocreds"
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps({"conn_type": "aws", "extra": {"endpoint_url": moto_endpoint, "region_name": "us-east-1"}}),
    )
    from airflow.sdk.io.store import _STORE_CACHE

    _STORE_CACHE.pop(f"s3-{conn_id}", None)
    iid = emu.state.create_instance("quickbooks", f"s3-nocreds-{operator}")["id"]
    jobs_before, requests_before = len(emu.state.bulk._all()), emu.state.stats()["requests"]
    common = {"instance_id": iid, "output_base": f"s3://{BUCKET}/nocreds", "output_conn_id": conn_id}
    op: Any
    if operator == "bulk":
        op = CloudElementsBulkExtractOperator(task_id="t", resource="invoices", deferrable=False, **common)
    elif operator == "paged":
        op = CloudElementsPagedExtractOperator(task_id="t", resource="invoices", **common)
    elif operator == "report":
        op = CloudElementsReportOperator(task_id="t", report="profit-and-loss", **common)
    else:
        invoice = emu.state.records(iid, "invoices")[0]
        event = {"objectType": "invoices", "objectId": invoice["id"], "eventType": "UPDATED", "eventDate": "2025-02-01"}
        op = CloudElementsChangedRecordsOperator(task_id="t", events=[event], **common)
    with pytest.raises(CloudElementsConfigError) as caught:
        op.execute(Ctx(data_interval_start=START, data_interval_end=END).context)
    message = str(caught.value)
    assert conn_id in message and "credentials" in message.lower(), message
    assert len(emu.state.bulk._all()) == jobs_before, "a bulk job was submitted without storage credentials"
    # the instance is read (its element key names the partition folder); nothing else is asked for
    after = emu.state.stats()["requests"]
    asked = {route for route, n in after.items() if n != requests_before.get(route, 0)}
    assert asked <= {"GET /elements/api-v2/instances/{instance_id}"}, asked
    assert not keys(s3, "nocreds/"), "something was written anonymously"


def test_a_scheme_without_its_provider_fails_before_the_job_naming_what_to_install(emu: Any, conn: str) -> None:
    """``gs://`` with the Google provider not installed: a typed error naming it, before any bulk job.

    Airflow raises a bare ``ValueError("No filesystem registered for scheme gs")`` on first use of the
    path; before, that surfaced as "cannot access bucket: ValueError".
    """
    import importlib.util

    if importlib.util.find_spec("airflow.providers.google") is not None:
        pytest.skip("the Google provider is installed here: gs:// has a filesystem")
    iid = emu.state.create_instance("quickbooks", "gs-no-provider")["id"]
    jobs_before = len(emu.state.bulk._all())
    op = CloudElementsBulkExtractOperator(
        task_id="invoices", instance_id=iid, resource="invoices", output_base="gs://ce-landing/x", deferrable=False
    )
    with pytest.raises(
        CloudElementsConfigError, match=r"no filesystem is registered for gs://.*apache-airflow-providers-google"
    ):
        op.execute(Ctx(data_interval_start=START, data_interval_end=END).context)
    assert len(emu.state.bulk._all()) == jobs_before


def test_output_conn_id_is_checked_against_the_uri() -> None:
    with pytest.raises(CloudElementsConfigError, match="contradicts"):
        output_root("s3://other@bucket/x", S3_CONN)
    with pytest.raises(CloudElementsConfigError, match="local"):
        output_root("/tmp/landing", S3_CONN)
    assert str(output_root("s3://bucket/x", S3_CONN)) == f"s3://{S3_CONN}@bucket/x"


class PartitionWatch:
    """After every S3 write/delete the operator makes, list the partition and check it (test's own client).

    ``states`` collects ``(operation, key, consistent)``; consistent = a ``_manifest.json`` is present and
    every file it names exists (or, before the first publish, the folder has no manifest yet).
    """

    WRITES = {"PutObject", "CompleteMultipartUpload", "CopyObject", "UploadPartCopy", "DeleteObject", "DeleteObjects"}

    def __init__(self, client: Any, folder: str) -> None:
        self.client = client
        self.folder = folder
        self.ops: list[tuple[str, str]] = []
        self.states: list[tuple[str, str, bool | None]] = []

    def remember_keys(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        """``before-parameter-build``: note the keys a call is about (``after-call`` does not get them)."""
        objects = (params.get("Delete") or {}).get("Objects") or []
        context["ce_keys"] = [str(params["Key"])] if params.get("Key") else [str(o.get("Key")) for o in objects]

    def __call__(self, event_name: str, context: dict[str, Any], **_: Any) -> None:
        """``after-call``: record the operation and the partition's state right after it."""
        op = event_name.rsplit(".", 1)[-1]
        if op not in self.WRITES:
            return
        for key in context.get("ce_keys") or [""]:
            self.ops.append((op, key))
        if any(k.startswith(self.folder) for k in context.get("ce_keys") or []):
            self.states.append((op, ",".join(context["ce_keys"]), self.consistent()))

    def consistent(self) -> bool | None:
        present = set(keys(self.client, self.folder))
        manifest_key = self.folder + "_manifest.json"
        if manifest_key not in present:
            return None
        manifest = json.loads(self.client.get_object(Bucket=BUCKET, Key=manifest_key)["Body"].read())
        named = [manifest[k] for k in ("path", "deleted_path", "errors_path") if manifest.get(k)]
        return all(key_of(n) in present for n in named)


def test_rerun_never_leaves_the_partition_without_a_consistent_pair_and_copies_nothing(
    emu: Any, conn: str, s3: Any
) -> None:
    from airflow.sdk import ObjectStoragePath

    element = "quickbooks"
    iid = emu.state.create_instance(element, "s3-rerun")["id"]
    prefix = f"rerun-{uuid.uuid4().hex[:8]}"
    first = run_operator(bulk(iid, prefix), Ctx(data_interval_start=START, data_interval_end=END), expect_defer=False)
    folder = key_of(first["manifest_path"]).rsplit("/", 1)[0] + "/"
    emu.state.simulate_activity(iid, ["invoices"], creates=3)  # the rerun sees different data

    fs = ObjectStoragePath(f"s3://{BUCKET}/", conn_id=S3_CONN).fs  # the operators' (cached) filesystem
    fs.connect()
    watch = PartitionWatch(s3, folder)
    fs.s3.meta.events.register("before-parameter-build.s3", watch.remember_keys)
    fs.s3.meta.events.register("after-call.s3", watch)
    try:
        second = run_operator(
            bulk(iid, prefix), Ctx(data_interval_start=START, data_interval_end=END), expect_defer=False
        )
    finally:
        fs.s3.meta.events.unregister("after-call.s3", watch)
        fs.s3.meta.events.unregister("before-parameter-build.s3", watch.remember_keys)

    assert second["path"] != first["path"]
    assert watch.states, "no S3 write of the rerun was observed"
    assert all(state is True for _, _, state in watch.states), watch.states
    assert not [o for o in watch.ops if o[0] in ("CopyObject", "UploadPartCopy")], watch.ops
    data_puts = [
        k for op, k in watch.ops if op in ("PutObject", "CompleteMultipartUpload") and k == key_of(second["path"])
    ]
    assert data_puts == [key_of(second["path"])], watch.ops  # uploaded once, straight to its final key
    # the manifest went up after the data, the old data file was removed after the manifest
    order = [k for _, k in watch.ops]
    assert order.index(key_of(second["path"])) < order.index(folder + "_manifest.json")
    deleted = [k for op, k in watch.ops if op in ("DeleteObject", "DeleteObjects")]
    assert key_of(first["path"]) in deleted and order.index(folder + "_manifest.json") < order.index(
        key_of(first["path"])
    )
    assert keys(s3, folder) == sorted([key_of(second["path"]), folder + "_manifest.json"])
    assert by_id(ndjson(s3, second["path"]), element) == by_id(emu.state.records(iid, "invoices"), element)
