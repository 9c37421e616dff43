"""Regressions of the unified tables (``common_model.unified.load_manifests``) at user level.

The loader's whole-second fixes (docs/reliability.md "Semantics", tests/model/test_regressions.py) replayed
on the unified tables: manifests shaped as the paged and bulk extract operators land them (manifest v2,
``snapshot_at``, ``complete``, ``deleted_path``, ``window``, a ``_manifest.json`` beside the files), loaded
with ``load_manifests``, rows read back with SQL. Each test names the loader regression it mirrors; the
earlier unified loader (its own copy of the ordering rules) failed every one of them.

Runs against SQLite and, when ``CLOUDELEMENTS_TEST_POSTGRES_URI`` is set, PostgreSQL (one schema per test).
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_cloudelements.common_model.unified import load_manifests
from airflow_provider_cloudelements.exceptions import CloudElementsDataError

POSTGRES_URI_ENV = "CLOUDELEMENTS_TEST_POSTGRES_URI"
ELEMENT = "freshbooksv2"  # whole-second `updated`, paged and bulk extracts
INSTANCE = 7
DAY = "2026-03-01T"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A fresh warehouse per test: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        eng = sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
        yield eng
        eng.dispose()
        return
    uri = os.environ.get(POSTGRES_URI_ENV)
    if not uri:
        pytest.skip(f"{POSTGRES_URI_ENV} not set (start a server with scripts/ci_postgres.sh)")
    schema = f"u_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(uri)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    eng = sa.create_engine(uri, connect_args={"options": f"-csearch_path={schema}"})
    yield eng
    eng.dispose()
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


class Lander:
    """Lands extracts as the extract operators do: a partition folder per run with its records file,
    tombstones file and ``_manifest.json`` (written last); returns the manifest (the operator's XCom)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def land(
        self,
        partition: str,
        records: list[dict[str, Any]],
        *,
        snapshot_at: str,
        mode: str = "paged",
        full_refresh: bool = False,
        tombstones: list[dict[str, Any]] | None = None,
        resource: str = "common-invoices",
        window_start: str | None = None,
    ) -> dict[str, Any]:
        folder = self.root / partition
        folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex[:8]
        path = folder / f"{resource}.{token}.ndjson"
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
        deleted_path = None
        if tombstones is not None:
            dpath = folder / f"{resource}.{token}.deleted.ndjson"
            dpath.write_text("".join(json.dumps(t) + "\n" for t in tombstones))
            deleted_path = f"file://{dpath}"
        start = None if full_refresh else (window_start or f"{DAY}11:00:00+00:00")
        manifest = {
            "manifest_version": 2,
            "element_key": ELEMENT,
            "instance_id": INSTANCE,
            "resource": resource,
            "mode": mode,
            "path": f"file://{path}",
            "format": "ndjson",
            "records": len(records),
            "bytes": path.stat().st_size,
            "job_id": "17" if mode == "bulk" else None,
            "failed_records": 0,
            "errors_path": None,
            "deleted_path": deleted_path,
            "deleted": len(tombstones or []),
            "window": {"start": start, "end": None, "full_refresh": full_refresh},
            "full_refresh": full_refresh,
            "snapshot_at": snapshot_at,
            "complete": full_refresh,  # open-ended, no where, no failed record, count reconciled
            "naive_timezone": "UTC",
            "manifest_path": f"file://{folder / '_manifest.json'}",
        }
        (folder / "_manifest.json").write_text(json.dumps(manifest))
        return manifest


@pytest.fixture
def lander(tmp_path: Path) -> Lander:
    return Lander(tmp_path / "landing")


def invoice(rid: str, updated: str, balance: float = 100.0, **extra: Any) -> dict[str, Any]:
    """A FreshBooks invoice as the ``common-invoices`` transformation serves it (whole-second times)."""
    status = "PAID" if balance == 0 else "OPEN"
    return {
        "id": rid,
        "number": f"INV-{rid}",
        "customer_id": "c1",
        "issue_date": "2026-03-01",
        "total_amount": 100.0,
        "balance": balance,
        "status": status,
        "currency": "USD",
        "lines": [{"description": "Work", "quantity": 1, "unit_price": 100.0, "amount": 100.0}],
        "active": True,
        "created_at": f"{DAY}09:00:00Z",
        "updated_at": f"{DAY}{updated}Z",
        **extra,
    }


