"""Typed tables benchmark: raw SQLite insert vs the raw JSON loader vs the typed projection, one run.

    .venv/bin/python benchmarks/typed_bench.py --records 100000 [--postgres URI] [--duckdb] [--dlt] [--json out.json]

Data: ``--records`` QuickBooks Online invoices from the emulator's generator (1-3 lines each, the
shape Cloud Elements serves), landed once as NDJSON. Every variant runs in its own process (peak RSS
is the process's ``ru_maxrss``) on the same file, side by side:

- ``raw_insert``: the limit: read the file, take each line's id, ``executemany`` ``(id, json)`` into a
  fresh SQLite table in one transaction;
- ``loader``: the production raw loader (``transfers.storage_to_sql.load.load_manifest``) into a fresh SQLite file,
  then the same manifest again (``rerun``: nothing changed);
- ``typed``: :func:`airflow_provider_cloudelements.typed.project` on a copy of the loader's database
  (parent + ``__line`` child table), then a rerun of load + projection; ``typed_generic``: the same
  with the generic recursive flatten instead of the compiled per-shape flatteners (before/after);
- ``loader_history``: the raw loader with ``history=True`` (versions and history tables), then the rerun;
- ``dlt_duckdb`` (``--dlt``, needs the ``bench`` extra): dlt -> DuckDB with ``write_disposition="merge"``
  on ``id``, then the same file again;
- ``typed_postgres`` (``--postgres URI``): raw loader + projection into PostgreSQL, then the rerun;
- ``typed_duckdb`` (``--duckdb``): projection on DuckDB of a raw table bulk-copied from the loader's
  SQLite file (the raw loader stages row by row on DuckDB, far too slow to include), then a rerun.

Targets (issue 14): typed load >= 1/3 of the raw-insert rate, rerun >= 1/2 of it (both on SQLite).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ANCHOR_MS = 1_790_000_000_000


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _manifest(path: Path, records: int, instance_id: int = 12) -> dict[str, Any]:
    from airflow_provider_cloudelements.transfers.storage_to_sql import rows as sql_rows

    return sql_rows.loadable_manifest(
        {
            "element_key": "quickbooks",
            "instance_id": instance_id,
            "resource": "invoices",
            "path": path.as_uri(),
            "format": "ndjson",
            "records": records,
        }
    )


def _sqlite(path: Path) -> sqlite3.Connection:
    from airflow_provider_cloudelements.transfers.storage_to_sql import dialect as sql_dialect
    from airflow_provider_cloudelements.transfers.storage_to_sql.operator import prepare_connection

    conn = sqlite3.connect(path)
    prepare_connection(conn, sql_dialect.SQLITE)
    return conn


#: CPU seconds of this process for each timed call (the machine is shared: wall time is noisy).
CPU: list[float] = []


def _timed(fn: Any) -> tuple[float, Any]:
    """``(wall seconds, result)``; the call's CPU seconds are appended to :data:`CPU`."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    CPU.append(time.process_time() - cpu)
    return time.perf_counter() - start, result


