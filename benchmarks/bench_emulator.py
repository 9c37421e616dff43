"""Benchmark the Cloud Elements emulator at scale (issue #3).

Starts the emulator CLI in a subprocess (so peak RSS is its own), creates one QuickBooks Online
instance, generates N invoices (timed), runs a bulk job and streams the NDJSON download with a
plain client to /dev/null. Reports generation time, snapshot time, download MB/s and records/s, and
the emulator's peak RSS (sampled every 50 ms with psutil).

    .venv/bin/python benchmarks/bench_emulator.py --records 1000000

Targets: download >= 50 MB/s, peak RSS < 300 MB, generation of 1M invoices < 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import psutil
import requests


class RssSampler(threading.Thread):
    """Track the peak RSS of a process (and its children) in bytes."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                rss = self.proc.memory_info().rss + sum(c.memory_info().rss for c in self.proc.children(True))
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000, help="invoices to generate")
    parser.add_argument("--element", default="quickbooks", help="element key of the instance")
    parser.add_argument("--resource", default="invoices", help="resource to generate and download")
    parser.add_argument("--chunk", type=int, default=1 << 20, help="client read size in bytes")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--csv", action="store_true", help="also time the CSV download (slower: converts)")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="ce-bench-")
    port_file = os.path.join(data_dir, "port")
    cmd = [
        sys.executable,
        "-m",
        "cloudelements_emulator",
        "--port-file",
        port_file,
        "--data-dir",
        os.path.join(data_dir, "data"),
        "--records-for",
        f"{args.resource}={args.records}",
        "--bulk-min-seconds",
        "0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = None
    try:
        ready = proc.stdout.readline()  # type: ignore[union-attr]
        if "listening on" not in ready:
            raise RuntimeError(f"emulator did not start: {ready!r} {proc.stderr.read()}")  # type: ignore[union-attr]
        sampler = RssSampler(proc.pid)
        sampler.start()
        base = f"http://127.0.0.1:{open(port_file).read().strip()}"
        admin = base + "/_emulator"
        inst = requests.post(admin + "/instances", json={"element_key": args.element, "name": "bench"}).json()

        t0 = time.perf_counter()
        count = requests.post(f"{admin}/instances/{inst['id']}/generate/{args.resource}", timeout=3600).json()
        gen_s = time.perf_counter() - t0

        from cloudelements_emulator.config import DEFAULT_USER_SECRET

        hub = f"{base}/elements/api-v2/hubs/finance"
        headers = {"Authorization": f"User {DEFAULT_USER_SECRET}, Element {inst['token']}"}
        t0 = time.perf_counter()
        job = requests.post(
            f"{hub}/bulk/query", headers=headers, params={"q": f"select * from {args.resource}"}
        ).json()["id"]
        while True:
            status = requests.get(f"{hub}/bulk/{job}/status", headers=headers).json()
            if status["status"] in ("COMPLETED", "COMPLETE", "FAILED", "CANCELLED"):
                break
            time.sleep(0.1)
        snap_s = time.perf_counter() - t0
        if status["status"] not in ("COMPLETED", "COMPLETE"):
            raise RuntimeError(f"bulk job ended {status}")

        t0 = time.perf_counter()
        size = lines = 0
        with (
            requests.get(
                f"{hub}/bulk/{job}/{args.resource}",
                headers={**headers, "Accept": "application/json"},
                stream=True,
            ) as r,
            open(os.devnull, "wb") as sink,
        ):
            r.raise_for_status()
            for chunk in r.iter_content(args.chunk):
                size += len(chunk)
                lines += chunk.count(b"\n")
                sink.write(chunk)
        dl_s = time.perf_counter() - t0
        csv_result = {}
        if args.csv:
            t0 = time.perf_counter()
            csv_size = 0
            with requests.get(
                f"{hub}/bulk/{job}/{args.resource}", headers={**headers, "Accept": "text/csv"}, stream=True
            ) as r:
                r.raise_for_status()
                for chunk in r.iter_content(args.chunk):
                    csv_size += len(chunk)
            csv_s = time.perf_counter() - t0
            csv_result = {
                "csv_bytes": csv_size,
                "csv_s": round(csv_s, 2),
                "csv_MB_per_s": round(csv_size / csv_s / 1e6, 1),
            }
        sampler.stop()
        result = {
            "records": count["count"],
            "generation_s": round(gen_s, 2),
            "snapshot_s": round(snap_s, 2),
            "download_bytes": size,
            "download_lines": lines,
            "download_s": round(dl_s, 2),
            "download_MB_per_s": round(size / dl_s / 1e6, 1),
            "download_records_per_s": round(lines / dl_s),
            "peak_rss_MB": round(sampler.peak / 1e6, 1),
            "recordsCount": status["recordsCount"],
            **csv_result,
        }
        if args.json:
            print(json.dumps(result))
        else:
            for key, value in result.items():
                print(f"{key:>24}: {value}")
        ok = result["download_MB_per_s"] >= 50 and result["peak_rss_MB"] < 300 and lines == args.records
        return 0 if ok else 1
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
