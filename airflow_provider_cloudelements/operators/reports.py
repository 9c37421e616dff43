"""Land a QuickBooks Online / QuickBooks Enterprise finance report for the run's data interval.

A report is one ``GET`` (reference §10.5), so there is no job to wait for and the operator never defers:

* QuickBooks Online: ``GET /hubs/finance/reports/{reportId}?startDate=yyyy-MM-dd&endDate=yyyy-MM-dd``;
* QuickBooks Enterprise: ``GET /hubs/finance/reports?where=ReportName='…' and ReportPeriodStart='…' and
  ReportPeriodEnd='…'`` (the answer is a list holding one report).

The period is the data interval ``[start, end)`` read as calendar days in ``report_timezone``: first day
``start``, last day the day of ``end`` minus one microsecond (a monthly interval Jan 1 → Feb 1 gives
``2026-01-01``..``2026-01-31``). Two files land in
``<output_base>/<element_key>/instance=<id>/reports/<report slug>/period=<first day>_<last day>/``
under run-unique names (:func:`~airflow_provider_cloudelements.transfers.landing.run_token`), each written
atomically, then ``_manifest.json`` last (:func:`~airflow_provider_cloudelements.transfers.landing.publish_manifest`):

* ``<slug>.<token>.json`` — the report exactly as Cloud Elements answered (manifest ``report_path``);
* ``<slug>.<token>.ndjson`` — one flat row per report line (manifest ``path``)::

    {"report": "profit-and-loss", "period_start": "2026-01-01", "period_end": "2026-01-31", "line": 1,
     "row_type": "Data"|"Summary"|"Subtotal"|"Total", "section_path": ["Income"],
     "columns": {"Account": "Acme Corp", "Total": "120.00"}}

  Column names are the report's column titles (QBO ``columns.column[].colTitle``, QBE
  ``ColDesc[].ColTitle.value``), the column type when the title is empty (``Account``, ``Label``).

The returned manifest is the extracts' manifest
(:class:`~airflow_provider_cloudelements.models.manifest.ExtractManifest`, ``mode="report"``,
``resource`` = the report slug, ``records`` = rows) plus ``report``, ``report_title``,
``report_path`` and ``period`` ``{"start", "end"}``. A rerun of the same interval replaces the folder's
manifest and removes the replaced run's files.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, ObjectStoragePath

from airflow_provider_cloudelements import storage
from airflow_provider_cloudelements.exceptions import CloudElementsApiError, CloudElementsConfigError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.models.timestamps import zone
from airflow_provider_cloudelements.models.window import ExtractWindow, resolve_window
from airflow_provider_cloudelements.transfers.landing import (
    landed_name,
    publish_manifest,
    read_manifest,
    remove_quietly,
    run_token,
    staged_file,
    write_json_atomic,
    write_ndjson,
)
from airflow_provider_cloudelements.transfers.plan import ExtractPlan, default_output_base, snapshot_time
from airflow_provider_cloudelements.utils.elements import get_element
from airflow_provider_cloudelements.utils.validation import as_instance_id

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Elements with a reports API (reference §3.2 row "reports", §10.5).
REPORT_ELEMENTS = ("quickbooks", "quickbooksonprem")


def report_slug(report: str) -> str:
    """Return the file-name form of a report id/name.

    Example: ``"Profit and Loss Budget vs. Actual"`` → ``profit-and-loss-budget-vs-actual``.

    :raises CloudElementsConfigError: a name without letters or digits.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", report.lower()).strip("-")
    if not slug:
        raise CloudElementsConfigError(f"report {report!r} has no letters or digits")
    return slug


def report_period(window: ExtractWindow, tz: str) -> tuple[date, date]:
    """``(first day, last day)`` (both inclusive) of the interval ``[start, end)`` in zone ``tz``.

    An open start (a zero-width first interval) gives the single day before ``end``.

    :raises CloudElementsConfigError: no interval end.
    """
    if window.end is None:
        raise CloudElementsConfigError("A report needs a data interval end (or period_end)")
    last = (window.end - timedelta(microseconds=1)).astimezone(zone(tz)).date()
    first = window.start.astimezone(zone(tz)).date() if window.start is not None else last
    return first, last


