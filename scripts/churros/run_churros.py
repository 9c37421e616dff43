"""Run the vendor's API test suite ("churros", public fork ``varunpal72/churros``) offline against the emulator.

This harness fetches nothing and builds nothing: give it a churros checkout that already has its
``node_modules`` (``npm install --ignore-scripts``, ``node_modules/core -> ../src/core``,
``src/core/cleanup.json`` = ``[]``) and a Node 8 ``bin`` directory. It

1. starts the emulator (``EmulatorServer``, loopback, random port) — or uses ``--emulator-url``;
2. starts a small login proxy in front of it that answers churros' console login
   (``POST /elements/j_spring_security_check``, ``GET /elements/api-v1/ui/getSecrets``) and forwards
   everything else unchanged, so the same harness measures any emulator version;
3. creates one instance per element itself (QBO and FreshBooks are OAuth elements: without a browser
   churros' own create body has no ``providerData``) and passes ``--instance <id>`` to churros;
4. writes a sandboxed ``$HOME/.churros/sauce.json`` and runs mocha with the xunit reporter per suite;
5. prints one JSON line per suite: ``{"suite", "tests", "passed", "failed", "pending", "rate"}`` where
   ``rate = passed / (tests - pending)`` (runnable tests are the denominator).

Options: ``--polling`` also runs the polling tests (the proxy serves their request bin under ``/bin/``,
instances get polling events, the emulator polls every second); ``--block REGEX`` answers 404 for
matching API paths (e.g. ``'/transformations|/definitions'``).

Usage::

    python scripts/churros/run_churros.py --churros /path/to/churros --node-bin /path/to/node8/bin \
        [--suite quickbooks --suite quickbooksonprem --suite freshbooks] [--out DIR] [--failures]
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx

SUITES = ("quickbooks", "quickbooksonprem", "freshbooks")
_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "content-encoding",
    "server",
    "date",
}
_USER = "churros@emulator.local"
_PASSWORD = "churros"

_INSTANCE_BODIES: dict[str, dict[str, Any]] = {
    "quickbooks": {
        "providerData": {"code": "churros-code", "realmId": "123145725201234"},
        "configuration": {
            "oauth.api.key": "churros-key",
            "oauth.api.secret": "churros-secret",
            "oauth.callback.url": "http://127.0.0.1:8999/callback",
        },
    },
    "quickbooksonprem": {
        "configuration": {"app.name": "churros", "host.ip": "https://1234.g2c.cloud-elements.com"},
    },
    "freshbooks": {
        "providerData": {"oauth_token": "churros-token", "oauth_verifier": "churros-verifier", "secret": "s"},
        "configuration": {
            "oauth.api.key": "churros",
            "oauth.api.secret": "churros-secret",
            "oauth.callback.url": "http://127.0.0.1:8999/callback",
            "freshbooks.site.address": "churros.freshbooks.com",
        },
    },
}


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Console login + transparent forwarding to ``server.target``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path.split("?", 1)[0]
        srv: Any = self.server
        if path == "/elements/j_spring_security_check":
            self._send(
                200,
                b"{}",
                [("Content-Type", "application/json"), ("Set-Cookie", "CESESSIONID=churros; Path=/")],
            )
            return
        if path == "/elements/api-v1/ui/getSecrets":
            secrets = json.dumps({"user": srv.user_secret, "company": srv.org_secret}).encode()
            self._send(200, secrets, [("Content-Type", "application/json")])
            return
        if path.startswith("/bin/"):  # the "request bin" churros' polling tests read (?returnQueue)
            with srv.bins_lock:
                if self.command == "POST":
                    srv.bins.setdefault(path, []).append({"data": body.decode("utf-8", "replace")})
                    out = b"{}"
                else:
                    calls = srv.bins.pop(path, [])
                    out = json.dumps({"count": len(calls), "data": calls}).encode()
            self._send(200, out, [("Content-Type", "application/json")])
            return
        if srv.block is not None and srv.block.search(path):
            self._send(404, b'{"message": "blocked by the harness"}', [("Content-Type", "application/json")])
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        try:
            resp = srv.client.request(self.command, srv.target + self.path, content=body, headers=headers)
        except httpx.HTTPError as err:
            self._send(502, json.dumps({"message": str(err)}).encode(), [("Content-Type", "application/json")])
            return
        out = [(k, v) for k, v in resp.headers.multi_items() if k.lower() not in _HOP]
        self._send(resp.status_code, resp.content, out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


@contextlib.contextmanager
def login_proxy(target: str, user_secret: str, org_secret: str, block: str | None = None) -> Iterator[str]:
    """Serve churros' console login and forward the rest to ``target``; paths matching ``block`` get 404."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    server.block = re.compile(block) if block else None  # type: ignore[attr-defined]
    server.bins = {}  # type: ignore[attr-defined]
    server.bins_lock = threading.Lock()  # type: ignore[attr-defined]
    server.daemon_threads = True
    server.target = target  # type: ignore[attr-defined]
    server.user_secret = user_secret  # type: ignore[attr-defined]
    server.org_secret = org_secret  # type: ignore[attr-defined]
    server.client = httpx.Client(timeout=60)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.client.close()  # type: ignore[attr-defined]


