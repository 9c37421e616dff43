"""CloudElementsHook over real HTTP against a scripted loopback server (exact wire shapes)."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest

from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsAuthenticationError,
    CloudElementsBadRequestError,
    CloudElementsBulkJobError,
    CloudElementsCEQLError,
    CloudElementsConfigError,
    CloudElementsConflictError,
    CloudElementsConnectionError,
    CloudElementsForbiddenError,
    CloudElementsNotFoundError,
    CloudElementsReconciliationError,
    CloudElementsServerError,
    CloudElementsThrottledError,
    CloudElementsTimeoutError,
)
from airflow_provider_cloudelements.hooks.cloudelements import BulkDownloadResult, CloudElementsHook

from .conftest import ELEMENT_TOKEN, ORG_SECRET, USER_SECRET, Req, Resp

SECRETS = (USER_SECRET, ORG_SECRET, ELEMENT_TOKEN)
PLATFORM_AUTH = f"User {USER_SECRET}, Organization {ORG_SECRET}"
HUB_AUTH = f"User {USER_SECRET}, Organization {ORG_SECRET}, Element {ELEMENT_TOKEN}"
INSTANCE = {
    "id": 7,
    "name": "qbo",
    "token": ELEMENT_TOKEN,
    "element": {"key": "quickbooks"},
    "configuration": {},
}


def logs(caplog, capsys) -> str:
    """Everything logged so far: stdlib records (caplog) and Airflow's structlog output (stdout/stderr)."""
    out = capsys.readouterr()
    return caplog.text + out.out + out.err


