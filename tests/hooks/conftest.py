"""Fixtures for hook tests: a scripted loopback HTTP server (real HTTP, no mocks) and connections."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

USER_SECRET = "uSeR+sEcReT/abc123=="
ORG_SECRET = "oRg+SeCrEt/xyz789=="
ELEMENT_TOKEN = "ToKeN+eLeMeNt/qwe456=="
BASE_PATH = "/elements/api-v2"


@dataclass
class Req:
    method: str
    path: str  # without BASE_PATH and query
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def q(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class Resp:
    status: int = 200
    body: Any = None  # dict/list -> JSON, bytes/str -> raw
    headers: dict[str, str] = field(default_factory=dict)
    drop_after: int | None = None  # send Content-Length of the full body, then only this many bytes and close
    delay: float = 0.0  # seconds to wait before answering (server side; used for read timeouts)
    trickle: float = 0.0  # seconds between single bytes of the body (Content-Length sent up front)
    stream: Iterable[bytes] | None = None  # body chunks sent with Transfer-Encoding: chunked (no length)


Handler = Callable[[Req], Resp]


class ScriptedServer:
    """Loopback HTTP server answering with a test-provided handler; records every request."""

    def __init__(self) -> None:
        self.handler: Handler = lambda req: Resp(404, {"message": "no handler"})
        self.requests: list[Req] = []
        self._lock = threading.Lock()
        server = self

        class _H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                path = parts.path[len(BASE_PATH) :] if parts.path.startswith(BASE_PATH) else parts.path
                req = Req(self.command, path, parse_qs(parts.query), dict(self.headers.items()), body)
                with server._lock:
                    server.requests.append(req)
                resp = server.handler(req)
                if resp.delay:
                    threading.Event().wait(resp.delay)
                if isinstance(resp.body, (dict, list)):
                    raw = json.dumps(resp.body).encode()
                    ctype = "application/json"
                elif isinstance(resp.body, str):
                    raw = resp.body.encode()
                    ctype = "text/plain"
                elif resp.body is None:
                    raw, ctype = b"", "application/json"
                else:
                    raw, ctype = resp.body, "application/octet-stream"
                self.send_response(resp.status)
                headers = {"Content-Type": ctype, **resp.headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                if resp.stream is not None:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    try:
                        for chunk in resp.stream:
                            if chunk:
                                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.write(b"0\r\n\r\n")
                    except OSError:  # the client stopped reading (what the tests want)
                        self.close_connection = True
                    return
                self.send_header("Content-Length", str(len(raw)))
                if resp.drop_after is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if resp.drop_after is not None:
                    self.wfile.write(raw[: resp.drop_after])
                    self.wfile.flush()
                    try:
                        self.connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                if resp.trickle:
                    self.wfile.flush()
                    try:
                        for i in range(len(raw)):
                            self.wfile.write(raw[i : i + 1])
                            self.wfile.flush()
                            time.sleep(resp.trickle)
                    except OSError:  # the client gave up (what the tests want)
                        self.close_connection = True
                    return
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _H)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{BASE_PATH}"

    def start(self) -> ScriptedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def conn_json(base_url: str, **extra: Any) -> str:
    return json.dumps(
        {
            "conn_type": extra.pop("conn_type", "cloudelements"),
            "host": base_url,
            "extra": {"user_secret": USER_SECRET, "organization_secret": ORG_SECRET, **extra},
        }
    )


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def loop_conn(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``loop_conn(**extra)`` registers connection ``ce_loop`` to the scripted server; returns its id."""

    def make(**extra: Any) -> str:
        extra.setdefault("retry_budget", 5)
        monkeypatch.setenv("AIRFLOW_CONN_CE_LOOP", conn_json(server.base_url, **extra))
        return "ce_loop"

    return make
