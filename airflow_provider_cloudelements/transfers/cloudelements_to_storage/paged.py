"""Cloud Elements → object storage by paged GETs: :class:`CloudElementsPagedExtractOperator` (reference §3.3)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.base import _CloudElementsExtractBase
from airflow_provider_cloudelements.transfers.cloudelements_to_storage.recordfiles import ParquetSink
from airflow_provider_cloudelements.transfers.landing import (
    FORMAT_SUFFIX,
    ProgressLogger,
    landed_name,
    run_token,
    staged_file,
    write_ndjson,
)
from airflow_provider_cloudelements.transfers.plan import snapshot_time
from airflow_provider_cloudelements.utils.validation import as_int

if TYPE_CHECKING:
    from airflow.sdk import Context


class CloudElementsPagedExtractOperator(_CloudElementsExtractBase):
    """Extract one Finance-hub resource by paged ``GET /hubs/finance/{resource}`` calls (reference §3.3).

    For resources or elements without bulk, or small incremental windows. Same parameters (except the
    bulk-only ones), same landing and the same manifest as :class:`CloudElementsBulkExtractOperator`
    (``mode="paged"``, ``job_id=None``). Pages are streamed to the file as they arrive
    (``CloudElementsHook.iter_records`` follows ``Elements-Next-Page-Token`` to the end).
    ``snapshot_at`` is the server time taken before the first page.

    :param page_size: records per page (default: the connection's ``page_size``).
    :param reconcile_total: ask for ``Elements-Total-Count`` and fail if the landed count differs;
        default ``None`` = on for full refreshes (whose manifest may be ``complete``), off otherwise.
    :raises CloudElementsReconciliationError: count mismatch with ``reconcile_total``.
    """

    mode = "paged"

    def __init__(self, *, page_size: int | None = None, reconcile_total: bool | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if page_size is not None:
            as_int(page_size, "page_size", minimum=1)
        if self.output_format == "csv":
            raise CloudElementsConfigError("output_format='csv' is only available for bulk extracts")
        self.page_size = page_size
        self.reconcile_total = reconcile_total

    def execute(self, context: Context) -> dict[str, Any]:
        plan = self._resolve(context)
        where = self._where_for(plan)
        keep = self._record_filter(plan)
        reconcile = plan.window.full_refresh if self.reconcile_total is None else bool(self.reconcile_total)
        progress = ProgressLogger(f"Paged extract {plan.element_key}/{self.resource}", logger=self.log)  # type: ignore[arg-type]
        pages = self.hook.iter_records(self.resource, where=where, page_size=self.page_size, reconcile_total=reconcile)
        snapshot = snapshot_time(self.hook)  # before the first page is requested
        token = run_token(snapshot)
        target = plan.folder_path / landed_name(plan.resource, token, FORMAT_SUFFIX[self.output_format])
        selected = (r for r in pages if keep is None or keep(r))
        with staged_file(target, "wb") as (handle, publish):
            sink = handle if self.output_format == "ndjson" else ParquetSink(handle)
            records, nbytes = write_ndjson(sink, selected, progress=progress)  # type: ignore[arg-type]
            if isinstance(sink, ParquetSink):
                sink.close()
            publish()
        tombstones = self._land_tombstones(plan, token)
        manifest = plan.manifest(
            mode=self.mode,
            target=target,
            records=records,
            nbytes=nbytes,
            job_id=None,
            snapshot_at=snapshot,
            complete=plan.may_be_complete,
            deleted_path=tombstones.path,
            deleted=tombstones.deleted,
        )
        return self._publish_manifest(context, manifest)