def assert_no_secrets(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def router(routes):
    """handler from {(method, path): Resp | callable(req) -> Resp}; GET /instances/7 served by default."""

    def handle(req: Req) -> Resp:
        key = (req.method, req.path)
        if key in routes:
            r = routes[key]
            return r(req) if callable(r) else r
        if key == ("GET", "/instances/7"):
            return Resp(200, INSTANCE)
        if key == ("GET", "/hubs/finance/ping"):  # a token-only hook learns its element here
            return Resp(200, {"endpoint": "quickbooks", "status": "connected"})
        return Resp(404, {"message": f"no route {key}", "requestId": "rq-404"})

    return handle


def seq(*responses: Resp):
    it = iter(responses)
    last = [responses[-1]]

    def next_resp(req: Req) -> Resp:
        try:
            last[0] = next(it)
        except StopIteration:
            pass
        return last[0]

    return next_resp


# ---------------------------------------------------------------------------------------------- config
def test_config_errors_before_any_call(server, loop_conn, monkeypatch):
    conn_id = loop_conn()
    hook = CloudElementsHook(conn_id)
    with pytest.raises(CloudElementsConfigError, match="instance"):
        hook.ping()
    with pytest.raises(CloudElementsConfigError):
        hook.iter_records("invoices", page_size=0)
    with pytest.raises(CloudElementsConfigError):
        hook.iter_records("invoices/../x")
    with pytest.raises(CloudElementsConfigError):
        hook.start_bulk_query("invoices", from_="not a date")
    with pytest.raises(CloudElementsCEQLError):
        hook.iter_records("invoices", where="a = 'unterminated")
    with pytest.raises(CloudElementsConfigError):
        hook.download_bulk("1", "invoices", io.BytesIO(), fmt="xml")
    assert server.requests == []

    monkeypatch.setenv("AIRFLOW_CONN_CE_BAD", json.dumps({"conn_type": "http", "host": server.base_url}))
    with pytest.raises(CloudElementsConfigError, match="expected 'cloudelements'"):
        CloudElementsHook("ce_bad").list_elements()
    monkeypatch.setenv(
        "AIRFLOW_CONN_CE_BAD",
        json.dumps({"conn_type": "cloudelements", "host": server.base_url, "extra": {"user_secret": "x" * 10}}),
    )
    with pytest.raises(CloudElementsConfigError, match="organization_secret"):
        CloudElementsHook("ce_bad").list_elements()
    monkeypatch.setenv(
        "AIRFLOW_CONN_CE_BAD",
        json.dumps(
            {
                "conn_type": "cloudelements",
                "extra": {"user_secret": "x" * 10, "organization_secret": "y" * 10, "page_size": "-3"},
            }
        ),
    )
    with pytest.raises(CloudElementsConfigError, match="page_size"):
        _ = CloudElementsHook("ce_bad").settings
    assert server.requests == []


def test_base_url_and_instance_id(loop_conn, monkeypatch):
    hook = CloudElementsHook(loop_conn(instance_id="12"))
    assert hook.instance_id == 12
    assert not hook.base_url.endswith("/")
    assert CloudElementsHook(loop_conn(instance_id=12), instance_id=3).instance_id == 3
    monkeypatch.setenv(
        "AIRFLOW_CONN_CE_DEF",
        json.dumps(
            {
                "conn_type": "cloudelements",
                "extra": {"user_secret": "x" * 10, "organization_secret": "y" * 10},
            }
        ),
    )
    assert CloudElementsHook("ce_def").base_url == "https://api.cloud-elements.com/elements/api-v2"
    assert CloudElementsHook("ce_def").instance_id is None
    assert "secret" not in repr(CloudElementsHook("ce_def").settings).lower().replace("_secret=", "")


# ---------------------------------------------------------------------------------------------- headers
def test_platform_and_hub_headers_token_fetched_once_and_stripped(server, loop_conn, caplog, capsys):
    server.handler = router({("GET", "/hubs/finance/ping"): Resp(200, {"ok": True})})
    hook = CloudElementsHook(loop_conn(), instance_id=7)
    with caplog.at_level(logging.DEBUG):
        inst = hook.get_instance(7)
        assert "token" not in inst and inst["id"] == 7
        assert hook.ping() == {"ok": True}
        assert hook.ping() == {"ok": True}
    assert [(r.method, r.path) for r in server.requests] == [
        ("GET", "/instances/7"),
        ("GET", "/hubs/finance/ping"),
        ("GET", "/hubs/finance/ping"),
    ]
    assert server.requests[0].headers["Authorization"] == PLATFORM_AUTH
    assert server.requests[1].headers["Authorization"] == HUB_AUTH
    assert hook.element_key == "quickbooks"
    assert_no_secrets(logs(caplog, capsys), repr(hook), repr(inst))


def test_hub_token_from_ctor_needs_no_platform_call(server, loop_conn):
    server.handler = router({("GET", "/hubs/finance/ping"): Resp(200, {})})
    CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN).ping()
    assert [r.path for r in server.requests] == ["/hubs/finance/ping"]
    assert server.requests[0].headers["Authorization"] == HUB_AUTH


def test_create_instance_caches_token_and_strips_it(server, loop_conn):
    created = {**INSTANCE, "id": 9, "configuration": {"oauth.api.secret": "ApiSecret!!"}}
    server.handler = router({("POST", "/instances"): Resp(200, created), ("GET", "/hubs/finance/ping"): Resp(200, {})})
    hook = CloudElementsHook(loop_conn(), instance_id=9)
    out = hook.create_instance({"element": {"key": "quickbooks"}, "name": "qbo"})
    assert "token" not in out and out["configuration"]["oauth.api.secret"] == "********"
    assert ELEMENT_TOKEN not in json.dumps(out)
    hook.ping()
    assert [r.path for r in server.requests] == ["/instances", "/hubs/finance/ping"]
    assert json.loads(server.requests[0].body) == {"element": {"key": "quickbooks"}, "name": "qbo"}