def _columns(titles: Sequence[str], cells: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, cell in enumerate(cells if isinstance(cells, list) else []):
        name = titles[i] if i < len(titles) and titles[i] else f"col{i + 1}"
        out[name] = cell.get("value") if isinstance(cell, Mapping) else cell
    return out


def qbo_report_rows(report: Mapping[str, Any]) -> Iterator[tuple[str, list[str], dict[str, Any]]]:
    """Yield ``(row_type, section_path, columns)`` per line of an Intuit report.

    Sections nest; a section's header gives its name, its ``Data`` lines and its ``Summary`` line carry the
    section path.
    """
    columns = (report.get("columns") or {}).get("column") or []
    titles = [str(c.get("colTitle") or c.get("colType") or "") for c in columns if isinstance(c, Mapping)]

    def walk(rows: Any, path: list[str]) -> Iterator[tuple[str, list[str], dict[str, Any]]]:
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, Mapping):
                continue
            nested = (row.get("rows") or {}).get("row")
            if nested is not None or row.get("header") or row.get("summary"):
                header = (row.get("header") or {}).get("colData") or []
                name = header[0].get("value") if header and isinstance(header[0], Mapping) else None
                section = [*path, str(name or row.get("group") or "")]
                yield from walk(nested, section)
                if row.get("summary"):
                    yield "Summary", section, _columns(titles, row["summary"].get("colData"))
            else:
                yield str(row.get("type") or "Data"), path, _columns(titles, row.get("colData"))

    yield from walk((report.get("rows") or {}).get("row"), [])


def qbe_report_rows(report: Mapping[str, Any]) -> Iterator[tuple[str, list[str], dict[str, Any]]]:
    """Yield ``(row_type, section_path, columns)`` per ``DataRow``/``SubtotalRow``/``TotalRow`` of a QBXML report.

    The section path is the row's ``RowData.rowType``.
    """
    desc = report.get("ColDesc") or []
    titles = [
        str((d.get("ColTitle") or {}).get("value") or d.get("ColType") or "") for d in desc if isinstance(d, Mapping)
    ]
    data = report.get("ReportData") or {}
    for key, kind in (("DataRow", "Data"), ("SubtotalRow", "Subtotal"), ("TotalRow", "Total")):
        rows = data.get(key)
        for row in rows if isinstance(rows, list) else [rows] if isinstance(rows, Mapping) else []:
            row_type = (row.get("RowData") or {}).get("rowType")
            path = [str(row_type)] if row_type and kind != "Total" else []
            yield kind, path, _columns(titles, row.get("ColData"))


