"""The client core (airflow_provider_cloudelements.client) imports and works without Airflow: every module
is imported in a fresh interpreter in which any ``airflow`` import fails, then errors are mapped and a
real request is sent over loopback HTTP with the core's sync and async clients."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    r"""
    import asyncio, importlib, importlib.abc, json, pkgutil, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NoAirflow(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "airflow" or name.startswith("airflow."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoAirflow())
    import airflow_provider_cloudelements.client as core

    modules = sorted(m.name for m in pkgutil.walk_packages(core.__path__, core.__name__ + "."))
    for name in modules:
        importlib.import_module(name)

    from airflow_provider_cloudelements.client.budget import budget_party, get_request_budget
    from airflow_provider_cloudelements.client.protocol import Reply, decode_json_reply, error_from_reply
    from airflow_provider_cloudelements.client.transport import async_client, sync_client

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            body = json.dumps({"auth": self.headers.get("Authorization"), "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/elements/api-v2/ping"
    budget = get_request_budget(budget_party(url, hub=False, instance_id=None, token=None, user_secret="u"))
    with budget.acquire(), sync_client(connect_timeout=2, read_timeout=5) as client:
        resp = client.get(url, headers={"Authorization": "User u, Organization o"})
        sync_body = decode_json_reply(Reply(resp.status_code, resp.headers, resp.content))

    async def async_get():
        async with budget.acquire_async(), async_client(connect_timeout=2, read_timeout=5) as client:
            resp = await client.get(url)
            return resp.json()

    async_body = asyncio.run(async_get())
    error = error_from_reply(
        404, {"Retry-After": "7"}, b'{"message": "No record found", "requestId": "r-1"}',
        method="GET", path="/hubs/finance/invoices/9", instance_id=None, hub=True, secrets=["s3cr3t"],
    )
    print(json.dumps({
        "modules": modules,
        "airflow_loaded": sorted(m for m in sys.modules if m == "airflow" or m.startswith("airflow.")),
        "sync": sync_body,
        "async": async_body,
        "in_window": budget.in_window(),
        "error": [type(error).__name__, error.status_code, error.request_id, error.retry_after, str(error)],
    }))
    """
)


def test_client_core_needs_no_airflow() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    prefix = "airflow_provider_cloudelements.client."
    assert {f"{prefix}{m}" for m in ("budget", "budget_store", "paging", "protocol", "retry", "transport")} <= set(
        out["modules"]
    )
    assert out["airflow_loaded"] == []
    assert out["sync"] == {"auth": "User u, Organization o", "path": "/elements/api-v2/ping"}
    assert out["async"]["path"] == "/elements/api-v2/ping"
    assert out["in_window"] == 2  # the sync and the async request drew from the same budget
    name, status, request_id, retry_after, text = out["error"]
    assert (name, status, request_id, retry_after) == ("CloudElementsNotFoundError", 404, "r-1", 7.0)
    assert "No record found" in text
