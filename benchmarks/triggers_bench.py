"""N concurrent ``CloudElementsEventTrigger`` runs in one asyncio process (a triggerer's view).

    python benchmarks/triggers_bench.py '<json spec>'     (started by run.py)

Protocol with the parent over stdout/stdin: after ``warmup_s`` the child measures ``steady_s`` of
idle polling (CPU, RSS, polls done, event-loop lag), prints ``READY <json>``, waits for the parent
to create one invoice per instance (admin ``POST /_emulator/activity``) and to write ``GO`` on stdin,
then collects every trigger's first ``success`` event until all fired or ``timeout_s``, and prints
``RESULT <json>``. Latency of a trigger = the moment its ``TriggerEvent`` was yielded minus the
``eventDate`` the emulator stamped on the event (same machine clock, ms precision).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from datetime import datetime
from typing import Any


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


async def _main(spec: dict[str, Any]) -> dict[str, Any]:
    from airflow_provider_cloudelements.hooks.cloudelements_async import CloudElementsAsyncHook
    from airflow_provider_cloudelements.triggers.events import CloudElementsEventTrigger

    polls = {"n": 0, "seconds": 0.0}
    original = CloudElementsAsyncHook.list_events

    async def counted(self, **kwargs):  # measurement only
        t0 = time.perf_counter()
        try:
            return await original(self, **kwargs)
        finally:
            polls["n"] += 1
            polls["seconds"] += time.perf_counter() - t0

    CloudElementsAsyncHook.list_events = counted  # type: ignore[method-assign]

    rss0 = _rss_mb()
    fired: dict[int, tuple[float, dict[str, Any]]] = {}
    errors: list[str] = []

    async def drive(trigger: CloudElementsEventTrigger) -> None:
        async for event in trigger.run():
            payload = event.payload
            if payload.get("status") == "success":
                fired[trigger.instance_id] = (time.time(), payload)
            else:
                errors.append(str(payload)[:300])
            return

    lags: list[float] = []
    stop_ticker = asyncio.Event()

    async def ticker() -> None:  # event-loop responsiveness: how late a 100 ms sleep wakes up
        while not stop_ticker.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.1)
            lags.append(time.perf_counter() - t - 0.1)

    triggers = [
        CloudElementsEventTrigger(
            instance_id=iid,
            cloudelements_conn_id="cloudelements_bench",
            object_types=["invoices"],
            event_types=["CREATED"],
            poll_interval=spec["poll_interval"],
        )
        for iid in spec["instance_ids"]
    ]
    c_start = _cpu()
    tasks = [asyncio.create_task(drive(t)) for t in triggers]
    tick = asyncio.create_task(ticker())
    await asyncio.sleep(spec["warmup_s"])
    startup_cpu = _cpu() - c_start
    lags.clear()
    n0, c0, t0 = polls["n"], _cpu(), time.perf_counter()
    await asyncio.sleep(spec["steady_s"])
    steady_s = time.perf_counter() - t0
    steady = {
        "triggers": len(triggers),
        "poll_interval_s": spec["poll_interval"],
        "startup_cpu_s": startup_cpu,
        "steady_s": steady_s,
        "steady_cpu_s": _cpu() - c0,
        "cpu_pct_of_one_core": 100 * (_cpu() - c0) / steady_s,
        "cpu_ms_per_trigger_per_s": 1000 * (_cpu() - c0) / steady_s / len(triggers),
        "polls": polls["n"] - n0,
        "polls_per_s": (polls["n"] - n0) / steady_s,
        "ideal_polls_per_s": len(triggers) / spec["poll_interval"],
        "cpu_ms_per_poll": 1000 * (_cpu() - c0) / max(polls["n"] - n0, 1),
        "rss_before_mb": rss0,
        "rss_steady_mb": _rss_mb(),
        "rss_kb_per_trigger": 1000 * (_rss_mb() - rss0) / len(triggers),
        "loop_lag_p50_ms": 1000 * (_pct(lags, 50) or 0),
        "loop_lag_p95_ms": 1000 * (_pct(lags, 95) or 0),
        "errors_before_fire": len(errors),
    }
    print("READY " + json.dumps(steady), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # parent: activity created, "GO"
    deadline = time.time() + spec["timeout_s"]
    while len(fired) + len(errors) < len(triggers) and time.time() < deadline:
        await asyncio.sleep(0.1)
    stop_ticker.set()
    for t in tasks:
        t.cancel()
    tick.cancel()
    await asyncio.gather(*tasks, tick, return_exceptions=True)
    latencies = []
    for fire_time, payload in fired.values():
        dates = [e.get("eventDate") for e in payload.get("events", []) if e.get("eventDate")]
        if dates:
            created = min(datetime.fromisoformat(d.replace("Z", "+00:00")).timestamp() for d in dates)
            latencies.append(fire_time - created)
    return {
        **steady,
        "fired": len(fired),
        "errors": len(errors),
        "error_samples": errors[:3],
        "latency_p50_s": _pct(latencies, 50),
        "latency_p95_s": _pct(latencies, 95),
        "latency_max_s": max(latencies) if latencies else None,
        "latency_min_s": min(latencies) if latencies else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6,
    }


def main() -> int:
    spec = json.loads(sys.argv[1])
    os.environ.setdefault("AIRFLOW_HOME", os.path.join(spec["work"], "airflow-home"))
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    os.environ["AIRFLOW_CONN_CLOUDELEMENTS_BENCH"] = json.dumps(
        {
            "conn_type": "cloudelements",
            "host": spec["base_url"],
            "extra": {"user_secret": spec["user_secret"], "organization_secret": spec["org_secret"]},
        }
    )
    if spec.get("patches"):
        raise SystemExit(f"unknown trigger patches {spec['patches']} (shared_client is shipped since 1c663cb)")
    result = asyncio.run(_main(spec))
    result["patches"] = spec.get("patches", [])
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
