"""``cloudelements-emulator`` / ``python -m cloudelements_emulator``.

Starts the emulator on ``--host``/``--port``, prints
``Cloud Elements emulator listening on http://HOST:PORT/elements/api-v2`` when ready (secrets are
never printed), optionally writes the port to ``--port-file``, and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from cloudelements_emulator.config import (
    DEFAULT_ORGANIZATION_SECRET,
    DEFAULT_USER_SECRET,
    EmulatorConfig,
    FaultConfig,
)

_FAULT_HELP = {
    "path_prefix": "apply faults only to paths starting with this (e.g. /elements/api-v2/hubs/finance/bulk)",
    "methods": "apply faults only to these HTTP methods (comma-separated, e.g. GET)",
    "burst_429": "the next N matching requests get 429 + Retry-After",
    "rate_429": "probability (0-1) of a 429 per matching request",
    "retry_after_seconds": "Retry-After value (seconds) of injected 429s",
    "burst_5xx": "the next N matching requests get --status-5xx with a providerMessage",
    "rate_5xx": "probability (0-1) of a 5xx per matching request",
    "status_5xx": "HTTP status used for injected 5xx (default 503)",
    "burst_throttle_500": "the next N matching requests get 500 with the Intuit ThrottleExceeded providerMessage",
    "rate_throttle_500": "probability (0-1) of the Intuit throttle 500",
    "burst_html_502": "the next N matching requests get an nginx HTML 502 page",
    "slow_seconds": "delay (seconds) added to slowed requests",
    "burst_slow": "the next N matching requests are delayed by --slow-seconds",
    "rate_slow": "probability (0-1) that a request is delayed by --slow-seconds",
    "burst_slow_response": "the next N matching requests are processed, then their response is held back "
    "--slow-seconds",
    "drop_download_after_bytes": "bulk downloads close the connection after this many bytes",
    "drop_download_times": "with --drop-download-after-bytes: cut off only the next N downloads "
    "(unset = every download)",
    "rate_limit_per_minute": "requests per minute allowed per element token; over it -> 429 + Retry-After",
    "bulk_fail": "bulk jobs end FAILED",
    "bulk_failed_records": "leave N records out of each bulk file (recordsFailedCount, /errors)",
}


def _resource_count(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or not name or not value.isdigit():
        raise argparse.ArgumentTypeError(f"expected RESOURCE=N, got {text!r}")
    return name, int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudelements-emulator",
        description="Offline emulator of the Cloud Elements REST API (Finance hub: QuickBooks Online, "
        "QuickBooks Enterprise, FreshBooks; platform, events and bulk APIs).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 = pick a free port)")
    parser.add_argument("--port-file", help="write the bound port to this file once ready")
    parser.add_argument("--seed", type=int, default=7, help="seed for generated data and random faults")
    parser.add_argument("--records", type=int, default=40, help="records generated lazily per (instance, resource)")
    parser.add_argument(
        "--records-for",
        type=_resource_count,
        action="append",
        default=[],
        metavar="RESOURCE=N",
        help="per-resource record count override (repeatable)",
    )
    parser.add_argument("--data-dir", help="persistent data directory (default: a temp dir removed on exit)")
    parser.add_argument(
        "--user-secret",
        default=None,
        help="account User secret (default: env CE_EMULATOR_USER_SECRET or a fixed dev value)",
    )
    parser.add_argument(
        "--organization-secret",
        default=None,
        help="account Organization secret (default: env CE_EMULATOR_ORGANIZATION_SECRET or a fixed dev value)",
    )
    parser.add_argument(
        "--bulk-done-status",
        choices=("COMPLETED", "COMPLETE"),
        default="COMPLETED",
        help="terminal success status of bulk jobs (reference §4.2/§9)",
    )
    parser.add_argument(
        "--bulk-min-seconds", type=float, default=0.2, help="minimum time a bulk job stays CREATED/RUNNING"
    )
    parser.add_argument(
        "--poller-interval-seconds",
        type=float,
        default=None,
        help="event poller interval in seconds (default: each instance's event.poller.refresh_interval minutes)",
    )
    parser.add_argument(
        "--anchor",
        default="2026-01-01T00:00:00Z",
        help="generated timestamps spread over the 365 days before this instant",
    )
    parser.add_argument(
        "--webhook-backoff-factor",
        type=float,
        default=1.0,
        help="multiplier of the webhook retry delays (4^attempt seconds)",
    )
    parser.add_argument(
        "--webhook-max-attempts",
        type=int,
        default=9,
        help="delivery attempts before a webhook delivery is queued",
    )
    parser.add_argument(
        "--simulate-activity-every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="every SECONDS, create/update/delete records in every generated dataset",
    )
    parser.add_argument("--activity-creates", type=int, default=2, help="creates per resource per activity tick")
    parser.add_argument("--activity-updates", type=int, default=2, help="updates per resource per activity tick")
    parser.add_argument("--activity-deletes", type=int, default=1, help="deletes per resource per activity tick")
    parser.add_argument(
        "--qbo-sync-token-ids",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve QuickBooks Online ids as '<id>|<syncToken>' (\"22|3\") as the real element does "
        "(QBO tips page; default on); --no-qbo-sync-token-ids serves the bare id",
    )
    parser.add_argument("--log-level", default="WARNING", help="Python logging level")
    faults = parser.add_argument_group("faults (all off by default; Cloud Elements API routes only)")
    for f in dataclasses.fields(FaultConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in (bool, "bool"):
            faults.add_argument(flag, action="store_true", help=_FAULT_HELP[f.name])
        else:
            kind = float if "float" in str(f.type) else int if "int" in str(f.type) else str
            faults.add_argument(flag, type=kind, default=f.default, help=_FAULT_HELP[f.name])
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    faults = FaultConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(FaultConfig)})
    user = args.user_secret or os.environ.get("CE_EMULATOR_USER_SECRET") or DEFAULT_USER_SECRET
    org = args.organization_secret or os.environ.get("CE_EMULATOR_ORGANIZATION_SECRET") or DEFAULT_ORGANIZATION_SECRET
    return EmulatorConfig(
        seed=args.seed,
        records_per_resource=args.records,
        records_overrides=dict(args.records_for),
        data_dir=args.data_dir,
        bulk_done_status=args.bulk_done_status,
        bulk_min_seconds=args.bulk_min_seconds,
        poller_interval_seconds=args.poller_interval_seconds,
        anchor=args.anchor,
        faults=faults,
        webhook_backoff_factor=args.webhook_backoff_factor,
        webhook_max_attempts=args.webhook_max_attempts,
        user_secret=user,
        organization_secret=org,
        qbo_sync_token_ids=args.qbo_sync_token_ids,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from cloudelements_emulator.server import EmulatorServer

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmulatorServer(config_from_args(args), host=args.host, port=args.port) as emu:
        if args.port_file:
            tmp = args.port_file + ".tmp"
            with open(tmp, "w") as fh:
                fh.write(str(emu.port))
            os.replace(tmp, args.port_file)
        print(f"Cloud Elements emulator listening on {emu.base_url}", flush=True)
        while not stop.wait(args.simulate_activity_every or 3600):
            if args.simulate_activity_every:
                try:
                    emu.state.simulate_all(args.activity_creates, args.activity_updates, args.activity_deletes)
                except Exception:  # keep serving
                    logging.getLogger(__name__).exception("activity simulation failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
