"""The unified loader (``common_model.unified.load_manifests``) follows the loader's ordering rule:
later versions win, older ones never overwrite, tombstones beat older versions and are kept for ids
never loaded, a complete full refresh deletes by absence, reruns write nothing; the unified table is a
projection of the raw table it loads, committed with it, recomputed when dropped, never silently apart
from it (whole-second regressions: test_unified_regressions.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from airflow_provider_cloudelements.common_model import unified
from airflow_provider_cloudelements.common_model.unified import load_manifests
from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsDataError


def _manifest(tmp: Path, name: str, records: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    path = tmp / f"{name}.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    deleted = extra.pop("tombstones", None)
    out = {
        "manifest_version": 2,
        "element_key": "quickbooks",
        "instance_id": 7,
        "resource": "common-customers",
        "format": "ndjson",
        "path": f"file://{path}",
        "records": len(records),
        "full_refresh": False,
        "failed_records": 0,
        "snapshot_at": extra.pop("snapshot_at"),
        "complete": extra.pop("complete", False),
        "window": {"start": None, "end": None, "full_refresh": False},
    }
    if deleted is not None:
        dpath = tmp / f"{name}.deleted.ndjson"
        dpath.write_text("".join(json.dumps(t) + "\n" for t in deleted))
        out["deleted_path"] = f"file://{dpath}"
    return {**out, **extra}


def _cust(rid: str, name: str, updated: str) -> dict[str, Any]:
    return {"id": rid, "name": name, "active": True, "updated_at": updated}


def _rows(engine: sa.Engine) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        return {
            r[0]: tuple(r[1:])
            for r in conn.execute(sa.text("select id, name, is_deleted, deleted_at from common_customers"))
        }


def test_ordering_rule(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    new = _manifest(
        tmp_path,
        "new",
        [_cust("1", "B", "2026-01-02T00:00:00Z"), _cust("2", "X", "2026-01-02T00:00:00Z")],
        snapshot_at="2026-01-02T01:00:00.000Z",
    )
    assert load_manifests(engine, new)[0]["upserted"] == 2
    assert load_manifests(engine, new)[0]["upserted"] == 0  # a rerun writes nothing
    old = _manifest(tmp_path, "old", [_cust("1", "A", "2026-01-01T00:00:00Z")], snapshot_at="2026-01-01T01:00:00.000Z")
    load_manifests(engine, old)
    assert _rows(engine)["1"][:2] == ("B", 0)  # an older extract loaded late does not overwrite
    gone = _manifest(
        tmp_path,
        "gone",
        [],
        snapshot_at="2026-01-03T00:00:00.000Z",
        tombstones=[{"id": rid, "deleted_at": "2026-01-03T00:00:00Z"} for rid in ("2", "9")],
    )
    assert load_manifests(engine, gone)[0]["deleted"] == 2
    rows = _rows(engine)
    assert rows["2"][1:] == (1, "2026-01-03T00:00:00.000Z") and rows["9"][1] == 1  # tombstone row for 9
    stale = _manifest(
        tmp_path, "stale", [_cust("2", "X", "2026-01-02T12:00:00Z")], snapshot_at="2026-01-02T12:00:00.000Z"
    )
    load_manifests(engine, stale)
    assert _rows(engine)["2"][1] == 1  # an older live version does not resurrect a deletion
    back = _manifest(
        tmp_path, "back", [_cust("2", "Y", "2026-01-04T00:00:00Z")], snapshot_at="2026-01-04T00:00:00.000Z"
    )
    load_manifests(engine, back)
    assert _rows(engine)["2"][:2] == ("Y", 0)  # a later version does
    full = _manifest(
        tmp_path,
        "full",
        [_cust("2", "Y", "2026-01-04T00:00:00Z")],
        snapshot_at="2026-01-05T00:00:00.000Z",
        complete=True,
        full_refresh=True,
    )
    load_manifests(engine, full)
    rows = _rows(engine)
    assert rows["1"][1:] == (1, "2026-01-05T00:00:00.000Z") and rows["2"][1] == 0  # deleted by absence


def _raw_rows(engine: sa.Engine) -> dict[str, tuple[Any, ...]]:
    """``{record_id: (is_deleted, deleted_at)}`` of the raw table, ``{}`` when it does not exist."""
    if not sa.inspect(engine).has_table("ce_quickbooks_common_customers"):
        return {}
    with engine.connect() as conn:
        sql = "select record_id, is_deleted, deleted_at from ce_quickbooks_common_customers where instance_id = 7"
        return {r[0]: tuple(r[1:]) for r in conn.execute(sa.text(sql))}


def _two(tmp_path: Path) -> dict[str, Any]:
    return _manifest(
        tmp_path,
        "two",
        [_cust("1", "A", "2026-01-01T00:00:00Z"), _cust("2", "B", "2026-01-01T00:00:00Z")],
        snapshot_at="2026-01-01T01:00:00.000Z",
    )


def test_the_raw_table_holds_what_the_unified_table_shows(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    load_manifests(engine, _two(tmp_path))
    gone = _manifest(
        tmp_path, "gone", [], snapshot_at="2026-01-02T00:00:00.000Z", tombstones=[{"id": "2"}, {"id": "9"}]
    )
    load_manifests(engine, gone)
    assert _raw_rows(engine) == {
        "1": (0, None),
        "2": (1, "2026-01-02T00:00:00.000Z"),
        "9": (1, "2026-01-02T00:00:00.000Z"),
    }
    assert {rid: row[1:] for rid, row in _rows(engine).items()} == _raw_rows(engine)


def test_the_raw_load_and_the_unified_rows_commit_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")

    def broken(record: Any, *, resource: Any) -> dict[str, Any]:
        raise RuntimeError("projection failed")

    monkeypatch.setattr(unified, "_values", broken)
    with pytest.raises(RuntimeError, match="projection failed"):
        load_manifests(engine, _two(tmp_path))
    assert _raw_rows(engine) == {} and _rows(engine) == {}  # the raw load was rolled back with it
    monkeypatch.undo()
    assert load_manifests(engine, _two(tmp_path))[0]["upserted"] == 2
    assert set(_raw_rows(engine)) == set(_rows(engine)) == {"1", "2"}


def test_a_dropped_unified_table_is_recomputed_by_the_next_load(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    load_manifests(engine, _two(tmp_path))
    with engine.connect() as conn:
        before = [tuple(r) for r in conn.execute(sa.text("select * from common_customers order by id"))]
    with engine.begin() as conn:
        conn.execute(sa.text("drop table common_customers"))
    assert load_manifests(engine, _two(tmp_path))[0]["upserted"] == 2  # the raw load writes nothing: a rerun
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(sa.text("select * from common_customers order by id"))] == before


def test_unified_rows_the_raw_table_lacks_are_refused(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    load_manifests(engine, _two(tmp_path))
    with engine.begin() as conn:  # e.g. a row of the first unified loader, which had no raw table
        conn.execute(
            sa.text(
                "insert into common_customers (source_element, instance_id, id, name, is_deleted) "
                "values ('quickbooks', 7, '5', 'E', 0)"
            )
        )
    late = _manifest(
        tmp_path, "late", [_cust("3", "C", "2026-01-03T00:00:00Z")], snapshot_at="2026-01-03T00:00:00.000Z"
    )
    with pytest.raises(CloudElementsDataError, match=r"1 row\(s\) of quickbooks instance 7 that its raw table"):
        load_manifests(engine, late)
    assert set(_raw_rows(engine)) == {"1", "2"} and set(_rows(engine)) == {"1", "2", "5"}  # nothing loaded


def test_the_pooled_connection_keeps_its_transactions(tmp_path: Path) -> None:
    """The load switches SQLite's implicit transactions off on the pooled connection and back on afterwards."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}", poolclass=sa.pool.StaticPool)
    load_manifests(engine, _two(tmp_path))
    with engine.connect() as conn:  # the very connection the load used
        conn.execute(sa.text("delete from common_customers"))
        conn.rollback()
    assert set(_rows(engine)) == {"1", "2"}


def test_a_manifest_of_another_resource_is_refused_before_any_load(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    other = {**_two(tmp_path), "resource": "customers"}
    with pytest.raises(CloudElementsConfigError, match="not a common resource"):
        load_manifests(engine, [_two(tmp_path), other])
    assert _rows_or_none(engine) is None


def _rows_or_none(engine: sa.Engine) -> dict[str, tuple[Any, ...]] | None:
    return _rows(engine) if sa.inspect(engine).has_table("common_customers") else None


def test_the_projection_pages_through_every_changed_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_cloudelements.common_model import unified_load

    monkeypatch.setattr(unified_load, "PAGE_SIZE", 2)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    many = _manifest(
        tmp_path,
        "many",
        [_cust(str(i), f"N{i}", "2026-01-01T00:00:00Z") for i in range(5)],
        snapshot_at="2026-01-01T01:00:00.000Z",
    )
    assert load_manifests(engine, many)[0]["upserted"] == 5
    assert {rid: row[0] for rid, row in _rows(engine).items()} == {str(i): f"N{i}" for i in range(5)}
