"""DAGs of the model-based test (tests/model/test_model.py): one per (element, resource) stream.

Each stream DAG has two independent extract tasks, ``bulk`` and ``paged`` (the harness runs one and
marks the other success with ``dag.test(mark_success_pattern=...)``), scheduled every
``CE_MODEL_INTERVAL_SECONDS`` (default 1 s) so data intervals are real and short. ``ce_model_load``
loads the manifests of :data:`tests.model.support.PLAN` into the ``cloudelements_warehouse``
connection. The operators are the provider's own; the subclasses only read their knobs from the plan,
add the "worker dies" and "activity before download" hooks, and record results and errors.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any

from airflow.sdk import DAG

from airflow_provider_cloudelements.transfers.cloudelements_to_storage.bulk import CloudElementsBulkExtractOperator
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.paged import CloudElementsPagedExtractOperator
from airflow_provider_cloudelements.transfers.storage_to_sql.operator import CloudElementsSqlUpsertOperator
from tests.model import support

INTERVAL = timedelta(seconds=float(os.environ.get("CE_MODEL_INTERVAL_SECONDS", "1")))
STREAMS = [(e, r) for e in ("quickbooks", "quickbooksonprem", "freshbooksv2") for r in ("customers", "invoices")]


def stream_dag_id(element_key: str, resource: str) -> str:
    return f"ce_model_{element_key}_{resource}"


def _configure(op: Any) -> None:
    plan = support.PLAN
    op.full_refresh = plan.full_refresh
    op.window_start = plan.window_start
    op.window_end = plan.window_end
    op.instance_id = plan.instance_id
    op.__dict__.pop("hook", None)  # the cached hook holds the previous run's instance
    if hasattr(op, "deferrable"):
        op.deferrable = plan.deferrable
        op.max_failed_records = plan.max_failed_records


def _recorded(op: Any, call: Any) -> Any:
    try:
        result = call()
    except BaseException as err:
        if type(err).__name__ != "TaskDeferred":
            support.ERRORS[op.task_id] = err
        raise
    support.RESULTS[op.task_id] = result
    return result


class ModelBulkExtract(CloudElementsBulkExtractOperator):
    def execute(self, context: Any) -> Any:
        _configure(self)
        return _recorded(self, lambda: super(ModelBulkExtract, self).execute(context))

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        _configure(self)
        if support.PLAN.die == "on_resume":
            support.ERRORS[self.task_id] = support.WorkerDied("worker died on resume")
            raise support.ERRORS[self.task_id]
        return _recorded(self, lambda: super(ModelBulkExtract, self).execute_complete(context, event))

    # Extension points of CloudElementsBulkExtractOperator: ``_remember`` stores the job id right after
    # the submit, ``_download`` streams the finished job's file. Signatures are passed through as-is.
    def _remember(self, context: Any, job_id: str, *args: Any, **kwargs: Any) -> Any:
        result = super()._remember(context, job_id, *args, **kwargs)
        if support.PLAN.die == "after_submit":
            raise support.WorkerDied(f"worker died after submitting bulk job {job_id}")
        return result

    def _download(self, *args: Any, **kwargs: Any) -> Any:
        if support.PLAN.before_download is not None:
            support.PLAN.before_download()
        return super()._download(*args, **kwargs)


class ModelPagedExtract(CloudElementsPagedExtractOperator):
    def execute(self, context: Any) -> Any:
        _configure(self)
        return _recorded(self, lambda: super(ModelPagedExtract, self).execute(context))


class ModelLoad(CloudElementsSqlUpsertOperator):
    def execute(self, context: Any) -> Any:
        self.manifest = list(support.PLAN.manifests)
        return _recorded(self, lambda: super(ModelLoad, self).execute(context))


START = datetime(2026, 1, 1, tzinfo=timezone.utc)

for _element, _resource in STREAMS:
    with DAG(dag_id=stream_dag_id(_element, _resource), schedule=INTERVAL, start_date=START, catchup=False):
        common = {"resource": _resource, "element_key": _element, "retries": 0, "poll_interval": 0.05}
        ModelBulkExtract(task_id="bulk", timeout=60, **common)
        common.pop("poll_interval")
        ModelPagedExtract(task_id="paged", **common)

with DAG(dag_id="ce_model_load", schedule=None, start_date=START, catchup=False):
    ModelLoad(task_id="load", manifest=[], conn_id="cloudelements_warehouse", retries=0)
