"""CloudElementsBulkUploadOperator against the emulator over real HTTP, sync and deferrable (issue 13)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_cloudelements.exceptions import (
    CloudElementsConfigError,
    CloudElementsDataError,
    CloudElementsRecordFailuresError,
)
from airflow_provider_cloudelements.operators.upload import UPLOAD_STATE_KEY, CloudElementsBulkUploadOperator
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger
from airflow_provider_cloudelements.utils.records import stable_id
from tests.operators.conftest import Ctx, first_event, roundtrip, run_operator

UPLOAD_ROUTE = "POST /elements/api-v2/hubs/{hub}/bulk/{object_name}"


def journal(doc: str, amount: float, note: str = "accrual") -> dict[str, Any]:
    line = {"detailType": "JOURNAL_ENTRY_LINE_DETAIL", "amount": amount}
    return {
        "docNumber": doc,
        "txnDate": "2026-01-15",
        "privateNote": note,
        "line": [
            {**line, "journalEntryLineDetail": {"postingType": "DEBIT", "accountRef": {"value": "81"}}},
            {**line, "journalEntryLineDetail": {"postingType": "CREDIT", "accountRef": {"value": "71"}}},
        ],
    }


def write_ndjson(path: Path, records: list[Any]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return f"file://{path}"


def by_doc(emu: Any, instance_id: int, resource: str = "journal-entries") -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in emu.state.records(instance_id, resource):
        out.setdefault(str(record.get("docNumber")), []).append(record)
    return out


def uploads(emu: Any) -> int:
    return int(emu.state.stats()["requests"].get(UPLOAD_ROUTE, 0))


def upload_op(instance_id: int, path: str, **kwargs: Any) -> CloudElementsBulkUploadOperator:
    kwargs.setdefault("resource", "journal-entries")
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("timeout", 30)
    return CloudElementsBulkUploadOperator(task_id="upload", instance_id=instance_id, input_path=path, **kwargs)


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_upsert_creates_then_updates_without_duplicates(emu: Any, conn: str, tmp_path: Path, deferrable: bool) -> None:
    inst = emu.state.create_instance("quickbooks", f"upload-{deferrable}")
    seeded = len(emu.state.records(inst["id"], "journal-entries"))
    first = [journal("WB-1", 100.0), journal("WB-2", 250.5)]
    path = write_ndjson(tmp_path / "in" / "je.ndjson", first)
    result = run_operator(
        upload_op(inst["id"], path, identifier_field_name="docNumber", deferrable=deferrable),
        Ctx(),
        expect_defer=deferrable,
    )
    assert {k: result[k] for k in ("records", "failed_records", "errors_path", "input_records")} == {
        "records": 2,
        "failed_records": 0,
        "errors_path": None,
        "input_records": 2,
    }
    docs = by_doc(emu, inst["id"])
    assert len(emu.state.records(inst["id"], "journal-entries")) == seeded + 2
    for record in first:
        [created] = docs[record["docNumber"]]
        assert created["privateNote"] == "accrual" and created["txnDate"] == "2026-01-15"
        assert [ln["amount"] for ln in created["line"]] == [ln["amount"] for ln in record["line"]]
    # QBO ids read "<id>|<syncToken>": an update moves the token, the record (stable id) stays
    ids = {doc: stable_id(docs[doc][0]["id"], "quickbooks") for doc in ("WB-1", "WB-2")}

    # rerun with changed content: the identifier upsert updates the same records, creates none
    write_ndjson(tmp_path / "in" / "je.ndjson", [journal("WB-1", 100.0, note="revised"), journal("WB-2", 250.5)])
    again = run_operator(upload_op(inst["id"], path, identifier_field_name="docNumber", deferrable=deferrable), Ctx())
    assert again["records"] == 2 and again["job_id"] != result["job_id"]
    docs = by_doc(emu, inst["id"])
    assert len(emu.state.records(inst["id"], "journal-entries")) == seeded + 2
    assert {doc: [stable_id(r["id"], "quickbooks") for r in docs[doc]] for doc in ids} == {
        doc: [i] for doc, i in ids.items()
    }
    assert docs["WB-1"][0]["privateNote"] == "revised"


def test_deferral_carries_no_secret_and_a_retry_reattaches(emu: Any, conn: str, tmp_path: Path) -> None:
    inst = emu.state.create_instance("quickbooks", "upload-reattach")
    path = write_ndjson(tmp_path / "je.ndjson", [journal("RA-1", 10.0)])
    ctx = Ctx()
    op = upload_op(inst["id"], path, identifier_field_name="docNumber", deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx.context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, CloudElementsBulkJobTrigger)
    blob = json.dumps(trigger.serialize()[1])
    for secret in (emu.user_secret, emu.organization_secret, inst["token"]):
        assert secret not in blob
    job_id = ctx.ti.xcoms["bulk_job_id"]
    assert ctx.store.get(UPLOAD_STATE_KEY)["job_id"] == job_id
    # the worker died while deferred; the retry (same task instance state) re-attaches, no second upload
    before = uploads(emu)
    retried = run_operator(upload_op(inst["id"], path, identifier_field_name="docNumber", deferrable=False), ctx)
    assert retried["job_id"] == job_id and uploads(emu) == before
    assert list(by_doc(emu, inst["id"])["RA-1"]) and len(by_doc(emu, inst["id"])["RA-1"]) == 1
    event = first_event(roundtrip(trigger))
    assert op.execute_complete(ctx.context, event)["job_id"] == job_id


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_failed_records_are_saved_beside_the_input_and_the_policy_applies(
    emu: Any, conn: str, tmp_path: Path, deferrable: bool
) -> None:
    inst = emu.state.create_instance("quickbooks", f"upload-errors-{deferrable}")
    bad = {"docNumber": "BAD-1", "txnDate": "2026-01-15"}  # no "line": the server rejects it
    path = write_ndjson(tmp_path / "in" / "je.ndjson", [journal("OK-1", 5.0), bad, journal("OK-2", 6.0)])
    tolerant = run_operator(upload_op(inst["id"], path, max_failed_records=1, deferrable=deferrable), Ctx())
    assert (tolerant["records"], tolerant["failed_records"]) == (2, 1)
    errors = Path(tolerant["errors_path"].removeprefix("file://"))
    assert errors.parent == tmp_path / "in" and errors.name.startswith("je.") and errors.name.endswith(".errors.ndjson")
    [failure] = [json.loads(line) for line in errors.read_text().splitlines()]
    assert failure["record"] == bad and "line" in failure["message"]
    assert set(by_doc(emu, inst["id"])) >= {"OK-1", "OK-2"} and "BAD-1" not in by_doc(emu, inst["id"])

    with pytest.raises(CloudElementsRecordFailuresError, match="1 failed records > max_failed_records=0") as err:
        run_operator(upload_op(inst["id"], path, deferrable=deferrable), Ctx())
    saved = sorted(p.name for p in (tmp_path / "in").glob("je.*.errors.ndjson"))
    assert len(saved) == 2 and str(err.value).count(".errors.ndjson") == 1  # run-unique names, path in the error


def test_csv_upload(emu: Any, conn: str, tmp_path: Path) -> None:
    inst = emu.state.create_instance("quickbooks", "upload-csv")
    csv_file = tmp_path / "customers.csv"
    csv_file.write_text('displayName,givenName,familyName\nAcme & Sons,Ann,Acme\n"Beta, Inc",Bob,Beta\n')
    result = run_operator(
        upload_op(inst["id"], f"file://{csv_file}", resource="customers", identifier_field_name="displayName"), Ctx()
    )
    assert (result["records"], result["failed_records"], result["input_records"]) == (2, 0, 2)
    names = {r.get("displayName") for r in emu.state.records(inst["id"], "customers")}
    assert {"Acme & Sons", "Beta, Inc"} <= names


@pytest.mark.parametrize(
    ("name", "content", "kwargs", "match"),
    [
        ("e.ndjson", "", {}, "no records to upload"),
        ("e.ndjson", "\n\n", {}, "no records to upload"),
        ("e.ndjson", '{"docNumber": "1"}\n[1, 2]\n', {}, "line 2: a JSON list, not an object"),
        ("e.ndjson", '{"docNumber": "1"}\n{oops\n', {}, "line 2: not valid JSON"),
        (
            "e.ndjson",
            '{"docNumber": "1"}\n{"txnDate": "x"}\n',
            {"identifier_field_name": "docNumber"},
            "line 2: identifier_field_name 'docNumber' is missing",
        ),
        ("e.csv", "", {}, "no CSV header"),
        ("e.csv", "a,b\n", {}, "no records to upload"),
        ("e.csv", "a,,b\n1,2,3\n", {}, "empty or duplicate column names"),
        ("e.csv", "a,b\n1,2\n3\n", {}, "record 2: 1 fields, the header has 2"),
        ("e.csv", "a,b\n1,2\n", {"identifier_field_name": "docNumber"}, "'docNumber' is not a CSV column"),
        ("e.csv", "docNumber,b\n1,2\n,3\n", {"identifier_field_name": "docNumber"}, "record 2: identifier"),
        ("e.txt", "x", {}, "pass input_format"),
    ],
)
def test_bad_input_fails_before_anything_is_sent(
    emu: Any, conn: str, tmp_path: Path, name: str, content: str, kwargs: dict[str, Any], match: str
) -> None:
    inst = emu.state.create_instance("quickbooks", "upload-bad")
    (tmp_path / name).write_text(content)
    before = uploads(emu)
    with pytest.raises(CloudElementsConfigError, match=match):
        upload_op(inst["id"], f"file://{tmp_path / name}", **kwargs).execute(Ctx().context)
    assert uploads(emu) == before


def test_missing_unreadable_and_unknown_resource(emu: Any, conn: str, tmp_path: Path) -> None:
    inst = emu.state.create_instance("quickbooks", "upload-missing")
    before = uploads(emu)
    with pytest.raises(CloudElementsDataError, match=r"input_path .*nope\.ndjson.*: no such file"):
        upload_op(inst["id"], f"file://{tmp_path}/nope.ndjson").execute(Ctx().context)
    (tmp_path / "latin.ndjson").write_bytes(b'{"a": "\xe9"}\n')
    with pytest.raises(CloudElementsDataError, match="not UTF-8"):
        upload_op(inst["id"], f"file://{tmp_path}/latin.ndjson").execute(Ctx().context)
    path = write_ndjson(tmp_path / "ok.ndjson", [{"name": "x"}])
    with pytest.raises(CloudElementsConfigError, match="'hooks' is not supported for element 'quickbooks'"):
        upload_op(inst["id"], path, resource="hooks").execute(Ctx().context)
    with pytest.raises(CloudElementsConfigError, match="max_failed_records"):
        upload_op(inst["id"], path, max_failed_records=-1)
    with pytest.raises(CloudElementsConfigError, match="input_format"):
        upload_op(inst["id"], path, input_format="xml")
    assert uploads(emu) == before


def test_timeout_cancels_the_job(emu: Any, conn: str, tmp_path: Path) -> None:
    from airflow_provider_cloudelements.exceptions import CloudElementsTimeoutError
    from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook

    inst = emu.state.create_instance("quickbooks", "upload-timeout")
    path = write_ndjson(tmp_path / "je.ndjson", [journal("TO-1", 1.0)])
    ctx = Ctx()
    with pytest.raises(CloudElementsTimeoutError):  # the emulator keeps a job RUNNING for 0.3 s
        upload_op(inst["id"], path, timeout=0.05, poll_interval=0.01).execute(ctx.context)
    job_id = ctx.ti.xcoms["bulk_job_id"]
    assert CloudElementsHook(conn, instance_id=inst["id"]).get_bulk_status(job_id)["status"] == "CANCELLED"


def test_a_retry_after_a_dead_job_uploads_again(emu: Any, conn: str, tmp_path: Path) -> None:
    from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook

    inst = emu.state.create_instance("quickbooks", "upload-dead")
    path = write_ndjson(tmp_path / "je.ndjson", [journal("DJ-1", 3.0)])
    ctx = Ctx()
    with pytest.raises(TaskDeferred):
        upload_op(inst["id"], path, identifier_field_name="docNumber", deferrable=True).execute(ctx.context)
    dead = ctx.ti.xcoms["bulk_job_id"]
    CloudElementsHook(conn, instance_id=inst["id"]).cancel_bulk_job(dead)
    before = uploads(emu)
    result = run_operator(upload_op(inst["id"], path, identifier_field_name="docNumber"), ctx)
    assert result["job_id"] != dead and uploads(emu) == before + 1 and result["records"] == 1
    assert len(by_doc(emu, inst["id"])["DJ-1"]) == 1