def table(engine: sa.Engine, name: str = "common_invoices") -> dict[str, dict[str, Any]]:
    """Every row of the unified table of the test instance, by id (``is_deleted`` as int; without ``synced_at``,
    the load time)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"select * from {name} where source_element = :e and instance_id = :i order by id"),
            {"e": ELEMENT, "i": INSTANCE},
        ).mappings()
        return {
            str(r["id"]): {**{k: v for k, v in r.items() if k != "synced_at"}, "is_deleted": int(r["is_deleted"])}
            for r in rows
        }


def live(engine: sa.Engine) -> set[str]:
    return {rid for rid, row in table(engine).items() if not row["is_deleted"]}


def load_in_order(engine: sa.Engine, *manifests: dict[str, Any]) -> list[dict[str, Any]]:
    return [load_manifests(engine, m)[0] for m in manifests]


def _created_in_the_snapshot_second(lander: Lander, complete: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """A paged full refresh at 12:00:05 (its floored ``Date``) lacks invoice 303, created after its page was
    read in that same second (``updated`` 12:00:05); a second paged extract of that second holds it: a full
    refresh of the previous interval (another partition) or, with ``complete=False``, an incremental."""
    snapshot = f"{DAY}12:00:05.000Z"
    base = [invoice("301", "10:00:00"), invoice("302", "10:30:00")]
    without = lander.land("k/full", base, snapshot_at=snapshot, full_refresh=True)
    created = invoice("303", "12:00:05")
    if complete:
        holding = lander.land("k-1/full", [*base, created], snapshot_at=snapshot, full_refresh=True)
    else:
        holding = lander.land("k/incremental", [created], snapshot_at=snapshot, window_start=f"{DAY}12:00:03+00:00")
    return without, holding


# tests/model/test_regressions.py::test_record_created_in_a_paged_snapshots_second_is_not_deleted_by_it (fix A)
@pytest.mark.parametrize("complete", [True, False], ids=["then-full-refresh", "then-incremental"])
def test_record_created_in_a_paged_snapshots_second_is_not_deleted_by_it(
    engine: sa.Engine, lander: Lander, complete: bool
) -> None:
    without, holding = _created_in_the_snapshot_second(lander, complete)
    load_in_order(engine, without, holding, without)  # the last: a rerun of the older snapshot's load
    assert live(engine) == {"301", "302", "303"}, "live invoice 303 marked deleted"
    assert table(engine)["303"]["deleted_at"] is None


# the same test of tests/model/test_regressions.py, "survives_the_late_load_of_that_snapshot" (fix A, late load)
def test_record_created_in_a_paged_snapshots_second_survives_the_late_load_of_that_snapshot(
    engine: sa.Engine, lander: Lander
) -> None:
    without, holding = _created_in_the_snapshot_second(lander, True)
    load_in_order(engine, holding, without)
    assert live(engine) == {"301", "302", "303"}, "live invoice 303 marked deleted by the late snapshot"


# the same-named test of tests/model/test_regressions.py
# (fix B): the bulk job (createdDate 12:00:06.400) saw the edit of 12:00:05; a paged extract in the job's
# second (floored Date 12:00:06.000) saw the newer edit of 12:00:06 (the invoice was paid)
@pytest.mark.parametrize("order", ["bulk-then-paged", "paged-then-bulk"])
def test_newer_edit_seen_by_a_paged_extract_beats_an_older_one_from_a_bulk_job_of_the_same_second(
    engine: sa.Engine, lander: Lander, order: str
) -> None:
    bulk = lander.land("k/bulk", [invoice("301", "12:00:05", 100.0)], snapshot_at=f"{DAY}12:00:06.400Z", mode="bulk")
    paged = lander.land("k+1/paged", [invoice("301", "12:00:06", 0.0)], snapshot_at=f"{DAY}12:00:06.000Z", mode="paged")
    load_in_order(engine, *((bulk, paged) if order == "bulk-then-paged" else (paged, bulk)))
    row = table(engine)["301"]
    assert (row["balance"], row["status"], row["updated_at"]) == (0.0, "PAID", f"{DAY}12:00:06Z")


# tests/model/test_regressions.py::test_late_load_of_an_older_extract_does_not_resurrect_a_hard_delete, for an
# id the table never held: the latest complete snapshot (12:10) lacks 302 (deleted in between), so an older
# incremental extract (12:00) loaded late cannot create it live
def test_late_load_of_an_older_extract_does_not_create_a_record_the_latest_snapshot_lacks(
    engine: sa.Engine, lander: Lander
) -> None:
    newer = lander.land("k+1/full", [invoice("301", "10:00:00")], snapshot_at=f"{DAY}12:10:00.000Z", full_refresh=True)
    older = lander.land("k/incremental", [invoice("302", "11:30:00")], snapshot_at=f"{DAY}12:00:00.000Z")
    load_in_order(engine, newer, older)
    assert live(engine) == {"301"}
    assert (table(engine)["302"]["is_deleted"], table(engine)["302"]["deleted_at"]) == (1, f"{DAY}12:10:00.000Z")


# the latest-complete-snapshot rule: the late load of an older complete snapshot deletes nothing the newer
# snapshot holds (305, created in between), and does not undo what the newer one deleted (302)
def test_late_load_of_an_older_complete_snapshot_keeps_what_the_newer_one_holds(
    engine: sa.Engine, lander: Lander
) -> None:
    older = lander.land(
        "k/full", [invoice("301", "10:00:00"), invoice("302", "10:00:00")], snapshot_at=f"{DAY}12:00:00.000Z",
        full_refresh=True,
    )  # fmt: skip
    newer = lander.land(
        "k+1/full", [invoice("301", "10:00:00"), invoice("305", "12:05:00")], snapshot_at=f"{DAY}12:10:00.000Z",
        full_refresh=True,
    )  # fmt: skip
    load_in_order(engine, newer, older)
    assert live(engine) == {"301", "305"}
    assert table(engine)["302"]["deleted_at"] == f"{DAY}12:10:00.000Z"


def _four_manifests(lander: Lander) -> list[dict[str, Any]]:
    """A bulk incremental, a complete paged full refresh, a paged incremental with a tombstone and a record
    created in the full refresh's second, and an older incremental holding a record deleted (without a
    tombstone) before the full refresh. Truth: 301 (paid at 12:00:03), 303, 304 live; 302, 305 deleted."""
    bulk = lander.land(
        "a/bulk", [invoice("301", "11:59:59"), invoice("302", "11:00:00")], snapshot_at=f"{DAY}12:00:00.400Z",
        mode="bulk", window_start=f"{DAY}11:00:00+00:00",
    )  # fmt: skip
    full = lander.land(
        "b/full", [invoice("301", "12:00:03", 0.0), invoice("303", "10:00:00")], snapshot_at=f"{DAY}12:00:05.000Z",
        full_refresh=True,
    )  # fmt: skip
    tombstones = lander.land(
        "c/incremental", [invoice("304", "12:00:05"), invoice("301", "12:00:03", 0.0)],
        snapshot_at=f"{DAY}12:00:05.000Z", tombstones=[{"id": "302", "deleted_at": f"{DAY}12:00:02.000Z"}],
        window_start=f"{DAY}12:00:00+00:00",
    )  # fmt: skip
    older = lander.land(
        "d/incremental", [invoice("305", "11:20:00"), invoice("302", "11:00:00"), invoice("303", "10:00:00")],
        snapshot_at=f"{DAY}11:30:00.000Z", window_start=f"{DAY}10:00:00+00:00",
    )  # fmt: skip
    return [bulk, full, tombstones, older]


# tests/model/test_model.py's order invariant: any load order of the same manifests gives the same table
def test_every_load_order_gives_the_same_table(tmp_path: Path, lander: Lander) -> None:
    manifests = _four_manifests(lander)
    tables = {}
    for n, order in enumerate(itertools.permutations(range(len(manifests)))):
        eng = sa.create_engine(f"sqlite:///{tmp_path / f'order{n}.db'}")
        load_in_order(eng, *(manifests[i] for i in order))
        tables[order] = table(eng)
        eng.dispose()
    first = tables[(0, 1, 2, 3)]
    assert {rid for rid, row in first.items() if not row["is_deleted"]} == {"301", "303", "304"}
    assert (first["301"]["balance"], first["302"]["is_deleted"], first["305"]["is_deleted"]) == (0.0, 1, 1)
    differing = [order for order, got in tables.items() if got != first]
    assert not differing, f"{len(differing)} of {len(tables)} load orders differ, e.g. {differing[0]}"


def test_opposite_load_orders_give_the_same_table(engine: sa.Engine, lander: Lander) -> None:
    """Two opposite orders against the fixture's backend (both when PostgreSQL is configured)."""
    manifests = _four_manifests(lander)
    load_in_order(engine, *manifests)
    forward = table(engine)
    with engine.begin() as conn:
        for name in sa.inspect(conn).get_table_names():
            conn.execute(sa.text(f'DROP TABLE "{name}"'))
    load_in_order(engine, *reversed(manifests))
    assert table(engine) == forward
    assert {rid for rid, row in forward.items() if not row["is_deleted"]} == {"301", "303", "304"}


