"""Finance-hub API methods of the sync hook: records, object metadata and reports (reference §3, §10.5).

Hub calls send ``User <u>, Organization <o>, Element <t>``; the element token comes from the hook,
the connection or ``GET /instances/{id}`` (:class:`~.base.CloudElementsBaseHook`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from airflow_provider_cloudelements.client.protocol import HUB_PREFIX, json_array, json_object
from airflow_provider_cloudelements.exceptions import CloudElementsApiError, CloudElementsConfigError
from airflow_provider_cloudelements.hooks.params import (
    CURSOR_ONLY_ELEMENTS,
    RESOURCE_RE,
    check_page_size,
    check_resource_name,
    positive_int,
    record_path,
    report_day,
)
from airflow_provider_cloudelements.hooks.sync_base import CloudElementsSyncBase
from airflow_provider_cloudelements.utils import ceql


class HubMixin(CloudElementsSyncBase):
    """``/hubs/finance/...`` record, object and report calls of :class:`~.cloudelements.CloudElementsHook`."""

    def iter_records(
        self,
        resource: str,
        *,
        where: str | None = None,
        order_by: str | None = None,
        page_size: int | None = None,
        reconcile_total: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Every record of ``GET /hubs/finance/{resource}`` (§3.1, §3.3, §3.4), page by page.

        Rules: send ``pageSize``; follow ``Elements-Next-Page-Token`` (as ``nextPage``) while present and
        ``Elements-Returned-Count`` > 0; without a token, ask ``page=n+1`` while the page came back full;
        an ``Elements-Error`` header with a short page means the server capped ``pageSize``: the hook
        logs a warning and continues with the size that came back; a page starting with a record
        already seen (a server ignoring ``page``) or a repeated cursor raises instead of looping.

        Input is validated when called (before the first request); requests happen while iterating.
        When the element is not known yet (a hook built with only an ``element_token``), it is resolved
        before the first page (:meth:`resolve_element_key`) and ``where`` is checked again for that
        element, so a QuickBooks Online ``OR`` never reaches the server. QuickBooks Enterprise listings
        page by cursor only: a page without ``Elements-Next-Page-Token`` is the last one.

        :param resource: Finance-hub resource (``invoices``, ``customers`` …).
        :param where: CEQL clause (validated with sqlglot; ``OR`` rejected for QuickBooks Online when the
            element is known).
        :param order_by: CEQL ``orderBy`` (``"TxnDate asc"``).
        :param page_size: records per page (default: connection ``page_size``, 200).
        :param reconcile_total: send ``returnCount=true`` and compare the yielded count with
            ``Elements-Total-Count`` at the end.
        :raises CloudElementsConfigError: bad resource or page size; :class:`CloudElementsCEQLError` for
            a bad ``where``.
        :raises CloudElementsReconciliationError: count mismatch with ``reconcile_total``.
        :raises CloudElementsApiError: API errors (after retries) and paging loops.
        """
        check_resource_name(resource, self.element_key)
        size = check_page_size(page_size if page_size is not None else self.settings.page_size)
        if where is not None:
            ceql.validate_where(where, self.element_key)
        return self._iter_records(resource, where, order_by, size, reconcile_total)

    def _iter_records(
        self, resource: str, where: str | None, order_by: str | None, size: int, reconcile_total: bool
    ) -> Iterator[dict[str, Any]]:
        key = self.resolve_element_key()  # the catalog check stays call-time (a 404 names unknown resources)
        params: dict[str, Any] = {}
        if where is not None:
            params["where"] = ceql.validate_where(where, key)
        if order_by:
            params["orderBy"] = order_by
        yield from self._paginate(
            f"{HUB_PREFIX}/{resource}",
            params,
            hub=True,
            page_size=size,
            reconcile_total=reconcile_total,
            cursor_only=key in CURSOR_ONLY_ELEMENTS,
        )

    def get_record(self, resource: str, record_id: str) -> dict[str, Any]:
        """Read one record: ``GET /hubs/finance/{resource}/{id}`` (§3.1).

        Ids are strings (QBO ``22|33``, QBE ``16D1-1484948017``) and are URL-quoted.

        :raises CloudElementsNotFoundError: unknown id.
        """
        path = self._record_path(resource, record_id)
        return json_object(self._call("GET", path, hub=True), f"GET {path}")

    def create_record(self, resource: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /hubs/finance/{resource}`` (§3.1); not retried once the request may have been sent."""
        check_resource_name(resource, self.element_key)
        path = f"{HUB_PREFIX}/{resource}"
        return json_object(self._call("POST", path, hub=True, json_body=dict(body)), f"POST {path}")

    def update_record(self, resource: str, record_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Update one record: ``PATCH /hubs/finance/{resource}/{id}`` (§3.1).

        QBO needs the current ``syncToken`` / the ``id|syncToken`` id and QBE the current ``EditSequence``
        (§3.5): read right before updating.
        """
        path = self._record_path(resource, record_id)
        return json_object(self._call("PATCH", path, hub=True, json_body=dict(body)), f"PATCH {path}")

    def delete_record(self, resource: str, record_id: str) -> None:
        """``DELETE /hubs/finance/{resource}/{id}`` (§3.1)."""
        self._call("DELETE", self._record_path(resource, record_id), hub=True)

    def _record_path(self, resource: str, record_id: str) -> str:
        return record_path(HUB_PREFIX, resource, record_id, self.element_key)

    def list_objects(self) -> list[str]:
        """Object (resource) names the instance's element serves: ``GET /hubs/finance/objects`` (§3.1, §4.1).

        :return: names as Cloud Elements spells them, e.g. ``["bill-payments", "bills", "classes", …]``
            (a JSON array of strings; entries given as ``{"name": …}`` objects are reduced to the name).
        :raises CloudElementsApiError: the body is not a JSON array.
        """
        path = f"{HUB_PREFIX}/objects"
        names = []
        for item in json_array(self._call("GET", path, hub=True), f"GET {path}"):
            name = item.get("name") if isinstance(item, Mapping) else item
            if isinstance(name, str) and name:
                names.append(name)
        return names

    def get_object_metadata(self, resource: str) -> dict[str, Any]:
        """Field metadata of one object: ``GET /hubs/finance/objects/{resource}/metadata`` (§3.1).

        Shape: ``{"objectName": "invoices", "primaryKey": "id", "fields": [{"vendorPath": "customerRef.value",
        "type": "string"|"number"|"boolean"|"date"|"array", "vendorNativeType": …, "vendorReadOnly": bool,
        "vendorDisplayName": …}, …]}`` (nested fields are dotted ``vendorPath`` s).

        :param resource: a resource of the element's catalog (:data:`~..utils.elements.ElementSpec.all_resources`).
        :raises CloudElementsConfigError: bad or unsupported resource (before any call).
        :raises CloudElementsNotFoundError: the element has no such object.
        :raises CloudElementsApiError: the body is not an object with a ``fields`` list.
        """
        check_resource_name(resource, self.resolve_element_key())
        path = f"{HUB_PREFIX}/objects/{resource}/metadata"
        meta = json_object(self._call("GET", path, hub=True), f"GET {path}")
        if not isinstance(meta.get("fields"), list):
            raise CloudElementsApiError(f"GET {path} returned no 'fields' list")
        return meta

    def get_report(
        self,
        report_id: str,
        *,
        start_date: date | str | None = None,
        end_date: date | str | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One QuickBooks Online report: ``GET /hubs/finance/reports/{reportId}?startDate=…&endDate=…`` (§10.5).

        Shape (Intuit's report JSON, camelCased): ``{"header": {"reportName", "startPeriod", "endPeriod",
        "currency", "reportBasis", "time", …}, "columns": {"column": [{"colTitle", "colType"}, …]},
        "rows": {"row": [{"type": "Section", "header": {"colData": […]}, "rows": {"row": […]},
        "summary": {"colData": […]}} | {"type": "Data", "colData": [{"value"}, …]}, …]}}``.

        :param report_id: report id of ``GET /reports/metadata`` (``profit-and-loss``, ``balance-sheet`` …).
        :param start_date: first day of the period (inclusive), ``date`` or ``yyyy-MM-dd``.
        :param end_date: last day of the period (inclusive).
        :param params: further query parameters (``accountingMethod``, ``dateMacro`` …).
        :raises CloudElementsConfigError: bad report id or dates, start after end (before any call).
        :raises CloudElementsNotFoundError: unknown report id (or an element without QBO reports).
        """
        if not isinstance(report_id, str) or not RESOURCE_RE.match(report_id):
            raise CloudElementsConfigError(f"Invalid report id {report_id!r}")
        query = dict(params or {})
        start = report_day(start_date, "start_date")
        end = report_day(end_date, "end_date")
        if start and end and start > end:
            raise CloudElementsConfigError(f"start_date {start} is after end_date {end}")
        query.update({k: v for k, v in (("startDate", start), ("endDate", end)) if v})
        path = f"{HUB_PREFIX}/reports/{report_id}"
        return json_object(self._call("GET", path, hub=True, params=query), f"GET {path}")

    def list_report_metadata(self) -> list[dict[str, Any]]:
        """Return the QuickBooks Online report catalog: ``GET /hubs/finance/reports/metadata`` (§10.5).

        Shape: ``[{"id": "profit-and-loss", "name", "reportName", "dateFilters": [...]}, …]``.
        """
        path = f"{HUB_PREFIX}/reports/metadata"
        return json_array(self._call("GET", path, hub=True), f"GET {path}")

    def query_reports(
        self,
        report_name: str,
        *,
        period_start: date | str | None = None,
        period_end: date | str | None = None,
        fiscal_year: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Run a QuickBooks Enterprise report: ``GET /hubs/finance/reports`` with a CEQL ``where`` (§10.5).

        The ``where`` is ``ReportName='…' and ReportPeriodStart='yyyy-MM-dd' and ReportPeriodEnd='yyyy-MM-dd'``
        (or ``FiscalYear=n``).

        Shape: a list holding one QBXML-style report ``{"ReportName", "ReportTitle", "ReportSubtitle",
        "ReportBasis", "NumRows", "NumColumns", "ColDesc": [{"colID", "ColTitle": {"value"}, "ColType"}],
        "ReportData": {"DataRow": [{"rowNumber", "RowData": {"rowType", "value"}, "ColData": [{"colID",
        "value"}]}], "TotalRow": {…}}}``.

        :param report_name: a ``ReportName`` of ``GET /report-types`` (``Profit and Loss Standard`` …).
        :param period_start: first day (inclusive); ``period_end``: last day (inclusive).
        :param fiscal_year: instead of the period.
        :param extra: more CEQL equalities (``ReportBasis``, ``SummarizeColumnsBy``).
        :raises CloudElementsConfigError: empty name, bad dates, start after end (before any call).
        """
        if not isinstance(report_name, str) or not report_name.strip():
            raise CloudElementsConfigError(f"report_name must be a non-empty string, got {report_name!r}")
        start = report_day(period_start, "period_start")
        end = report_day(period_end, "period_end")
        if start and end and start > end:
            raise CloudElementsConfigError(f"period_start {start} is after period_end {end}")
        conditions: dict[str, Any] = {"ReportName": report_name.strip()}
        conditions.update({k: v for k, v in (("ReportPeriodStart", start), ("ReportPeriodEnd", end)) if v})
        if fiscal_year is not None:
            conditions["FiscalYear"] = positive_int(fiscal_year, "fiscal_year")
        conditions.update(extra or {})
        path = f"{HUB_PREFIX}/reports"
        where = ceql.build_where(conditions)
        return json_array(self._call("GET", path, hub=True, params={"where": where}), f"GET {path}")

    def list_report_types(self) -> list[dict[str, Any]]:
        """Return the QuickBooks Enterprise report catalog: ``GET /hubs/finance/report-types`` (§10.5).

        Shape: ``[{"ReportName": "Balance Sheet Standard", "ReportTitle": "Balance Sheet"}, …]``.
        """
        path = f"{HUB_PREFIX}/report-types"
        return json_array(self._call("GET", path, hub=True), f"GET {path}")
