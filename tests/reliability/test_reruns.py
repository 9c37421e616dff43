"""Reruns and restarts: the same interval twice, a worker that died mid-job, a triggerer restart.

Every check counts the bulk jobs the emulator created for the instance (``bulk_jobs_created``) and
compares the landed records with the emulator's ground truth by id and content hash.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import TaskDeferred

from airflow_provider_cloudelements.operators.extract import STATE_KEY, CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.operators.sql import CloudElementsSqlUpsertOperator
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger
from tests.reliability.conftest import (
    FakeStateStore,
    compare,
    first_event,
    jobs_created,
    make_context,
    read_ndjson,
    run_operator,
)

pytestmark = pytest.mark.timeout(90)


class WorkerDied(BaseException):
    """Stands for SIGKILL of the worker: not an Exception, so no ``except Exception`` handler runs."""


def _extract(conn_id: str, iid: int, landing: Path, **kwargs: Any) -> CloudElementsBulkExtractOperator:
    kwargs.setdefault("deferrable", False)
    return CloudElementsBulkExtractOperator(
        task_id="extract_invoices",
        resource="invoices",
        instance_id=iid,
        cloudelements_conn_id=conn_id,
        output_base=f"file://{landing}",
        full_refresh=True,
        poll_interval=0.05,
        timeout=60,
        **kwargs,
    )


def _path(manifest: dict[str, Any]) -> Path:
    return Path(manifest["path"].removeprefix("file://"))


def _dump(db: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table' order by name")]
        return [(t, *row) for t in tables for row in conn.execute(f'select * from "{t}" order by 1, 2')]


@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_same_interval_twice_is_byte_identical(
    deferrable: bool, remu: Any, rconn: Any, new_instance: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = new_instance("quickbooks")
    iid = int(inst["id"])
    conn_id = rconn()
    db = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_REL_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))
    truth = remu.state.records(iid, "invoices")

    outputs, dumps = [], []
    for _ in range(2):  # a rerun / clear of the same interval: a new task run, new state store
        manifest = run_operator(_extract(conn_id, iid, tmp_path / "landing", deferrable=deferrable), make_context())
        data = _path(manifest).read_bytes()
        outputs.append((data, manifest))
        assert compare(read_ndjson(_path(manifest)), truth, "quickbooks").exact
        CloudElementsSqlUpsertOperator(task_id="load", manifest=manifest, conn_id="rel_warehouse").execute(
            make_context()
        )
        dumps.append(_dump(db))

    (first, m1), (second, m2) = outputs
    assert first == second, "the rerun landed different bytes"
    assert m1["manifest_path"] == m2["manifest_path"] and m1["path"] != m2["path"]  # run-unique names
    per_run = {"job_id": None, "path": None, "snapshot_at": None}
    assert {**m1, **per_run} == {**m2, **per_run}
    assert m2["snapshot_at"] >= m1["snapshot_at"]
    assert dumps[0] == dumps[1], "the rerun changed database rows"
    assert len([r for r in dumps[0] if r[0].startswith("ce_quickbooks_invoices")]) == len(truth)
    # the folder holds exactly the rerun's manifest and the file it names
    assert sorted(p.name for p in _path(m1).parent.iterdir()) == sorted(["_manifest.json", _path(m2).name])


def test_retry_after_worker_died_mid_job_reattaches(
    remu: Any, rconn: Any, new_instance: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Try 1 submits the job and dies while polling; try 2 (a new worker, the same task state store)
    re-attaches to the same job: one job in total, exact data."""
    inst = new_instance("quickbooks")
    iid = int(inst["id"])
    conn_id = rconn()
    store = FakeStateStore()
    before = jobs_created(remu, iid)

    try1 = _extract(conn_id, iid, tmp_path)
    monkeypatch.setattr(try1.hook, "get_bulk_status", _dies)
    with pytest.raises(WorkerDied):
        try1.execute(make_context(store=store))
    assert jobs_created(remu, iid) - before == 1
    saved = store.get(STATE_KEY)
    assert saved and saved["landed"] is False

    manifest = _extract(conn_id, iid, tmp_path).execute(make_context(store=store))
    assert manifest["job_id"] == saved["job_id"], "try 2 did not re-attach to try 1's job"
    assert jobs_created(remu, iid) - before == 1, "try 2 submitted a duplicate bulk job"
    assert compare(read_ndjson(_path(manifest)), remu.state.records(iid, "invoices"), "quickbooks").exact
    assert {**store.get(STATE_KEY), "landed": False} == saved and store.get(STATE_KEY)["landed"] is True