def test_find_instances_by_name_and_tags(server, loop_conn):
    listing = [{**INSTANCE, "id": 1, "name": "a"}, {**INSTANCE, "id": 2, "name": "b"}]
    server.handler = router({("GET", "/instances"): Resp(200, listing)})
    hook = CloudElementsHook(loop_conn())
    found = hook.find_instances(name="b", tags=["t1", "t2"])
    assert [i["id"] for i in found] == [2] and "token" not in found[0]
    assert server.requests[0].query["tags[]"] == ["t1", "t2"]


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("status", "body", "exc", "text"),
    [
        (
            400,
            {"message": "Error parsing query", "requestId": "r1", "providerMessage": "bad field"},
            CloudElementsBadRequestError,
            "providerMessage=bad field",
        ),
        (
            401,
            {"message": "Invalid Element token"},
            CloudElementsAuthenticationError,
            "re-authorize element instance 7",
        ),
        (403, {"message": "Instance disabled"}, CloudElementsForbiddenError, "disabled"),
        (404, {"message": "Not found", "requestId": "r4"}, CloudElementsNotFoundError, "requestId=r4"),
        (409, {"message": "exists"}, CloudElementsConflictError, "exists"),
    ],
)
def test_non_retryable_statuses_surface_once(server, loop_conn, status, body, exc, text, caplog, capsys):
    server.handler = router({("GET", "/hubs/finance/invoices/1"): Resp(status, body)})
    hook = CloudElementsHook(loop_conn(retry_budget=30), instance_id=7)
    with pytest.raises(exc) as info:
        hook.get_record("invoices", "1")
    assert text in str(info.value)
    assert info.value.status_code == status
    assert sum(r.path == "/hubs/finance/invoices/1" for r in server.requests) == 1
    assert_no_secrets(str(info.value), logs(caplog, capsys))


def test_platform_401_advice(server, loop_conn):
    server.handler = router({("GET", "/elements"): Resp(401, {"message": "bad secrets"})})
    with pytest.raises(CloudElementsAuthenticationError, match="user_secret"):
        CloudElementsHook(loop_conn()).list_elements()


def test_html_502_then_success_is_retried_and_sanitized(server, loop_conn, caplog, capsys):
    html = f"<html><body><h1>502 Bad Gateway</h1><p>{HUB_AUTH}</p></body></html>"
    server.handler = router(
        {
            ("GET", "/hubs/finance/ping"): seq(
                Resp(502, html, {"Content-Type": "text/html", "Retry-After": "0"}), Resp(200, {"ok": 1})
            )
        }
    )
    with caplog.at_level(logging.WARNING):
        assert CloudElementsHook(loop_conn(), instance_id=7).ping() == {"ok": 1}
    text = logs(caplog, capsys)
    assert "attempt 1 failed" in text and "502 Bad Gateway" in text
    assert_no_secrets(text)


def test_html_502_exhausted_budget_gives_short_sanitized_error(server, loop_conn):
    html = "<html><body>" + "<p>proxy</p>" * 300 + f"{HUB_AUTH}</body></html>"
    server.handler = router(
        {("GET", "/hubs/finance/ping"): Resp(502, html, {"Content-Type": "text/html", "Retry-After": "0.2"})}
    )
    with pytest.raises(CloudElementsServerError) as info:
        CloudElementsHook(loop_conn(retry_budget=0.5), instance_id=7).ping()
    assert "HTML error body" in str(info.value) and len(str(info.value)) < 400
    assert_no_secrets(str(info.value))


def test_retry_after_seconds_is_honoured(server, loop_conn):
    server.handler = router(
        {
            ("GET", "/hubs/finance/ping"): seq(
                Resp(429, {"message": "slow down"}, {"Retry-After": "1"}),
                Resp(429, {"message": "slow down"}, {"Retry-After": "1"}),
                Resp(200, {"ok": 1}),
            )
        }
    )
    hook = CloudElementsHook(loop_conn(), instance_id=7)
    hook.get_instance(7)
    t0 = time.monotonic()
    assert hook.ping() == {"ok": 1}
    elapsed = time.monotonic() - t0
    assert 1.9 <= elapsed < 4.0, elapsed  # two Retry-After: 1 waits
    assert sum(r.path == "/hubs/finance/ping" for r in server.requests) == 3


def test_retry_after_http_date_is_honoured(server, loop_conn):
    from email.utils import formatdate

    def answer(req):
        n = sum(r.path == "/hubs/finance/ping" for r in server.requests)
        if n == 1:
            return Resp(503, {"message": "maintenance"}, {"Retry-After": formatdate(time.time() + 2, usegmt=True)})
        return Resp(200, {"ok": 1})

    server.handler = router({("GET", "/hubs/finance/ping"): answer})
    hook = CloudElementsHook(loop_conn(), instance_id=7)
    hook.get_instance(7)
    t0 = time.monotonic()
    hook.ping()
    elapsed = time.monotonic() - t0
    assert 0.9 <= elapsed < 3.5, elapsed  # HTTP-date has 1 s resolution


