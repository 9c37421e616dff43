"""History mode (``history=True``): every version kept in ``<table>__versions``, ``<table>__history``
derived with ``valid_from``/``valid_to``; exact under reruns and out-of-order loads.

Same extracts as :mod:`tests.sql.test_semantics` (QBO invoices over 2026-12-01 UTC), on SQLite and
(with ``CLOUDELEMENTS_TEST_POSTGRES_URI``) PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow_provider_cloudelements.transfers.storage_to_sql import history as sql_history
from airflow_provider_cloudelements.transfers.storage_to_sql import rows as sql_rows
from airflow_provider_cloudelements.transfers.storage_to_sql.load import load_manifest
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import get_sql_hook, prepare_connection

from .conftest import Backend, qbo_invoice, run
from .test_semantics import DAY, _history, invoices, iso, ms

HISTORY_SELECT = (
    "SELECT record_id, seq, valid_from, valid_to, is_deleted, version_num, data FROM {table} "
    "WHERE instance_id = {p} ORDER BY record_id, seq"
)


def load(db: Backend, manifest: dict[str, Any], synced_at: datetime, **kwargs: Any) -> dict[str, Any]:
    """``load_manifest(..., history=True)`` at a chosen ``synced_at``."""
    hook, dialect = get_sql_hook(db.conn_id)
    conn = hook.get_conn()
    try:
        prepare_connection(conn, dialect)
        return load_manifest(
            conn,
            dialect,
            sql_rows.loadable_manifest(manifest),
            table_prefix=db.prefix,
            synced_at=synced_at,
            history=True,
            **kwargs,
        )
    finally:
        conn.close()


def history(db: Backend, instance_id: int = 12) -> dict[str, list[tuple[Any, ...]]]:
    """``{record_id: [(valid_from, valid_to, is_deleted, syncToken or None), ...]}`` in ``seq`` order."""
    table = sql_history.history_table(f"{db.prefix}quickbooks_invoices")
    p = "?" if db.name == "sqlite" else "%s"
    out: dict[str, list[tuple[Any, ...]]] = {}
    for rid, seq, start, end, deleted, _num, data in db.query(
        HISTORY_SELECT.format(table=f'"{table}"', p=p), (instance_id,)
    ):
        assert seq == len(out.get(rid, []))
        token = None if data is None else int(json.loads(data)["syncToken"])
        out.setdefault(rid, []).append((start, end, int(deleted), token))
    return out


def dump(db: Backend, name: str) -> list[tuple[Any, ...]]:
    """Every row of a side table (all columns, ``synced_at`` included)."""
    return sorted(db.query(f'SELECT * FROM "{name}"'), key=repr)


#: The history of :func:`tests.sql.test_semantics._history`'s first four extracts, whatever the order.
EXPECTED = {
    "1": [(iso(6), None, 0, 0)],
    "2": [(iso(6), iso(8), 0, 0), (iso(8), None, 0, 1)],
    # created 06:00; tombstone 08:30, then absent from the complete 11:00 snapshot: the later deletion
    # is kept, as in the raw table
    "3": [(iso(6), iso(11), 0, 0), (iso(11), None, 1, None)],
    # absent from the 11:00 snapshot (closed there), edited again at 11:30 (restored)
    "4": [(iso(6), iso(11), 0, 0), (iso(11), iso(11, 30), 1, None), (iso(11, 30), None, 0, 2)],
    "5": [(iso(8), None, 0, 0)],
    "6": [(iso(12), None, 0, 0)],
    # "77": a tombstone for an id never seen closes nothing: no history row
}


def test_out_of_order_loads_give_the_same_history(db: Backend, tmp_path: Path) -> None:
    extracts = _history(tmp_path)[:4]
    table = f"{db.prefix}quickbooks_invoices"
    versions = sql_history.versions_table(table)
    results = []
    for iid, order in enumerate(itertools.permutations(extracts), start=100):
        for day, manifest in enumerate(order):
            load(db, {**manifest, "instance_id": iid}, DAY + timedelta(days=day + 1))
        assert history(db, iid) == EXPECTED, order
        p = "?" if db.name == "sqlite" else "%s"
        results.append(
            db.query(
                f"SELECT record_id, version_key, version_num, updated_at, observed_at, is_deleted, deleted_at, data "
                f'FROM "{versions}" WHERE instance_id = {p} ORDER BY record_id, version_key',
                (iid,),
            )
        )
    assert all(r == results[0] for r in results)  # the versions table too, not only the derived history
    # every version staged, including the deletions: 1, 2 x2, 3 + tombstone + absence, 4 x2 + absence, 5, 6, 77
    assert len(results[0]) == 13


def test_rerun_writes_nothing(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    names = (table, sql_history.versions_table(table), sql_history.history_table(table))
    for day, manifest in enumerate(_history(tmp_path), start=1):
        first = load(db, manifest, DAY + timedelta(days=day))
        before = [dump(db, n) for n in names]
        again = load(db, manifest, DAY + timedelta(days=day, hours=12))
        assert [dump(db, n) for n in names] == before, manifest["path"]  # synced_at included
        assert (again["history_records"], again["history_rows"]) == (0, 0)
        assert first["history_records"] >= 0
    assert history(db) == EXPECTED  # the fifth extract (a v1 XCom) repeats a known version


def test_delete_closes_the_last_version_and_as_of_query(db: Backend, tmp_path: Path) -> None:
    v0 = qbo_invoice(1, updated_ms=ms(6), total=100.0)
    v1 = qbo_invoice(1, updated_ms=ms(8), sync=1, total=80.0)
    # loaded newest first: the deletion, then the edit, then the creation (each loses the ordering)
    load(db, invoices(tmp_path, "d", [], snapshot=iso(10), tombstones=[{"id": "1", "deleted_at": iso(9)}]), DAY)
    summary = load(db, invoices(tmp_path, "e", [v1], snapshot=iso(8, 30)), DAY)
    assert summary["rows_live"] == 0 and summary["history_records"] == 1  # the raw row stays a deletion
    load(db, invoices(tmp_path, "c", [v0], snapshot=iso(7)), DAY)
    assert history(db) == {"1": [(iso(6), iso(8), 0, 0), (iso(8), iso(9), 0, 1), (iso(9), None, 1, None)]}

    table = sql_history.history_table(f"{db.prefix}quickbooks_invoices")
    p = "?" if db.name == "sqlite" else "%s"
    as_of = (
        f'SELECT record_id, data FROM "{table}" WHERE instance_id = {p} AND valid_from <= {p} '
        f"AND (valid_to IS NULL OR valid_to > {p}) AND is_deleted = 0"
    )
    at_830 = db.query(as_of, (12, iso(8, 30), iso(8, 30)))
    assert [(rid, json.loads(data)["totalAmt"]) for rid, data in at_830] == [("1", 80.0)]
    assert db.query(as_of, (12, iso(7), iso(7)))[0][0] == "1"
    assert db.query(as_of, (12, iso(9), iso(9))) == []  # deleted at 09:00
    assert db.query(as_of, (12, iso(5), iso(5))) == []  # not created yet


def test_history_is_opt_in_through_the_operator(db: Backend, tmp_path: Path) -> None:
    table = f"{db.prefix}quickbooks_invoices"
    manifest = invoices(tmp_path, "a", [qbo_invoice(1, updated_ms=ms(6))], snapshot=iso(7))
    summary = run(db, manifest)
    assert "history_records" not in summary
    assert not db.table_exists(sql_history.versions_table(table))
    assert not db.table_exists(sql_history.history_table(table))
    summary = run(db, manifest, history=True)  # switched on later: the versions seen from then on
    assert (summary["inserted"], summary["history_records"], summary["history_rows"]) == (0, 1, 1)
    assert history(db) == {"1": [(iso(6), None, 0, 0)]}


def test_derive_history_orders_by_version_number_before_time() -> None:
    """Clock skew: syncToken 2 has an earlier updated time than syncToken 1; the version number wins
    and ``valid_from`` never goes back."""
    rows = [
        ("v:b", 2, iso(7), iso(9), 0, None, "{}"),
        ("v:a", 1, iso(8), iso(8), 0, None, "{}"),
        ("d:x", None, None, None, 1, iso(8, 30), None),  # d < K(v2): closes v1 only
    ]
    derived = sql_history.derive_history(rows)
    assert [(r[0], r[1], r[2], r[3], r[4]) for r in derived] == [
        (0, iso(8), iso(8, 30), 0, 1),
        (1, iso(8, 30), iso(8, 30), 1, None),
        (2, iso(8, 30), None, 0, 2),
    ]