def test_retry_after_worker_died_mid_download_reuses_completed_job(
    remu: Any, rconn: Any, new_instance: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst = new_instance("freshbooksv2")
    iid = int(inst["id"])
    conn_id = rconn()
    store = FakeStateStore()
    before = jobs_created(remu, iid)
    try1 = _extract(conn_id, iid, tmp_path)
    monkeypatch.setattr(try1.hook, "download_bulk", _dies)
    with pytest.raises(WorkerDied):
        try1.execute(make_context(store=store))
    assert not list(tmp_path.rglob("invoices.ndjson")) and not list(tmp_path.rglob("*.part"))

    manifest = _extract(conn_id, iid, tmp_path).execute(make_context(store=store))
    assert jobs_created(remu, iid) - before == 1
    assert compare(read_ndjson(_path(manifest)), remu.state.records(iid, "invoices"), "freshbooksv2").exact


def test_triggerer_restart_while_deferred_submits_one_job(
    remu: Any, rconn: Any, new_instance: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Defer, serialize the trigger, drop it mid-poll (task cancelled like a dying triggerer), rebuild
    it from its classpath + kwargs, run it again: one job, exact data, and the job was not cancelled
    (``on_kill`` is for user actions, not restarts)."""
    inst = new_instance("quickbooks")
    iid = int(inst["id"])
    conn_id = rconn()
    before = jobs_created(remu, iid)
    monkeypatch.setattr(remu.state.bulk, "min_seconds", 3.0)  # keep the job running while we restart
    op = _extract(conn_id, iid, tmp_path, deferrable=True)
    context = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context)
    classpath, kwargs = deferred.value.trigger.serialize()
    json.dumps(kwargs)  # the triggerer stores kwargs as JSON

    async def run_then_drop() -> None:
        trigger = import_string(classpath)(**kwargs)
        polls = _status_polls(remu)
        task = asyncio.ensure_future(first_event(trigger))
        for _ in range(400):  # bounded: until the trigger has polled at least twice
            if _status_polls(remu) >= polls + 2 or task.done():
                break
            await asyncio.sleep(0.01)
        assert not task.done(), "the job finished before the triggerer restart"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run_then_drop())
    job_id = kwargs["job_id"]
    assert op.hook.get_bulk_status(job_id)["status"] in ("CREATED", "RUNNING"), "restart cancelled the job"
    monkeypatch.setattr(remu.state.bulk, "min_seconds", 0.1)

    rebuilt = import_string(classpath)(**kwargs)
    assert isinstance(rebuilt, CloudElementsBulkJobTrigger) and rebuilt.serialize() == (classpath, kwargs)
    event = asyncio.run(first_event(rebuilt))
    assert event.payload["status"] == "success", event.payload
    resumed = _extract(conn_id, iid, tmp_path, deferrable=True)  # execute_complete runs on a new worker
    manifest = resumed.execute_complete(context, event.payload)
    assert jobs_created(remu, iid) - before == 1
    assert manifest["job_id"] == job_id
    assert compare(read_ndjson(_path(manifest)), remu.state.records(iid, "invoices"), "quickbooks").exact


def import_string(classpath: str) -> Any:
    """What the triggerer does with a stored classpath."""
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _status_polls(emu: Any) -> int:
    return int(emu.state.stats()["requests"].get("GET /elements/api-v2/hubs/{hub}/bulk/{job_id}/status", 0))


def _dies(*args: Any, **kwargs: Any) -> Any:
    raise WorkerDied()