def test_throttle_500_is_retried_and_429_budget_exhaustion_raises_throttled(server, loop_conn):
    throttled = Resp(
        500,
        {"message": "Provider error", "providerMessage": "message=ThrottleExceeded; errorCode=003001"},
        {"Retry-After": "0"},
    )
    server.handler = router({("GET", "/hubs/finance/ping"): seq(throttled, Resp(200, {"ok": 1}))})
    assert CloudElementsHook(loop_conn(), instance_id=7).ping() == {"ok": 1}

    server.handler = router({("GET", "/hubs/finance/ping"): Resp(429, {"message": "x"}, {"Retry-After": "0.3"})})
    server.requests.clear()
    hook = CloudElementsHook(loop_conn(retry_budget=1.0), instance_id=7)
    t0 = time.monotonic()
    with pytest.raises(CloudElementsThrottledError) as info:
        hook.ping()
    elapsed = time.monotonic() - t0
    assert elapsed < 2.0
    assert info.value.status_code == 429
    assert sum(r.path == "/hubs/finance/ping" for r in server.requests) >= 3  # time budget, not 1 attempt


def test_post_not_retried_on_502_but_retried_on_429(server, loop_conn):
    server.handler = router({("POST", "/hubs/finance/bulk/query"): Resp(502, {"message": "gw"})})
    hook = CloudElementsHook(loop_conn(), instance_id=7)
    with pytest.raises(CloudElementsServerError):
        hook.start_bulk_query("invoices")
    assert sum(r.path == "/hubs/finance/bulk/query" for r in server.requests) == 1

    server.handler = router(
        {
            ("POST", "/hubs/finance/bulk/query"): seq(
                Resp(429, {"message": "x"}, {"Retry-After": "0"}), Resp(200, {"id": 55, "status": "CREATED"})
            )
        }
    )
    assert hook.start_bulk_query("invoices") == "55"


def test_read_timeout_retried_for_get(server, loop_conn):
    server.handler = router(
        {("GET", "/hubs/finance/ping"): seq(Resp(200, {"late": 1}, delay=1.5), Resp(200, {"ok": 1}))}
    )
    hook = CloudElementsHook(loop_conn(read_timeout=0.5), element_token=ELEMENT_TOKEN)
    assert hook.ping() == {"ok": 1}


def test_connection_refused_becomes_connection_error(monkeypatch):
    import socket

    from .conftest import conn_json

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    monkeypatch.setenv("AIRFLOW_CONN_CE_DEAD", conn_json(f"http://127.0.0.1:{port}/elements/api-v2", retry_budget=0.8))
    with pytest.raises(CloudElementsConnectionError) as info:
        CloudElementsHook("ce_dead").list_elements()
    assert "ConnectError" in str(info.value)  # httpx.ConnectError: the request never left
    ok, msg = CloudElementsHook("ce_dead").test_connection()
    assert not ok and "ConnectionError" in msg


# ---------------------------------------------------------------------------------------------- pagination
def test_iter_records_cursor_pagination(server, loop_conn):
    data = [{"TxnID": f"T-{i}"} for i in range(5)]

    def page(req):
        start = int(req.q("nextPage") or 0)
        size = int(req.q("pageSize"))
        chunk = data[start : start + size]
        headers = {"Elements-Returned-Count": str(len(chunk))}
        if start + size < len(data):
            headers["Elements-Next-Page-Token"] = str(start + size)
        return Resp(200, chunk, headers)

    server.handler = router({("GET", "/hubs/finance/invoices"): page})
    hook = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN)
    assert list(hook.iter_records("invoices", where="TxnID != 'x'", page_size=2)) == data
    pages = [r for r in server.requests if r.path == "/hubs/finance/invoices"]
    assert [r.q("nextPage") for r in pages] == [None, "2", "4"]
    assert all(r.q("where") == "TxnID != 'x'" for r in pages)


