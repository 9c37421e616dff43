"""One measured variant per child process (so peak RSS is per variant, not cumulative).

    python benchmarks/workers.py '<json spec>'

The spec names the variant (``kind``) and the emulator it talks to; the last stdout line is a JSON
result: ``records``, ``bytes``, ``seconds`` (the measured phase only, imports and interpreter start
excluded), ``cpu_s`` (user+sys of this process during the phase), ``emulator_cpu_s`` (user+sys of
the emulator process during the same phase, read with psutil), ``rss_base_mb`` (RSS once imports
and setup are done), ``peak_rss_mb`` (``ru_maxrss`` of this process: the whole life, imports
included) and variant-specific extras. Nothing here asserts a wall-clock limit: run.py only reports.

Imports are local to each variant so a baseline does not pay for (or get measured with) Airflow.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _hub(spec: dict[str, Any]) -> tuple[str, dict[str, str]]:
    base = spec["base_url"]
    auth = f"User {spec['user_secret']}, Organization {spec['org_secret']}, Element {spec['token']}"
    return base + "/hubs/finance", {"Authorization": auth}


def _count_lines(path: str) -> int:
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            n += chunk.count(b"\n")
    return n


# ---------------------------------------------------------------------------------------- airflow
def _airflow_env(spec: dict[str, Any]) -> None:
    os.environ.setdefault("AIRFLOW_HOME", os.path.join(spec["work"], "airflow-home"))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    os.environ["AIRFLOW_CONN_CLOUDELEMENTS_BENCH"] = json.dumps(
        {
            "conn_type": "cloudelements",
            "host": spec["base_url"],
            "extra": {
                "user_secret": spec["user_secret"],
                "organization_secret": spec["org_secret"],
                "instance_id": spec["instance_id"],
                "page_size": spec.get("page_size", 200),
                # The emulator has no rate limit; the client budget (500 req/min by default) would
                # otherwise cap a paged pull at 500 pages/min. Documented in RESULTS.md.
                "max_requests_per_minute": spec.get("max_requests_per_minute", 1_000_000),
                "max_concurrent_requests": spec.get("max_concurrent_requests", 10),
            },
        }
    )


class _TI:
    """The only part of a TaskInstance the extract operators touch in sync mode."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def _context() -> dict[str, Any]:
    # full refresh, no data interval, no state store / outlet events: the plain sync execute path
    return {"ti": _TI(), "task_state_store": None, "outlet_events": None}


def _profiled(spec: dict[str, Any], fn):
    """Run ``fn()``; with ``spec["profile"]`` under pyinstrument, text report to that path."""
    if not spec.get("profile"):
        return fn()
    from pyinstrument import Profiler

    prof = Profiler(interval=0.001)
    prof.start()
    try:
        return fn()
    finally:
        prof.stop()
        with open(spec["profile"], "w") as fh:
            fh.write(prof.output_text(unicode=False, color=False, show_all=False))


def _apply_patches(spec: dict[str, Any]) -> list[str]:
    """Local experiments NOT shipped in the provider, on a COPY of the hot path (monkeypatched in
    this process only). Shipped since commit 1c663cb and therefore no longer experiments: 1 MiB
    download chunks, batched paged writes, one pooled async client per hook."""
    applied = []
    for name in spec.get("patches", []):
        if name == "orjson":
            _patch_orjson()
        else:
            raise SystemExit(f"unknown patch {name}")
        applied.append(name)
    return applied


