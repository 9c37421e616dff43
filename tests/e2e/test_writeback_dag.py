"""The journal write-back example DAG, run with ``dag.test()`` against the emulator over real HTTP.

The journal entries it created are read back from the emulator (ground truth) by id and content; a
rerun of the same interval upserts on ``docNumber`` and creates nothing new.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from airflow_provider_cloudelements.utils.records import stable_id

DAG_ID = "cloudelements_journal_writeback"
LOGICAL = datetime(2026, 3, 10, tzinfo=timezone.utc)


def _writeback_instance(emulator: Any) -> dict[str, Any]:
    auth = {"Authorization": f"User {emulator.user_secret}, Organization {emulator.organization_secret}"}
    resp = httpx.get(f"{emulator.base_url}/instances", headers=auth, timeout=10)
    resp.raise_for_status()
    [inst] = [i for i in resp.json() if "journal-writeback" in (i.get("tags") or [])]
    return inst


def _entries(emulator: Any, instance_id: int) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in emulator.state.records(instance_id, "journal-entries"):
        if str(record.get("docNumber", "")).startswith("WB-"):
            out.setdefault(record["docNumber"], []).append(record)
    return out


def _xcom(run: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=DAG_ID, run_id=run.run_id, task_id=task_id, key="return_value")
            .first()
        )
        assert row is not None, task_id
        value = row.value
    return json.loads(value) if isinstance(value, str) else value


def test_writeback_creates_the_interval_entries_and_a_rerun_is_idempotent(
    sync_env: dict[str, Any], load_dag: Any, emulator: Any
) -> None:
    run = load_dag(DAG_ID).test(logical_date=LOGICAL)
    assert run.state == "success"
    inst = _writeback_instance(emulator)
    day = (run.data_interval_end.astimezone(timezone.utc)).date()
    # the interval's last day: a daily interval ending at midnight books on the day before
    if run.data_interval_end == run.data_interval_end.replace(hour=0, minute=0, second=0, microsecond=0):
        day = day.fromordinal(day.toordinal() - 1)
    stamp = day.strftime("%Y%m%d")
    entries = _entries(emulator, inst["id"])
    assert sorted(entries) == [f"WB-{stamp}-1", f"WB-{stamp}-2"]
    # QBO read ids are "<id>|<syncToken>"; references (accountRef.value) and identity use the stable id
    accounts = {stable_id(a["id"], "quickbooks"): a for a in emulator.state.records(inst["id"], "ledger-accounts")}
    for doc, amount in ((f"WB-{stamp}-1", 12500.00), (f"WB-{stamp}-2", 830.25)):
        [entry] = entries[doc]
        assert entry["txnDate"] == day.isoformat()
        lines = entry["line"]
        assert [ln["journalEntryLineDetail"]["postingType"] for ln in lines] == ["DEBIT", "CREDIT"]
        assert [ln["amount"] for ln in lines] == [amount, amount]
        for ln in lines:
            assert ln["journalEntryLineDetail"]["accountRef"]["value"] in accounts
    first_ids = {doc: stable_id(e[0]["id"], "quickbooks") for doc, e in entries.items()}

    result = _xcom(run, "upload_journal_entries")
    assert (result["records"], result["failed_records"], result["errors_path"]) == (2, 0, None)
    upload_file = Path(result["input_path"].removeprefix("file://"))
    assert upload_file.is_relative_to(sync_env["landing"]) and upload_file.name == f"journal-entries.{day}.ndjson"
    assert [json.loads(line)["docNumber"] for line in upload_file.read_text().splitlines()] == sorted(entries)

    # rerun of the same interval: same records updated in place, none created
    before = len(emulator.state.records(inst["id"], "journal-entries"))
    again = load_dag(DAG_ID).test(logical_date=LOGICAL)
    assert again.state == "success"
    assert _writeback_instance(emulator)["id"] == inst["id"]
    assert len(emulator.state.records(inst["id"], "journal-entries")) == before
    assert {
        doc: [stable_id(r["id"], "quickbooks") for r in e] for doc, e in _entries(emulator, inst["id"]).items()
    } == {doc: [i] for doc, i in first_ids.items()}
