"""Landing to Google Cloud Storage through a named Google connection, against a GCS API on loopback.

Runs where the ``gcs`` extra is installed (``make gcs-check``, part of ``.ci/run``; skipped by ``make test``,
whose venv has no Google provider). The GCS API is ``gcp-storage-emulator`` (pure Python, in this process,
127.0.0.1). The Google connection holds a service-account key generated here whose ``token_uri`` is a
token endpoint on loopback, so google-auth really signs a JWT and exchanges it for a bearer token, and
no request leaves the machine.

* a bulk and a paged extract land in ``gs://bucket/prefix`` with ``output_conn_id`` and the SQL load
  operator loads them from there; warehouse rows equal the emulator's ground truth (ids and content);
  a rerun of the interval after an edit leaves only its own data and manifest in the partition, and
  its load brings the warehouse to the new truth;
* no credentials anywhere, an ``is_anonymous`` connection, or no connection at all with no default
  credentials (gcsfs then silently falls back to anonymous access): each is a typed error naming the
  connection before any bulk job is submitted, and nothing is written.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

# gcsfs' experimental zonal/HNS layer (on by default, chosen at import) asks a gRPC control plane for the
# bucket type before object calls; the emulator has none (60 s timeouts and retries per call)
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
pytest.importorskip("airflow.providers.google")
pytest.importorskip("gcsfs")
emulator_server = pytest.importorskip("gcp_storage_emulator.server")

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError  # noqa: E402
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import (  # noqa: E402
    CloudElementsBulkExtractOperator,
)
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import (  # noqa: E402
    CloudElementsPagedExtractOperator,
)
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator  # noqa: E402
from airflow_provider_cloudelements.utils.records import stable_id  # noqa: E402
from tests.integration.test_s3_moto import by_id, warehouse_rows  # noqa: E402
from tests.operators.conftest import Ctx, run_operator  # noqa: E402

GCS_CONN = "ce_gcs"
BUCKET = "ce-landing-gcs"
START = datetime(2025, 1, 1, tzinfo=timezone.utc)
END = datetime(2025, 7, 1, tzinfo=timezone.utc)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def gcs_endpoint() -> Iterator[str]:
    """A GCS JSON API on 127.0.0.1 (in memory) with the landing bucket; stopped after the module."""
    port = _free_port()
    server = emulator_server.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


class _TokenHandler(BaseHTTPRequestHandler):
    """OAuth2 token endpoint: answers a JWT-bearer grant with a bearer token (counts the grants)."""

    grants = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        assert "assertion=" in body, body  # google-auth signed a JWT with the key of the connection
        type(self).grants += 1
        payload = json.dumps({"access_token": "loopback-token", "expires_in": 3600, "token_type": "Bearer"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def token_uri() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", _free_port()), _TokenHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/token"
    finally:
        server.shutdown()
        server.server_close()


def service_account_key(token_uri: str) -> dict[str, str]:
    """A service-account key file (fresh RSA key) whose token exchange goes to ``token_uri``."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "ce-test",
        "private_key_id": uuid.uuid4().hex,
        "private_key": pem,
        "client_email": "landing@ce-test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }


@pytest.fixture
def no_default_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Application Default Credentials: no key file variable, an empty gcloud config, no metadata server."""
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "true")  # gcsfs: skip the metadata-server method
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")  # google-auth: a refused port, fails at once
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")


def _use_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, extra: dict[str, Any]) -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "google_cloud_platform", "extra": extra})
    )
    from airflow.sdk.io.store import _STORE_CACHE

    _STORE_CACHE.pop(f"gs-{conn_id}", None)  # one filesystem per (protocol, conn_id) per process


def _objects(endpoint: str, prefix: str) -> list[str]:
    """Object names under ``prefix``, read with the test's own anonymous client."""
    import gcsfs

    fs = gcsfs.GCSFileSystem(endpoint_url=endpoint, token="anon")
    fs.invalidate_cache()
    return sorted(p.split("/", 1)[1] for p in fs.find(f"{BUCKET}/{prefix}"))


