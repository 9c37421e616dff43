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

from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import (
    STATE_KEY,
    CloudElementsBulkExtractOperator,
)
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator
from airflow_provider_cloudelements.triggers.bulk import CloudElementsBulkJobTrigger
from airflow_provider_cloudelements.utils.records import record_id
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
        # data tables only: the loader's `<table>__snapshots` bookkeeping records each complete snapshot it saw
        tables = [
            r[0]
            for r in conn.execute("select name from sqlite_master where type='table' order by name")
            if not r[0].endswith("__snapshots")
        ]
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


# ------------------------------------------------------------------------- concurrent and crashed runs (#12)
def _folder(manifest: dict[str, Any]) -> Path:
    return Path(manifest["manifest_path"].removeprefix("file://")).parent


def _published(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "_manifest.json").read_text())


def _named(manifest: dict[str, Any]) -> set[str]:
    return {str(manifest[k]).rsplit("/", 1)[-1] for k in ("path", "deleted_path", "errors_path") if manifest.get(k)}


def _assert_consistent(folder: Path, truth: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The folder's manifest names files that exist, and its data file holds ``records`` records."""
    manifest = _published(folder)
    for name in _named(manifest):
        assert (folder / name).exists(), f"the manifest names {name}, which is not there"
    landed = read_ndjson(_path(manifest))
    assert len(landed) == manifest["records"], "the manifest does not describe the data beside it"
    if truth is not None:
        assert compare(landed, truth, manifest["element_key"]).exact
    return manifest


def test_two_extracts_of_one_interval_at_once_keep_the_newer_snapshot(
    remu: Any, rconn: Any, new_instance: Any, tmp_path: Path
) -> None:
    """A (older job) is deferred while B (newer job) lands the same interval; when A resumes it must
    not replace B's manifest: the folder keeps B's snapshot and A hands on B's manifest."""
    iid = int(new_instance("quickbooks")["id"])
    conn_id = rconn()
    older = _extract(conn_id, iid, tmp_path, deferrable=True)
    ctx_a = make_context()
    with pytest.raises(TaskDeferred) as deferred:
        older.execute(ctx_a)
    hook = older.hook
    created_a = hook.get_bulk_status(deferred.value.trigger.job_id)["createdDate"]
    remu.state.simulate_activity(iid, resources=["invoices"], creates=2, updates=1, deletes=0)
    newer = run_operator(_extract(conn_id, iid, tmp_path), make_context())
    assert newer["snapshot_at"] > created_a
    event = asyncio.run(first_event(deferred.value.trigger))
    resumed = _extract(conn_id, iid, tmp_path, deferrable=True).execute_complete(ctx_a, event.payload)
    folder = _folder(newer)
    assert _published(folder) == json.loads(json.dumps(newer)), "the older snapshot replaced the newer manifest"
    assert resumed == newer, "the superseded run must hand on the manifest in place"
    assert sorted(p.name for p in folder.iterdir()) == sorted(_named(newer) | {"_manifest.json"})
    _assert_consistent(folder, remu.state.records(iid, "invoices"))


def test_concurrent_runs_in_threads_always_leave_a_consistent_folder(
    remu: Any, rconn: Any, new_instance: Any, tmp_path: Path
) -> None:
    """Four paged extracts of one interval at once, three rounds: after each round the manifest names
    files that exist and describe it, and only files of the manifest's run remain."""
    import threading

    from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import (
        CloudElementsPagedExtractOperator,
    )

    iid = int(new_instance("quickbooks")["id"])
    conn_id = rconn()
    for _ in range(3):
        results: list[Any] = []

        def one(results: list[Any] = results) -> None:
            op = CloudElementsPagedExtractOperator(
                task_id="p",
                resource="invoices",
                instance_id=iid,
                cloudelements_conn_id=conn_id,
                output_base=f"file://{tmp_path}",
                full_refresh=True,
                page_size=7,
            )
            try:
                results.append(op.execute(make_context()))
            except Exception as err:  # collected: the assertion below names it
                results.append(err)

        threads = [threading.Thread(target=one) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(results) == 4 and all(isinstance(r, dict) for r in results), results
        folder = _folder(results[0])
        manifest = _assert_consistent(folder, remu.state.records(iid, "invoices"))
        assert manifest in [json.loads(json.dumps(r)) for r in results]
        leftovers = {p.name for p in folder.iterdir()} - _named(manifest) - {"_manifest.json"}
        assert not leftovers, f"files no manifest names: {leftovers}"


_CHILD = r"""
import json, os, signal, sys
from datetime import datetime, timezone
import airflow_provider_cloudelements.transfers.cloudelements_to_storage.base as base
import airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk as extract

mode = sys.argv[1]
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "before-manifest":
    base.publish_manifest = die
elif mode == "mid-download":
    real = extract.CloudElementsHook.download_bulk
    def partial(self, job_id, resource, fileobj, **kwargs):
        fileobj.write(b'{"id": "partial"')
        fileobj.flush()
        die()
    extract.CloudElementsHook.download_bulk = partial

class TI:
    def xcom_push(self, key, value):
        pass

op = extract.CloudElementsBulkExtractOperator(
    task_id="extract_invoices", resource="invoices", instance_id=int(sys.argv[2]),
    cloudelements_conn_id=sys.argv[3], output_base=sys.argv[4], full_refresh=True, poll_interval=0.05,
    timeout=60, deferrable=False,
)
op.execute({"ti": TI(), "task_state_store": None,
            "data_interval_start": datetime(2029, 12, 31, tzinfo=timezone.utc),
            "data_interval_end": datetime(2030, 1, 1, tzinfo=timezone.utc),
            "prev_data_interval_start_success": None, "prev_data_interval_end_success": None})
print("not killed")
"""


def _run_killed(mode: str, iid: int, conn_id: str, landing: Path) -> None:
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, str(iid), conn_id, f"file://{landing}"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -9, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])


