"""Thread-safe counters served by ``EmulatorState.stats()`` and ``GET /_emulator/stats``."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Stats:
    """``requests`` per ``"METHOD /route/template"``, bulk jobs per instance, injected faults."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.bulk_jobs_created: Counter[int] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self.webhook_attempts = 0

    def count_request(self, key: str) -> None:
        with self._lock:
            self.requests[key] += 1

    def count_bulk_job(self, instance_id: int) -> None:
        with self._lock:
            self.bulk_jobs_created[instance_id] += 1

    def count_fault(self, kind: str) -> None:
        with self._lock:
            self.faults_injected[kind] += 1

    def count_webhook_attempt(self) -> None:
        with self._lock:
            self.webhook_attempts += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self.requests),
                "bulk_jobs_created": dict(self.bulk_jobs_created),
                "faults_injected": dict(self.faults_injected),
                "webhook_attempts": self.webhook_attempts,
            }
