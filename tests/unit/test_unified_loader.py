"""The unified loader (``common_model.unified.load_manifests``) follows the loader's ordering rule:
later versions win, older ones never overwrite, tombstones beat older versions and are kept for ids
never loaded, a complete full refresh deletes by absence, reruns write nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from airflow_provider_cloudelements.common_model.unified import load_manifests


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
