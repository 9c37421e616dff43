"""Issue 11 hook defects (#8, #9, #10, #11) over real HTTP against the scripted loopback server:
record counting, caps, per-attempt deadlines, Retry-After fallback, secrets in error texts."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import time
import tracemalloc
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from airflow_provider_cloudelements.client.protocol import MAX_EXCERPT_CHARS, MAX_RESPONSE_BYTES
from airflow_provider_cloudelements.exceptions import (
    CloudElementsConfigError,
    CloudElementsConnectionError,
    CloudElementsReconciliationError,
    CloudElementsResponseTooLargeError,
    CloudElementsServerError,
    CloudElementsThrottledError,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.hooks.cloudelements_async import CloudElementsAsyncHook
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger

from .conftest import ELEMENT_TOKEN, Req, Resp

STATUS = "/hubs/finance/bulk/5/status"
DOWNLOAD = "/hubs/finance/bulk/5/invoices"


def only(path: str, resp: Resp | object):
    def handle(req: Req) -> Resp:
        if req.path == path:
            return resp(req) if callable(resp) else resp  # type: ignore[return-value]
        return Resp(404, {"message": f"no route {req.path}"})

    return handle


def hits(server, path: str) -> int:
    return sum(r.path == path for r in server.requests)


# ---------------------------------------------------------------------------------------------- #8 records
def test_download_counts_records_not_newlines(server, loop_conn):
    """NDJSON blank lines are not records; a CSV line break inside a quoted field is one record and
    the header is not a record (issue 11 #8: "downloaded 32, recordsCount=31")."""
    ndjson = b'{"id": "1"}\n\n{"id": "2"}\n   \n{"id": "3"}'  # blank lines + unterminated last record
    csv_body = b'id,memo\r\n1,"line one\r\nline two"\r\n\r\n2,plain\r\n3,"a ""quoted"" word"\r\n'
    hook = CloudElementsHook(loop_conn(), element_token=ELEMENT_TOKEN)

    server.handler = only(DOWNLOAD, Resp(200, ndjson))
    buf = io.BytesIO()
    res = hook.download_bulk("5", "invoices", buf, expected_records=3)
    assert (res.records, res.lines, res.bytes) == (3, 5, len(ndjson)) and buf.getvalue() == ndjson

    server.handler = only(DOWNLOAD, Resp(200, csv_body))
    buf = io.BytesIO()
    res = hook.download_bulk("5", "invoices", buf, fmt="csv", expected_records=3)
    assert (res.records, res.lines) == (3, 6) and buf.getvalue() == csv_body
    with pytest.raises(CloudElementsReconciliationError, match="more records arrived than the 2"):
        hook.download_bulk("5", "invoices", io.BytesIO(), fmt="csv", expected_records=2)
    with pytest.raises(CloudElementsConfigError, match="expected_records"):
        hook.download_bulk("5", "invoices", io.BytesIO(), expected_records=-1)


# ---------------------------------------------------------------------------------------------- #9 caps
def test_endless_download_stops_after_expected_records(server, loop_conn, tmp_path):
    """A download that never ends stops at the first chunk past ``expected_records``: typed error, not
    retried, nothing landed (the file is rewound), and only a few MiB were ever sent."""
    sent = {"chunks": 0}

    def endless():
        for i in itertools.count():
            sent["chunks"] += 1
            yield b"".join(
                json.dumps({"id": str(i * 1000 + j), "pad": "x" * 200}).encode() + b"\n" for j in range(1000)
            )

    server.handler = only(DOWNLOAD, lambda req: Resp(200, stream=endless()))
    hook = CloudElementsHook(loop_conn(retry_budget=30), element_token=ELEMENT_TOKEN)
    target = tmp_path / "invoices.ndjson"
    with target.open("wb+") as handle:
        with pytest.raises(CloudElementsReconciliationError, match="more records arrived than the 50000"):
            hook.download_bulk("5", "invoices", handle, expected_records=50_000)
    assert target.stat().st_size == 0
    assert hits(server, DOWNLOAD) == 1
    assert sent["chunks"] < 200  # ~50 chunks of ~220 kB needed; the server was stopped soon after


@pytest.mark.parametrize("announced", [True, False], ids=["content-length", "chunked"])
def test_huge_status_body_refused_in_bounded_memory(server, loop_conn, announced):
    """A 300 MB JSON status body is refused (typed, not retried) without holding it in memory
    (issue 11 #9: +606 MB before)."""
    total = 300 * 1024 * 1024
    head, tail = b'{"id": "5", "status": "COMPLETED", "pad": "', b'"}'

    def body():
        yield head
        for _ in range(total // (1024 * 1024)):
            yield b"x" * (1024 * 1024)
        yield tail

    if announced:  # a body with Content-Length: refused before the first body byte is read
        big = head + b"x" * (MAX_RESPONSE_BYTES + 1) + tail
        server.handler = only(STATUS, Resp(200, big, {"Content-Type": "application/json"}))
    else:
        server.handler = only(
            STATUS, lambda req: Resp(200, stream=body(), headers={"Content-Type": "application/json"})
        )
    hook = CloudElementsHook(loop_conn(retry_budget=30), element_token=ELEMENT_TOKEN)
    tracemalloc.start()
    try:
        with pytest.raises(CloudElementsResponseTooLargeError, match="exceeds the 16777216-byte cap"):
            hook.get_bulk_status("5")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MAX_RESPONSE_BYTES, peak
    assert hits(server, STATUS) == 1

    async def run():
        async with CloudElementsAsyncHook(loop_conn(retry_budget=30), element_token=ELEMENT_TOKEN) as ahook:
            await ahook.get_settings()
            await ahook.get_bulk_status("5")

    with pytest.raises(CloudElementsResponseTooLargeError):
        asyncio.run(run())
    assert hits(server, STATUS) == 2


def test_trickling_status_stops_at_the_attempt_deadline(server, loop_conn):
    """1 byte / 0.5 s never trips a 2 s read timeout; the attempt deadline (within the 3 s budget)
    does (issue 11 #9: each call blocked 27 s before)."""
    body = json.dumps({"id": "5", "status": "RUNNING", "recordsCount": 0, "pad": "y" * 80}).encode()
    server.handler = only(STATUS, lambda req: Resp(200, body, trickle=0.5))
    conn_id = loop_conn(read_timeout=2, connect_timeout=1, retry_budget=3)
    hook = CloudElementsHook(conn_id, element_token=ELEMENT_TOKEN)
    t0 = time.monotonic()
    with pytest.raises(CloudElementsConnectionError, match="attempt deadline") as info:
        hook.get_bulk_status("5")
    sync_elapsed = time.monotonic() - t0
    assert 2.0 <= sync_elapsed < 4.5, sync_elapsed
    assert ELEMENT_TOKEN not in str(info.value)

    async def run():
        async with CloudElementsAsyncHook(conn_id, element_token=ELEMENT_TOKEN) as ahook:
            await ahook.get_settings()
            await ahook.get_bulk_status("5")

    t0 = time.monotonic()
    with pytest.raises(CloudElementsConnectionError, match="attempt deadline"):
        asyncio.run(run())
    assert 2.0 <= time.monotonic() - t0 < 4.5


# ---------------------------------------------------------------------------------------------- #10 retries
@pytest.mark.parametrize(
    "retry_after",
    ["0", "-3", format_datetime(datetime.now(timezone.utc) - timedelta(hours=1), usegmt=True)],
    ids=["zero", "negative", "past-date"],
)
def test_useless_retry_after_falls_back_to_backoff(server, loop_conn, retry_after):
    """Retry-After 0 / negative / past date: the jittered backoff, not a hot loop (~110 requests in
    5 s before)."""
    server.handler = only(STATUS, Resp(429, {"message": "slow down"}, {"Retry-After": retry_after}))
    hook = CloudElementsHook(loop_conn(retry_budget=5), element_token=ELEMENT_TOKEN)
    with pytest.raises(CloudElementsThrottledError):
        hook.get_bulk_status("5")
    assert 2 <= hits(server, STATUS) <= 6, hits(server, STATUS)


def test_plain_500_retried_three_times_on_get_never_on_post(server, loop_conn):
    server.handler = only(STATUS, Resp(500, {"message": "boom"}))
    hook = CloudElementsHook(loop_conn(retry_budget=60), element_token=ELEMENT_TOKEN)
    with pytest.raises(CloudElementsServerError, match="boom"):
        hook.get_bulk_status("5")
    assert hits(server, STATUS) == 4  # 1 + 3 retries, well inside the 60 s budget

    calls = {"n": 0}

    def flaky(req: Req) -> Resp:
        calls["n"] += 1
        return Resp(500, {"message": "transient"}) if calls["n"] <= 2 else Resp(200, {"id": "5", "status": "RUNNING"})

    server.handler = only(STATUS, flaky)
    assert hook.get_bulk_status("5")["status"] == "RUNNING"

    async def run():
        calls["n"] = 0
        async with CloudElementsAsyncHook(loop_conn(retry_budget=60), element_token=ELEMENT_TOKEN) as ahook:
            await ahook.get_settings()
            return await ahook.get_bulk_status("5")

    assert asyncio.run(run())["status"] == "RUNNING" and calls["n"] == 3

    server.requests.clear()
    server.handler = only("/hubs/finance/bulk/invoices", Resp(500, {"message": "maybe created"}))
    with pytest.raises(CloudElementsServerError):
        hook.upload_bulk("invoices", io.BytesIO(b'{"id": "1"}\n'))
    assert hits(server, "/hubs/finance/bulk/invoices") == 1


# ---------------------------------------------------------------------------------------------- #11 secrets
SECRET_33 = "Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0Lm"  # 32 + 1 characters, no "User"/"Element" prefix
assert len(SECRET_33 + "n") == 33
ORG_33 = SECRET_33 + "n"


def _fragments(secret: str, size: int = 6) -> list[str]:
    return [secret[i : i + size] for i in range(len(secret) - size + 1)]


def assert_no_fragment(text: str) -> None:
    leaked = [f for f in _fragments(ORG_33) if f in text]
    assert not leaked, f"secret fragments survived: {leaked}"


@pytest.mark.parametrize(
    ("kind", "limit"),
    [("json-message", 500), ("json-provider", 500), ("html", MAX_EXCERPT_CHARS), ("non-json-200", MAX_EXCERPT_CHARS)],
)
def test_secret_straddling_the_truncation_limit_never_survives(server, loop_conn, kind, limit):
    """Issue 11 #11: redaction runs BEFORE truncation, so a 33-character secret cut at the limit does
    not leave its first 30 characters in the exception nor in the trigger event built from the async
    hook's error."""
    filler = "f" * (limit - 20)  # the secret starts 20 characters before the cut
    text = f"{filler}{ORG_33} tail"
    if kind == "json-message":
        resp = Resp(400, {"message": text})
    elif kind == "json-provider":
        resp = Resp(400, {"message": "bad", "providerMessage": text})
    elif kind == "html":
        resp = Resp(502, f"<html><body>{text}</body></html>", {"Content-Type": "text/html"})
    else:
        resp = Resp(200, text)
    server.handler = only(STATUS, resp)
    conn_id = loop_conn(organization_secret=ORG_33, element_token=ELEMENT_TOKEN, retry_budget=0)
    with pytest.raises(Exception) as info:
        CloudElementsHook(conn_id).get_bulk_status("5")
    err = info.value
    assert_no_fragment(" | ".join([str(err), repr(err), str(getattr(err, "provider_message", ""))]))
    assert "***" in str(err)

    async def first_event():
        trigger = CloudElementsBulkJobTrigger(
            job_id="5", instance_id=None, cloudelements_conn_id=conn_id, poll_interval=0.1, end_time=time.time() + 30
        )
        gen = trigger.run()
        try:
            return await gen.__anext__()
        finally:
            await gen.aclose()

    event = asyncio.run(first_event())
    assert event.payload["status"] == "error" and event.payload["error"]["type"] == type(err).__name__
    assert_no_fragment(json.dumps(event.payload))


@pytest.mark.parametrize("field", ["user_secret", "organization_secret", "element_token"])
@pytest.mark.parametrize("bad", ["\n", "\r\n", "\t", "\x00", " "])
def test_secret_with_line_break_or_control_char_is_a_typed_config_error(server, loop_conn, field, bad):
    value = f"Abcdef123{bad}456ghiJKL"
    conn_id = loop_conn(**{field: value})
    with pytest.raises(CloudElementsConfigError) as info:
        CloudElementsHook(conn_id).ping()
    text = str(info.value) + repr(info.value)
    assert field in text and "Abcdef123" not in text and "456ghiJKL" not in text
    with pytest.raises(CloudElementsConfigError):
        asyncio.run(CloudElementsAsyncHook(conn_id).get_settings())
    assert server.requests == []


def test_hook_element_token_argument_is_checked(server, loop_conn):
    with pytest.raises(CloudElementsConfigError, match="'element_token' contains a line break") as info:
        CloudElementsHook(loop_conn(), element_token="tok\nen-value")
    assert "en-value" not in str(info.value)
    assert server.requests == []