def test_bulk_and_paged_extracts_land_in_gcs_and_load_into_sql(
    emu: Any, conn: str, gcs_endpoint: str, token_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_connection(
        monkeypatch,
        GCS_CONN,
        {
            "keyfile_dict": json.dumps(service_account_key(token_uri)),
            "project": "ce-test",
            "gcs.endpoint": gcs_endpoint,
        },
    )
    element = "quickbooks"
    iid = emu.state.create_instance(element, "gcs-landing")["id"]
    prefix = f"run-{uuid.uuid4().hex[:8]}"
    common = {"instance_id": iid, "output_base": f"gs://{BUCKET}/{prefix}", "output_conn_id": GCS_CONN}
    invoices = run_operator(
        CloudElementsBulkExtractOperator(
            task_id="invoices", resource="invoices", deferrable=False, poll_interval=0.05, timeout=60, **common
        ),
        Ctx(data_interval_start=START, data_interval_end=END),
        expect_defer=False,
    )
    customers = run_operator(
        CloudElementsPagedExtractOperator(task_id="customers", resource="customers", page_size=7, **common),
        Ctx(data_interval_start=START, data_interval_end=END),
        expect_defer=False,
    )
    assert _TokenHandler.grants >= 1, "the connection's service-account key was not used"
    for manifest, resource in ((invoices, "invoices"), (customers, "customers")):
        assert manifest["path"].startswith(f"gs://{GCS_CONN}@{BUCKET}/{prefix}/{element}/instance={iid}/{resource}/")
        folder = f"{prefix}/{element}/instance={iid}/{resource}/"
        landed = [manifest[k].split(f"{BUCKET}/", 1)[1] for k in ("path", "manifest_path")]
        assert [o for o in _objects(gcs_endpoint, folder)] == sorted(landed)  # data + manifest, no probe left
        assert manifest["records"] == len(emu.state.records(iid, resource))

    db = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_CE_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    CloudElementsSqlUpsertOperator(task_id="load", manifest=[invoices, customers], conn_id="ce_warehouse").execute(
        Ctx().context
    )
    for resource in ("invoices", "customers"):
        assert warehouse_rows(db, f"ce_{element}_{resource}", iid) == by_id(emu.state.records(iid, resource), element)

    # a rerun of the interval after an edit: the partition holds only the new pair, the load replaces
    changed = emu.state.simulate_activity(iid, resources=["invoices"], creates=1, updates=1, deletes=0)
    rerun = run_operator(
        CloudElementsBulkExtractOperator(
            task_id="invoices", resource="invoices", deferrable=False, poll_interval=0.05, timeout=60, **common
        ),
        Ctx(data_interval_start=START, data_interval_end=END),
        expect_defer=False,
    )
    folder = f"{prefix}/{element}/instance={iid}/invoices/"
    assert rerun["path"] != invoices["path"]
    landed = [rerun[k].split(f"{BUCKET}/", 1)[1] for k in ("path", "manifest_path")]
    assert _objects(gcs_endpoint, folder) == sorted(landed), "the replaced run's data object is still there"
    CloudElementsSqlUpsertOperator(task_id="load", manifest=[rerun], conn_id="ce_warehouse").execute(Ctx().context)
    rows = warehouse_rows(db, f"ce_{element}_invoices", iid)
    assert rows == by_id(emu.state.records(iid, "invoices"), element)
    assert {stable_id(i, element) for i in changed["invoices"]["created"]} <= set(rows)  # the new invoice landed


@pytest.mark.usefixtures("no_default_credentials")
@pytest.mark.parametrize(
    ("conn_id", "extra", "expected"),
    [
        ("ce_gcs_nocreds", {"project": "ce-test"}, r"cannot build the gs:// filesystem .*ce_gcs_nocreds.*credentials"),
        ("ce_gcs_anon", {"project": "ce-test", "is_anonymous": True}, r"no credentials .*ce_gcs_anon.*anonymous"),
        (None, None, r"no credentials .*no output_conn_id.*anonymous"),
    ],
    ids=["connection-without-credentials", "anonymous-connection", "no-connection-no-default-credentials"],
)
def test_missing_or_anonymous_credentials_fail_before_the_job(
    emu: Any,
    conn: str,
    gcs_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
    conn_id: str | None,
    extra: dict[str, Any] | None,
    expected: str,
) -> None:
    if conn_id is not None:
        _use_connection(monkeypatch, conn_id, {**(extra or {}), "gcs.endpoint": gcs_endpoint})
    else:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)  # gcsfs' endpoint without a connection
        from airflow.sdk.io.store import _STORE_CACHE

        _STORE_CACHE.pop("gs-None", None)
        _STORE_CACHE.pop("gs", None)
    iid = emu.state.create_instance("quickbooks", f"gcs-{conn_id}")["id"]
    jobs_before = len(emu.state.bulk._all())
    prefix = f"refused-{uuid.uuid4().hex[:8]}"
    op = CloudElementsBulkExtractOperator(
        task_id="t",
        instance_id=iid,
        resource="invoices",
        output_base=f"gs://{BUCKET}/{prefix}",
        output_conn_id=conn_id,
        deferrable=False,
    )
    with pytest.raises(CloudElementsConfigError, match=expected) as caught:
        op.execute(Ctx(data_interval_start=START, data_interval_end=END).context)
    assert "PRIVATE KEY" not in str(caught.value)
    assert len(emu.state.bulk._all()) == jobs_before, "a bulk job was submitted without usable storage credentials"
    assert _objects(gcs_endpoint, prefix) == [], "something was written anonymously"