class CloudElementsReportOperator(BaseOperator):
    """Land one QuickBooks Online or QuickBooks Enterprise report for the run's data interval (module docstring).

    :param report: QBO report id (``profit-and-loss``, see ``GET /reports/metadata``) or QBE ``ReportName``
        (``Profit and Loss Standard``, see ``GET /report-types``). Templated.
    :param instance_id: element instance id; default: the connection's ``instance_id`` extra. Templated.
    :param element_key: skip the ``GET /instances/{id}`` lookup of the element key.
    :param cloudelements_conn_id: Airflow connection of type ``cloudelements``.
    :param output_base: landing root (any ``ObjectStoragePath`` URI); default env
        ``CLOUDELEMENTS_OUTPUT_BASE`` or ``~/cloudelements-data``. Templated.
    :param output_conn_id: Airflow connection of the object store (as for the extract operators). Templated.
    :param period_start: explicit interval start (overrides ``data_interval_start``). Templated.
    :param period_end: explicit interval end, exclusive (overrides ``data_interval_end``). Templated.
    :param report_timezone: IANA zone the interval is read in to get calendar days (the company's
        books zone); default UTC.
    :param report_params: further report parameters: QBO query parameters (``accountingMethod``…),
        QBE CEQL equalities (``ReportBasis``, ``SummarizeColumnsBy``).
    :return: the manifest (module docstring).
    :raises CloudElementsConfigError: an element without reports, a bad report name or interval
        (before the report call).
    :raises CloudElementsApiError: a QBE answer that is not exactly one report; API errors.
    """

    template_fields: Sequence[str] = (
        "report",
        "instance_id",
        "output_base",
        "output_conn_id",
        "period_start",
        "period_end",
    )
    ui_color = "#e0f2fe"

    def __init__(
        self,
        *,
        report: str,
        instance_id: int | str | None = None,
        element_key: str | None = None,
        cloudelements_conn_id: str = CloudElementsHook.default_conn_name,
        output_base: str | None = None,
        output_conn_id: str | None = None,
        period_start: Any = None,
        period_end: Any = None,
        report_timezone: str = "UTC",
        report_params: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if element_key is not None and get_element(element_key).key not in REPORT_ELEMENTS:
            raise CloudElementsConfigError(f"element_key {element_key!r} has no reports; use one of {REPORT_ELEMENTS}")
        self.report = report
        self.instance_id = instance_id
        self.element_key = element_key
        self.cloudelements_conn_id = cloudelements_conn_id
        self.output_base = output_base
        self.output_conn_id = output_conn_id
        self.period_start = period_start
        self.period_end = period_end
        if not isinstance(report_timezone, str) or not report_timezone.strip():
            raise CloudElementsConfigError(f"report_timezone must be an IANA time zone name, got {report_timezone!r}")
        try:
            zone(report_timezone.strip())
        except CloudElementsConfigError:
            raise CloudElementsConfigError(f"report_timezone {report_timezone!r} is not a known time zone") from None
        self.report_timezone = report_timezone.strip()
        self.report_params = dict(report_params or {})

    @cached_property
    def hook(self) -> CloudElementsHook:
        iid = None if self.instance_id in (None, "") else as_instance_id(self.instance_id)
        return CloudElementsHook(cloudelements_conn_id=self.cloudelements_conn_id, instance_id=iid)

    def execute(self, context: Context) -> dict[str, Any]:
        if not isinstance(self.report, str) or not self.report.strip():
            raise CloudElementsConfigError(f"report must be a non-empty string, got {self.report!r}")
        slug = report_slug(self.report)
        window = resolve_window(
            context, full_refresh=False, lookback=0, window_start=self.period_start, window_end=self.period_end
        )
        first, last = report_period(window, self.report_timezone)
        root = storage.output_root(self.output_base or default_output_base(), self.output_conn_id)  # no network
        hook = self.hook
        instance_id = hook.instance_id
        if instance_id is None:
            raise CloudElementsConfigError("No element instance id: pass instance_id= or set the connection extra")
        element_key = self.element_key or hook.get_element_key()
        if element_key not in REPORT_ELEMENTS:
            raise CloudElementsConfigError(f"Element {element_key!r} has no reports API; use one of {REPORT_ELEMENTS}")
        folder = (
            root
            / element_key
            / f"instance={instance_id}"
            / "reports"
            / slug
            / f"period={first.isoformat()}_{last.isoformat()}"
        )
        storage.check_output_folder(folder)  # before the report is asked for: storage errors cost no API call
        snapshot = snapshot_time(hook)  # before the report is requested: a lower bound of its time
        body, title, rows = self._fetch(hook, element_key, first, last)
        token = run_token(snapshot)
        report_path = folder / landed_name(slug, token, "json")
        rows_path = folder / landed_name(slug, token, "ndjson")
        write_json_atomic(report_path, body)
        flat = (
            {
                "report": self.report,
                "period_start": first.isoformat(),
                "period_end": last.isoformat(),
                "line": line,
                "row_type": row_type,
                "section_path": path,
                "columns": columns,
            }
            for line, (row_type, path, columns) in enumerate(rows, start=1)
        )
        with staged_file(rows_path, "wb") as (handle, publish):
            records, nbytes = write_ndjson(handle, flat)
            publish()
        plan = ExtractPlan(
            instance_id=instance_id,
            element_key=element_key,
            resource=slug,
            output_format="ndjson",
            window=window,
            folder=str(folder),
            naive_timezone=self.report_timezone,
        )
        manifest = plan.manifest(
            mode="report",
            target=rows_path,
            records=records,
            nbytes=nbytes,
            job_id=None,
            snapshot_at=snapshot,
            complete=True,
            extra={
                "report": self.report,
                "report_title": title,
                "report_path": str(report_path),
                "period": {"start": first.isoformat(), "end": last.isoformat()},
            },
        ).to_xcom()
        replaced = read_manifest(folder)
        published = publish_manifest(folder, manifest)
        # publish_manifest cleans the files a manifest names as path/errors_path/deleted_path; the report
        # JSON is named report_path: remove the one of the manifest that lost (the replaced or this run's)
        loser = replaced if published is manifest else manifest
        stale = (loser or {}).get("report_path")
        if stale and stale != published.get("report_path"):
            remove_quietly(ObjectStoragePath(stale))
        self.log.info(
            "Landed report %r (%s) of %s instance %s for %s..%s: %s rows at %s",
            self.report,
            title,
            element_key,
            instance_id,
            first,
            last,
            published["records"],
            published["path"],
        )
        return published

    def _fetch(
        self, hook: CloudElementsHook, element_key: str, first: date, last: date
    ) -> tuple[Any, str | None, Iterator[tuple[str, list[str], dict[str, Any]]]]:
        """``(raw report, title, rows)`` from the element's report endpoint."""
        if element_key == "quickbooks":
            report = hook.get_report(self.report, start_date=first, end_date=last, params=self.report_params)
            title = (report.get("header") or {}).get("reportName")
            return report, title, qbo_report_rows(report)
        found = hook.query_reports(self.report, period_start=first, period_end=last, extra=self.report_params)
        if len(found) != 1 or not isinstance(found[0], Mapping):
            raise CloudElementsApiError(
                f"GET /hubs/finance/reports for ReportName {self.report!r} returned {len(found)} reports, expected 1"
            )
        return found[0], found[0].get("ReportTitle"), qbe_report_rows(found[0])
