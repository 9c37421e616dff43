"""Time the SQL loader on N QuickBooks Online invoices: a first load and an identical rerun.

    .venv/bin/python benchmarks/sql_load.py [--records 20000] [--repeat 3] [--postgres URI]

Records come from the emulator's generator (the same shapes the bulk extract lands), written once
as NDJSON with a v2 manifest (``snapshot_at``, ``complete``); each repeat loads into a fresh SQLite
file (or fresh PostgreSQL tables) with
:func:`~airflow_provider_cloudelements.transfers.storage_to_sql.load.load_manifest`
and prints seconds for the load and for the rerun (which must write nothing). The last stdout line is
JSON: ``{"records", "backend", "load_s", "rerun_s", "load_cpu_s", "rerun_cpu_s"}`` (lists, one entry per
repeat; ``*_cpu_s`` is this process's CPU time, which for SQLite includes the database work and is
less disturbed by other load on the machine than wall time).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cloudelements_emulator.elements import ELEMENTS
from cloudelements_emulator.generator import generate

from airflow_provider_cloudelements.transfers.storage_to_sql import dialect as sql_dialect
from airflow_provider_cloudelements.transfers.storage_to_sql import rows as sql_rows
from airflow_provider_cloudelements.transfers.storage_to_sql.load import load_manifest
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import prepare_connection

ANCHOR_MS = 1_796_000_000_000  # 2026-11-30, fixed so that every run loads the same bytes


def write_extract(folder: Path, count: int) -> dict[str, Any]:
    """Write ``count`` invoices as NDJSON and return their (v2) manifest."""
    path = folder / "invoices.ndjson"
    with path.open("w", encoding="utf-8") as fh:
        for _seq, _created, _updated, record in generate(ELEMENTS["quickbooks"], "invoices", 12, 7, count, ANCHOR_MS):
            fh.write(json.dumps(record) + "\n")
    return {
        "element_key": "quickbooks",
        "instance_id": 12,
        "resource": "invoices",
        "path": path.as_uri(),
        "format": "ndjson",
        "records": count,
        "full_refresh": True,
        "window": {"start": None, "end": "2026-11-30T00:00:00+00:00", "full_refresh": True},
        "failed_records": 0,
        "manifest_version": 2,
        "snapshot_at": "2026-11-30T12:00:00.000Z",
        "complete": True,
        "naive_timezone": "UTC",
    }


def timed_load(
    conn: Any, dialect: sql_dialect.SqlDialect, manifest: dict[str, Any], prefix: str, day: int
) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this process)`` of one load (SQLite runs in-process)."""
    started, cpu = time.perf_counter(), time.process_time()
    load_manifest(
        conn,
        dialect,
        sql_rows.loadable_manifest(manifest),
        table_prefix=prefix,
        synced_at=datetime(2026, 12, day, tzinfo=timezone.utc),
    )
    return time.perf_counter() - started, time.process_time() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", default=None, help="postgresql:// URI (default: SQLite in a temp dir)")
    args = parser.parse_args(argv)
    load_s: list[tuple[float, float]] = []
    rerun_s: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory(prefix="ce-sql-bench-") as tmp:
        manifest = write_extract(Path(tmp), args.records)
        for i in range(args.repeat):
            prefix = f"bench_{uuid.uuid4().hex[:8]}_"
            if args.postgres:
                import psycopg2  # type: ignore[import-untyped]

                conn = psycopg2.connect(args.postgres)
                dialect = sql_dialect.POSTGRES
            else:
                conn = sqlite3.connect(str(Path(tmp) / f"bench{i}.db"))
                dialect = sql_dialect.SQLITE
            try:
                prepare_connection(conn, dialect)
                load_s.append(timed_load(conn, dialect, manifest, prefix, 1))
                rerun_s.append(timed_load(conn, dialect, manifest, prefix, 2))
                if args.postgres:
                    cur = conn.cursor()
                    cur.execute(f'DROP TABLE "{prefix}quickbooks_invoices"')
                    conn.commit()
            finally:
                conn.close()
            print(f"run {i + 1}: load {load_s[-1][0]:.2f} s, rerun {rerun_s[-1][0]:.2f} s", file=sys.stderr)
    print(
        json.dumps(
            {
                "records": args.records,
                "backend": "postgres" if args.postgres else "sqlite",
                "load_s": [round(v[0], 3) for v in load_s],
                "rerun_s": [round(v[0], 3) for v in rerun_s],
                "load_cpu_s": [round(v[1], 3) for v in load_s],
                "rerun_cpu_s": [round(v[1], 3) for v in rerun_s],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
