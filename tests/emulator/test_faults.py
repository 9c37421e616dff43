"""Fault injection (FaultConfig): 429, 5xx, Intuit throttle, HTML 502, slow, drops, rate limit."""

from __future__ import annotations

import time

import pytest
import requests

from .conftest import Api


def test_burst_429_with_retry_after_then_recovers(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    inst = api.instance()
    faults(burst_429=2, retry_after_seconds=3)
    for _ in range(2):
        r = api.get("/hubs/finance/customers", inst["token"])
        assert r.status_code == 429 and r.headers["Retry-After"] == "3"
        assert set(r.json()) >= {"message", "requestId"}
    assert api.get("/hubs/finance/customers", inst["token"]).status_code == 200
    assert api.emu.state.stats()["faults_injected"]["429"] >= 2


def test_admin_routes_never_faulted(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    faults(rate_5xx=1.0)
    assert api.s.get(api.emu.url + "/_emulator/health").status_code == 200
    assert api.get("/elements").status_code == 503


def test_5xx_throttle_html(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    inst = api.instance()
    faults(burst_5xx=1, status_5xx=504, burst_throttle_500=1, burst_html_502=1)
    r = api.get("/hubs/finance/customers", inst["token"])
    assert r.status_code == 504 and "providerMessage" in r.json()
    r = api.get("/hubs/finance/customers", inst["token"])
    assert r.status_code == 500 and "ThrottleExceeded" in r.json()["providerMessage"]
    assert "errorCode=003001" in r.json()["providerMessage"]
    r = api.get("/hubs/finance/customers", inst["token"])
    assert r.status_code == 502 and r.headers["content-type"].startswith("text/html") and "nginx" in r.text
    assert api.get("/hubs/finance/customers", inst["token"]).status_code == 200


def test_path_prefix_limits_faults(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    inst = api.instance()
    faults(path_prefix="/elements/api-v2/hubs/finance/bulk", rate_429=1.0)
    assert api.get("/hubs/finance/customers", inst["token"]).status_code == 200
    assert (
        api.post("/hubs/finance/bulk/query", inst["token"], params={"q": "select * from customers"}).status_code == 429
    )


def test_rates_are_seeded(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    def run() -> list[int]:
        api.emu.state.reset_faults()
        api.emu.state.set_faults(rate_5xx=0.5)
        return [api.get("/elements/keys").status_code for _ in range(20)]

    first = run()
    assert first == run() and 503 in first and 200 in first


def test_slow(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    faults(slow_seconds=0.4, burst_slow=1)
    started = time.monotonic()
    api.get("/elements/keys")
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    api.get("/elements/keys")
    assert time.monotonic() - started < 0.4


def test_rate_limit_per_token(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    a, b = api.instance(), api.instance()
    faults(rate_limit_per_minute=3)
    codes = [api.get("/hubs/finance/classes", a["token"]).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    r = api.get("/hubs/finance/classes", a["token"])
    assert r.status_code == 429 and 1 <= int(r.headers["Retry-After"]) <= 60
    assert api.get("/hubs/finance/classes", b["token"]).status_code == 200


def test_drop_download(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    inst = api.instance()
    job = api.post("/hubs/finance/bulk/query", inst["token"], params={"q": "select * from invoices"}).json()["id"]
    api.wait_bulk(inst["token"], job)
    faults(drop_download_after_bytes=1000)
    with pytest.raises(requests.exceptions.RequestException):
        r = api.get(f"/hubs/finance/bulk/{job}/invoices", inst["token"], headers={"Accept": "application/json"})
        r.raise_for_status()
        assert len(r.content) == int(r.headers["Content-Length"])  # pragma: no cover - must not get here


def test_faults_over_admin_http(api: Api, faults) -> None:  # type: ignore[no-untyped-def]
    r = api.s.put(api.emu.url + "/_emulator/faults", json={"burst_429": 1})
    assert r.status_code == 200 and r.json()["burst_429"] == 1
    assert api.get("/elements/keys").status_code == 429
    assert api.s.put(api.emu.url + "/_emulator/faults", json={"nope": 1}).status_code == 400
    api.s.put(api.emu.url + "/_emulator/faults", json={"burst_429": 5})
    assert api.s.delete(api.emu.url + "/_emulator/faults").status_code == 200
    assert api.get("/elements/keys").status_code == 200
