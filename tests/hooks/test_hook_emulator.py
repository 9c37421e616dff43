"""CloudElementsHook and CloudElementsAsyncHook over real HTTP against the offline emulator.

One emulator per module; faults are reset after every test.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

from airflow_provider_cloudelements.exceptions import (
    CloudElementsAuthenticationError,
    CloudElementsBadRequestError,
    CloudElementsBulkJobError,
    CloudElementsCEQLError,
    CloudElementsConnectionError,
    CloudElementsForbiddenError,
    CloudElementsNotFoundError,
    CloudElementsServerError,
    CloudElementsThrottledError,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.hooks.cloudelements_async import CloudElementsAsyncHook
from airflow_provider_cloudelements.utils.ceql import window_clause

emulator_mod = pytest.importorskip("cloudelements_emulator")


@pytest.fixture(scope="module")
def emu() -> Iterator:
    from cloudelements_emulator import EmulatorConfig, EmulatorServer

    cfg = EmulatorConfig(seed=11, records_per_resource=23, bulk_min_seconds=0.1)
    with EmulatorServer(cfg) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_faults(emu):
    emu.state.reset_faults()
    yield
    emu.state.reset_faults()


@pytest.fixture(scope="module")
def instances(emu) -> dict:
    st = emu.state
    return {
        "quickbooks": st.create_instance("quickbooks", "qbo"),
        "quickbooksonprem": st.create_instance("quickbooksonprem", "qbe"),
        "freshbooksv2": st.create_instance("freshbooksv2", "fb"),
    }


@pytest.fixture
def conn(emu, monkeypatch):
    def make(**extra) -> str:
        extra.setdefault("retry_budget", 10)
        monkeypatch.setenv(
            "AIRFLOW_CONN_CE_EMU",
            json.dumps(
                {
                    "conn_type": "cloudelements",
                    "host": emu.base_url,
                    "extra": {
                        "user_secret": emu.user_secret,
                        "organization_secret": emu.organization_secret,
                        **extra,
                    },
                }
            ),
        )
        return "ce_emu"

    return make


def secrets_of(emu, instances) -> list[str]:
    return [emu.user_secret, emu.organization_secret, *(i["token"] for i in instances.values())]


def read_logs(caplog, capsys) -> str:
    out = capsys.readouterr()
    return caplog.text + out.out + out.err


def ids(records, key="id"):
    return [r.get(key) or r.get("ListID") or r.get("TxnID") for r in records]


# ---------------------------------------------------------------------------------------------- pagination
@pytest.mark.parametrize(
    ("element", "resource", "page_size"),
    [("quickbooksonprem", "customers", 5), ("quickbooks", "invoices", 7), ("freshbooksv2", "customers", 200)],
)
def test_full_pagination_matches_ground_truth(emu, instances, conn, element, resource, page_size, caplog, capsys):
    inst = instances[element]
    hook = CloudElementsHook(conn(), instance_id=inst["id"])
    with caplog.at_level(logging.INFO):
        got = list(hook.iter_records(resource, page_size=page_size, reconcile_total=True))
    truth = emu.state.records(inst["id"], resource)
    assert len(got) == len(truth) == 23
    assert ids(got) == ids(truth)
    text = read_logs(caplog, capsys)
    if element == "freshbooksv2":  # cap 100 < 200: Elements-Error is read and logged
        assert "requested records with Elements-Error: The requested pageSize 200 exceeds" in text
    for secret in secrets_of(emu, instances):
        assert secret not in text


def test_window_clause_against_emulator(emu, instances, conn):
    inst = instances["quickbooks"]
    hook = CloudElementsHook(conn(), instance_id=inst["id"])
    truth = emu.state.records(inst["id"], "invoices")
    times = sorted(r["metaData"]["lastUpdatedTime"] for r in truth)
    lo, hi = times[5], times[15]

    def as_dt(v):
        return datetime.fromtimestamp(v / 1000, tz=timezone.utc) if isinstance(v, (int, float)) else v

    where = window_clause("quickbooks", as_dt(lo), as_dt(hi))
    got = list(hook.iter_records("invoices", where=where))
    expected = [r for r in truth if lo <= r["metaData"]["lastUpdatedTime"] < hi]
    assert sorted(ids(got)) == sorted(ids(expected)) and len(got) == 10


def test_or_rejected_for_qbo_only(emu, instances, conn):
    qbo = CloudElementsHook(conn(), instance_id=instances["quickbooks"]["id"])
    qbo.get_element_key()
    before = emu.state.stats()
    with pytest.raises(CloudElementsCEQLError):
        qbo.iter_records("customers", where="active = true OR active = false")
    assert emu.state.stats() == before
    qbe = CloudElementsHook(conn(), instance_id=instances["quickbooksonprem"]["id"])
    assert len(list(qbe.iter_records("customers", where="IsActive = true OR IsActive = false"))) >= 0


# ---------------------------------------------------------------------------------------------- faults
RETRYABLE_FAULTS = [
    ("burst_429", {"burst_429": 2, "retry_after_seconds": 0.2}),
    ("burst_5xx_503", {"burst_5xx": 2, "status_5xx": 503}),
    ("burst_5xx_504", {"burst_5xx": 1, "status_5xx": 504}),
    ("burst_throttle_500", {"burst_throttle_500": 2}),
    ("burst_html_502", {"burst_html_502": 2}),
]


@pytest.mark.parametrize(("name", "faults"), RETRYABLE_FAULTS, ids=[f[0] for f in RETRYABLE_FAULTS])
def test_retryable_faults_recovered(emu, instances, conn, name, faults, caplog, capsys):
    inst = instances["quickbooksonprem"]
    hook = CloudElementsHook(conn(), instance_id=inst["id"])
    hook.ping()  # token resolved before faults are armed
    emu.state.set_faults(path_prefix="/elements/api-v2/hubs", **faults)
    with caplog.at_level(logging.WARNING):
        got = list(hook.iter_records("vendors", page_size=10))
    assert len(got) == len(emu.state.records(inst["id"], "vendors"))
    text = read_logs(caplog, capsys)
    assert "attempt 1 failed" in text
    for secret in secrets_of(emu, instances):
        assert secret not in text


def test_retry_after_from_emulator_is_honoured(emu, instances, conn):
    hook = CloudElementsHook(conn(), instance_id=instances["quickbooks"]["id"])
    hook.ping()
    emu.state.set_faults(path_prefix="/elements/api-v2/hubs", burst_429=2, retry_after_seconds=1)
    t0 = time.monotonic()
    hook.ping()
    elapsed = time.monotonic() - t0
    assert 1.9 <= elapsed < 4.0, elapsed


def test_slow_response_read_timeout_recovered(emu, instances, conn):
    hook = CloudElementsHook(conn(read_timeout=0.4), instance_id=instances["quickbooks"]["id"])
    hook.ping()
    emu.state.set_faults(path_prefix="/elements/api-v2/hubs", slow_seconds=1.0, burst_slow=1)
    assert hook.ping() is not None


def test_budget_spent_surfaces_server_error(emu, instances, conn):
    hook = CloudElementsHook(conn(retry_budget=1.0), instance_id=instances["quickbooks"]["id"])
    hook.ping()
    emu.state.set_faults(path_prefix="/elements/api-v2/hubs", rate_5xx=1.0, status_5xx=503)
    with pytest.raises(CloudElementsServerError) as info:
        hook.ping()
    assert info.value.status_code == 503 and info.value.request_id


def test_non_retryable_errors(emu, instances, conn):
    qbo = instances["quickbooks"]
    hook = CloudElementsHook(conn(), instance_id=qbo["id"])
    with pytest.raises(CloudElementsNotFoundError):
        hook.get_record("invoices", "999999|0")
    with pytest.raises(CloudElementsBadRequestError, match="Missing required configuration") as bad:
        hook.create_instance({"element": {"key": "quickbooksonprem"}, "name": "incomplete"})
    assert bad.value.provider_message and bad.value.request_id
    with pytest.raises(CloudElementsAuthenticationError, match=r"re-authorize"):
        CloudElementsHook(conn(), element_token="not-a-real-token-123456").ping()
    with pytest.raises(CloudElementsAuthenticationError, match="user_secret"):
        CloudElementsHook(
            conn(user_secret="wrong-user-secret-1234567")
        ).list_elements() if False else CloudElementsHook(
            conn(user_secret="wrong-user-secret-1234567")
        ).find_instances()
    tmp = emu.state.create_instance("quickbooks", "to-disable")
    h2 = CloudElementsHook(conn(), instance_id=tmp["id"])
    h2.disable_instance(tmp["id"])
    with pytest.raises(CloudElementsForbiddenError):
        h2.ping()
    h2.enable_instance(tmp["id"])
    h2.ping()
    h2.delete_instance(tmp["id"])
    with pytest.raises((CloudElementsAuthenticationError, CloudElementsNotFoundError)):
        h2.ping()
    stats = emu.state.stats()
    assert stats  # emulator counted the calls


# ---------------------------------------------------------------------------------------------- platform
def test_create_find_update_instance_hides_token(emu, conn, caplog, capsys):
    hook = CloudElementsHook(conn())
    body = {
        "element": {"key": "quickbooksonprem"},
        "name": "hook-created",
        "tags": ["hooktest"],
        "configuration": {"app.name": "Airflow", "host.ip": "https://1234.g2c.cloud-elements.com"},
    }
    with caplog.at_level(logging.DEBUG):
        inst = hook.create_instance(body)
        assert "token" not in inst
        found = hook.find_instances(name="hook-created", tags=["hooktest"])
        assert [i["id"] for i in found] == [inst["id"]] and "token" not in found[0]
        upd = hook.update_instance(inst["id"], {"name": "hook-renamed"})
        assert upd.get("name") == "hook-renamed" and "token" not in upd
        hub = CloudElementsHook(conn(), instance_id=inst["id"])
        assert hub.get_element_key() == "quickbooksonprem"
        assert isinstance(hub.ping(), dict)
    token = emu.state.instance_by_token  # noqa: F841 (ground truth accessor exists)
    real = [t for t in (hook._tokens.get(inst["id"]),) if t]
    assert real, "token was cached for hub calls"
    text = read_logs(caplog, capsys) + json.dumps(inst) + json.dumps(found) + json.dumps(upd)
    for secret in (emu.user_secret, emu.organization_secret, *real):
        assert secret not in text
    assert any(e.get("key") == "quickbooks" for e in hook.list_elements())
    assert hook.get_element("quickbooks")["key"] == "quickbooks"


def test_test_connection(emu, instances, conn):
    ok, msg = CloudElementsHook(conn(), instance_id=instances["quickbooks"]["id"]).test_connection()
    assert ok, msg
    ok, msg = CloudElementsHook(conn(organization_secret="x" * 30)).test_connection()
    assert not ok and "401" in msg and emu.user_secret not in msg


# ---------------------------------------------------------------------------------------------- bulk
def test_bulk_round_trip_ndjson_and_csv(emu, instances, conn):
    inst = instances["quickbooks"]
    hook = CloudElementsHook(conn(), instance_id=inst["id"])
    job = hook.start_bulk_query("customers")
    status = hook.wait_for_bulk_job(job, poll_interval=0.1, timeout=30)
    buf = io.BytesIO()
    res = hook.download_bulk(job, "customers", buf)
    assert res.lines == status["recordsCount"] == 23
    assert sorted(json.loads(line)["id"] for line in buf.getvalue().splitlines()) == sorted(
        ids(emu.state.records(inst["id"], "customers"))
    )
    csv_buf = io.BytesIO()
    res_csv = hook.download_bulk(job, "customers", csv_buf, fmt="csv")
    assert res_csv.lines == 24  # header + records


def test_bulk_failed_records_and_failed_job(emu, instances, conn):
    hook = CloudElementsHook(conn(), instance_id=instances["quickbooksonprem"]["id"])
    emu.state.set_faults(bulk_failed_records=3)
    job = hook.start_bulk_query("vendors")
    status = hook.wait_for_bulk_job(job, poll_interval=0.1, timeout=30)
    assert status["recordsFailedCount"] == 3
    assert len(list(hook.iter_bulk_errors(job))) == 3
    emu.state.set_faults(bulk_fail=True)
    job = hook.start_bulk_query("vendors")
    with pytest.raises(CloudElementsBulkJobError, match="FAILED"):
        hook.wait_for_bulk_job(job, poll_interval=0.1, timeout=30)


def test_bulk_cancel(emu, instances, conn):
    from cloudelements_emulator import EmulatorConfig  # noqa: F401

    hook = CloudElementsHook(conn(), instance_id=instances["quickbooks"]["id"])
    job = hook.start_bulk_query("invoices")
    hook.cancel_bulk_job(job)
    status = hook.get_bulk_status(job)["status"]
    if status != "COMPLETED":  # the job may have finished before the cancel arrived
        with pytest.raises(CloudElementsBulkJobError, match="CANCELLED"):
            hook.wait_for_bulk_job(job, poll_interval=0.1, timeout=10)


class ResetOnRestart(io.BytesIO):
    """A file whose rewind (the hook's restart) clears the emulator's drop fault."""

    def __init__(self, emu):
        super().__init__()
        self.emu = emu
        self.restarts = 0

    def truncate(self, size=None):
        self.restarts += 1
        self.emu.state.reset_faults()
        return super().truncate(size)


def test_bulk_download_dropped_is_restarted_not_truncated(emu, instances, conn):
    inst = instances["quickbooks"]
    hook = CloudElementsHook(conn(), instance_id=inst["id"])
    job = hook.start_bulk_query("invoices")
    hook.wait_for_bulk_job(job, poll_interval=0.1, timeout=30)
    clean = io.BytesIO()
    hook.download_bulk(job, "invoices", clean)
    emu.state.set_faults(drop_download_after_bytes=2000)
    buf = ResetOnRestart(emu)
    res = hook.download_bulk(job, "invoices", buf)
    assert buf.restarts >= 1
    assert buf.getvalue() == clean.getvalue() and res.lines == 23


def test_bulk_download_always_dropped_raises_and_leaves_no_partial_file(emu, instances, conn):
    hook = CloudElementsHook(conn(retry_budget=1.5), instance_id=instances["quickbooks"]["id"])
    job = hook.start_bulk_query("invoices")
    hook.wait_for_bulk_job(job, poll_interval=0.1, timeout=30)
    emu.state.set_faults(drop_download_after_bytes=2000)
    buf = io.BytesIO()
    with pytest.raises(CloudElementsConnectionError):
        hook.download_bulk(job, "invoices", buf)
    assert buf.getvalue() == b""


# ---------------------------------------------------------------------------------------------- events
def test_events_sync_and_async(emu, instances, conn):
    inst = instances["quickbooks"]
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    emu.state.generate(inst["id"], "customers")
    emu.state.simulate_activity(inst["id"], ["customers"], creates=2, updates=1, deletes=0)
    hook = CloudElementsHook(conn(), instance_id=inst["id"])
    events = list(hook.iter_events(since=since, object_types=["customers"]))
    assert len(events) >= 3
    assert all(e["objectType"] == "customers" for e in events)
    created = list(hook.iter_events(since=since, event_types=["CREATED"]))
    assert len(created) >= 2 and all(e["eventType"] == "CREATED" for e in created)

    ahook = CloudElementsAsyncHook(conn(), instance_id=inst["id"])
    emu.state.set_faults(path_prefix="/elements/api-v2/instances", burst_429=1, retry_after_seconds=0)
    got = asyncio.run(
        ahook.list_events(
            instance_id=inst["id"],
            since=since,
            until=None,
            object_types=["customers"],
            event_types=None,
            page_size=2,
        )
    )
    assert [e["id"] for e in got] == [e["id"] for e in events]


def test_async_bulk_status_and_cancel_with_faults(emu, instances, conn):
    inst = instances["quickbooks"]
    job = CloudElementsHook(conn(), instance_id=inst["id"]).start_bulk_query("vendors")

    async def run():
        ahook = CloudElementsAsyncHook(conn(), instance_id=inst["id"])
        await ahook.ping()
        emu.state.set_faults(path_prefix="/elements/api-v2/hubs", burst_5xx=1, burst_html_502=1)
        status = await ahook.get_bulk_status(job)
        await ahook.cancel_bulk_job(job)
        emu.state.set_faults(rate_5xx=1.0, status_5xx=503, path_prefix="/elements/api-v2/hubs")
        ahook2 = CloudElementsAsyncHook(conn(retry_budget=0.5), instance_id=inst["id"])
        try:
            await ahook2.get_bulk_status(job)
        except CloudElementsServerError as exc:
            return status, exc
        return status, None

    status, exc = asyncio.run(run())
    assert status["id"] == job
    assert isinstance(exc, CloudElementsServerError) and exc.status_code == 503


# ---------------------------------------------------------------------------------------------- issue 11
def _requests_to(emu, template: str) -> int:
    return sum(n for key, n in emu.state.stats()["requests"].items() if key == template)


def test_qbe_window_with_exactly_page_size_records_is_one_page(emu, conn):
    """Issue 11 #14: a QuickBooks Enterprise (cursor-only) window holding exactly ``page_size`` records
    ends after the full page without a token; ``page=2`` would be an HTTP 400."""
    inst = emu.state.create_instance("quickbooksonprem", "qbe-exact-page")
    truth = emu.state.records(inst["id"], "invoices")
    stamps = sorted(r["TimeModified"] for r in truth)
    lo, hi = stamps[3], stamps[15]
    expected = [r for r in truth if lo <= r["TimeModified"] < hi]
    assert len(expected) >= 5
    where = window_clause("quickbooksonprem", lo, hi)
    before = _requests_to(emu, "GET /elements/api-v2/hubs/{hub}/{resource}")
    for hook in (
        CloudElementsHook(conn(), instance_id=inst["id"]),
        CloudElementsHook(conn(), element_token=inst["token"]),
    ):
        got = list(hook.iter_records("invoices", where=where, page_size=len(expected)))
        assert sorted(ids(got)) == sorted(ids(expected))
        assert {json.dumps(r, sort_keys=True) for r in got} == {json.dumps(r, sort_keys=True) for r in expected}
    assert _requests_to(emu, "GET /elements/api-v2/hubs/{hub}/{resource}") - before == 2  # one page per hook


def test_events_listing_with_exactly_page_size_events(emu, conn):
    """Issue 11 #14: the events listing ignores ``page``: exactly ``page_size`` events in the window
    are one page, not "page 2 starts with the same record as page 1" (sync and async hook)."""
    inst = emu.state.create_instance("quickbooks", "qbo-exact-events")
    emu.state.generate(inst["id"], "customers")
    emu.state.simulate_activity(inst["id"], ["customers"], creates=3, updates=2, deletes=1)
    truth = emu.state.events.query(inst["id"], None, None, False, lambda e: True)
    assert len(truth) >= 5
    hook = CloudElementsHook(conn(page_size=len(truth)), instance_id=inst["id"])
    got = list(hook.iter_events())
    assert [e["id"] for e in got] == [e["id"] for e in truth]
    ahook = CloudElementsAsyncHook(conn(page_size=len(truth)), instance_id=inst["id"])
    agot = asyncio.run(ahook.list_events(instance_id=inst["id"]))
    assert [e["id"] for e in agot] == [e["id"] for e in truth]


def test_token_only_hook_applies_the_qbo_or_check_before_sending(emu, instances, conn):
    """Issue 11 #16: a hook with only an element token learns its element (``GET /hubs/finance/ping``
    ``endpoint``) and rejects a QuickBooks Online ``OR`` before the query is sent."""
    qbo = instances["quickbooks"]
    hook = CloudElementsHook(conn(), element_token=qbo["token"])
    jobs_before = emu.state.stats()["bulk_jobs_created"].get(qbo["id"], 0)
    lists_before = _requests_to(emu, "GET /elements/api-v2/hubs/{hub}/{resource}")
    with pytest.raises(CloudElementsCEQLError, match="OR"):
        list(hook.iter_records("customers", where="active = true OR active = false"))
    with pytest.raises(CloudElementsCEQLError, match="OR"):
        hook.start_bulk_query("customers", where="active = true OR active = false")
    assert _requests_to(emu, "GET /elements/api-v2/hubs/{hub}/{resource}") == lists_before
    assert emu.state.stats()["bulk_jobs_created"].get(qbo["id"], 0) == jobs_before
    assert hook.element_key == "quickbooks"
    qbe = CloudElementsHook(conn(), element_token=instances["quickbooksonprem"]["token"])
    got = list(qbe.iter_records("customers", where="IsActive = true OR IsActive = false"))
    assert sorted(ids(got)) == sorted(ids(emu.state.records(instances["quickbooksonprem"]["id"], "customers")))


def test_plain_500_on_pages_and_polls_is_retried_not_on_submit(emu, instances, conn):
    """Issue 11 #10: one transient HTTP 500 on a page or a status poll no longer fails the extract
    (sync and async); a 500 on the submit POST is not retried and starts no job."""
    inst = instances["quickbooks"]
    hook = CloudElementsHook(conn(), instance_id=inst["id"])
    hook.ping()
    emu.state.set_faults(path_prefix="/elements/api-v2/hubs", methods="GET", burst_5xx=2, status_5xx=500)
    got = list(hook.iter_records("vendors", page_size=5))
    assert sorted(ids(got)) == sorted(ids(emu.state.records(inst["id"], "vendors")))
    assert emu.state.stats()["faults_injected"].get("5xx", 0) >= 2

    job = hook.start_bulk_query("vendors")
    emu.state.set_faults(path_prefix="/elements/api-v2/hubs", methods="GET", burst_5xx=2, status_5xx=500)
    status = asyncio.run(CloudElementsAsyncHook(conn(), instance_id=inst["id"]).get_bulk_status(job))
    assert status["id"] == job

    fresh = emu.state.create_instance("quickbooks", "qbo-500-submit")  # no other job with this query
    hook = CloudElementsHook(conn(), instance_id=fresh["id"])
    hook.ping()
    emu.state.reset_faults()
    emu.state.set_faults(path_prefix="/elements/api-v2/hubs/finance/bulk/query", burst_5xx=5, status_5xx=500)
    posts_before = _requests_to(emu, "POST /elements/api-v2/hubs/{hub}/bulk/query")
    with pytest.raises(CloudElementsServerError) as info:
        hook.start_bulk_query("vendors")
    assert info.value.status_code == 500
    assert _requests_to(emu, "POST /elements/api-v2/hubs/{hub}/bulk/query") - posts_before == 1
    assert emu.state.stats()["bulk_jobs_created"].get(fresh["id"], 0) == 0


def test_retry_after_zero_from_emulator_backs_off(emu, instances, conn):
    """Issue 11 #10: a persistent 429 with ``Retry-After: 0`` costs a handful of requests in a 5 s
    budget (~110 before)."""
    hook = CloudElementsHook(conn(retry_budget=5), instance_id=instances["quickbooks"]["id"])
    hook.ping()
    before = _requests_to(emu, "GET /elements/api-v2/hubs/{hub}/ping")
    emu.state.set_faults(path_prefix="/elements/api-v2/hubs", rate_429=1.0, retry_after_seconds=0)
    with pytest.raises(CloudElementsThrottledError):
        hook.ping()
    assert 2 <= _requests_to(emu, "GET /elements/api-v2/hubs/{hub}/ping") - before <= 6


def test_ambiguous_bulk_submit_reuses_the_job_it_created(emu, conn):
    """Issue 11 #10: the submit POST is processed but its answer arrives after the read timeout; the
    hook finds the job it created (``GET /bulk/jobs``) and reuses it: one job, no orphan, and its file
    equals the emulator's records."""
    inst = emu.state.create_instance("quickbooks", "qbo-ambiguous-submit")
    emu.state.generate(inst["id"], "customers")
    hook = CloudElementsHook(conn(read_timeout=1, retry_budget=10), instance_id=inst["id"])
    hook.ping()
    earlier = hook.start_bulk_query("customers")  # an older job with the same query is not "ours"
    hook.wait_for_bulk_job(earlier, poll_interval=0.1, timeout=30)
    emu.state.set_faults(
        path_prefix="/elements/api-v2/hubs/finance/bulk/query", methods="POST", burst_slow_response=1, slow_seconds=2.5
    )
    job = hook.start_bulk_query("customers")
    assert emu.state.stats()["faults_injected"].get("slow_response") == 1
    assert emu.state.stats()["bulk_jobs_created"][inst["id"]] == 2
    assert job != earlier
    assert job == str(max(int(j["id"]) for j in emu.state.bulk.jobs(emu.state.instances.get(inst["id"]))))
    status = hook.wait_for_bulk_job(job, poll_interval=0.1, timeout=30)
    buf = io.BytesIO()
    res = hook.download_bulk(job, "customers", buf, expected_records=status["recordsCount"])
    truth = emu.state.records(inst["id"], "customers")
    assert res.records == len(truth)
    assert sorted(json.loads(line)["id"] for line in buf.getvalue().splitlines()) == sorted(ids(truth))