def _patch_orjson() -> None:
    """Experiment ``orjson``: ``orjson.loads`` for page bodies (``CloudElementsHook._json``) and
    ``orjson.dumps`` for the NDJSON lines of ``CloudElementsPagedExtractOperator.execute``. The
    execute copy is the shipped one (batches of ``WRITE_BATCH_RECORDS`` lines, one write each) with
    only the encoder changed; orjson's output is the same compact UTF-8 as
    ``json.dumps(separators=(",", ":"), ensure_ascii=False)``."""
    import orjson

    import airflow_provider_cloudelements.hooks.cloudelements as hook_mod
    from airflow_provider_cloudelements.operators import extract as ex
    from airflow_provider_cloudelements.transfers.landing import ProgressLogger, staged_file

    def _json(self, resp):  # same contract as CloudElementsHook._json for valid bodies
        content = resp.content
        if not content or not content.strip():
            return None
        return orjson.loads(content)

    hook_mod.CloudElementsHook._json = _json

    def execute(self, context):
        instance_id, element_key, window, target = self._resolve(context)
        spec = ex.get_element(element_key)
        where = self._where_for(element_key, window)
        day_precision = spec.ceql_date_format == "date" and (window.start is not None or window.end is not None)
        progress = ProgressLogger(f"Paged extract {element_key}/{self.resource}", logger=self.log)
        records = nbytes = 0
        batch: list[bytes] = []
        with staged_file(target, "wb") as (handle, publish):
            sink = handle if self.output_format == "ndjson" else ex._ParquetSink(handle)
            for record in self.hook.iter_records(
                self.resource, where=where, page_size=self.page_size, reconcile_total=self.reconcile_total
            ):
                if day_precision and not ex._in_window(record, element_key, window):
                    continue
                batch.append(orjson.dumps(record))
                if len(batch) >= ex.WRITE_BATCH_RECORDS:
                    data = b"\n".join(batch) + b"\n"
                    sink.write(data)
                    nbytes += len(data)
                    records += len(batch)
                    batch.clear()
                    progress(records, nbytes)
            if batch:
                data = b"\n".join(batch) + b"\n"
                sink.write(data)
                nbytes += len(data)
                records += len(batch)
            if isinstance(sink, ex._ParquetSink):
                sink.close()
            publish()
        manifest = self._manifest(
            instance_id=instance_id,
            element_key=element_key,
            window=window,
            target=target,
            records=records,
            nbytes=nbytes,
            job_id=None,
        )
        return self._publish_manifest(context, manifest)

    ex.CloudElementsPagedExtractOperator.execute = execute


class _EmuCPU:
    """The emulator process's CPU seconds (user+sys), read with psutil around a measured phase."""

    def __init__(self, spec: dict[str, Any]) -> None:
        import psutil

        self.ps = psutil.Process(spec["emulator_pid"]) if spec.get("emulator_pid") else None

    def __call__(self) -> float:
        if self.ps is None:
            return 0.0
        t = self.ps.cpu_times()
        return t.user + t.system


def _fresh_job(spec: dict[str, Any], session: Any) -> tuple[str, float]:
    """Submit a bulk query and poll its status every 0.1 s, as the operator does (``poll_interval=0.1``),
    so the download starts right after the emulator finished writing the job's snapshot: the same
    page-cache / writeback state the operator downloads in. Untimed (reported as ``job_s``)."""
    hub, headers = _hub(spec)
    t0 = time.perf_counter()
    r = session.post(f"{hub}/bulk/query", headers=headers, params={"q": "select * from invoices"})
    r.raise_for_status()
    job = str(r.json()["id"])
    while True:
        status = session.get(f"{hub}/bulk/{job}/status", headers=headers).json()["status"]
        if status in ("COMPLETED", "COMPLETE"):
            return job, time.perf_counter() - t0
        if status in ("FAILED", "CANCELLED", "ABORTED"):
            raise RuntimeError(f"bulk job {job}: {status}")
        time.sleep(0.1)


def bulk_operator(spec: dict[str, Any]) -> dict[str, Any]:
    """``CloudElementsBulkExtractOperator.execute`` (sync mode) end to end, download phase timed too."""
    _airflow_env(spec)
    from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
    from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator

    patches = _apply_patches(spec)
    emu = _EmuCPU(spec)
    phases: dict[str, float] = {}
    original = CloudElementsHook.download_bulk

    def timed_download(self, *args, **kwargs):  # measurement only: same call, timed
        e0, t0 = emu(), time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            phases["download_s"] = time.perf_counter() - t0
            phases["emulator_cpu_download_s"] = emu() - e0

    CloudElementsHook.download_bulk = timed_download  # type: ignore[method-assign]
    op = CloudElementsBulkExtractOperator(
        task_id="bench_bulk",
        resource="invoices",
        element_key="quickbooks",
        cloudelements_conn_id="cloudelements_bench",
        output_base="file://" + spec["out_dir"],
        full_refresh=True,
        deferrable=False,
        poll_interval=0.1,
    )
    ctx = _context()
    _ = op.hook.settings  # resolve the connection outside the timed phase (one env lookup)
    base = _rss_mb()
    e0, c0, t0 = emu(), _cpu(), time.perf_counter()
    manifest = _profiled(spec, lambda: op.execute(ctx))
    seconds, cpu, emu_cpu = time.perf_counter() - t0, _cpu() - c0, emu() - e0
    lines = _count_lines(manifest["path"][len("file://") :]) if spec.get("verify") else manifest["records"]
    return {
        "records": manifest["records"],
        "bytes": manifest["bytes"],
        "seconds": seconds,
        "download_s": phases.get("download_s"),
        "cpu_s": cpu,
        "emulator_cpu_s": emu_cpu,
        "emulator_cpu_download_s": phases.get("emulator_cpu_download_s"),
        "rss_base_mb": base,
        "verified_lines": lines,
        "patches": patches,
    }


