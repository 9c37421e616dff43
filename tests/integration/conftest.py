"""Integration tests against real third-party servers and listeners on loopback (moto S3, OpenLineage).

Fixtures reused from the other suites: the operator tests' private emulator per module (``emu``,
``conn``, ``out``) and the example-DAG runs' environment (``sync_env``, ``load_dag``; session ``emulator``).
``moto_endpoint`` is one moto S3 server on 127.0.0.1 per test module, stopped at the module's end (its
threads must not outlive the module: later tests fork, and a fork while a server thread holds a lock
can hang the child).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.conftest import load_dag, sync_env
from tests.operators.conftest import conn, emu, out

__all__ = ["aws_connection_json", "conn", "emu", "load_dag", "moto_client", "out", "sync_env"]

MOTO_KEY, MOTO_SECRET, MOTO_REGION = "moto-key", "moto-secret", "us-east-1"


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """A moto S3 server on a free 127.0.0.1 port (threaded, in this process); stopped after the module."""
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def aws_connection_json(endpoint: str) -> str:
    """An ``aws`` Airflow connection (``AIRFLOW_CONN_*`` JSON) whose S3 endpoint is the moto server."""
    return json.dumps(
        {
            "conn_type": "aws",
            "login": MOTO_KEY,
            "password": MOTO_SECRET,
            "extra": {"endpoint_url": endpoint, "region_name": MOTO_REGION},
        }
    )


def moto_client(endpoint: str) -> Any:
    """The test's own boto3 S3 client of the moto server."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=MOTO_KEY,
        aws_secret_access_key=MOTO_SECRET,
        region_name=MOTO_REGION,
    )
