"""Emulator configuration (plain dataclasses, no I/O).

:class:`EmulatorConfig` is what :class:`~.server.EmulatorServer` and the CLI are built from;
:class:`FaultConfig` describes injected failures (reference §6.3 — the real platform documents no
429 contract, the emulator injects one so clients can test their retry paths).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

#: Fixed development secrets (base64-ish with ``+ / =``, reference §1.2). Never printed.
DEFAULT_USER_SECRET = "7OpR4MRo7wnPoVKkKFXHhHBUPRzqutoem/d+WEnR1kY="
DEFAULT_ORGANIZATION_SECRET = "c2VjcmV0LW9yZy9kZXYrZW11bGF0b3I9PT0xMjM0NTY="


@dataclass
class FaultConfig:
    """Injected faults; every field is off by default.

    Faults apply only to Cloud Elements API routes (``/elements/api-v2/...``), never to
    ``/_emulator``. ``path_prefix`` narrows them further (e.g.
    ``"/elements/api-v2/hubs/finance/bulk"``) and ``methods`` to some HTTP verbs (``"GET"``,
    ``"GET,PUT"``: e.g. fault the polls but not the non-idempotent submit). ``burst_*`` fields
    are deterministic counters (the next N matching requests), ``rate_*`` fields are
    probabilities in ``[0, 1]`` drawn from an RNG seeded from the emulator seed.

    :ivar burst_429/rate_429: answer 429 with ``Retry-After: retry_after_seconds`` and a JSON error.
    :ivar burst_5xx/rate_5xx: answer ``status_5xx`` with a JSON error incl. ``providerMessage``.
    :ivar burst_throttle_500/rate_throttle_500: answer 500 with the Intuit throttle text as
        ``providerMessage`` (``message=ThrottleExceeded; errorCode=003001; statusCode=429``).
    :ivar burst_html_502: answer 502 with an nginx-like ``text/html`` body.
    :ivar slow_seconds/burst_slow/rate_slow: delay (seconds) before answering.
    :ivar burst_slow_response: the next N matching requests are PROCESSED, then their response is held
        back ``slow_seconds`` (a client timeout after the server did the work: an ambiguous POST).
    :ivar drop_download_after_bytes: bulk downloads close the connection after that many bytes.
    :ivar drop_download_times: with ``drop_download_after_bytes``, only the next N bulk downloads
        are cut off (later ones are complete); ``None`` (default) cuts off every download.
    :ivar rate_limit_per_minute: per element token (or per user when no token); over the limit → 429.
    :ivar bulk_fail: bulk jobs end ``FAILED``.
    :ivar bulk_failed_records: that many records are left out of each bulk download file, counted
        in ``recordsFailedCount`` and listed in ``/bulk/{id}/errors``.
    """

    path_prefix: str | None = None
    methods: str | None = None
    burst_429: int = 0
    rate_429: float = 0.0
    retry_after_seconds: float = 1.0
    burst_5xx: int = 0
    rate_5xx: float = 0.0
    status_5xx: int = 503
    burst_throttle_500: int = 0
    rate_throttle_500: float = 0.0
    burst_html_502: int = 0
    slow_seconds: float = 0.0
    burst_slow: int = 0
    rate_slow: float = 0.0
    burst_slow_response: int = 0
    drop_download_after_bytes: int | None = None
    drop_download_times: int | None = None
    rate_limit_per_minute: int | None = None
    bulk_fail: bool = False
    bulk_failed_records: int = 0

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def updated(self, **changes: Any) -> FaultConfig:
        """Return a copy with ``changes`` applied.

        :raises ValueError: for an unknown field name.
        """
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ValueError(f"Unknown fault field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class EmulatorConfig:
    """Everything that shapes one emulator run.

    :ivar seed: makes generated data, ids of generated records and random faults deterministic.
    :ivar records_per_resource: records generated lazily per (instance, resource) on first access.
    :ivar records_overrides: per-resource override of ``records_per_resource``.
    :ivar data_dir: ``None`` → a temp dir removed on stop; otherwise a persistent directory
        (SQLite database + bulk files) that survives restarts.
    :ivar bulk_done_status: ``"COMPLETED"`` (default) or ``"COMPLETE"`` (reference §4.2, §9).
    :ivar bulk_min_seconds: a bulk job stays CREATED/RUNNING at least this long (seconds).
    :ivar poller_interval_seconds: ``None`` → each instance's ``event.poller.refresh_interval``
        (minutes); tests set seconds.
    :ivar anchor: generated timestamps are spread over the 365 days before this instant (ISO-8601).
    :ivar webhook_backoff_factor: multiplies the reference §5.7 retry delays (4^x seconds).
    :ivar webhook_max_attempts: delivery attempts before a delivery is queued (reference §5.7: 9).
    :ivar webhook_timeout_seconds: HTTP timeout of one delivery attempt.
    :ivar qbo_sync_token_ids: ``True`` (default) serves QuickBooks Online record ids as
        ``<id>|<syncToken>`` (``"22|3"``) as the real element does (QBO tips page, reference §3.5): the
        id of a record changes on every update, so clients must key by the part before ``|``.
        ``False`` serves the bare ``"22"``. Paths and CEQL ``id`` accept both forms either way.
    """

    seed: int = 7
    records_per_resource: int = 40
    records_overrides: dict[str, int] = field(default_factory=dict)
    data_dir: str | None = None
    user_secret: str = DEFAULT_USER_SECRET
    organization_secret: str = DEFAULT_ORGANIZATION_SECRET
    bulk_done_status: str = "COMPLETED"
    bulk_min_seconds: float = 0.2
    poller_interval_seconds: float | None = None
    anchor: str = "2026-01-01T00:00:00Z"
    faults: FaultConfig = field(default_factory=FaultConfig)
    webhook_backoff_factor: float = 1.0
    webhook_max_attempts: int = 9
    webhook_timeout_seconds: float = 5.0
    qbo_sync_token_ids: bool = True

    def __post_init__(self) -> None:
        if self.bulk_done_status not in ("COMPLETED", "COMPLETE"):
            raise ValueError("bulk_done_status must be 'COMPLETED' or 'COMPLETE'")
        for name in ("user_secret", "organization_secret"):
            if len(getattr(self, name)) < 20:
                raise ValueError(f"{name} must be at least 20 characters")

    def records_for(self, resource: str) -> int:
        """Number of records to generate for ``resource``."""
        return int(self.records_overrides.get(resource, self.records_per_resource))