# loading a manifest again writes nothing (the loader's rerun rule), after any history
def test_a_rerun_writes_nothing(engine: sa.Engine, lander: Lander) -> None:
    manifests = _four_manifests(lander)
    first = load_in_order(engine, *manifests)
    assert sum(s["upserted"] + s["deleted"] for s in first) > 0
    before = table(engine)
    again = load_in_order(engine, *manifests, *reversed(manifests))
    assert [(s["upserted"], s["deleted"]) for s in again] == [(0, 0)] * 8
    assert table(engine) == before


# tests/model/test_regressions.py::test_an_earlier_manifest_still_describes_its_files_after_a_rerun: a rerun
# of the interval replaced the files; the earlier manifest is refused (never loaded from the rerun's files)
def test_a_superseded_manifest_is_refused(engine: sa.Engine, lander: Lander) -> None:
    first = lander.land("k/incremental", [invoice("301", "12:00:01")], snapshot_at=f"{DAY}12:00:02.000Z")
    rerun = lander.land("k/incremental", [invoice("301", "12:00:03", 0.0)], snapshot_at=f"{DAY}12:00:04.000Z")
    Path(first["path"].removeprefix("file://")).unlink()  # what the rerun does once its manifest is in place
    with pytest.raises(CloudElementsDataError, match="replaced by a later run") as err:
        load_manifests(engine, first)
    assert rerun["manifest_path"] in str(err.value)
    load_manifests(engine, rerun)
    assert table(engine)["301"]["status"] == "PAID"
