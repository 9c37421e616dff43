"""Pure tests of client/protocol.py and client/paging.py: headers, error parsing, redaction, Retry-After, Pager."""

from __future__ import annotations

import csv
import io
import json
import logging
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_cloudelements.client.paging import PageInfo, Pager, RecordCounter
from airflow_provider_cloudelements.client.protocol import (
    exception_for_response,
    hub_authorization,
    is_throttle_message,
    parse_error_body,
    platform_authorization,
    redact,
    safe_excerpt,
    strip_instance,
)
from airflow_provider_cloudelements.client.retry import parse_retry_after
from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsAuthenticationError,
    CloudElementsBadRequestError,
    CloudElementsReconciliationError,
    CloudElementsServerError,
)

U, ORG, T = "u+1/2=secretU", "o+3/4=secretO", "t+5/6=tokenT"


def test_headers():
    assert platform_authorization(U, ORG) == f"User {U}, Organization {ORG}"
    assert hub_authorization(U, ORG, T) == f"User {U}, Organization {ORG}, Element {T}"
    assert hub_authorization(U, None, T) == f"User {U}, Element {T}"


def test_redact_known_values_and_header_shapes():
    text = f"echo: Authorization: User {U}, Organization {ORG}, Element {T}; again {T}"
    out = redact(text, [U, ORG, T, None, ""])
    for s in (U, ORG, T):
        assert s not in out
    # unknown values in header shape are removed too
    assert "abcdefgh1234" not in redact("User abcdefgh1234, Element zzzzzzzz9999")
    assert redact("nothing secret here") == "nothing secret here"


@given(st.text(min_size=6, max_size=40, alphabet=st.characters(blacklist_categories=("Cs",))))
def test_redact_property(secret):
    assert secret not in redact(f"a{secret}b {secret}", [secret])


def test_parse_error_body_json():
    info = parse_error_body(
        b'{"message": "Invalid query", "requestId": "r-1", "providerMessage": "QueryValidationError"}',
        request_id_header="hdr",
    )
    assert (info.message, info.request_id, info.provider_message, info.is_json) == (
        "Invalid query",
        "r-1",
        "QueryValidationError",
        True,
    )
    assert parse_error_body(b'{"message": "x"}', request_id_header="hdr").request_id == "hdr"


def test_parse_error_body_html_is_short_and_sanitized():
    html = (
        "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>"
        + "<p>x</p>" * 500
        + f"<pre>Authorization: User {U}, Organization {ORG}</pre></body></html>"
    ).encode()
    info = parse_error_body(html, content_type="text/html", secrets=[U, ORG])
    assert not info.is_json
    assert info.message.startswith("HTML error body: 502 Bad Gateway")
    assert "<" not in info.message and len(info.message) < 260
    assert U not in info.message and ORG not in info.message
    assert parse_error_body(b"").message == "empty error body"
    assert "not json" in parse_error_body(b"{not json").message or "non-JSON" in parse_error_body(b"{not json").message


def test_parse_error_body_redacts_echoed_secrets_in_json():
    info = parse_error_body(f'{{"message": "bad header User {U}, Element {T}"}}'.encode(), secrets=[U, T])
    assert U not in info.message and T not in info.message


def test_throttle_detection():
    assert is_throttle_message(None, "message=ThrottleExceeded; errorCode=003001; statusCode=429")
    assert is_throttle_message("Throttle Exceeded", None)
    assert not is_throttle_message("Internal error", None)