def test_ambiguous_submit_without_a_created_job_raises(emu, conn):
    inst = emu.state.create_instance("quickbooks", "qbo-lost-submit")
    hook = CloudElementsHook(conn(read_timeout=1, retry_budget=2), instance_id=inst["id"])
    hook.ping()
    emu.state.set_faults(
        path_prefix="/elements/api-v2/hubs/finance/bulk/query", methods="POST", burst_5xx=1, status_5xx=504
    )
    with pytest.raises(CloudElementsServerError):
        hook.start_bulk_query("customers")
    assert emu.state.stats()["bulk_jobs_created"].get(inst["id"], 0) == 0


def test_server_time_is_the_servers_date_header(emu, instances, conn):
    """CONTRACT "Hook additions": ``server_time()`` from the ``Date`` of the latest response (or a
    cheap ping), aware UTC, floored to the second."""
    hook = CloudElementsHook(conn(), instance_id=instances["quickbooks"]["id"])
    before = datetime.now(timezone.utc).replace(microsecond=0)
    first = hook.server_time()  # no call made yet: a ping
    after = datetime.now(timezone.utc)
    assert first is not None and first.tzinfo is not None and first.utcoffset() == timedelta(0)
    assert first.microsecond == 0 and before - timedelta(seconds=1) <= first <= after
    list(hook.iter_records("vendors"))
    assert hook.server_time() >= first
    ahook = CloudElementsAsyncHook(conn(), instance_id=instances["quickbooks"]["id"])
    atime = asyncio.run(ahook.server_time())
    assert atime is not None and atime.microsecond == 0 and atime >= first
