"""A wrong host fails in seconds, naming the host and the cause; a host that answered keeps the full retry
budget for the same errors mid-run; a Base URL without ``/elements/api-v2`` answering 404 says so
(issue 16, "Fail fast and name the cause")."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airflow_provider_cloudelements.client.retry import (
    DEFAULT_UNREACHABLE_BUDGET,
    forget_answered_hosts,
    host_has_answered,
)
from airflow_provider_cloudelements.exceptions import CloudElementsConnectionError, CloudElementsNotFoundError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.hooks.cloudelements_async import CloudElementsAsyncHook

from .conftest import ELEMENT_TOKEN, conn_json

#: "within seconds": the unreachable budget (5 s) plus one connect attempt and slack for a loaded CI box.
FAIL_FAST_WITHIN = DEFAULT_UNREACHABLE_BUDGET + 5.0


@pytest.fixture(autouse=True)
def _fresh_registry() -> Iterator[None]:
    forget_answered_hosts()
    yield
    forget_answered_hosts()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_refused_connection_fails_in_seconds_naming_host_and_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    # the default 300 s budget: before this fix the call retried for ~286 s
    monkeypatch.setenv("AIRFLOW_CONN_CE_WRONG_HOST", conn_json(f"http://127.0.0.1:{port}/elements/api-v2"))
    started = time.monotonic()
    with pytest.raises(CloudElementsConnectionError) as info:
        CloudElementsHook("ce_wrong_host").list_elements()
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert elapsed < FAIL_FAST_WITHIN, f"took {elapsed:.1f} s"
    assert f"127.0.0.1:{port}" in message and "connection refused" in message
    assert "Base URL" in message


def test_dns_failure_fails_in_seconds_naming_host_and_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    host = "ce-no-such-host.invalid"  # RFC 6761: never resolves
    monkeypatch.setenv("AIRFLOW_CONN_CE_NO_DNS", conn_json(f"http://{host}/elements/api-v2"))
    started = time.monotonic()
    ok, message = CloudElementsHook("ce_no_dns").test_connection()
    elapsed = time.monotonic() - started
    assert not ok
    assert host in message and "DNS lookup failed" in message
    assert elapsed < FAIL_FAST_WITHIN + 5, f"took {elapsed:.1f} s"


class _PingHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: no kept-alive socket outlives the server

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"ok": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve(port: int) -> ThreadingHTTPServer:
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _PingHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_refused_mid_run_keeps_the_retry_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host answered once, then refuses for longer than the fail-fast window (a restart): the call
    keeps retrying within its budget and succeeds when the host is back."""
    first = _serve(0)
    port = first.server_address[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_CE_RESTARTING", conn_json(f"http://127.0.0.1:{port}/elements/api-v2", retry_budget=40)
    )
    hook = CloudElementsHook("ce_restarting", element_token=ELEMENT_TOKEN)
    assert hook.ping() == {"ok": True}
    assert host_has_answered(hook.base_url)
    first.shutdown()
    first.server_close()
    outage = DEFAULT_UNREACHABLE_BUDGET + 1.5  # longer than a never-answered host would be retried
    restarted: list[ThreadingHTTPServer] = []
    timer = threading.Timer(outage, lambda: restarted.append(_serve(port)))
    timer.start()
    try:
        started = time.monotonic()
        assert hook.ping() == {"ok": True}
        assert time.monotonic() - started >= outage - 0.5  # it really rode out the outage
    finally:
        timer.join()
        for httpd in restarted:
            httpd.shutdown()
            httpd.server_close()


def test_async_hook_names_host_and_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setenv(
        "AIRFLOW_CONN_CE_ASYNC_WRONG",
        conn_json(f"http://127.0.0.1:{port}/elements/api-v2", retry_budget=1, element_token=ELEMENT_TOKEN),
    )

    async def go() -> str:
        async with CloudElementsAsyncHook("ce_async_wrong") as hook:
            with pytest.raises(CloudElementsConnectionError) as info:
                await hook.get_bulk_status("1")
        return str(info.value)

    message = asyncio.run(go())
    assert f"127.0.0.1:{port}" in message and "connection refused" in message


def test_base_url_without_api_path_says_so_on_404(emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bare = emulator.base_url.removesuffix("/elements/api-v2")
    assert bare != emulator.base_url
    monkeypatch.setenv(
        "AIRFLOW_CONN_CE_BARE",
        conn_json(bare, user_secret=emulator.user_secret, organization_secret=emulator.organization_secret),
    )
    with pytest.raises(CloudElementsNotFoundError) as info:
        CloudElementsHook("ce_bare").list_elements()
    assert "does not end in /elements/api-v2" in str(info.value) and bare in str(info.value)
    ok, message = CloudElementsHook("ce_bare").test_connection()
    assert not ok and "/elements/api-v2" in message
    # the right base answers, and a real 404 under it carries no Base URL advice
    monkeypatch.setenv(
        "AIRFLOW_CONN_CE_GOOD",
        conn_json(
            emulator.base_url, user_secret=emulator.user_secret, organization_secret=emulator.organization_secret
        ),
    )
    with pytest.raises(CloudElementsNotFoundError) as real:
        CloudElementsHook("ce_good").get_instance(987654321)
    assert "does not end in" not in str(real.value)