def test_exception_messages():
    e401 = exception_for_response(
        401, ErrorInfo("Invalid token"), method="GET", path="/hubs/finance/ping", instance_id=42, hub=True
    )
    assert isinstance(e401, CloudElementsAuthenticationError)
    assert "re-authorize element instance 42" in str(e401)
    p401 = exception_for_response(401, ErrorInfo("Bad secrets"), method="GET", path="/instances")
    assert "user_secret" in str(p401)
    e400 = exception_for_response(
        400, ErrorInfo("Bad Request", "rq", "3100 - message=AuthorizationFailed"), method="GET", path="/x"
    )
    assert isinstance(e400, CloudElementsBadRequestError)
    assert "use_sandbox" in str(e400) and "requestId=rq" in str(e400) and "providerMessage=3100" in str(e400)
    assert isinstance(exception_for_response(599, ErrorInfo("x"), method="GET", path="/x"), CloudElementsServerError)
    assert type(exception_for_response(418, ErrorInfo("x"), method="GET", path="/x")) is CloudElementsApiError


from airflow_provider_cloudelements.client.protocol import ErrorInfo  # noqa: E402


def test_parse_retry_after():
    now = datetime(2024, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    # issue 11 #10: 0, negative and past dates carry no usable hint -> None (the caller backs off)
    for bad in (None, "", "soon", "nan", "inf", "0", "-2", format_datetime(now - timedelta(seconds=30), usegmt=True)):
        assert parse_retry_after(bad, now=now) is None


def test_strip_instance():
    inst = {
        "id": 1,
        "token": T,
        "configuration": {"oauth.api.secret": "s3cr3t!", "oauth.callback.url": "https://cb", "x": 1},
        "providerData": {"code": "grant-code", "realmId": "123"},
    }
    out = strip_instance(inst)
    assert "token" not in out
    assert out["configuration"] == {
        "oauth.api.secret": "********",
        "oauth.callback.url": "https://cb",
        "x": 1,
    }
    assert out["providerData"] == {"code": "********", "realmId": "123"}
    assert inst["token"] == T  # input untouched


def run_pager(pager, pages):
    out, sent = [], []
    it = iter(pages)
    while (q := pager.next_params()) is not None:
        sent.append(q)
        out.extend(pager.feed(next(it)))
    pager.finish()
    return out, sent


def test_pager_cursor_mode():
    pages = [
        PageInfo([{"id": 1}, {"id": 2}], next_token="a", returned=2),
        PageInfo([{"id": 3}], next_token="b", returned=1),
        PageInfo([], next_token="c", returned=0),
    ]
    out, sent = run_pager(Pager("/r", {"where": "x=1"}, page_size=2), pages)
    assert [r["id"] for r in out] == [1, 2, 3]
    assert sent == [
        {"where": "x=1", "pageSize": 2},
        {"where": "x=1", "pageSize": 2, "nextPage": "a"},
        {"where": "x=1", "pageSize": 2, "nextPage": "b"},
    ]


def test_pager_page_mode_and_capped_page_size(caplog):
    pages = [
        PageInfo([{"id": i} for i in range(3)], error_header="pageSize above max 3"),
        PageInfo([{"id": i} for i in range(3, 6)]),
        PageInfo([{"id": 6}]),
    ]
    with caplog.at_level(logging.WARNING):
        out, sent = run_pager(Pager("/r", {}, page_size=10), pages)
    assert len(out) == 7
    assert sent == [{"pageSize": 10}, {"pageSize": 3, "page": 2}, {"pageSize": 3, "page": 3}]
    assert "3 of the 10 requested records with Elements-Error" in caplog.text


def test_pager_guards_against_ignored_page_and_repeated_cursor():
    same = PageInfo([{"id": 1}, {"id": 2}])
    # issue 11 #14: page 2 == page 1 is the end (no duplicates, no error) ...
    out, sent = run_pager(Pager("/r", {}, page_size=2), [same, same, same])
    assert out == [{"id": 1}, {"id": 2}] and [q.get("page") for q in sent] == [None, 2]
    # ... a page repeating an OLDER page is a loop
    other = PageInfo([{"id": 3}, {"id": 4}])
    with pytest.raises(CloudElementsApiError, match="ignores paging"):
        run_pager(Pager("/r", {}, page_size=2), [same, other, same])
    with pytest.raises(CloudElementsApiError, match="same Elements-Next-Page-Token"):
        run_pager(
            Pager("/r", {}, page_size=1),
            [PageInfo([{"id": 1}], next_token="t"), PageInfo([{"id": 2}], next_token="t")],
        )


def test_pager_cursor_only_full_page_without_token_is_the_end():
    """Issue 11 #14: a cursor-only listing (QBE, events) never gets ``page=2``."""
    full = PageInfo([{"id": 1}, {"id": 2}])
    out, sent = run_pager(Pager("/r", {}, page_size=2, cursor_only=True), [full])
    assert out == [{"id": 1}, {"id": 2}] and len(sent) == 1 and "page" not in sent[0]


def test_pager_reconcile():
    pages = [PageInfo([{"id": 1}], total=2)]
    with pytest.raises(CloudElementsReconciliationError):
        run_pager(Pager("/r", {}, page_size=5, reconcile_total=True), pages)
    _out, sent = run_pager(Pager("/r", {}, page_size=5, reconcile_total=True), [PageInfo([{"id": 1}], total=1)])
    assert sent == [{"pageSize": 5, "returnCount": "true"}]


def test_page_info_rejects_non_list():
    with pytest.raises(CloudElementsApiError):
        PageInfo.from_response({"a": 1}, {})
    assert PageInfo.from_response(None, {"Elements-Next-Page-Token": " "}).next_token is None


# ---------------------------------------------------------------------------------------------- issue 11
def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)