def _create_instance(base: str, user: str, org: str, suite: str, polling: bool) -> int:
    body = {
        "element": {"key": suite},
        "name": f"churros-{suite}",
        "tags": ["churros"],
        **_INSTANCE_BODIES[suite],
    }
    if polling:
        events = {"event.notification.enabled": "true", "event.vendor.type": "polling"}
        body["configuration"] = {**body["configuration"], **events, "event.poller.refresh_interval": "1"}
    resp = httpx.post(
        f"{base}/elements/api-v2/instances",
        json=body,
        headers={"Authorization": f"User {user}, Organization {org}"},
    )
    resp.raise_for_status()
    return int(resp.json()["id"])


def _parse(xml_path: str) -> dict[str, Any]:
    root = ET.parse(xml_path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = passed = failed = pending = 0
    failures: list[str] = []
    for node in suites:
        for case in node.iter("testcase"):
            tests += 1
            if case.find("skipped") is not None:
                pending += 1
            elif case.find("failure") is not None or case.find("error") is not None:
                failed += 1
                failures.append(f"{case.get('classname', '')} :: {case.get('name', '')}")
            else:
                passed += 1
    runnable = tests - pending
    return {
        "tests": tests,
        "passed": passed,
        "failed": failed,
        "pending": pending,
        "rate": round(passed / runnable, 4) if runnable else None,
        "failures": failures,
    }


def run_suite(
    churros: str,
    node_bin: str,
    url: str,
    user: str,
    password: str,
    suite: str,
    instance: int,
    out: str,
    polling: bool = False,
) -> dict:
    home = tempfile.mkdtemp(prefix=f"churros-home-{suite}-")
    os.makedirs(os.path.join(home, ".churros"))
    sauce = {
        "user": user,
        "password": password,
        "url": url,
        "oauth.callback.url": "http://127.0.0.1:8999/callback",
        "events": {"load": 5, "wait": 45, "element": "", "port": 8999, "url": "http://127.0.0.1:8999/events"},
        suite: dict(_INSTANCE_BODIES[suite].get("configuration", {})),
    }
    if polling:
        sauce["event.callback.url"] = url + "/bin/{{random.uuid}}"
    with open(os.path.join(home, ".churros", "sauce.json"), "w") as fh:
        json.dump(sauce, fh)
    xml_path = os.path.join(out, f"{suite}.xml")
    env = {**os.environ, "HOME": home, "PATH": node_bin + os.pathsep + os.environ.get("PATH", "")}
    cmd = [
        os.path.join(churros, "node_modules", ".bin", "mocha"),
        "src/test/lifecycle",
        "src/test/elements/lifecycle",
        "src/test/elements/assets/basics",
        f"src/test/elements/{suite}",
        "--element",
        suite,
        "--instance",
        str(instance),
        "--timeout",
        "60000",
        "--ui",
        "bdd",
        "--reporter",
        "xunit",
        "--reporter-options",
        f"output={xml_path}",
        *(["--polling"] if polling else []),
    ]
    with open(os.path.join(out, f"{suite}.log"), "w") as log:
        subprocess.run(cmd, cwd=churros, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=1800, check=False)
    shutil.rmtree(home, ignore_errors=True)
    result = _parse(xml_path) if os.path.exists(xml_path) else {"tests": 0, "passed": 0, "rate": None, "failures": []}
    return {"suite": suite, **result}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--churros", required=True, help="path of a prepared churros checkout")
    ap.add_argument("--node-bin", required=True, help="directory with the Node 8 'node' binary")
    ap.add_argument("--suite", action="append", choices=SUITES, help="suite(s) to run (default: all three)")
    ap.add_argument("--out", default=tempfile.gettempdir(), help="directory for <suite>.xml and <suite>.log")
    ap.add_argument("--emulator-url", help="use a running emulator (http://host:port) instead of starting one")
    ap.add_argument("--user-secret", default=None)
    ap.add_argument("--org-secret", default=None)
    ap.add_argument("--failures", action="store_true", help="also print the failing test names")
    ap.add_argument(
        "--polling",
        action="store_true",
        help="also run the polling tests: the proxy serves their request bin, the emulator polls every second",
    )
    ap.add_argument(
        "--block",
        help="regex of API paths the proxy answers 404 (e.g. '/transformations|/definitions' to measure "
        "the suites without the transformations API)",
    )
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if args.emulator_url:
            target, user, org = args.emulator_url.rstrip("/"), args.user_secret, args.org_secret
            if not (user and org):
                ap.error("--emulator-url needs --user-secret and --org-secret")
        else:
            from cloudelements_emulator import EmulatorConfig, EmulatorServer

            emu = stack.enter_context(
                EmulatorServer(
                    EmulatorConfig(
                        seed=7, records_per_resource=25, poller_interval_seconds=1.0 if args.polling else None
                    )
                )
            )
            target, user, org = emu.url, emu.user_secret, emu.organization_secret
        proxy = stack.enter_context(login_proxy(target, user, org, args.block))
        for suite in args.suite or SUITES:
            instance = _create_instance(target, user, org, suite, args.polling)
            result = run_suite(
                args.churros, args.node_bin, proxy, _USER, _PASSWORD, suite, instance, args.out, args.polling
            )
            failures = result.pop("failures")
            if args.failures:
                result["failures"] = failures
            print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
