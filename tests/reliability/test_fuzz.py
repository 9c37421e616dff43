"""Fuzzing: arbitrary status codes, headers and bodies must give either a valid result or one of our
typed exceptions (never a bare TypeError/ValueError/KeyError, never a hang); and schemathesis against
the emulator's ``/openapi.json``: no 5xx on schema-valid input.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_cloudelements.client.paging import PageInfo, Pager
from airflow_provider_cloudelements.client.protocol import (
    ErrorInfo,
    exception_for_response,
    header_int,
    parse_error_body,
    redact,
)
from airflow_provider_cloudelements.client.retry import parse_retry_after
from airflow_provider_cloudelements.exceptions import CloudElementsApiError, CloudElementsError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.hooks.cloudelements_async import CloudElementsAsyncHook
from airflow_provider_cloudelements.utils.signature import WebhookDeduplicator, verify_webhook_signature
from tests.hooks.conftest import Resp, ScriptedServer
from tests.hooks.conftest import conn_json as scripted_conn_json

pytestmark = pytest.mark.timeout(120)

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# header values as a proxy could send them: printable latin-1, no CR/LF
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.sampled_from(
        [
            b"",
            b"<html><h1>502 Bad Gateway</h1></html>",
            b'{"message": "x", "requestId": 1}',
            b'{"message": null, "providerMessage": {"a": [1]}}',
            b"[1, 2",
            b"\xff\xfe\x00",
        ]
    ),
)
RESPONSE_HEADERS = [
    "Retry-After",
    "Elements-Next-Page-Token",
    "Elements-Returned-Count",
    "Elements-Total-Count",
    "Elements-Error",
    "Elements-Request-Id",
    "Content-Type",
    "X-Anything",
]
headers = st.dictionaries(st.sampled_from(RESPONSE_HEADERS), header_text, max_size=5)
statuses = st.one_of(
    st.sampled_from([200, 201, 204, 400, 401, 403, 404, 409, 429, 500, 502, 503, 504]), st.integers(200, 599)
)


# ------------------------------------------------------------------------------------- pure helpers
@FAST
@given(
    st.one_of(
        st.none(),
        header_text,
        st.sampled_from(
            [
                "1e308",
                "-5",
                "nan",
                "inf",
                "Wed, 21 Oct 2015 07:28:00 GMT",
                "Mon, 99 Foo 2015 99:99:99 GMT",
                "0x10",
                " 3 ",
            ]
        ),
    )
)
def test_retry_after_parsing(value: str | None) -> None:
    seconds = parse_retry_after(value)
    assert seconds is None or (isinstance(seconds, float) and math.isfinite(seconds) and seconds >= 0)


@FAST
@given(st.dictionaries(st.sampled_from(RESPONSE_HEADERS), header_text, max_size=4), st.sampled_from(RESPONSE_HEADERS))
def test_header_int(hdrs: dict[str, str], name: str) -> None:
    value = header_int(hdrs, name)
    assert value is None or isinstance(value, int)


@FAST
@given(bodies, st.one_of(st.none(), header_text), st.one_of(st.none(), header_text), st.integers(400, 599))
def test_error_body_parsing_and_mapping(body: bytes, ctype: str | None, rid: str | None, status: int) -> None:
    secret = "SeCrEt+value/abc=="
    info = parse_error_body(body + secret.encode(), content_type=ctype, request_id_header=rid, secrets=[secret])
    assert isinstance(info, ErrorInfo) and secret not in info.message and secret not in (info.provider_message or "")
    exc = exception_for_response(status, info, method="GET", path="/hubs/finance/invoices", instance_id=3, hub=True)
    assert isinstance(exc, CloudElementsApiError) and exc.status_code == status
    assert secret not in str(exc)


@FAST
@given(st.lists(st.tuples(json_values, headers), min_size=1, max_size=6), st.integers(1, 50), st.booleans())
def test_pager_state_machine(pages: list[tuple[Any, dict[str, str]]], size: int, reconcile: bool) -> None:
    pager = Pager("/hubs/finance/invoices", {}, page_size=size, reconcile_total=reconcile)
    try:
        for body, hdrs in pages:
            if pager.next_params() is None:
                break
            pager.feed(PageInfo.from_response(body, hdrs))
        pager.finish()
    except CloudElementsError:
        pass


@FAST
@given(
    st.binary(max_size=100),
    st.one_of(st.none(), header_text, st.binary(max_size=10)),
    st.one_of(st.none(), st.text(max_size=10), st.binary(max_size=5), st.integers()),
)
def test_signature_and_dedup_never_raise(body: bytes, header: Any, key: Any) -> None:
    assert verify_webhook_signature(body, header, key) in (True, False)
    assert WebhookDeduplicator(5).first_time(body) is True
    assert isinstance(redact(body.decode("latin-1"), [key if isinstance(key, str) else None]), str)


# ------------------------------------------------------------------------------------- the hooks over HTTP
@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    old = os.environ.get("AIRFLOW_CONN_CE_FUZZ")
    os.environ["AIRFLOW_CONN_CE_FUZZ"] = scripted_conn_json(
        server.base_url, element_token="ToKeN+eLeMeNt/qwe456==", retry_budget=0, read_timeout=5
    )
    try:
        yield server
    finally:
        server.stop()
        if old is None:
            os.environ.pop("AIRFLOW_CONN_CE_FUZZ", None)
        else:
            os.environ["AIRFLOW_CONN_CE_FUZZ"] = old


SYNC_CALLS = {
    "ping": lambda h: h.ping(),
    "bulk status": lambda h: h.get_bulk_status("17"),
    "records": lambda h: list(h.iter_records("invoices", page_size=3)),
    "bulk submit": lambda h: h.start_bulk_query("invoices"),
    "get instance": lambda h: h.get_instance(5),
    "record": lambda h: h.get_record("invoices", "1"),
    "events": lambda h: list(h.iter_events(instance_id=5)),
    "elements": lambda h: h.list_elements(),
}


@FAST
@given(statuses, headers, bodies, st.sampled_from(sorted(SYNC_CALLS)))
def test_sync_hook_any_response(
    scripted: ScriptedServer, status: int, hdrs: dict[str, str], body: bytes, call: str
) -> None:
    scripted.handler = lambda req: Resp(status, body, hdrs)
    hook = CloudElementsHook("ce_fuzz", instance_id=5)
    try:
        SYNC_CALLS[call](hook)
    except CloudElementsError:
        pass


ASYNC_CALLS = {
    "ping": lambda h: h.ping(),
    "bulk status": lambda h: h.get_bulk_status("17"),
    "events": lambda h: (
        h.list_events(instance_id=5) if "instance_id" in h.list_events.__code__.co_varnames else h.list_events()
    ),
    "cancel": lambda h: h.cancel_bulk_job("17"),
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(statuses, headers, bodies, st.sampled_from(sorted(ASYNC_CALLS)))
def test_async_hook_any_response(
    scripted: ScriptedServer, status: int, hdrs: dict[str, str], body: bytes, call: str
) -> None:
    scripted.handler = lambda req: Resp(status, body, hdrs)
    hook = CloudElementsAsyncHook("ce_fuzz", instance_id=5)

    async def go() -> None:
        try:
            await ASYNC_CALLS[call](hook)
        except CloudElementsError:
            pass

    asyncio.run(go())


# ------------------------------------------------------------------------------------- schemathesis
schemathesis = pytest.importorskip("schemathesis")
SCHEMA_AUTH: dict[str, str] = {}


@pytest.fixture(scope="module")
def emulator_schema() -> Iterator[Any]:
    """A dedicated emulator (the generated calls delete and disable instances) and its OpenAPI schema."""
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(seed=99, records_per_resource=5, bulk_min_seconds=0.05)) as server:
        inst = server.state.create_instance("quickbooks", "schemathesis")
        SCHEMA_AUTH["Authorization"] = (
            f"User {server.user_secret}, Organization {server.organization_secret}, Element {inst['token']}"
        )
        root = server.base_url.split("/elements/api-v2")[0]
        yield schemathesis.openapi.from_url(f"{root}/openapi.json")


def test_emulator_openapi_no_server_errors(emulator_schema: Any) -> None:
    """Schema-valid requests (valid auth) never get a 5xx from the emulator: a few generated examples
    per operation of ``/openapi.json`` (schemathesis strategies driven by hypothesis directly, since the
    schemathesis pytest plugin does not run on pytest 9)."""
    failures: list[str] = []
    operations = 0
    calls = 0
    codes: dict[int, int] = {}
    for result in emulator_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(max_examples=4, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def exercise(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(headers=dict(SCHEMA_AUTH), timeout=10)
            codes[response.status_code] = codes.get(response.status_code, 0) + 1
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}: {response.text[:200]}"
                )

        exercise()
    print(f"schemathesis: {operations} operations, {calls} calls, statuses {sorted(codes.items())}")
    assert operations >= 20 and calls >= operations
    assert sum(n for code, n in codes.items() if code < 300) >= operations // 3, codes  # auth really works
    assert failures == [], "\n".join(failures[:20])