def test_iter_records_page_fallback_with_silent_cap(server, loop_conn, caplog, capsys):
    data = [{"id": str(i)} for i in range(7)]

    def page(req):
        size = min(int(req.q("pageSize")), 3)
        p = int(req.q("page") or 1)
        headers = {}
        if int(req.q("pageSize")) > 3:
            headers["Elements-Error"] = "pageSize exceeds the provider maximum of 3"
        return Resp(200, data[(p - 1) * size : p * size], headers)

    server.handler = router({("GET", "/hubs/finance/customers"): page})
    hook = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN)
    with caplog.at_level(logging.WARNING):
        got = list(hook.iter_records("customers", page_size=10))
    assert got == data
    pages = [r for r in server.requests if r.path == "/hubs/finance/customers"]
    assert [(r.q("page"), r.q("pageSize")) for r in pages] == [(None, "10"), ("2", "3"), ("3", "3")]
    assert "3 of the 10 requested records with Elements-Error" in logs(caplog, capsys)


def test_iter_records_server_ignoring_page_ends_without_duplicates(server, loop_conn):
    """Issue 11 #14: page 2 repeating page 1 (the server ignores ``page``) is the end of the list, its
    records are not yielded twice; a page repeating an OLDER page is still refused as a loop."""
    server.handler = router({("GET", "/hubs/finance/customers"): Resp(200, [{"id": "1"}, {"id": "2"}])})
    hook = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN)
    assert list(hook.iter_records("customers", page_size=2)) == [{"id": "1"}, {"id": "2"}]
    assert [r.q("page") for r in server.requests if r.path == "/hubs/finance/customers"] == [None, "2"]

    def cycling(req):
        page = int(req.q("page") or 1)
        return Resp(200, [{"id": str(2 * ((page - 1) % 2) + 1)}, {"id": str(2 * ((page - 1) % 2) + 2)}])

    server.handler = router({("GET", "/hubs/finance/customers"): cycling})  # 1,2 / 3,4 / 1,2 ...
    with pytest.raises(CloudElementsApiError, match="ignores paging"):
        list(hook.iter_records("customers", page_size=2))


def test_iter_records_reconcile_total(server, loop_conn):
    server.handler = router(
        {("GET", "/hubs/finance/customers"): Resp(200, [{"id": "1"}], {"Elements-Total-Count": "2"})}
    )
    hook = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN)
    with pytest.raises(CloudElementsReconciliationError):
        list(hook.iter_records("customers", reconcile_total=True))
    assert [r.q("returnCount") for r in server.requests if r.path == "/hubs/finance/customers"] == ["true"]


def test_qbo_or_rejected_before_sending(server, loop_conn):
    server.handler = router({})
    hook = CloudElementsHook(loop_conn(), instance_id=7)
    hook.get_instance(7)  # learns element key quickbooks
    n = len(server.requests)
    with pytest.raises(CloudElementsCEQLError, match="OR"):
        hook.iter_records("invoices", where="totalAmt = 1 OR totalAmt = 2")
    with pytest.raises(CloudElementsCEQLError):
        hook.start_bulk_query("invoices", where="a = 1 or b = 2")
    with pytest.raises(CloudElementsConfigError, match="not supported"):
        hook.iter_records("sales-orders")  # a QBE-only resource
    assert len(server.requests) == n


# ---------------------------------------------------------------------------------------------- bulk
def test_start_bulk_query_wire_shape(server, loop_conn):
    server.handler = router({("POST", "/hubs/finance/bulk/query"): Resp(200, {"id": "1234", "status": "CREATED"})})
    hook = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN)
    job = hook.start_bulk_query(
        "invoices",
        where="`metaData.lastUpdatedTime` >= '2024-01-01T00:00:00.000Z'",
        from_="2024-01-01T01:00:00+01:00",
        to="2024-01-02",
        callback_url="https://cb/x",
    )
    assert job == "1234"
    [req] = [r for r in server.requests if r.method == "POST"]
    assert req.q("q") == "select * from invoices where `metaData.lastUpdatedTime` >= '2024-01-01T00:00:00.000Z'"
    assert req.q("from") == "2024-01-01T00:00:00+00:00" and req.q("to") == "2024-01-02T00:00:00+00:00"
    assert req.headers["Elements-Async-Callback-Url"] == "https://cb/x"


