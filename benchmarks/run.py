"""Provider benchmarks side by side with baselines, in one run (issue #8).

    .venv/bin/python benchmarks/run.py                       # 10k, 100k, 1M bulk; 10k/100k paged; triggers
    .venv/bin/python benchmarks/run.py --quick               # 10k and 100k only (development)
    .venv/bin/python benchmarks/run.py --sizes 10000,100000 --reps 3 --triggers 1000

Needs the ``bench`` extra (dlt for the paged baseline, psutil, pyinstrument for ``--profile``):
``pip install -c constraints.txt '.[bench]'``.

What is measured (every variant in its own child process, so peak RSS is per variant; variants are
interleaved within each repetition, the order rotating, because the machine is shared and noisy):

1. Bulk extract of N QuickBooks Online invoices: ``CloudElementsBulkExtractOperator.execute`` (sync)
   vs the raw limit (plain ``requests``, 1 MiB chunks, to /dev/null and to a file)
   vs a naive client (whole body, ``splitlines`` + ``json.loads`` + ``json.dumps`` each line).
2. Paged pull: ``CloudElementsPagedExtractOperator.execute`` (``hook.iter_records``) vs a plain
   ``requests`` cursor loop vs dlt's ``rest_api`` source (header cursor paginator, filesystem/jsonl).
3. N concurrent ``CloudElementsEventTrigger`` in one asyncio process: CPU/RSS per trigger, poll rate,
   latency from an event's creation to the trigger firing.

The emulator runs in its own subprocess (its CPU is sampled per variant with psutil); its data dir
is generated once per size and deleted at the end. Results: stdout table, ``benchmarks/results.json``,
``benchmarks/RESULTS.md`` (regenerated). Targets are reported, never asserted: exit code 0 unless a
variant crashed or landed a wrong record count.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = sys.executable
INSTALL_HINT = "pip install -c constraints.txt '.[bench]'   (or: pip install dlt==1.31.0 psutil pyinstrument)"

BULK_VARIANTS = ["bulk_operator", "bulk_raw_file", "bulk_raw_devnull", "bulk_naive"]
PAGED_VARIANTS = ["paged_operator", "paged_naive", "paged_dlt"]
# Experiments = local patches NOT shipped in the provider (workers._apply_patches), run with
# --experiments and labelled as such. Retired because shipped in 1c663cb: bulk 1 MiB chunks,
# paged batched writes, the triggers' pooled async client.
BULK_EXPERIMENTS: list[str] = []
PAGED_EXPERIMENTS = ["paged_operator+orjson"]
LABELS = {
    "paged_operator+orjson": "EXPERIMENT (not shipped): paged operator + orjson loads/dumps",
    "bulk_operator": "CloudElementsBulkExtractOperator (download phase)",
    "bulk_operator_e2e": "CloudElementsBulkExtractOperator (execute, job incl.)",
    "bulk_raw_file": "raw requests 1 MiB chunks -> file",
    "bulk_raw_devnull": "raw requests 1 MiB chunks -> /dev/null",
    "bulk_naive": "naive requests .text + json.loads/dumps",
    "paged_operator": "CloudElementsPagedExtractOperator",
    "paged_naive": "naive requests cursor loop",
    "paged_dlt": "dlt rest_api -> filesystem jsonl",
}


def check_deps(need_dlt: bool) -> None:
    missing = []
    for mod in ["psutil", "requests"] + (["dlt"] if need_dlt else []):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        sys.exit(f"benchmarks need {', '.join(missing)}: {INSTALL_HINT}")


# ------------------------------------------------------------------------------------------ emulator
class Emulator:
    """The emulator CLI in a subprocess with a persistent data dir (generated once per size)."""

    def __init__(self, work: str, name: str, records_for: dict[str, int], records: int = 40) -> None:
        import psutil
        import requests

        self.dir = os.path.join(work, f"emu-{name}")
        os.makedirs(self.dir, exist_ok=True)
        port_file = os.path.join(self.dir, "port")
        cmd = [
            PY,
            "-m",
            "cloudelements_emulator",
            "--port-file",
            port_file,
            "--data-dir",
            os.path.join(self.dir, "data"),
            "--records",
            str(records),
            "--bulk-min-seconds",
            "0",
            "--log-level",
            "WARNING",
        ]
        for res, n in records_for.items():
            cmd += ["--records-for", f"{res}={n}"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=ROOT)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if "listening on" not in line:
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.ps = psutil.Process(self.proc.pid)
        self.url = f"http://127.0.0.1:{open(port_file).read().strip()}"
        self.base_url = self.url + "/elements/api-v2"
        self.http = requests.Session()
        from cloudelements_emulator.config import (
            DEFAULT_ORGANIZATION_SECRET,
            DEFAULT_USER_SECRET,
        )

        self.user_secret, self.org_secret = DEFAULT_USER_SECRET, DEFAULT_ORGANIZATION_SECRET

    def admin(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, f"{self.url}/_emulator{path}", timeout=3600, **kw)
        r.raise_for_status()
        return r.json()

    def create_instance(self, name: str, configuration: dict | None = None) -> dict[str, Any]:
        return self.admin(
            "POST", "/instances", json={"element_key": "quickbooks", "name": name, "configuration": configuration or {}}
        )

    def hub_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"User {self.user_secret}, Organization {self.org_secret}, Element {token}"}

    def bulk_job(self, token: str) -> tuple[str, float]:
        hub = self.base_url + "/hubs/finance"
        h = self.hub_headers(token)
        t0 = time.perf_counter()
        job = self.http.post(f"{hub}/bulk/query", headers=h, params={"q": "select * from invoices"}).json()["id"]
        while True:
            status = self.http.get(f"{hub}/bulk/{job}/status", headers=h).json()
            if status["status"] in ("COMPLETED", "COMPLETE"):
                return str(job), time.perf_counter() - t0
            if status["status"] in ("FAILED", "CANCELLED", "ABORTED"):
                raise RuntimeError(f"bulk job {job}: {status}")
            time.sleep(0.05)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return t.user + t.system

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 1e6

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------ runner
def run_worker(spec: dict[str, Any], emu: Emulator) -> dict[str, Any]:
    c0 = emu.cpu()  # whole child life (bulk: incl. the job snapshot); the phase's own is emulator_cpu_s
    t0 = time.perf_counter()
    proc = subprocess.run(
        [PY, os.path.join(HERE, "workers.py"), json.dumps(spec)], capture_output=True, text=True, cwd=ROOT
    )
    wall = time.perf_counter() - t0
    shutil.rmtree(spec["out_dir"], ignore_errors=True)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:], "variant": spec["variant"]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(
        variant=spec["variant"],
        child_wall_s=wall,
        emulator_cpu_child_life_s=emu.cpu() - c0,
        emulator_rss_mb=emu.rss_mb(),
    )
    return result


def spec_for(variant: str, emu: Emulator, work: str, ctx: dict[str, Any], args: argparse.Namespace) -> dict:
    base, *patches = variant.split("+")
    kind = {"bulk_raw_file": "bulk_raw", "bulk_raw_devnull": "bulk_raw"}.get(base, base)
    spec = {
        "kind": kind,
        "variant": variant,
        "base_url": emu.base_url,
        "user_secret": emu.user_secret,
        "org_secret": emu.org_secret,
        "token": ctx["token"],
        "instance_id": ctx["instance_id"],
        "job_id": ctx.get("job_id"),
        "work": work,
        "out_dir": os.path.join(work, "out", variant),
        "page_size": args.page_size,
        "sink": "devnull" if variant.endswith("devnull") else "file",
        "patches": patches,
        "emulator_pid": emu.proc.pid,
        "fresh_job": not args.shared_job,
    }
    if args.profile and variant in ("bulk_operator", "paged_operator"):
        os.makedirs(os.path.join(HERE, "profiles"), exist_ok=True)
        spec["profile"] = os.path.join(HERE, "profiles", f"{variant}-{ctx['n']}.txt")
    return spec


def summarize(runs: list[dict[str, Any]], key: str = "seconds") -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r and r.get(key)]
    if not ok:
        return {"error": runs[0].get("error") if runs else "no runs"}
    secs = [r[key] for r in ok]
    emu_key = "emulator_cpu_download_s" if key == "download_s" else "emulator_cpu_s"
    med, best = statistics.median(secs), min(secs)
    rec, nbytes = ok[0]["records"], ok[0]["bytes"]
    return {
        "reps": len(ok),
        "records": rec,
        "bytes": nbytes,
        "median_s": med,
        "best_s": best,
        "records_per_s_median": rec / med,
        "records_per_s_best": rec / best,
        "MB_per_s_median": nbytes / med / 1e6,
        "MB_per_s_best": nbytes / best / 1e6,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in ok),
        "rss_base_mb": statistics.median(r["rss_base_mb"] for r in ok),
        "cpu_s_median": statistics.median(r["cpu_s"] for r in ok),
        "emulator_cpu_s_median": statistics.median(r[emu_key] for r in ok),
        "all_s": secs,
    }


def bench_size(n: int, work: str, args: argparse.Namespace, paged: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"n": n}
    print(f"\n== {n:,} invoices ==", flush=True)
    emu = Emulator(work, str(n), {"invoices": n})
    try:
        inst = emu.create_instance(f"bench-{n}")
        t0 = time.perf_counter()
        count = emu.admin("POST", f"/instances/{inst['id']}/generate/invoices")["count"]
        out["generate_s"] = time.perf_counter() - t0
        job_id, snap = emu.bulk_job(inst["token"])
        out.update(snapshot_s=snap, emulator_rss_after_generate_mb=emu.rss_mb())
        print(f"   generated {count:,} in {out['generate_s']:.1f} s; bulk snapshot {snap:.1f} s", flush=True)
        ctx = {"n": n, "token": inst["token"], "instance_id": inst["id"], "job_id": job_id}
        bulk_v = BULK_VARIANTS + (BULK_EXPERIMENTS if args.experiments else [])
        paged_v = PAGED_VARIANTS + (PAGED_EXPERIMENTS if args.experiments else [])
        sections = [("bulk", bulk_v)] + ([("paged", paged_v)] if paged else [])
        for section, variants in sections:
            runs: dict[str, list] = {v: [] for v in variants}
            for rep in range(args.reps):
                order = variants[rep % len(variants) :] + variants[: rep % len(variants)]
                for v in order:
                    if v == "bulk_naive" and n > args.naive_max:
                        continue
                    if v == "paged_dlt" and n > args.dlt_max:
                        continue
                    r = run_worker(spec_for(v, emu, work, ctx, args), emu)
                    runs[v].append(r)
                    if "error" in r:
                        print(f"   {v}: ERROR {r['error'][-600:]}", flush=True)
                    else:
                        extra = f" (download {r['download_s']:.2f} s)" if r.get("download_s") else ""
                        print(
                            f"   rep {rep + 1} {v:18s} {r['seconds']:7.2f} s{extra}  peak RSS "
                            f"{r['peak_rss_mb']:6.1f} MB  records {r['records']:,}",
                            flush=True,
                        )
            summary = {v: summarize(rs) for v, rs in runs.items() if rs}
            for v in [v for v in runs if v.startswith("bulk_operator") and runs[v]]:
                summary[v.replace("bulk_operator", "bulk_operator_e2e", 1)] = summarize(runs[v], "seconds")
                summary[v] = summarize(runs[v], "download_s")
            for s in summary.values():
                if "error" not in s and s["records"] != n:
                    s["count_mismatch"] = True
            out[section] = {"variants": summary, "runs": runs}
        out["emulator_peak_rss_mb"] = emu.rss_mb()
    finally:
        emu.close()
    return out


def bench_triggers(work: str, args: argparse.Namespace, patches: list[str]) -> dict[str, Any]:
    n = args.triggers
    print(f"\n== {n} event triggers, poll_interval {args.poll_interval} s, patches {patches or 'none'} ==", flush=True)
    emu = Emulator(work, f"events-{'-'.join(patches) or 'base'}", {}, records=3)
    try:
        # webhook vendor, notifications on, no callback URL: every change is recorded as an event at
        # once (status RECEIVED), so latency is the trigger's alone, not the emulator poller's
        cfg = {"event.vendor.type": "webhook", "event.notification.enabled": "true"}
        ids = []
        for i in range(n):
            inst = emu.create_instance(f"events-{i}", cfg)
            emu.admin("POST", f"/instances/{inst['id']}/generate/invoices")
            ids.append(inst["id"])
        spec = {
            "base_url": emu.base_url,
            "user_secret": emu.user_secret,
            "org_secret": emu.org_secret,
            "instance_ids": ids,
            "poll_interval": args.poll_interval,
            "warmup_s": args.trigger_warmup,
            "steady_s": args.trigger_steady,
            "timeout_s": args.trigger_timeout,
            "work": work,
            "patches": patches,
        }
        ec0 = emu.cpu()
        proc = subprocess.Popen(
            [PY, os.path.join(HERE, "triggers_bench.py"), json.dumps(spec)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = ""
        while not line.startswith("READY"):
            line = proc.stdout.readline()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError("trigger child died: " + proc.stderr.read()[-2000:])  # type: ignore[union-attr]
        steady = json.loads(line.split(" ", 1)[1])
        emu_steady_cpu = emu.cpu() - ec0
        print(
            f"   steady: {steady['polls_per_s']:.0f} polls/s of {steady['ideal_polls_per_s']:.0f} ideal, "
            f"{steady['cpu_pct_of_one_core']:.0f}% of a core, {steady['cpu_ms_per_poll']:.2f} ms CPU/poll, "
            f"{steady['rss_kb_per_trigger']:.0f} kB/trigger, loop lag p95 {steady['loop_lag_p95_ms']:.0f} ms",
            flush=True,
        )
        t0 = time.perf_counter()
        for iid in ids:  # one new invoice per instance, paced by the admin round trip
            emu.admin(
                "POST",
                "/activity",
                json={"instance_id": iid, "resources": ["invoices"], "creates": 1, "updates": 0, "deletes": 0},
            )
        fire_s = time.perf_counter() - t0
        proc.stdin.write("GO\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
        out, err = proc.communicate(timeout=args.trigger_timeout + 120)
        lines = [ln for ln in out.splitlines() if ln.startswith("RESULT")]
        if not lines:
            raise RuntimeError("trigger child gave no result: " + err[-2000:])
        result = json.loads(lines[-1].split(" ", 1)[1])
        result.update(
            activity_spread_s=fire_s,
            emulator_cpu_s_total=emu.cpu() - ec0,
            emulator_steady_cpu_s_incl_warmup=emu_steady_cpu,
            emulator_rss_mb=emu.rss_mb(),
        )
        print(
            f"   fired {result['fired']}/{n} (errors {result['errors']}); latency p50 "
            f"{result['latency_p50_s']:.2f} s p95 {result['latency_p95_s']:.2f} s max "
            f"{result['latency_max_s']:.2f} s; activity created over {fire_s:.1f} s",
            flush=True,
        )
        return result
    finally:
        emu.close()


# ------------------------------------------------------------------------------------------ report
def machine_facts() -> dict[str, Any]:
    import psutil

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        from importlib.metadata import version

        airflow_version = version("apache-airflow")
        dlt_version = version("dlt")
    except Exception:
        airflow_version = dlt_version = "?"
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "airflow": airflow_version,
        "dlt": dlt_version,
        "os": platform.platform(),
        "load_avg_at_start": os.getloadavg(),
    }


def fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def tables(results: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for section, title, ref in (("bulk", "Bulk extract", "bulk_raw_file"), ("paged", "Paged pull", "paged_operator")):
        rows = [r for r in results["sizes"] if section in r]
        if not rows:
            continue
        lines += [f"### {title}", ""]
        ratio_head = "ours / raw-to-file (median, best)" if section == "bulk" else "variant / ours (median)"
        lines += [
            f"| N | variant | median s | best s | records/s (median) | MB/s (median) | peak RSS MB | "
            f"CPU s | emulator CPU s | {ratio_head} |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            vs = r[section]["variants"]
            order = (
                (
                    ["bulk_operator", "bulk_operator_e2e"]
                    + BULK_VARIANTS[1:]
                    + [v for e in BULK_EXPERIMENTS for v in (e, e.replace("bulk_operator", "bulk_operator_e2e", 1))]
                )
                if section == "bulk"
                else PAGED_VARIANTS + PAGED_EXPERIMENTS
            )
            for v in order:
                s = vs.get(v)
                if not s:
                    continue
                if "error" in s:
                    lines.append(f"| {r['n']:,} | {LABELS[v]} | error | | | | | | | |")
                    continue
                ratio = ""
                refs = vs.get(ref)
                if refs and "error" not in refs:
                    if section == "bulk" and v.startswith("bulk_operator") and "e2e" not in v:
                        ratio = f"{s['median_s'] / refs['median_s']:.2f}x, {s['best_s'] / refs['best_s']:.2f}x"
                    elif section == "paged":
                        ratio = f"{s['median_s'] / refs['median_s']:.2f}x"
                lines.append(
                    f"| {r['n']:,} | {LABELS[v]} | {s['median_s']:.2f} | {s['best_s']:.2f} | "
                    f"{fmt(s['records_per_s_median'], 0)} | {fmt(s['MB_per_s_median'])} | {fmt(s['peak_rss_mb'])} | "
                    f"{fmt(s['cpu_s_median'], 2)} | {fmt(s['emulator_cpu_s_median'], 2)} | {ratio} |"
                )
        lines.append("")
    trig = results.get("triggers") or []
    if trig:
        lines += [
            "### Event triggers",
            "",
            "| variant | triggers | poll s | polls/s (ideal) | CPU % of a core | CPU ms/poll | kB RSS/trigger | "
            "loop lag p95 ms | fired | latency p50 s | p95 s | max s |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for t in trig:
            if "error" in t:
                lines.append(f"| {t.get('label')} | error: {t['error'][:80]} |")
                continue
            lines.append(
                f"| {t['label']} | {t['triggers']} | {t['poll_interval_s']:g} | {t['polls_per_s']:.0f} "
                f"({t['ideal_polls_per_s']:.0f}) | {t['cpu_pct_of_one_core']:.0f} | {t['cpu_ms_per_poll']:.2f} | "
                f"{t['rss_kb_per_trigger']:.0f} | {t['loop_lag_p95_ms']:.0f} | {t['fired']} | "
                f"{fmt(t['latency_p50_s'], 2)} | {fmt(t['latency_p95_s'], 2)} | {fmt(t['latency_max_s'], 2)} |"
            )
        lines.append("")
    return lines


def targets(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    out = []
    bulk = [r for r in results["sizes"] if "bulk" in r]
    for r in bulk:
        vs = r["bulk"]["variants"]
        op, raw = vs.get("bulk_operator", {}), vs.get("bulk_raw_file", {})
        if "median_s" in op and "median_s" in raw:
            ratio = op["median_s"] / raw["median_s"]
            out.append(
                (
                    f"bulk {r['n']:,}: within 1.3x of raw-to-file",
                    "met" if ratio <= 1.3 else "missed",
                    f"{ratio:.2f}x median ({op['best_s'] / raw['best_s']:.2f}x best)",
                )
            )
    peaks = [
        (r["n"], r["bulk"]["variants"]["bulk_operator"].get("peak_rss_mb"))
        for r in bulk
        if "bulk_operator" in r["bulk"]["variants"]
    ]
    if peaks:
        worst = max(p for _, p in peaks if p)
        spread = worst - min(p for _, p in peaks if p)
        out.append(
            (
                "bulk peak RSS flat and < 150 MB",
                "met" if worst < 150 and spread < 15 else "missed",
                ", ".join(f"{n:,}: {p:.0f} MB" for n, p in peaks) + f" (Airflow+provider import alone: "
                f"{bulk[0]['bulk']['variants']['bulk_operator'].get('rss_base_mb', 0):.0f} MB)",
            )
        )
    for r in [r for r in results["sizes"] if "paged" in r]:
        vs = r["paged"]["variants"]
        op, dl, nv = vs.get("paged_operator", {}), vs.get("paged_dlt", {}), vs.get("paged_naive", {})
        if "median_s" in op and "median_s" in dl:
            x = dl["median_s"] / op["median_s"]
            out.append((f"paged {r['n']:,}: >= 3x faster than dlt", "met" if x >= 3 else "missed", f"{x:.2f}x"))
        if "median_s" in op and "median_s" in nv:
            x = op["median_s"] / nv["median_s"]
            out.append(
                (
                    f"paged {r['n']:,}: no slower than the naive loop",
                    "met" if x <= 1.0 else "missed",
                    f"ours/naive {x:.2f}x",
                )
            )
    for r in bulk:
        vs = r["bulk"]["variants"]
        raw, op = vs.get("bulk_raw_devnull", {}), vs.get("bulk_operator", {})
        if "median_s" in raw and "median_s" in op:
            util = raw["emulator_cpu_s_median"] / raw["median_s"]
            share = op["emulator_cpu_s_median"] / op["median_s"]
            rate = (
                f"~{raw['bytes'] / raw['emulator_cpu_s_median'] / 1e6:,.0f} MB per emulator CPU-second"
                if raw["emulator_cpu_s_median"] >= 0.05
                else "emulator CPU below psutil's 10 ms resolution"
            )
            out.append(
                (
                    f"emulator not the bottleneck, bulk {r['n']:,}",
                    "met" if share < 0.5 else "missed",
                    f"serves {raw['MB_per_s_median']:,.0f} MB/s to /dev/null at {100 * util:.0f}% of a core "
                    f"({rate}); during our download it is busy {100 * share:.0f}% of the wall time",
                )
            )
    for r in [r for r in results["sizes"] if "paged" in r]:
        vs = r["paged"]["variants"]
        op, nv = vs.get("paged_operator", {}), vs.get("paged_naive", {})
        if "median_s" in op and "median_s" in nv:
            pages = -(-r["n"] // results.get("page_size", 200))
            emu = nv["emulator_cpu_s_median"]
            share = op["emulator_cpu_s_median"] / op["median_s"]
            out.append(
                (
                    f"emulator not the bottleneck, paged {r['n']:,}",
                    "met" if share < 0.5 else "missed",
                    f"{1000 * emu / pages:.2f} ms emulator CPU per {results.get('page_size', 200)}-record page "
                    f"= {r['n'] / max(emu, 1e-9):,.0f} records per emulator CPU-second; during our pull the "
                    f"emulator is busy {100 * share:.0f}% of the wall time, the client "
                    f"{100 * op['cpu_s_median'] / op['median_s']:.0f}%",
                )
            )
    for t in results.get("triggers") or []:
        if "error" in t:
            out.append((f"{t.get('triggers', '?')} event triggers", "error", t["error"][:200]))
            continue
        n, interval = t["triggers"], t["poll_interval_s"]
        out.append(
            (
                f"{n:,} event triggers: all fire",
                "met" if t["fired"] == n and not t["errors"] else "missed",
                f"{t['fired']}/{n} fired, {t['errors']} errors",
            )
        )
        out.append(
            (
                f"{n:,} event triggers: poll on schedule (>= 90% of ideal polls/s)",
                "met" if t["polls_per_s"] >= 0.9 * t["ideal_polls_per_s"] else "missed",
                f"{t['polls_per_s']:.0f} of {t['ideal_polls_per_s']:.0f} polls/s; "
                f"{t['cpu_pct_of_one_core']:.0f}% of a core = {t['cpu_ms_per_trigger_per_s']:.2f} ms CPU per "
                f"trigger per s ({t['cpu_ms_per_poll']:.2f} ms per poll); loop lag p95 "
                f"{t['loop_lag_p95_ms']:.0f} ms",
            )
        )
        out.append(
            (
                f"{n:,} event triggers: memory per trigger",
                "reported",
                f"{t['rss_kb_per_trigger']:.0f} kB RSS per trigger ({t['rss_before_mb']:.0f} -> "
                f"{t['rss_steady_mb']:.0f} MB)",
            )
        )
        p95 = t.get("latency_p95_s")
        out.append(
            (
                f"{n:,} event triggers: event->fire p95 <= poll interval + 1 s",
                "met" if p95 is not None and p95 <= interval + 1 else "missed",
                f"p50 {fmt(t.get('latency_p50_s'), 2)} s, p95 {fmt(p95, 2)} s, max "
                f"{fmt(t.get('latency_max_s'), 2)} s at a {interval:g} s poll interval (on-time polling: "
                f"U(0, {interval:g}) s + one request)",
            )
        )
    return out


NOTES = """\
## How it is measured