def paged_operator(spec: dict[str, Any]) -> dict[str, Any]:
    """``CloudElementsPagedExtractOperator.execute``: ``hook.iter_records`` → NDJSON file."""
    _airflow_env(spec)
    from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import (
        CloudElementsPagedExtractOperator,
    )

    patches = _apply_patches(spec)
    op = CloudElementsPagedExtractOperator(
        task_id="bench_paged",
        resource="invoices",
        element_key="quickbooks",
        cloudelements_conn_id="cloudelements_bench",
        output_base="file://" + spec["out_dir"],
        full_refresh=True,
        page_size=spec["page_size"],
    )
    ctx = _context()
    _ = op.hook.settings
    emu = _EmuCPU(spec)
    base = _rss_mb()
    e0, c0, t0 = emu(), _cpu(), time.perf_counter()
    manifest = _profiled(spec, lambda: op.execute(ctx))
    return {
        "records": manifest["records"],
        "bytes": manifest["bytes"],
        "seconds": time.perf_counter() - t0,
        "cpu_s": _cpu() - c0,
        "emulator_cpu_s": emu() - e0,
        "rss_base_mb": base,
        "patches": patches,
    }


# ---------------------------------------------------------------------------------------- baselines
def bulk_raw(spec: dict[str, Any]) -> dict[str, Any]:
    """The raw limit: the same bulk file streamed by plain ``requests`` (1 MiB chunks) to a sink."""
    import requests

    hub, headers = _hub(spec)
    sink_path = os.devnull if spec["sink"] == "devnull" else os.path.join(spec["out_dir"], "raw.ndjson")
    os.makedirs(spec["out_dir"], exist_ok=True)
    session = requests.Session()
    job_id, job_s = _fresh_job(spec, session) if spec.get("fresh_job") else (spec["job_id"], None)
    url = f"{hub}/bulk/{job_id}/invoices"
    emu = _EmuCPU(spec)
    base = _rss_mb()
    e0, c0, t0 = emu(), _cpu(), time.perf_counter()
    size = lines = 0
    with (
        session.get(url, headers={**headers, "Accept": "application/json"}, stream=True) as r,
        open(sink_path, "wb") as sink,
    ):
        r.raise_for_status()
        for chunk in r.iter_content(1 << 20):
            size += len(chunk)
            lines += chunk.count(b"\n")
            sink.write(chunk)
    return {
        "records": lines,
        "bytes": size,
        "seconds": time.perf_counter() - t0,
        "cpu_s": _cpu() - c0,
        "emulator_cpu_s": emu() - e0,
        "rss_base_mb": base,
        "job_s": job_s,
    }


def bulk_naive(spec: dict[str, Any]) -> dict[str, Any]:
    """The naive client: whole body in memory, ``splitlines`` + ``json.loads`` each, dump back out."""
    import requests

    hub, headers = _hub(spec)
    os.makedirs(spec["out_dir"], exist_ok=True)
    path = os.path.join(spec["out_dir"], "naive.ndjson")
    with requests.Session() as session:
        job_id, job_s = _fresh_job(spec, session) if spec.get("fresh_job") else (spec["job_id"], None)
    url = f"{hub}/bulk/{job_id}/invoices"
    emu = _EmuCPU(spec)
    base = _rss_mb()
    e0, c0, t0 = emu(), _cpu(), time.perf_counter()
    resp = requests.get(url, headers={**headers, "Accept": "application/json"})
    resp.raise_for_status()
    records = [json.loads(line) for line in resp.text.splitlines() if line.strip()]
    with open(path, "w", encoding="utf-8") as out:
        for rec in records:
            out.write(json.dumps(rec) + "\n")
    size = os.path.getsize(path)
    return {
        "records": len(records),
        "bytes": size,
        "seconds": time.perf_counter() - t0,
        "cpu_s": _cpu() - c0,
        "emulator_cpu_s": emu() - e0,
        "rss_base_mb": base,
        "job_s": job_s,
    }