_RECORDS = st.lists(st.dictionaries(st.sampled_from(["id", "memo"]), _TEXT, min_size=1), max_size=8)
_CUTS = st.lists(st.integers(0, 10**6), max_size=10)


@given(_RECORDS, _CUTS, st.booleans())
def test_record_counter_ndjson_any_chunking(records, cuts, blank_lines):
    """Records = non-blank NDJSON lines, however the body is cut into chunks (issue 11 #8)."""
    sep = b"\n \n\n" if blank_lines else b"\n"
    data = sep.join(json.dumps(r).encode() for r in records) + (b"\n" if records else b"")
    counter = RecordCounter("json")
    counter.consume(_split(data, cuts))
    assert counter.records == len(records) and counter.bytes == len(data)


@given(st.lists(st.tuples(_TEXT, _TEXT), max_size=8), _CUTS)
def test_record_counter_csv_any_chunking(rows, cuts):
    """CSV records as the csv module parses them (quoted line breaks stay inside), header excluded."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "memo"])
    rows = [r for r in rows if any(r)]  # csv writes an all-empty row as a blank-looking line: not a record
    writer.writerows(rows)
    data = out.getvalue().encode()
    counter = RecordCounter("csv")
    counter.consume(_split(data, cuts))
    assert counter.records == len(rows)


def test_record_counter_stops_and_types_its_errors():
    counter = RecordCounter("json", expected=2, what="job 9")
    chunks = iter([b'{"a":1}\n{"a":2}\n', b'{"a":3}\n', b'{"never":"read"}\n'])
    with pytest.raises(CloudElementsReconciliationError, match="job 9: more records arrived than the 2"):
        counter.consume(chunks)
    assert next(chunks) == b'{"never":"read"}\n'  # reading stopped at the offending chunk
    big = b"id,memo\n1," + b"m" * 300_000 + b"\n"  # beyond the csv module's 128 KiB default field limit
    ok = RecordCounter("csv")
    ok.consume([big])
    assert ok.records == 1


def test_safe_excerpt_redacts_before_truncating():
    secret = "S" * 20 + "ecret-tail-1234"
    text = "x" * 190 + secret
    assert "SSSS" not in safe_excerpt(text, [secret]) and "***" in safe_excerpt(text, [secret])
    info = parse_error_body(json.dumps({"message": "y" * 490 + secret}), secrets=[secret])
    assert "SSSS" not in info.message