* One command: `.venv/bin/python benchmarks/run.py` (`make bench`); `--quick` = 10k/100k only.
  Dependencies: `pip install -c constraints.txt '.[bench]'` (dlt, psutil, pyinstrument).
* The emulator (`python -m cloudelements_emulator`) runs in its own subprocess, one
  per dataset size, with a data dir on local disk generated once (`POST /_emulator/instances/{id}/
  generate/invoices`) and deleted at the end. Its CPU time is read with psutil by the worker right
  before and after the measured phase ("emulator CPU s": for the bulk operator's download-phase row,
  the download only; for its "execute" row, submit + snapshot + polls + download).
* Every variant runs in a fresh child process (`benchmarks/workers.py`): "seconds" is the measured
  phase only (interpreter start and imports excluded); "peak RSS" is the child's `ru_maxrss` over its
  whole life, imports included (Airflow + the provider alone is the "import baseline" below).
  Variants are interleaved inside each repetition with a rotating order; the table shows the median
  and the best of `--reps` (default 3). The machine is shared: compare rows of one run, not runs.
* Bulk: the operator runs `execute()` in sync mode with a minimal context (full refresh, `ti` with
  `xcom_push`, no state store), `poll_interval=0.1`. "download phase" is the time inside
  `CloudElementsHook.download_bulk` (the streaming copy into `transfers/landing.staged_file` + the line
  count used for reconciliation), comparable with the raw and naive variants; "execute" adds
  submitting its own job, the emulator's snapshot of N records, status polls, the atomic rename and
  `_manifest.json`.