def test_wait_for_bulk_job(server, loop_conn):
    server.handler = router(
        {
            ("GET", "/hubs/finance/bulk/5/status"): seq(
                Resp(200, {"id": "5", "status": "CREATED"}),
                Resp(200, {"id": "5", "status": "RUNNING"}),
                Resp(200, {"id": "5", "status": "COMPLETED", "recordsCount": 3}),
            )
        }
    )
    hook = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN)
    assert hook.wait_for_bulk_job("5", poll_interval=0.01)["recordsCount"] == 3
    for status in ("FAILED", "ABORTED", "CANCELLED", "EXPLODED"):
        server.handler = router({("GET", "/hubs/finance/bulk/5/status"): Resp(200, {"id": "5", "status": status})})
        with pytest.raises(CloudElementsBulkJobError):
            hook.wait_for_bulk_job("5", poll_interval=0.01)
    server.handler = router({("GET", "/hubs/finance/bulk/5/status"): Resp(200, {"id": "5", "status": "RUNNING"})})
    with pytest.raises(CloudElementsTimeoutError):
        hook.wait_for_bulk_job("5", poll_interval=0.05, timeout=0.2)


NDJSON = b"".join(json.dumps({"id": str(i), "name": "x" * 50}).encode() + b"\n" for i in range(200))


def test_download_streams_and_counts(server, loop_conn):
    server.handler = router({("GET", "/hubs/finance/bulk/5/invoices"): Resp(200, NDJSON)})
    hook = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN)
    buf = io.BytesIO(b"HEAD")
    buf.seek(4)
    seen = []
    res = hook.download_bulk("5", "invoices", buf, progress=lambda records, nbytes: seen.append((records, nbytes)))
    assert res == BulkDownloadResult(records=200, lines=200, bytes=len(NDJSON))
    assert buf.getvalue() == b"HEAD" + NDJSON
    assert seen[-1] == (200, len(NDJSON))
    assert server.requests[0].headers["Accept"] == "application/json"
    server.requests.clear()
    hook.download_bulk("5", "invoices", io.BytesIO(), fmt="csv")
    assert server.requests[0].headers["Accept"] == "text/csv"


def test_download_dropped_mid_stream_restarts_into_same_position(server, loop_conn, caplog, capsys):
    server.handler = router(
        {("GET", "/hubs/finance/bulk/5/invoices"): seq(Resp(200, NDJSON, drop_after=3000), Resp(200, NDJSON))}
    )
    hook = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN)
    buf = io.BytesIO(b"KEEP")
    buf.seek(4)
    with caplog.at_level(logging.WARNING):
        res = hook.download_bulk("5", "invoices", buf)
    assert res.lines == 200 and buf.getvalue() == b"KEEP" + NDJSON
    assert len(server.requests) == 2 and "attempt 1 failed" in logs(caplog, capsys)


class _NoSeek(io.RawIOBase):
    def __init__(self):
        self.data = bytearray()

    def writable(self):
        return True

    def seekable(self):
        return False

    def write(self, b):
        self.data.extend(b)
        return len(b)


def test_download_dropped_into_non_seekable_raises(server, loop_conn):
    from airflow_provider_cloudelements.hooks.cloudelements import DOWNLOAD_CHUNK_BYTES

    # more than one download chunk, so bytes reach the file before the drop
    big = NDJSON * (3 * DOWNLOAD_CHUNK_BYTES // len(NDJSON) + 1)
    drop = DOWNLOAD_CHUNK_BYTES + DOWNLOAD_CHUNK_BYTES // 4
    server.handler = router({("GET", "/hubs/finance/bulk/5/invoices"): Resp(200, big, drop_after=drop)})
    hook = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN)
    with pytest.raises(CloudElementsConnectionError, match="not seekable"):
        hook.download_bulk("5", "invoices", _NoSeek())
    assert len(server.requests) == 1


