"""Bad input: every case must end in a typed error from ``exceptions.py`` (never a bare
KeyError/TypeError/ValueError, never a hang), and the offline ones before any network call (the
emulator's request counter does not move).

Known gaps in code this suite does not own are ``xfail(strict=True)``: they flip to failures the day
they are fixed, so the marker has to be removed then (see docs/reliability.md, "Open bugs").
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import (
    CloudElementsApiError,
    CloudElementsAuthenticationError,
    CloudElementsBadRequestError,
    CloudElementsBulkJobError,
    CloudElementsCEQLError,
    CloudElementsConfigError,
    CloudElementsError,
    CloudElementsNotFoundError,
    CloudElementsServerError,
)
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.models.status import CloudElementsBulkJobStatus
from airflow_provider_cloudelements.operators.instances import (
    CloudElementsCreateInstanceOperator,
    CloudElementsDeleteInstanceOperator,
)
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator
from airflow_provider_cloudelements.utils import ceql
from tests.hooks.conftest import Resp, ScriptedServer
from tests.hooks.conftest import conn_json as scripted_conn_json
from tests.reliability.conftest import REPORT, make_context, requests_total

pytestmark = pytest.mark.timeout(30)

QBO_BODY = {
    "element": {"key": "quickbooks"},
    "name": "qbo",
    "providerData": {"code": "c", "realmId": "1"},
    "configuration": {
        "oauth.api.key": "k",
        "oauth.api.secret": "s",
        "oauth.callback.url": "https://example.com/cb",
        "authentication.type": "oauth2",
    },
}


@dataclass
class Env:
    conn: str  # ce_rel: the emulator, with the instance as extra
    iid: int
    tmp: Path
    monkeypatch: pytest.MonkeyPatch
    scripted: ScriptedServer

    def hook(self, **kwargs: Any) -> CloudElementsHook:
        kwargs.setdefault("instance_id", self.iid)
        return CloudElementsHook(self.conn, **kwargs)

    def bulk(self, **kwargs: Any) -> CloudElementsBulkExtractOperator:
        kwargs.setdefault("resource", "invoices")
        kwargs.setdefault("instance_id", self.iid)
        kwargs.setdefault("element_key", "quickbooks")
        kwargs.setdefault("cloudelements_conn_id", self.conn)
        kwargs.setdefault("poll_interval", 0.05)
        return CloudElementsBulkExtractOperator(
            task_id="t", output_base=f"file://{self.tmp}", deferrable=False, **kwargs
        )

    def run_bulk(self, **kwargs: Any) -> Any:
        return self.bulk(**kwargs).execute(make_context())

    def conn_with(self, conn_type: str = "cloudelements", **extra: Any) -> str:
        """Connection ``ce_bad`` to the emulator with the given extras (secrets unless overridden)."""
        base = json.loads(os.environ["AIRFLOW_CONN_CE_REL"])
        base["conn_type"] = conn_type
        base["extra"] = {k: v for k, v in {**base["extra"], **extra}.items() if v is not None}
        self.monkeypatch.setenv("AIRFLOW_CONN_CE_BAD", json.dumps(base))
        return "ce_bad"

    def script(self, *responses: Resp) -> CloudElementsHook:
        """A hook talking to a loopback server that answers ``responses`` in turn (last one repeats)."""
        queue = list(responses)

        def handler(req: Any) -> Resp:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.scripted.handler = handler
        self.monkeypatch.setenv(
            "AIRFLOW_CONN_CE_SCRIPTED",
            scripted_conn_json(self.scripted.base_url, element_token="ToKeN+eLeMeNt/qwe456==", retry_budget=0.5),
        )
        return CloudElementsHook("ce_scripted", instance_id=5)


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Env], Any]
    error: type[CloudElementsError] = CloudElementsConfigError
    offline: bool = True  # must fail before any request reaches the emulator
    xfail: str | None = None


def _drain(it: Any) -> Any:
    return list(it)


HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"

CASES: list[Case] = [
    # ---- operator arguments (constructor or execute, before any call)
    Case("unknown element key", lambda e: e.bulk(element_key="sage50")),
    Case("unknown resource (element known)", lambda e: e.run_bulk(resource="widgets")),
    Case(
        "unknown resource (element looked up)",
        lambda e: e.run_bulk(resource="widgets", element_key=None),
        offline=False,
    ),
    Case(
        "resource not valid for the element",
        lambda e: e.run_bulk(resource="time-activities", element_key="freshbooksv2"),
    ),
    Case("empty resource", lambda e: e.run_bulk(resource="")),
    Case("resource with a path", lambda e: e.run_bulk(resource="../invoices")),
    Case("bad output_format", lambda e: e.bulk(output_format="xml")),
    Case("bad full_refresh", lambda e: e.bulk(full_refresh="yes")),
    Case("negative max_failed_records", lambda e: e.bulk(max_failed_records=-1)),
    Case("non-positive poll_interval", lambda e: e.bulk(poll_interval=0)),
    Case(
        "paged page_size 0", lambda e: CloudElementsPagedExtractOperator(task_id="p", resource="invoices", page_size=0)
    ),
    Case(
        "paged page_size negative",
        lambda e: CloudElementsPagedExtractOperator(task_id="p", resource="invoices", page_size=-5),
    ),
    Case(
        "paged csv output",
        lambda e: CloudElementsPagedExtractOperator(task_id="p", resource="invoices", output_format="csv"),
    ),
    Case("instance id not a number", lambda e: e.run_bulk(instance_id="abc")),
    Case("instance id zero", lambda e: e.run_bulk(instance_id=0)),
    Case("instance id negative", lambda e: e.run_bulk(instance_id=-3)),
    Case(
        "no instance id anywhere",
        lambda e: e.run_bulk(instance_id=None, cloudelements_conn_id=e.conn_with(instance_id=None)),
    ),
    Case("unparseable window_start", lambda e: e.run_bulk(window_start="last tuesday-ish")),
    Case("window start after end", lambda e: e.run_bulk(window_start="2030-01-02", window_end="2030-01-01")),
    Case("negative lookback", lambda e: e.run_bulk(full_refresh=False, lookback=-60)),
    Case("malformed CEQL", lambda e: e.run_bulk(where="totalAmt >"), CloudElementsCEQLError),
    Case("OR for QuickBooks Online", lambda e: e.run_bulk(where="totalAmt > 5 OR balance > 5"), CloudElementsCEQLError),
    Case("unescaped quote O'Brien", lambda e: e.run_bulk(where="displayName = 'O'Brien'"), CloudElementsCEQLError),
    Case("stacked statement", lambda e: e.run_bulk(where="totalAmt > 5; DELETE FROM invoices"), CloudElementsCEQLError),
    Case("sub-select", lambda e: e.run_bulk(where="id IN (SELECT id FROM customers)"), CloudElementsCEQLError),
    Case(
        "max_failed_records as text",
        lambda e: e.bulk(max_failed_records="3"),
    ),
    Case(
        "poll_interval as text",
        lambda e: e.bulk(poll_interval="5"),
    ),
    Case(
        "lookback as text",
        lambda e: e.run_bulk(full_refresh=False, lookback="an hour"),
    ),
    Case(
        "instance id True",
        lambda e: e.run_bulk(instance_id=True),
    ),
    Case(
        "timeout 0 is rejected before submitting",
        lambda e: e.run_bulk(timeout=0),
    ),
    # ---- instance operators
    Case(
        "instance body: unknown element",
        lambda e: CloudElementsCreateInstanceOperator(task_id="c", body={**QBO_BODY, "element": {"key": "xero"}}),
    ),
    Case(
        "instance body: missing configuration",
        lambda e: CloudElementsCreateInstanceOperator(task_id="c", body={**QBO_BODY, "configuration": {}}),
    ),
    Case(
        "instance body: tags not a list",
        lambda e: CloudElementsCreateInstanceOperator(task_id="c", body={**QBO_BODY, "tags": "finance"}),
    ),
    Case(
        "delete instance: bad id",
        lambda e: CloudElementsDeleteInstanceOperator(task_id="d", instance_id="twelve").execute(make_context()),
    ),
    # ---- connection
    Case("connection of the wrong type", lambda e: e.hook(**{}).__class__(e.conn_with("http")).ping()),
    Case("missing user_secret", lambda e: CloudElementsHook(e.conn_with(user_secret="")).list_elements()),
    Case(
        "missing organization_secret",
        lambda e: CloudElementsHook(e.conn_with(organization_secret=None)).list_elements(),
    ),
    Case("read_timeout not a number", lambda e: CloudElementsHook(e.conn_with(read_timeout="fast")).ping()),
    Case("read_timeout NaN", lambda e: CloudElementsHook(e.conn_with(read_timeout="nan")).list_elements()),
    Case("connect_timeout infinite", lambda e: CloudElementsHook(e.conn_with(connect_timeout="inf")).list_elements()),
    Case("page_size extra 0", lambda e: CloudElementsHook(e.conn_with(page_size=0)).list_elements()),
    Case("negative retry_budget", lambda e: CloudElementsHook(e.conn_with(retry_budget=-1)).list_elements()),
    Case("instance_id extra not a number", lambda e: CloudElementsHook(e.conn_with(instance_id="x")).ping()),
    Case(
        "wrong secrets (401)",
        lambda e: CloudElementsHook(e.conn_with(user_secret="W" * 44)).find_instances(),
        CloudElementsAuthenticationError,
        offline=False,
    ),
    # ---- hook calls
    Case("iter_records page_size 0", lambda e: _drain(e.hook().iter_records("invoices", page_size=0))),
    Case("iter_records page_size True", lambda e: _drain(e.hook().iter_records("invoices", page_size=True))),
    Case("iter_records page_size '10'", lambda e: _drain(e.hook().iter_records("invoices", page_size="10"))),
    Case("iter_records resource with slash", lambda e: _drain(e.hook().iter_records("invoices/1"))),
    Case(
        "iter_records unknown resource",
        lambda e: _drain(e.hook().iter_records("widgets")),
        CloudElementsNotFoundError,
        offline=False,
    ),
    Case("bulk from_ unparseable", lambda e: e.hook().start_bulk_query("invoices", from_="31/02/2026 25h")),
    Case("bulk to of a wrong type", lambda e: e.hook().start_bulk_query("invoices", to=12345)),
    Case("get_instance 'abc'", lambda e: e.hook().get_instance("abc")),
    Case("get_instance 0", lambda e: e.hook().get_instance(0)),
    Case("get_record empty id", lambda e: e.hook().get_record("invoices", " ")),
    Case("bulk status empty job id", lambda e: e.hook().get_bulk_status("  ")),
    Case(
        "unknown bulk job id", lambda e: e.hook().get_bulk_status("99999999"), CloudElementsNotFoundError, offline=False
    ),
    Case("download fmt xml", lambda e: e.hook().download_bulk("1", "invoices", open(e.tmp / "x", "wb"), fmt="xml")),
    Case("wait poll_interval 0", lambda e: e.hook().wait_for_bulk_job("1", poll_interval=0)),
    Case("create_instance without element", lambda e: e.hook().create_instance({"name": "x"})),
    Case("hook instance_id negative", lambda e: CloudElementsHook(e.conn, instance_id=-1)),
    Case("hook retry_budget negative", lambda e: CloudElementsHook(e.conn, retry_budget=-5)),
    Case("unknown bulk status", lambda e: CloudElementsBulkJobStatus.parse("EXPLODED"), CloudElementsBulkJobError),
    # ---- CEQL builder values
    Case("CEQL None value", lambda e: ceql.condition("displayName", "=", None), CloudElementsCEQLError),
    Case("CEQL NaN value", lambda e: ceql.quote_value(float("nan")), CloudElementsCEQLError),
    Case("CEQL NUL in value", lambda e: ceql.quote_value("a\x00b"), CloudElementsCEQLError),
    Case("CEQL backtick in field", lambda e: ceql.quote_identifier("a`b"), CloudElementsCEQLError),
    Case("CEQL value of an odd type", lambda e: ceql.quote_value(object()), CloudElementsCEQLError),
    # ---- responses a proxy or a broken server could send (loopback scripted server)
    Case(
        "non-JSON error body",
        lambda e: e.script(Resp(400, "Bad things happened")).ping(),
        CloudElementsBadRequestError,
        offline=False,
    ),
    Case(
        "HTML 502 from a proxy",
        lambda e: e.script(Resp(502, HTML_502, {"Content-Type": "text/html"})).ping(),
        CloudElementsServerError,
        offline=False,
    ),
    Case("empty 401", lambda e: e.script(Resp(401, b"")).ping(), CloudElementsAuthenticationError, offline=False),
    Case(
        "200 with a non-JSON body",
        lambda e: e.script(Resp(200, "<html>maintenance</html>")).ping(),
        CloudElementsApiError,
        offline=False,
    ),
    Case(
        "200 with an object for a list",
        lambda e: _drain(e.script(Resp(200, {"a": 1})).iter_records("invoices")),
        CloudElementsApiError,
        offline=False,
    ),
    Case(
        "page that repeats forever",
        lambda e: _drain(
            e.script(
                Resp(200, [{"id": "1"}], {"Elements-Next-Page-Token": "abc"}),
                Resp(200, [{"id": "2"}], {"Elements-Next-Page-Token": "abc"}),
            ).iter_records("invoices")
        ),
        CloudElementsApiError,
        offline=False,
    ),
    Case(
        "bulk submit without a job id",
        lambda e: e.script(Resp(200, {"status": "CREATED"})).start_bulk_query("invoices"),
        CloudElementsApiError,
        offline=False,
    ),
    Case(
        "garbage Retry-After on 429",
        lambda e: e.script(Resp(429, {"message": "slow"}, {"Retry-After": "soon!!"})).ping(),
        CloudElementsError,
        offline=False,
    ),
]


@pytest.fixture
def env(remu: Any, rconn: Any, new_instance: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    inst = new_instance("quickbooks")
    server = ScriptedServer().start()
    try:
        yield Env(rconn(instance_id=inst["id"]), int(inst["id"]), tmp_path, monkeypatch, server)
    finally:
        server.stop()


def _params() -> list[Any]:
    out = []
    for case in CASES:
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
        out.append(pytest.param(case, id=case.name, marks=marks))
    return out


@pytest.mark.parametrize("case", _params())
def test_bad_input_gets_a_typed_error(case: Case, env: Env, remu: Any) -> None:
    before = requests_total(remu)
    outcome = "no error"
    try:
        case.run(env)
    except CloudElementsError as err:
        outcome = type(err).__name__
        assert isinstance(err, case.error), f"{type(err).__name__}: {err}"
        assert str(err).strip() and "Traceback" not in str(err)
        if case.offline:
            assert requests_total(remu) == before, "the emulator saw a request before the error"
    except Exception as err:  # anything outside our hierarchy is a bug
        outcome = f"UNTYPED {type(err).__name__}"
        REPORT["bad input"].append((case.name, outcome, "xfail: " + case.xfail if case.xfail else "FAIL"))
        pytest.fail(f"{case.name}: untyped {type(err).__name__}: {err}")
    finally:
        if outcome == "no error":
            REPORT["bad input"].append((case.name, outcome, "xfail: " + case.xfail if case.xfail else "FAIL"))
    if outcome == "no error":
        pytest.fail(f"{case.name}: accepted without an error")
    REPORT["bad input"].append((case.name, outcome, "offline" if case.offline else "after the call"))


def test_bad_input_case_count() -> None:
    assert len(CASES) >= 30


# ---- large and non-ASCII values are not bad input: they must round-trip exactly
@pytest.mark.parametrize(
    "name",
    ["O'Brien", "Zoë O'Brien-Łukasiewicz 🎉🧾", "''; DROP TABLE customers; --", "x" * 10_000],
    ids=["apostrophe", "non-ascii+emoji", "injection-looking", "10k chars"],
)
def test_awkward_values_round_trip_through_ceql(name: str, env: Env, remu: Any) -> None:
    hook = env.hook()
    created = hook.create_record("customers", {"displayName": name, "notes": "n" * 10_000})
    where = ceql.condition("displayName", "=", name)
    found = list(hook.iter_records("customers", where=where))
    assert [r["id"] for r in found] == [created["id"]]
    assert found[0]["displayName"] == name and found[0]["notes"] == "n" * 10_000