* Bulk fairness: every bulk variant downloads a job it created itself just before, untimed for the
  baselines (`workers._fresh_job`: submit, poll status every 0.1 s like the operator's
  `poll_interval=0.1`, then download at once). The emulator writes each job's snapshot (1 GB at 1M)
  just before it reports COMPLETED, so every variant downloads while the kernel is still writing
  that snapshot back, and into a page cache holding it dirty, as the operator always does in
  production. The alternative (all variants read an equally old snapshot) cannot be arranged for the
  operator without replacing its submit/poll with a pre-made job, which would stop measuring the code
  path that ships. `--shared-job` restores the first run's setup (baselines read one job snapshotted
  at setup) for comparison.
* Experiments (`--experiments`) are local monkeypatches that are NOT shipped and are labelled
  "EXPERIMENT" in the tables. The first run's experiments that have shipped since (commit 1c663cb:
  1 MiB download chunks, batched paged writes, a pooled async client per hook) are no longer
  variants: the shipped rows are that code.
* Paged: `page_size` is the same for all three (default 200, the CE default and the hook default).
  The provider connection sets `max_requests_per_minute=1000000`: the emulator has no rate limit,
  and the default client budget (500 req/min per instance, Intuit's) would otherwise cap a 200-record
  page pull at 100,000 records/min by design. dlt runs `rest_api_source` with
  `HeaderCursorPaginator(cursor_key="Elements-Next-Page-Token", cursor_param="nextPage")`,
  `max_table_nesting=0` (one row per invoice, like ours), filesystem destination, jsonl, no
  compression, telemetry off; its time is `pipeline.run` (extract + normalize + load).
* Event triggers: N QuickBooks Online instances (one per trigger) configured with
  `event.vendor.type=webhook`, notifications on and no callback URL, so each change is recorded as an
  event at once and latency is the trigger's alone (polling-mode instances would add the emulator's
  poller interval). Each trigger: `object_types=["invoices"]`, `event_types=["CREATED"]`, default
  connection budget (500 req/min, 10 in flight, per hook: each trigger has its own). After a warm-up
  the child measures idle polling (CPU, RSS, polls done, event-loop lag of a 100 ms ticker), then the
  parent creates one invoice per instance through `POST /_emulator/activity` (sequentially: the
  creation times spread over "activity spread"), and latency = trigger fired - the event's
  `eventDate`. A trigger that polls on time has latency ~U(0, poll_interval) + one request. The
  1,000 triggers share one process and one event loop, as in one triggerer; each trigger's hook holds
  one pooled `httpx.AsyncClient`, closed when its `run()` ends.