def test_kill_9_after_publishing_data_keeps_the_old_pair_and_the_next_run_cleans(
    remu: Any, rconn: Any, new_instance: Any, tmp_path: Path
) -> None:
    iid = int(new_instance("quickbooks")["id"])
    conn_id = rconn()
    landing = tmp_path / "landing"
    first = run_operator(_extract(conn_id, iid, landing), make_context())
    folder = _folder(first)
    remu.state.simulate_activity(iid, resources=["invoices"], creates=5, updates=0, deletes=0)
    _run_killed("before-manifest", iid, conn_id, landing)  # data published, manifest never written
    assert _published(folder) == json.loads(json.dumps(first)), "the killed run touched the manifest"
    _assert_consistent(folder)
    orphans = {p.name for p in folder.iterdir()} - _named(first) - {"_manifest.json"}
    assert len(orphans) == 1 and not any(n.startswith(".") for n in orphans)  # the killed run's data

    clean = run_operator(_extract(conn_id, iid, landing), make_context())
    assert sorted(p.name for p in folder.iterdir()) == sorted(_named(clean) | {"_manifest.json"})
    _assert_consistent(folder, remu.state.records(iid, "invoices"))


def test_kill_9_mid_download_leaves_a_temporary_the_next_run_removes_once_stale(
    remu: Any, rconn: Any, new_instance: Any, tmp_path: Path
) -> None:
    import os
    import time

    from airflow_provider_cloudelements.transfers.landing import STALE_TEMP_AGE

    iid = int(new_instance("quickbooks")["id"])
    conn_id = rconn()
    landing = tmp_path / "landing"
    _run_killed("mid-download", iid, conn_id, landing)
    temps = [p for p in landing.rglob("*.part")]
    assert len(temps) == 1 and temps[0].name.startswith("."), "kill -9 mid-download should leave its .part"
    folder = temps[0].parent
    young = folder / ".invoices.20300101T000000000Z-00000000.ndjson.feedbeef.part"
    young.write_bytes(b"a concurrent run still downloading")
    first = run_operator(_extract(conn_id, iid, landing), make_context())
    assert temps[0].exists() and young.exists(), "a temporary younger than the safe age was removed"
    old = time.time() - STALE_TEMP_AGE.total_seconds() - 60
    os.utime(temps[0], (old, old))  # the killed run's temporary is now older than the safe age
    second = run_operator(_extract(conn_id, iid, landing), make_context())
    assert not temps[0].exists() and young.exists()
    assert sorted(p.name for p in folder.iterdir()) == sorted(_named(second) | {"_manifest.json", young.name})
    assert _path(first) != _path(second) and not _path(first).exists()
    _assert_consistent(folder, remu.state.records(iid, "invoices"))


def test_loading_a_superseded_manifest_is_refused_naming_the_current_one(
    remu: Any, rconn: Any, new_instance: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run 1 extracts an interval, run 2 re-extracts it after activity (removing run 1's file); run 1's
    late load of its XCom manifest fails with a typed error naming the current manifest and changes
    nothing; loading that current manifest gives exactly the emulator's records."""
    from airflow_provider_cloudelements.exceptions import CloudElementsDataError

    inst = new_instance("quickbooks")
    iid = int(inst["id"])
    conn_id = rconn()
    db = tmp_path / "warehouse.db"
    monkeypatch.setenv("AIRFLOW_CONN_REL_WAREHOUSE", json.dumps({"conn_type": "sqlite", "host": str(db)}))

    first = run_operator(_extract(conn_id, iid, tmp_path / "landing"), make_context())
    remu.state.simulate_activity(iid, ["invoices"], creates=2, updates=2, deletes=1)
    second = run_operator(_extract(conn_id, iid, tmp_path / "landing"), make_context())
    assert first["manifest_path"] == second["manifest_path"] and not _path(first).exists()

    with pytest.raises(CloudElementsDataError, match="replaced by a later run") as err:
        CloudElementsSqlUpsertOperator(task_id="load", manifest=first, conn_id="rel_warehouse").execute(make_context())
    assert first["manifest_path"] in str(err.value)
    assert not db.exists() or _dump(db) == []

    current = json.loads(Path(first["manifest_path"].removeprefix("file://")).read_text())
    summary = CloudElementsSqlUpsertOperator(task_id="load", manifest=current, conn_id="rel_warehouse").execute(
        make_context()
    )
    truth = {record_id(r, "quickbooks"): r for r in remu.state.records(iid, "invoices")}  # stable ids
    with sqlite3.connect(db) as conn:
        live = {
            rid: json.loads(data)
            for rid, data in conn.execute("select record_id, data from ce_quickbooks_invoices where is_deleted = 0")
        }
    assert live == truth and summary["rows_live"] == len(truth)
