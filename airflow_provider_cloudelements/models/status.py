"""Bulk job statuses (reference §4.2) and counts, shared by the hook, operators, sensor and trigger."""

from __future__ import annotations

from enum import Enum
from typing import Any

from airflow_provider_cloudelements.exceptions import (
    CloudElementsBulkJobError,
    CloudElementsConfigError,
    CloudElementsReconciliationError,
)
from airflow_provider_cloudelements.utils.validation import as_int


class CloudElementsBulkJobStatus(str, Enum):
    """Status of a Cloud Elements bulk job as returned by ``GET /bulk/{id}/status``.

    ``COMPLETED`` is what the service emits; ``COMPLETE`` appears in one vendor sample (reference §4.2,
    §9) and is accepted as a synonym. ``RUNNING`` is the emulator's (and our assumed) in-progress
    name; other in-progress spellings seen in the wild are mapped to it by :meth:`parse`.
    """

    CREATED = "CREATED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    COMPLETE = "COMPLETE"
    FAILED = "FAILED"
    ABORTED = "ABORTED"
    CANCELLED = "CANCELLED"

    @classmethod
    def parse(cls, value: object) -> CloudElementsBulkJobStatus:
        """Map a raw status string (any case) to a member.

        :raises CloudElementsBulkJobError: for a status this provider does not know, so a new or
            misspelled terminal state fails loudly instead of being polled forever.
        """
        text = str(value or "").strip().upper()
        text = _ALIASES.get(text, text)
        try:
            return cls(text)
        except ValueError:
            raise CloudElementsBulkJobError(f"Unknown bulk job status {value!r}") from None

    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    def is_success(self) -> bool:
        return self in SUCCESS_STATUSES


_ALIASES = {
    "QUEUED": "CREATED",
    "PENDING": "CREATED",
    "IN_PROGRESS": "RUNNING",
    "INPROGRESS": "RUNNING",
    "PROCESSING": "RUNNING",
    "CANCELED": "CANCELLED",
}

SUCCESS_STATUSES = frozenset({CloudElementsBulkJobStatus.COMPLETED, CloudElementsBulkJobStatus.COMPLETE})
FAILURE_STATUSES = frozenset(
    {CloudElementsBulkJobStatus.FAILED, CloudElementsBulkJobStatus.ABORTED, CloudElementsBulkJobStatus.CANCELLED}
)
TERMINAL_STATUSES = SUCCESS_STATUSES | FAILURE_STATUSES
NON_TERMINAL_STATUSES = frozenset(CloudElementsBulkJobStatus) - TERMINAL_STATUSES


def status_count(status: dict[str, Any], key: str, job_id: str) -> int | None:
    """An integer count from a bulk status (``recordsCount``, ``recordsFailedCount``); ``None`` if absent.

    ``recordsFailedCount`` absent means 0.

    :raises CloudElementsReconciliationError: ``recordsCount`` that is not a non-negative integer.
    :raises CloudElementsBulkJobError: ``recordsFailedCount`` that is not a non-negative integer.
    """
    value = status.get(key)
    if value is None or value == "":
        return 0 if key == "recordsFailedCount" else None
    try:
        return as_int(value, f"Bulk job {job_id}: status field {key}", minimum=0)
    except CloudElementsConfigError:
        error = CloudElementsReconciliationError if key == "recordsCount" else CloudElementsBulkJobError
        raise error(f"Bulk job {job_id}: status field {key} is not a record count: {str(value)[:40]!r}") from None