def paged_naive(spec: dict[str, Any]) -> dict[str, Any]:
    """A plain ``requests`` loop following ``Elements-Next-Page-Token`` → NDJSON."""
    import requests

    hub, headers = _hub(spec)
    os.makedirs(spec["out_dir"], exist_ok=True)
    path = os.path.join(spec["out_dir"], "naive.ndjson")
    session = requests.Session()
    emu = _EmuCPU(spec)
    base = _rss_mb()
    e0, c0, t0 = emu(), _cpu(), time.perf_counter()
    params: dict[str, Any] = {"pageSize": spec["page_size"]}
    records = pages = 0
    with open(path, "w", encoding="utf-8") as out:
        while True:
            r = session.get(f"{hub}/invoices", headers=headers, params=params)
            r.raise_for_status()
            pages += 1
            for rec in r.json():
                out.write(json.dumps(rec) + "\n")
                records += 1
            token = r.headers.get("Elements-Next-Page-Token")
            if not token:
                break
            params = {"pageSize": spec["page_size"], "nextPage": token}
    return {
        "records": records,
        "bytes": os.path.getsize(path),
        "seconds": time.perf_counter() - t0,
        "cpu_s": _cpu() - c0,
        "emulator_cpu_s": emu() - e0,
        "rss_base_mb": base,
        "pages": pages,
    }


def paged_dlt(spec: dict[str, Any]) -> dict[str, Any]:
    """dlt ``rest_api`` source, header cursor paginator, filesystem destination (jsonl)."""
    work = os.path.join(spec["work"], "dlt")
    os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"
    os.environ["DLT_DATA_DIR"] = os.path.join(work, "data")
    os.environ["DLT_PROJECT_DIR"] = work
    os.environ["RUNTIME__LOG_LEVEL"] = "WARNING"
    os.environ["NORMALIZE__LOADER_FILE_FORMAT"] = "jsonl"
    os.environ["DATA_WRITER__DISABLE_COMPRESSION"] = "true"
    import dlt
    from dlt.sources.helpers.rest_client.paginators import HeaderCursorPaginator
    from dlt.sources.rest_api import rest_api_source

    hub, headers = _hub(spec)
    source = rest_api_source(
        {
            "client": {"base_url": hub + "/", "headers": headers},
            "resource_defaults": {"write_disposition": "replace"},
            "resources": [
                {
                    "name": "invoices",
                    "endpoint": {
                        "path": "invoices",
                        "params": {"pageSize": spec["page_size"]},
                        "data_selector": "$",
                        "paginator": HeaderCursorPaginator(
                            cursor_key="Elements-Next-Page-Token", cursor_param="nextPage"
                        ),
                    },
                }
            ],
        },
        max_table_nesting=0,  # one row per invoice, nested values kept as JSON: same shape as ours
    )
    pipeline = dlt.pipeline(
        pipeline_name=f"ce_bench_{os.getpid()}",
        pipelines_dir=os.path.join(work, "pipelines"),
        destination=dlt.destinations.filesystem("file://" + spec["out_dir"]),
        dataset_name="ce",
        progress=None,
    )
    emu = _EmuCPU(spec)
    base = _rss_mb()
    e0, c0, t0 = emu(), _cpu(), time.perf_counter()
    info = pipeline.run(source, loader_file_format="jsonl")
    seconds, cpu, emu_cpu = time.perf_counter() - t0, _cpu() - c0, emu() - e0
    info.raise_on_failed_jobs()
    records = size = 0
    for root, _, files in os.walk(os.path.join(spec["out_dir"], "ce", "invoices")):
        for name in files:
            p = os.path.join(root, name)
            size += os.path.getsize(p)
            records += _count_lines(p)
    return {
        "records": records,
        "bytes": size,
        "seconds": seconds,
        "cpu_s": cpu,
        "emulator_cpu_s": emu_cpu,
        "rss_base_mb": base,
    }


VARIANTS = {
    "bulk_operator": bulk_operator,
    "bulk_raw": bulk_raw,
    "bulk_naive": bulk_naive,
    "paged_operator": paged_operator,
    "paged_naive": paged_naive,
    "paged_dlt": paged_dlt,
}


def main() -> int:
    spec = json.loads(sys.argv[1])
    result = VARIANTS[spec["kind"]](spec)
    result["peak_rss_mb"] = _peak_mb()
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