# ------------------------------------------------------------------------------------------ workers
def worker_raw_insert(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_cloudelements.utils import jsonfast

    db = Path(spec["work"]) / "raw_insert.db"
    db.unlink(missing_ok=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, data TEXT NOT NULL)")

    def run() -> None:
        conn.execute("BEGIN")
        batch: list[tuple[str, str]] = []
        with open(spec["file"], "rb") as fh:
            for line in fh:
                text = line.decode()
                batch.append((str(jsonfast.loads(text)["id"]), text))
                if len(batch) >= 1000:
                    conn.executemany("INSERT INTO t VALUES (?, ?)", batch)
                    batch = []
        conn.executemany("INSERT INTO t VALUES (?, ?)", batch)
        conn.execute("COMMIT")

    seconds, _ = _timed(run)
    return {"seconds": seconds, "cpu_seconds": CPU[-1], "rss_mb": _rss_mb()}


def worker_loader(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_cloudelements.transfers.storage_to_sql import dialect as sql_dialect
    from airflow_provider_cloudelements.transfers.storage_to_sql.load import load_manifest

    db = Path(spec["work"]) / "loader.db"
    db.unlink(missing_ok=True)
    conn = _sqlite(db)
    manifest = _manifest(Path(spec["file"]), spec["records"])
    seconds, summary = _timed(lambda: load_manifest(conn, sql_dialect.SQLITE, manifest))
    cpu = CPU[-1]
    rss = _rss_mb()
    rerun, again = _timed(lambda: load_manifest(conn, sql_dialect.SQLITE, manifest))
    assert summary["inserted"] == spec["records"] and again["unchanged"] == spec["records"], (summary, again)
    conn.close()
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "rss_mb": rss,
        "rerun_seconds": rerun,
        "rerun_cpu_seconds": CPU[-1],
        "rerun_rss_mb": _rss_mb(),
    }


def _typed_run(
    conn: Any, dialect: Any, *, records: int, load: Any = None, rerun_load: Any = None, prefix: str = "ce_"
) -> dict[str, Any]:
    """Time (load +) projection, then the rerun of both (nothing changed: the projection writes nothing)."""
    from airflow_provider_cloudelements.typed import project

    def proj() -> dict[str, Any]:
        return project(
            conn, dialect, element_key="quickbooks", resource="invoices", instance_id=12, table_prefix=prefix
        )

    load_s = _timed(load)[0] if load is not None else None
    project_s, summary = _timed(proj)
    project_cpu = CPU[-1]
    assert summary["projected"] == records, summary
    rss = _rss_mb()
    rerun_load_s = _timed(rerun_load)[0] if rerun_load is not None else None
    rerun_project_s, again = _timed(proj)
    assert again["projected"] == 0, again
    return {
        "load_seconds": load_s,
        "seconds": project_s,
        "cpu_seconds": project_cpu,
        "child_rows": summary["child_rows"],
        "rss_mb": rss,
        "rerun_load_seconds": rerun_load_s,
        "rerun_project_seconds": rerun_project_s,
        "rerun_project_cpu_seconds": CPU[-1],
        "rerun_rss_mb": _rss_mb(),
    }


def worker_typed(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_cloudelements.transfers.storage_to_sql import dialect as sql_dialect
    from airflow_provider_cloudelements.transfers.storage_to_sql.load import load_manifest

    db = Path(spec["work"]) / "typed.db"
    shutil.copyfile(Path(spec["work"]) / "loader.db", db)  # the raw table exactly as the loader left it
    conn = _sqlite(db)
    manifest = _manifest(Path(spec["file"]), spec["records"])
    out = _typed_run(
        conn,
        sql_dialect.SQLITE,
        records=spec["records"],
        rerun_load=lambda: load_manifest(conn, sql_dialect.SQLITE, manifest),
    )
    conn.close()
    return out


_PG_PREFIX = "cebench_"


def _pg_cleanup(conn: Any) -> None:
    cur = conn.cursor()
    cur.execute("SELECT tablename FROM pg_tables WHERE tablename LIKE %s", (_PG_PREFIX + "%",))
    for (name,) in cur.fetchall():
        cur.execute(f'DROP TABLE IF EXISTS "{name}"')
    cur.execute("SELECT 1 FROM information_schema.tables WHERE table_name = 'ce_schema_history'")
    if cur.fetchall():
        cur.execute("DELETE FROM ce_schema_history WHERE table_name LIKE %s", (_PG_PREFIX + "%",))
    conn.commit()


def worker_typed_postgres(spec: dict[str, Any]) -> dict[str, Any]:
    import psycopg

    from airflow_provider_cloudelements.transfers.storage_to_sql import dialect as sql_dialect
    from airflow_provider_cloudelements.transfers.storage_to_sql.load import load_manifest
    from airflow_provider_cloudelements.transfers.storage_to_sql.operator import prepare_connection

    conn = psycopg.connect(spec["postgres"])
    prepare_connection(conn, sql_dialect.POSTGRES)
    _pg_cleanup(conn)
    manifest = _manifest(Path(spec["file"]), spec["records"])

    def load() -> Any:
        return load_manifest(conn, sql_dialect.POSTGRES, manifest, table_prefix=_PG_PREFIX)

    try:
        return _typed_run(
            conn, sql_dialect.POSTGRES, records=spec["records"], load=load, rerun_load=load, prefix=_PG_PREFIX
        )
    finally:
        _pg_cleanup(conn)
        conn.close()


def worker_duckdb_setup(spec: dict[str, Any]) -> dict[str, Any]:
    """Bulk-copy the loader's raw table into a DuckDB file (own process: its memory is not counted)."""
    import duckdb
    import pyarrow as pa

    from airflow_provider_cloudelements.transfers.storage_to_sql import dialect as sql_dialect
    from airflow_provider_cloudelements.transfers.storage_to_sql import statements as sql_statements

    db = Path(spec["work"]) / "typed.duckdb"
    db.unlink(missing_ok=True)
    src = sqlite3.connect(Path(spec["work"]) / "loader.db")
    names = [
        "instance_id",
        "record_id",
        "updated_at",
        "is_deleted",
        "data",
        "synced_at",
        "version_num",
        "observed_at",
        "deleted_at",
    ]
    rows = src.execute(f"SELECT {', '.join(names)} FROM ce_quickbooks_invoices").fetchall()
    src.close()
    conn = duckdb.connect(str(db))
    conn.execute(
        sql_statements.create_table_sql(sql_dialect.POSTGRES, "ce_quickbooks_invoices").replace(' COLLATE "C"', "")
    )
    types = [pa.int64(), pa.string(), pa.string(), pa.int64(), pa.string(), pa.string(), pa.int64()]
    types += [pa.string(), pa.string()]
    batch = pa.table(
        [pa.array(col, type=t) for col, t in zip(zip(*rows, strict=True), types, strict=True)], names=names
    )
    conn.register("bench_raw", batch)
    conn.execute(f"INSERT INTO ce_quickbooks_invoices ({', '.join(names)}) SELECT * FROM bench_raw")
    conn.unregister("bench_raw")
    conn.close()
    return {"rows": len(rows)}


def worker_typed_duckdb(spec: dict[str, Any]) -> dict[str, Any]:
    import duckdb

    conn = duckdb.connect(str(Path(spec["work"]) / "typed.duckdb"))
    try:
        return _typed_run(conn, "duckdb", records=spec["records"])
    finally:
        conn.close()


def worker_typed_generic(spec: dict[str, Any]) -> dict[str, Any]:
    """``typed`` with the generic recursive flatten (before the compiled per-shape flatteners)."""
    from airflow_provider_cloudelements.typed import projection

    projection.COMPILED_FLATTENERS = False
    return worker_typed(spec)


def worker_loader_history(spec: dict[str, Any]) -> dict[str, Any]:
    """The raw loader with ``history=True`` (versions + history tables) into a fresh SQLite file, then
    the rerun (writes nothing)."""
    from airflow_provider_cloudelements.transfers.storage_to_sql import dialect as sql_dialect
    from airflow_provider_cloudelements.transfers.storage_to_sql.load import load_manifest

    db = Path(spec["work"]) / "history.db"
    db.unlink(missing_ok=True)
    conn = _sqlite(db)
    manifest = _manifest(Path(spec["file"]), spec["records"])
    seconds, summary = _timed(lambda: load_manifest(conn, sql_dialect.SQLITE, manifest, history=True))
    cpu, rss = CPU[-1], _rss_mb()
    rerun, again = _timed(lambda: load_manifest(conn, sql_dialect.SQLITE, manifest, history=True))
    assert summary["history_rows"] == spec["records"] and again["history_records"] == 0, (summary, again)
    conn.close()
    return {"seconds": seconds, "cpu_seconds": cpu, "rss_mb": rss, "rerun_seconds": rerun, "rerun_rss_mb": _rss_mb()}


def worker_dlt_duckdb(spec: dict[str, Any]) -> dict[str, Any]:
    """dlt (``bench`` extra) -> DuckDB, ``write_disposition="merge"`` on ``id``: the same file, then again."""
    import dlt

    from airflow_provider_cloudelements.utils import jsonfast

    work = Path(spec["work"]) / "dlt"
    os.environ["DLT_DATA_DIR"] = str(work / "data")
    os.environ["DLT_PIPELINE_DIR"] = str(work / "pipelines")

    def records() -> Any:
        with open(spec["file"], "rb") as fh:
            for line in fh:
                yield jsonfast.loads(line)

    pipeline = dlt.pipeline(
        pipeline_name="typed_bench",
        destination=dlt.destinations.duckdb(str(work / "dlt.duckdb")),
        dataset_name="ce",
        pipelines_dir=str(work / "pipelines"),
    )

    def run() -> Any:
        return pipeline.run(records(), table_name="invoices", write_disposition="merge", primary_key="id")

    seconds, _ = _timed(run)
    cpu, rss = CPU[-1], _rss_mb()
    rerun, _ = _timed(run)
    return {"seconds": seconds, "cpu_seconds": cpu, "rss_mb": rss, "rerun_seconds": rerun, "rerun_rss_mb": _rss_mb()}


WORKERS = {
    "typed_generic": worker_typed_generic,
    "loader_history": worker_loader_history,
    "dlt_duckdb": worker_dlt_duckdb,
    "raw_insert": worker_raw_insert,
    "loader": worker_loader,
    "typed": worker_typed,
    "typed_postgres": worker_typed_postgres,
    "duckdb_setup": worker_duckdb_setup,
    "typed_duckdb": worker_typed_duckdb,
}


# ------------------------------------------------------------------------------------------ driver
def _generate(path: Path, count: int) -> int:
    from cloudelements_emulator import generator
    from cloudelements_emulator.elements import ELEMENTS

    from airflow_provider_cloudelements.utils import jsonfast

    lines = 0
    with path.open("w", encoding="utf-8") as fh:
        for *_, record in generator.generate(ELEMENTS["quickbooks"], "invoices", 12, 7, count, ANCHOR_MS):
            fh.write(jsonfast.dumps(record) + "\n")
            lines += len(record["line"])
    return lines


def _run(variant: str, spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", variant, json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("CLOUDELEMENTS_TEST_POSTGRES_URI"))
    parser.add_argument("--duckdb", action="store_true")
    parser.add_argument("--dlt", action="store_true", help="dlt -> DuckDB merge baseline (needs the bench extra)")
    parser.add_argument("--skip", help="comma-separated variants to leave out (e.g. typed_generic)")
    parser.add_argument("--json", help="write the results as JSON to this path")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(WORKERS[args.worker](json.loads(args.spec))))
        return 0

    work = Path(tempfile.mkdtemp(prefix="ce-typed-bench-"))
    try:
        file = work / "invoices.ndjson"
        gen_s, lines = _timed(lambda: _generate(file, args.records))
        spec = {"work": str(work), "file": str(file), "records": args.records, "postgres": args.postgres}
        variants = ["raw_insert", "loader", "typed_generic", "typed", "loader_history"]
        if args.postgres:
            variants.append("typed_postgres")
        if args.duckdb:
            variants += ["duckdb_setup", "typed_duckdb"]
        if args.dlt:
            variants.append("dlt_duckdb")
        if args.skip:
            variants = [v for v in variants if v not in args.skip.split(",")]
        results: dict[str, Any] = {
            "records": args.records,
            "line_rows": lines,
            "file_mb": round(file.stat().st_size / 2**20, 1),
            "generate_seconds": round(gen_s, 2),
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "cpus": os.cpu_count(),
        }
        for variant in variants:
            results[variant] = _run(variant, spec)
            print(f"{variant}: {json.dumps(results[variant])}", file=sys.stderr, flush=True)  # progress
        print(report(results))
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def report(r: dict[str, Any]) -> str:
    """Markdown table of one run, with the issue-14 targets."""
    n = r["records"]

    def rate(seconds: float | None) -> str:
        return "-" if not seconds else f"{n / seconds:,.0f}"

    raw = r["raw_insert"]["seconds"]
    out = [
        f"{n:,} QBO invoices ({r['line_rows']:,} lines, {r['file_mb']} MB NDJSON); Python {r['python']}, "
        f"SQLite {r['sqlite']}, {r['cpus']} CPUs; one run each, own process",
        "",
        "| variant | seconds | client CPU s | invoices/s | x raw | peak RSS MB | rerun s | rerun invoices/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| raw SQLite executemany (id, json) | {raw:.2f} | {r['raw_insert']['cpu_seconds']:.2f} | {rate(raw)} | 1.0 "
        f"| {r['raw_insert']['rss_mb']:.0f} | - | - |",
    ]
    lo = r["loader"]
    out.append(
        f"| raw JSON loader (load_manifest) | {lo['seconds']:.2f} | {lo['cpu_seconds']:.2f} | {rate(lo['seconds'])} "
        f"| {lo['seconds'] / raw:.1f} "
        f"| {lo['rss_mb']:.0f} | {lo['rerun_seconds']:.2f} | {rate(lo['rerun_seconds'])} |"
    )
    for key, label in (
        ("loader_history", "raw JSON loader, history=True (versions + history)"),
        ("dlt_duckdb", "dlt -> DuckDB merge (baseline)"),
    ):
        h = r.get(key)
        if h:
            out.append(
                f"| {label} | {h['seconds']:.2f} | {h['cpu_seconds']:.2f} | {rate(h['seconds'])} "
                f"| {h['seconds'] / raw:.1f} | {h['rss_mb']:.0f} | {h['rerun_seconds']:.2f} "
                f"| {rate(h['rerun_seconds'])} |"
            )
    for key, label in (
        ("typed_generic", "SQLite, generic flatten (before)"),
        ("typed", "SQLite"),
        ("typed_postgres", "PostgreSQL"),
        ("typed_duckdb", "DuckDB"),
    ):
        t = r.get(key)
        if not t:
            continue
        out.append(
            f"| typed projection only, {label} | {t['seconds']:.2f} | {t['cpu_seconds']:.2f} | {rate(t['seconds'])} "
            f"| {t['seconds'] / raw:.1f} "
            f"| {t['rss_mb']:.0f} | {t['rerun_project_seconds']:.3f} | {rate(t['rerun_project_seconds'])} |"
        )
        if key == "typed_generic":
            continue
        load = t.get("load_seconds") or (lo["seconds"] if key == "typed" else None)
        rerun_load = t.get("rerun_load_seconds")
        if load is not None and rerun_load is not None:
            total, rerun_total = load + t["seconds"], rerun_load + t["rerun_project_seconds"]
            out.append(
                f"| raw loader + typed projection, {label} | {total:.2f} | - | {rate(total)} | {total / raw:.1f} "
                f"| {max(t['rss_mb'], lo['rss_mb'] if key == 'typed' else 0):.0f} | {rerun_total:.2f} "
                f"| {rate(rerun_total)} |"
            )
    t = r["typed"]
    cpu_raw = r["raw_insert"]["cpu_seconds"]
    load_total = lo["seconds"] + t["seconds"]
    rerun_total = t["rerun_load_seconds"] + t["rerun_project_seconds"]
    out += [
        "",
        "Targets (SQLite, rates against the raw insert):",
        f"- typed projection >= 1/3 raw: {raw / t['seconds']:.2f} of raw rate -> "
        f"{'met' if t['seconds'] <= 3 * raw else 'missed'}; with the raw load included: "
        f"{raw / load_total:.2f} -> {'met' if load_total <= 3 * raw else 'missed'}",
        f"- rerun >= 1/2 raw: projection rerun {raw / max(t['rerun_project_seconds'], 1e-9):.1f}x raw rate -> "
        f"{'met' if t['rerun_project_seconds'] <= 2 * raw else 'missed'}; load + projection rerun "
        f"{raw / rerun_total:.2f} -> {'met' if rerun_total <= 2 * raw else 'missed'}",
        f"- by client CPU time (robust to a shared machine): projection {cpu_raw / t['cpu_seconds']:.2f} of raw, "
        f"loader {cpu_raw / lo['cpu_seconds']:.2f} of raw, loader + projection "
        f"{cpu_raw / (lo['cpu_seconds'] + t['cpu_seconds']):.2f} of raw",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