def test_download_always_dropped_raises_after_budget(server, loop_conn):
    server.handler = router({("GET", "/hubs/finance/bulk/5/invoices"): Resp(200, NDJSON, drop_after=100)})
    hook = CloudElementsHook(loop_conn(retry_budget=1.0), element_token=ELEMENT_TOKEN)
    with pytest.raises(CloudElementsConnectionError, match=r"truncated|dropped"):
        hook.download_bulk("5", "invoices", io.BytesIO())


def test_download_partial_ndjson_record_is_truncation(server, loop_conn):
    body = NDJSON + b'{"id": "cut'
    server.handler = router({("GET", "/hubs/finance/bulk/5/invoices"): seq(Resp(200, body), Resp(200, NDJSON))})
    buf = io.BytesIO()
    res = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN).download_bulk("5", "invoices", buf)
    assert res.lines == 200 and buf.getvalue() == NDJSON


def test_bulk_errors_cancel_upload(server, loop_conn):
    def errors(req):
        if req.q("nextPage"):
            return Resp(200, [{"id": "e2"}], {"Elements-Returned-Count": "1"})
        return Resp(200, [{"id": "e1"}], {"Elements-Returned-Count": "1", "Elements-Next-Page-Token": "n1"})

    server.handler = router(
        {
            ("GET", "/hubs/finance/bulk/5/errors"): errors,
            ("PUT", "/hubs/finance/bulk/5/cancel"): Resp(200, None),
            ("POST", "/hubs/finance/bulk/customers"): Resp(200, {"id": 77, "status": "CREATED"}),
        }
    )
    hook = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN)
    assert [e["id"] for e in hook.iter_bulk_errors("5")] == ["e1", "e2"]
    hook.cancel_bulk_job("5")
    assert hook.upload_bulk("customers", io.BytesIO(b'{"name": "a"}\n'), fmt="json") == "77"
    up = server.requests[-1]
    assert up.headers["Content-Type"].startswith("multipart/form-data")
    assert b'{"name": "a"}' in up.body and b'"format": "json"' in up.body


# ---------------------------------------------------------------------------------------------- events
def test_iter_events_filters_client_side(server, loop_conn):
    events = [
        {"id": "1", "eventDate": "2024-01-01T10:00:00Z", "objectType": "invoices", "eventType": "CREATED"},
        {
            "id": "2",
            "eventDate": "2024-01-01T11:00:00Z",
            "providerData": json.dumps({"message": {"events": [{"objectType": "customers", "eventType": "UPDATED"}]}}),
        },
        {"id": "3", "eventDate": "2024-01-02T10:00:00Z", "objectType": "invoices", "eventType": "UPDATED"},
    ]
    server.handler = router({("GET", "/instances/7/events"): Resp(200, events)})
    hook = CloudElementsHook(loop_conn(), instance_id=7)
    from datetime import datetime, timezone

    day = datetime(2024, 1, 1, tzinfo=timezone.utc)
    got = hook.iter_events(since=day, until=datetime(2024, 1, 2, tzinfo=timezone.utc))
    assert [e["id"] for e in got] == ["1", "2"]
    assert [e["id"] for e in hook.iter_events(object_types=["customers"])] == ["2"]
    assert [e["id"] for e in hook.iter_events(event_types=["updated"])] == ["2", "3"]
    assert server.requests[0].headers["Authorization"] == PLATFORM_AUTH


# ---------------------------------------------------------------------------------------------- test_conn
def test_test_connection(server, loop_conn):
    server.handler = router({("GET", "/instances"): Resp(200, []), ("GET", "/hubs/finance/ping"): Resp(200, {})})
    ok, msg = CloudElementsHook(loop_conn(), instance_id=7).test_connection()
    assert ok and "ping OK" in msg
    assert server.requests[0].q("pageSize") == "1"
    server.handler = router({("GET", "/instances"): Resp(401, {"message": f"bad User {USER_SECRET}"})})
    ok, msg = CloudElementsHook(loop_conn()).test_connection()
    assert not ok and "401" in msg
    assert_no_secrets(msg)
