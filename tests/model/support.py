"""In-process plumbing between the model-based test and the DAG it runs (``dags/ce_model_dags.py``).

``dag.test()`` runs every task in this process (``run_task_in_process``), so the harness hands each run
its plan through :data:`PLAN` and reads results and errors back from :data:`RESULTS`/:data:`ERRORS`
instead of templated params and XCom round trips. Nothing here talks to Cloud Elements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class WorkerDied(Exception):
    """Raised inside a task to play a worker that dies (the task fails without cleanup)."""


@dataclass
class RunPlan:
    """What the next ``dag.test()`` of a model DAG should do.

    :param instance_id: the element instance the extract reads.
    :param deferrable: bulk extract in the triggerer (True) or polling on the worker.
    :param full_refresh: ``True``/``False``/``"auto"`` (operator parameter).
    :param window_start: explicit window start (ISO) or ``None`` for the data interval.
    :param window_end: explicit window end (ISO) or ``None``.
    :param max_failed_records: operator parameter.
    :param die: ``""``, ``"after_submit"`` (right after the job id is stored) or ``"on_resume"``
        (when the deferred task resumes, before anything is downloaded).
    :param before_download: called (no arguments) after the bulk job finished, before its file is
        downloaded: emulator activity "during an extraction".
    :param manifests: for the load DAG, the manifests to load (in order).
    """

    instance_id: int | None = None
    deferrable: bool = True
    full_refresh: bool | str = "auto"
    window_start: str | None = None
    window_end: str | None = None
    max_failed_records: int = 0
    die: str = ""
    before_download: Callable[[], None] | None = None
    manifests: list[dict[str, Any]] = field(default_factory=list)


PLAN = RunPlan()
#: task_id -> the value the task returned in the last run.
RESULTS: dict[str, Any] = {}
#: task_id -> the exception the task raised in the last run.
ERRORS: dict[str, BaseException] = {}


def reset(plan: RunPlan) -> None:
    """Install ``plan`` for the next run and forget the previous run's results."""
    global PLAN
    PLAN = plan
    RESULTS.clear()
    ERRORS.clear()
