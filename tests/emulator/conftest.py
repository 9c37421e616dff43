"""Fixtures for the emulator contract tests: a real server on loopback, HTTP helpers, a webhook receiver."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from cloudelements_emulator import EmulatorConfig, EmulatorServer

QBO_BODY = {
    "element": {"key": "quickbooks"},
    "name": "qbo test",
    "providerData": {"code": "grant-code", "realmId": "123145"},
    "configuration": {
        "oauth.api.key": "client-id",
        "oauth.api.secret": "client-secret",
        "oauth.callback.url": "https://app.example/cb",
        "authentication.type": "oauth2",
    },
    "tags": ["contract"],
}


class Api:
    """Thin requests wrapper with the two CE header forms."""

    def __init__(self, emu: EmulatorServer) -> None:
        self.emu = emu
        self.s = requests.Session()
        self.s.trust_env = False  # loopback only; ignore HTTP(S)_PROXY
        self.platform = {"Authorization": f"User {emu.user_secret}, Organization {emu.organization_secret}"}

    def hub_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"User {self.emu.user_secret}, Element {token}"}

    def get(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return self.s.get(self.emu.base_url + path, headers={**self._auth(token), **kw.pop("headers", {})}, **kw)

    def post(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return self.s.post(self.emu.base_url + path, headers={**self._auth(token), **kw.pop("headers", {})}, **kw)

    def patch(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return self.s.patch(self.emu.base_url + path, headers={**self._auth(token), **kw.pop("headers", {})}, **kw)

    def put(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return self.s.put(self.emu.base_url + path, headers={**self._auth(token), **kw.pop("headers", {})}, **kw)

    def delete(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return self.s.delete(self.emu.base_url + path, headers={**self._auth(token), **kw.pop("headers", {})}, **kw)

    def _auth(self, token: str | None) -> dict[str, str]:
        return self.hub_headers(token) if token else self.platform

    def instance(self, key: str = "quickbooks", **config: Any) -> dict[str, Any]:
        """Create an instance through the admin API of the state (no validation)."""
        return self.emu.state.create_instance(key, f"{key} instance", configuration=config or None)

    def wait_bulk(self, token: str, job_id: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.get(f"/hubs/finance/bulk/{job_id}/status", token).json()
            if status["status"] in ("COMPLETED", "COMPLETE", "FAILED", "CANCELLED"):
                return status
            time.sleep(0.02)
        raise AssertionError(f"bulk job {job_id} did not finish")


@pytest.fixture(scope="session")
def emu() -> Iterator[EmulatorServer]:
    cfg = EmulatorConfig(
        seed=7,
        records_per_resource=40,
        records_overrides={"invoices": 450},
        bulk_min_seconds=0.2,
        poller_interval_seconds=0.3,
        webhook_backoff_factor=0.01,
        webhook_max_attempts=3,
        webhook_timeout_seconds=2.0,
    )
    with EmulatorServer(cfg) as server:
        yield server


@pytest.fixture(scope="session")
def api(emu: EmulatorServer) -> Api:
    return Api(emu)


@pytest.fixture
def faults(emu: EmulatorServer) -> Iterator[Callable[..., None]]:
    """Set faults for one test; always reset afterwards."""
    assert emu.state is not None
    yield emu.state.set_faults
    emu.state.reset_faults()


class Receiver:
    """A loopback HTTP receiver recording POSTs (raw body + headers); answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.statuses: list[int] = []  # answers for successive requests; then 200
        self.cond = threading.Condition()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.cond:
                    status = outer.statuses.pop(0) if outer.statuses else 200
                    outer.requests.append(
                        {"path": self.path, "headers": dict(self.headers), "body": body, "status": status}
                    )
                    outer.cond.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, n: int, timeout: float = 15.0, ok_only: bool = False) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [r for r in self.requests if not ok_only or r["status"] < 300]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {n} webhook requests, got {len(got)}")
                self.cond.wait(left)

    def json(self, i: int) -> Any:
        return json.loads(self.requests[i]["body"])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()