"""


def write_reports(results: dict[str, Any], path_json: str, path_md: str) -> None:
    with open(path_json, "w") as fh:
        json.dump(results, fh, indent=1, default=str)
    m = results["machine"]
    md = [
        "# Benchmarks (issue #8)",
        "",
        "Generated by `.venv/bin/python benchmarks/run.py " + " ".join(results["argv"]) + "`; raw numbers in "
        "`benchmarks/results.json`. Do not edit by hand: rerun the command.",
        "",
        "## Machine",
        "",
        f"* Date: {m['date']}",
        f"* CPU: {m['cpu']}, {m['cores']} cores; RAM {m['ram_gb']} GiB; {m['os']}",
        f"* Python {m['python']}, Apache Airflow {m['airflow']}, dlt {m['dlt']}",
        f"* Load average at start: {', '.join(f'{x:.2f}' for x in m['load_avg_at_start'])} (shared machine)",
        f"* Total run time: {results.get('total_s', 0) / 60:.1f} min",
        "",
        "## Results",
        "",
    ]
    md += tables(results)
    md += [
        "### Emulator",
        "",
        "| N | generate s | bulk snapshot s | emulator RSS after generate MB |",
        "|---|---|---|---|",
    ]
    for r in results["sizes"]:
        md.append(
            f"| {r['n']:,} | {r.get('generate_s', 0):.1f} | {r.get('snapshot_s', 0):.1f} | "
            f"{r.get('emulator_rss_after_generate_mb', 0):.0f} |"
        )
    md += ["", "## Targets", "", "| target | status | measured |", "|---|---|---|"]
    md += [f"| {a} | {b} | {c} |" for a, b, c in targets(results)]
    md += ["", NOTES]
    if results.get("analysis"):
        md += ["## Analysis", "", results["analysis"], ""]
    with open(path_md, "w") as fh:
        fh.write("\n".join(md) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="10000,100000,1000000", help="bulk sizes (comma separated)")
    p.add_argument("--quick", action="store_true", help="sizes 10k,100k (development)")
    p.add_argument("--paged-max", type=int, default=100_000, help="largest size also pulled page by page")
    p.add_argument(
        "--naive-max",
        type=int,
        default=100_000,
        help="largest size for the naive bulk client (it holds the whole body: ~1 GB RSS per 100k)",
    )
    p.add_argument("--dlt-max", type=int, default=1_000_000, help="largest size for the dlt baseline")
    p.add_argument("--reps", type=int, default=3, help="repetitions of every variant (interleaved)")
    p.add_argument("--page-size", type=int, default=200, help="records per page for every paged variant")
    p.add_argument("--triggers", type=int, default=1000, help="concurrent event triggers (0 = skip)")
    p.add_argument("--poll-interval", type=float, default=2.0, help="trigger poll interval (s)")
    p.add_argument("--trigger-warmup", type=float, default=15.0)
    p.add_argument("--trigger-steady", type=float, default=20.0)
    p.add_argument("--trigger-timeout", type=float, default=60.0)
    p.add_argument(
        "--experiments",
        action="store_true",
        help="also run local hot-path experiments that are NOT shipped (monkeypatched copies: orjson)",
    )
    p.add_argument(
        "--shared-job",
        action="store_true",
        help="raw/naive bulk variants download the one job snapshotted at setup instead of a fresh "
        "job each (the default, like the operator); for comparison with the first run only",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="pyinstrument profiles of the operators -> benchmarks/profiles/ (slower: not for the table)",
    )
    p.add_argument("--no-write", action="store_true", help="print only; keep results.json / RESULTS.md")
    p.add_argument("--work-dir", default=None, help="scratch dir on local disk (default: a temp dir)")
    p.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite RESULTS.md from results.json (+ ANALYSIS.md) without measuring",
    )
    args = p.parse_args()
    if args.report_only:
        with open(os.path.join(HERE, "results.json")) as fh:
            results = json.load(fh)
        analysis = os.path.join(HERE, "ANALYSIS.md")
        if os.path.exists(analysis):
            with open(analysis) as fh:
                results["analysis"] = fh.read().strip()
        write_reports(results, os.path.join(HERE, "results.json"), os.path.join(HERE, "RESULTS.md"))
        return 0
    sizes = [10_000, 100_000] if args.quick else [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
    check_deps(need_dlt=any(n <= args.paged_max for n in sizes))
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop emulators
    work = tempfile.mkdtemp(prefix="ce-bench-", dir=args.work_dir)
    os.environ.setdefault("AIRFLOW_HOME", os.path.join(work, "airflow-home"))
    t_start = time.perf_counter()
    results: dict[str, Any] = {
        "argv": sys.argv[1:],
        "machine": machine_facts(),
        "sizes": [],
        "triggers": [],
        "page_size": args.page_size,
        "fresh_job": not args.shared_job,
    }
    try:
        for n in sizes:
            results["sizes"].append(bench_size(n, work, args, paged=n <= args.paged_max))
        if args.triggers:
            try:
                r = bench_triggers(work, args, [])
            except Exception as err:  # report, keep the rest of the results
                r = {"error": f"{type(err).__name__}: {err}"}
            r["label"] = "as shipped (pooled client per hook)"
            results["triggers"].append(r)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["total_s"] = time.perf_counter() - t_start
    analysis = os.path.join(HERE, "ANALYSIS.md")
    if os.path.exists(analysis):
        with open(analysis) as fh:
            results["analysis"] = fh.read().strip()
    print("\n" + "\n".join(tables(results)))
    for a, b, c in targets(results):
        print(f"{b:>7}  {a}: {c}")
    if not args.no_write:
        write_reports(results, os.path.join(HERE, "results.json"), os.path.join(HERE, "RESULTS.md"))
        print(f"\nwrote {os.path.join(HERE, 'results.json')} and {os.path.join(HERE, 'RESULTS.md')}")
    bad = [
        v
        for r in results["sizes"]
        for sec in ("bulk", "paged")
        if sec in r
        for v, s in r[sec]["variants"].items()
        if "error" in s or s.get("count_mismatch")
    ]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
