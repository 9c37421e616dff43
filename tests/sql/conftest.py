"""Fixtures of the SQL-loader tests: a database per backend and helpers to land NDJSON files.

Every test that takes ``db`` runs against SQLite (a fresh file in ``tmp_path``) and, when
``CLOUDELEMENTS_TEST_POSTGRES_URI`` is set (``eval "$(bash scripts/ci_postgres.sh start)"``), against
PostgreSQL too; the PostgreSQL variant is marked ``postgres`` and skipped otherwise. Connections are
given to Airflow through ``AIRFLOW_CONN_<ID>`` environment variables, as in production.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.transfers.storage_to_sql import rows as sql_rows
from airflow_provider_cloudelements.transfers.storage_to_sql.load import load_manifest

# bound at import: tests may monkeypatch the module attribute, teardown must still reach the database
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import (
    CloudElementsSqlUpsertOperator,
    get_sql_hook,
    prepare_connection,
)

POSTGRES_URI_ENV = "CLOUDELEMENTS_TEST_POSTGRES_URI"
COLUMNS = "instance_id, record_id, updated_at, is_deleted, data, synced_at, version_num, observed_at, deleted_at"


@dataclass
class Backend:
    """A test database reachable as Airflow connection ``conn_id``.

    :param name: ``sqlite`` or ``postgres``.
    :param conn_id: the Airflow connection id (set through ``AIRFLOW_CONN_<ID>``).
    :param prefix: table prefix unique to the test (PostgreSQL is shared between tests).
    """

    name: str
    conn_id: str
    prefix: str
    created: list[str] = field(default_factory=list)

    def _hook(self) -> Any:
        return get_sql_hook(self.conn_id)[0]

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on a fresh connection and return its rows as plain tuples."""
        conn = self._hook().get_conn()
        try:
            cur = conn.cursor()
            cur.execute(sql, tuple(params))
            rows = [tuple(r) for r in cur.fetchall()] if cur.description else []
            conn.commit()
            return rows
        finally:
            conn.close()

    def table_exists(self, table: str) -> bool:
        if self.name == "sqlite":
            rows = self.query("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        else:
            rows = self.query("SELECT tablename FROM pg_tables WHERE tablename = %s", (table,))
        return bool(rows)

    def dump(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of ``table``, ordered, all columns (``[]`` when the table does not exist)."""
        if not self.table_exists(table):
            return []
        return self.query(f'SELECT {COLUMNS} FROM "{table}" ORDER BY instance_id, record_id')

    def rows(self, table: str, instance_id: int) -> dict[str, dict[str, Any]]:
        """``{record_id: {"updated_at", "is_deleted", "data" (parsed), "raw", "synced_at", "version_num",
        "observed_at", "deleted_at"}}`` of one instance."""
        out: dict[str, dict[str, Any]] = {}
        for iid, rid, updated_at, is_deleted, data, synced_at, version, observed, deleted in self.dump(table):
            if iid == instance_id:
                out[rid] = {
                    "updated_at": updated_at,
                    "is_deleted": int(is_deleted),
                    "data": json.loads(data),
                    "raw": data,
                    "synced_at": synced_at,
                    "version_num": None if version is None else int(version),
                    "observed_at": observed,
                    "deleted_at": deleted,
                }
        return out

    def live(self, table: str, instance_id: int) -> dict[str, Any]:
        """``{record_id: parsed data}`` of the rows of one instance that are not deleted."""
        return {rid: r["data"] for rid, r in self.rows(table, instance_id).items() if not r["is_deleted"]}


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def db(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """A database as an Airflow connection, per backend (see the module docstring)."""
    prefix = f"ce_{uuid.uuid4().hex[:8]}_"
    if request.param == "sqlite":
        monkeypatch.setenv(
            "AIRFLOW_CONN_CE_TEST_DB", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "load.db")})
        )
        yield Backend("sqlite", "ce_test_db", prefix)
        return
    uri = os.environ.get(POSTGRES_URI_ENV)
    if not uri:
        pytest.skip(f"{POSTGRES_URI_ENV} not set (start a server with scripts/ci_postgres.sh)")
    monkeypatch.setenv("AIRFLOW_CONN_CE_TEST_DB", uri)
    backend = Backend("postgres", "ce_test_db", prefix)
    yield backend
    for (name,) in backend.query("SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (prefix + "%",)):
        backend.query(f'DROP TABLE IF EXISTS "{name}"')


def run(db: Backend, manifest: Any, **kwargs: Any) -> Any:
    """Run the operator as a task would (``execute`` with an empty context)."""
    op = CloudElementsSqlUpsertOperator(
        task_id="load", manifest=manifest, conn_id=db.conn_id, table_prefix=db.prefix, **kwargs
    )
    return op.execute(context={})  # type: ignore[arg-type]


def run_at(db: Backend, manifest: dict[str, Any], synced_at: datetime) -> dict[str, Any]:
    """Call the load function directly with a chosen ``synced_at`` (to prove reruns write nothing)."""
    hook, dialect = get_sql_hook(db.conn_id)
    conn = hook.get_conn()
    try:
        prepare_connection(conn, dialect)
        return load_manifest(
            conn, dialect, sql_rows.loadable_manifest(manifest), table_prefix=db.prefix, synced_at=synced_at
        )
    finally:
        conn.close()


def counts(summary: dict[str, Any]) -> tuple[int, ...]:
    """``(inserted, updated, unchanged, deleted, rows_live, rows_total)`` of a load summary."""
    return tuple(summary[k] for k in ("inserted", "updated", "unchanged", "deleted", "rows_live", "rows_total"))


def write_ndjson(path: Path, records: Sequence[Any], *, raw_lines: dict[int, str] | None = None) -> str:
    """Write ``records`` one JSON per line (``raw_lines`` inserts verbatim lines at those indexes).

    :returns: the file's ``file://`` URI, as the extract operators put it in manifests.
    """
    lines = [json.dumps(r) for r in records]
    for index, text in sorted((raw_lines or {}).items()):
        lines.insert(index, text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path.as_uri()


def make_manifest(
    element_key: str,
    resource: str,
    uri: str,
    records: int | None,
    *,
    instance_id: int = 12,
    full_refresh: bool = False,
    deleted_path: str | None = None,
    window_end: str | None = None,
    snapshot_at: str | None = None,
    complete: bool | None = None,
    naive_timezone: str | None = None,
    failed_records: int = 0,
) -> dict[str, Any]:
    """A manifest shaped like the extract operators' XCom: v1 (as before manifest v2) unless
    ``snapshot_at`` is given, then v2 (``manifest_version``, ``snapshot_at``, ``complete``,
    ``naive_timezone``; ``complete`` defaults to ``full_refresh and not failed_records``)."""
    manifest: dict[str, Any] = {
        "element_key": element_key,
        "instance_id": instance_id,
        "resource": resource,
        "path": uri,
        "format": "ndjson",
        "records": records,
        "bytes": 0,
        "job_id": "17",
        "mode": "bulk",
        "full_refresh": full_refresh,
        "window": {"start": None, "end": window_end},
        "failed_records": failed_records,
        "errors_path": None,
        "deleted_path": deleted_path,
    }
    if snapshot_at is not None:
        manifest["manifest_version"] = 2
        manifest["snapshot_at"] = snapshot_at
        manifest["complete"] = (full_refresh and not failed_records) if complete is None else complete
        manifest["naive_timezone"] = naive_timezone or "UTC"
    elif naive_timezone is not None:
        manifest["naive_timezone"] = naive_timezone
    return manifest


# ---- record shapes (reference §3.5), written by hand -------------------------------------------------


def qbo_invoice(num: int, *, updated_ms: int, sync: int = 0, total: float = 100.0, **extra: Any) -> dict[str, Any]:
    """A QuickBooks Online invoice: ``id`` is ``<id>|<syncToken>``, times are epoch milliseconds."""
    return {
        "id": f"{num}|{sync}",
        "syncToken": str(sync),
        "docNumber": f"10{num}",
        "customerRef": {"value": "58", "name": "Doe, Jane"},
        "line": [
            {
                "amount": total,
                "detailType": "SALES_ITEM_LINE_DETAIL",
                "salesItemLineDetail": {"itemRef": {"value": "1"}, "qty": 1, "unitPrice": total},
            }
        ],
        "totalAmt": total,
        "balance": total,
        "currencyRef": {"value": "USD"},
        "metaData": {"createTime": 1415131437000, "lastUpdatedTime": updated_ms},
        "domain": "QBO",
        "sparse": False,
        **extra,
    }


def qbo_customer(num: int, *, updated_ms: int, active: bool = True) -> dict[str, Any]:
    """A QuickBooks Online customer (soft delete: ``active: false``)."""
    return {
        "id": f"{num}|0",
        "syncToken": "0",
        "displayName": f"Doe {num}, Jane",
        "primaryEmailAddr": {"address": f"jane{num}@samplename.com"},
        "balance": 0,
        "active": active,
        "taxable": False,
        "domain": "QBO",
        "metaData": {"createTime": 1415131437000, "lastUpdatedTime": updated_ms},
    }


def qbe_customer(
    list_id: str, *, modified: str, active: str = "true", edit_sequence: str = "1484948017"
) -> dict[str, Any]:
    """A QuickBooks Enterprise list record: ``ListID``, ``TimeModified`` with offset, ``IsActive``."""
    return {
        "ListID": list_id,
        "TimeCreated": "2017-01-20T16:33:37-08:00",
        "TimeModified": modified,
        "EditSequence": edit_sequence,
        "Name": "Blue, Dale",
        "IsActive": active,
        "Balance": "15.00",
    }


def qbe_invoice(
    txn_id: str, *, modified: str, amount: str = "15.00", edit_sequence: str = "1484948017"
) -> dict[str, Any]:
    """A QuickBooks Enterprise transaction: ``TxnID``, no ``IsActive``; amounts are strings."""
    return {
        "TxnID": txn_id,
        "TimeCreated": "2017-01-20T16:33:37-08:00",
        "TimeModified": modified,
        "EditSequence": edit_sequence,
        "CustomerRef": {"FullName": "Blue, Dale"},
        "InvoiceLineRet": [
            {
                "ItemRef": {"FullName": "Deposit"},
                "Desc": "Deposit",
                "Quantity": "3",
                "Rate": "5.00",
                "Amount": amount,
                "SalesTaxCodeRef": {"FullName": "Non"},
            }
        ],
    }


def fb_invoice(num: int, *, updated: str, vis_state: int = 0, amount: str = "100.00") -> dict[str, Any]:
    """A FreshBooks invoice: ``id``, ``updated`` local ``yyyy-MM-dd HH:mm:ss``, ``vis_state`` 0/1/2."""
    return {
        "id": num,
        "invoiceid": num,
        "customerid": 12,
        "invoice_number": f"{num:07d}",
        "status": 2,
        "vis_state": vis_state,
        "amount": {"amount": amount, "code": "USD"},
        "created_at": "2024-01-05 10:00:00",
        "updated": updated,
    }
