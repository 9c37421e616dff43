"""Finance reports computed from the instance's own records (reference §10.5, §3.2 row "reports").

* QuickBooks Online: ``GET /reports/metadata`` lists the report ids; ``GET /reports/{reportId}`` answers
  one Intuit-style report (camelCased like every QBO payload): ``{"header": {"reportName", "startPeriod",
  "endPeriod", "dateMacro", "currency", "reportBasis", "time"}, "columns": {"column": [...]}, "rows":
  {"row": [sections with "header", "rows", "summary"]}}``. The period comes from ``startDate``/``endDate``
  (``yyyy-MM-dd``, query parameters or CEQL ``where``) or a date macro (``dateMacro`` /
  ``createdDateRange``: ``Today``, ``Yesterday``, ``This Week``, ``Last Week``, ``This Month``, ``Last
  Month``, ``This Quarter``, ``Last Quarter``, ``This Year``, ``Last Year``, ``This Year-to-date``);
  default: this year to date. Unknown report id → 404; a bad date → 400.
* QuickBooks Enterprise: ``GET /report-types`` lists ``{"ReportName", "ReportTitle"}``; ``GET /reports``
  needs CEQL ``ReportName='<name>'`` and takes ``ReportPeriodStart``/``ReportPeriodEnd``
  (``yyyy-MM-ddTHH:mm:ss`` or ``yyyy-MM-dd``), ``FiscalYear``, ``ReportBasis``, ``SummarizeColumnsBy``;
  it answers an array with exactly one QBXML-style report (``ReportTitle``, ``ReportSubtitle``,
  ``ReportBasis``, ``NumRows``, ``NumColumns``, ``ColDesc``, ``ReportData.DataRow`` / ``TotalRow``).

Transactions count when their ``txnDate``/``TxnDate`` is inside the period (inclusive); balances (lists)
are "as of" the end. Amounts are rendered ``"0.00"`` strings as the providers do.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from airflow_provider_cloudelements.catalog import QBE_REPORT_TYPES, QBO_REPORTS
from cloudelements_emulator import timefmt
from cloudelements_emulator.ceql import (
    CeqlError,
    _literal,
    compile_where,
    field_path,
    lookup,
)
from cloudelements_emulator.errors import CEError

Records = Callable[[str], list[dict[str, Any]]]
"""``resource -> live records`` of the calling instance."""


def _num(value: Any) -> float:
    if isinstance(value, list):  # e.g. QBE JournalDebitLine: sum the lines' Amount
        return sum(_num(item.get("Amount")) for item in value if isinstance(item, dict))
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def _money(value: float) -> str:
    return f"{value:.2f}"


def where_equalities(where: str | None) -> dict[str, Any]:
    """``a='x' and b = 2`` → ``{"a": "x", "b": 2}`` (only top-level ``AND``-ed equalities).

    :raises CEError: 400 for unparsable CEQL.
    """
    if not where:
        return {}
    try:
        tree = compile_where(where).tree
        out: dict[str, Any] = {}
        for node in tree.find_all(exp.EQ) if tree is not None else ():
            out[field_path(node.this)] = _literal(node.expression)
    except CeqlError as err:
        raise CEError(400, str(err), provider_message=err.provider_message) from None
    return out


def _parse_day(value: Any, name: str) -> dt.date:
    text = str(value).strip()
    try:
        return dt.date.fromisoformat(text[:10])
    except ValueError:
        raise CEError(400, f"Invalid {name} {text!r}: expected yyyy-MM-dd or yyyy-MM-ddTHH:mm:ss") from None


def _quarter_start(day: dt.date) -> dt.date:
    return dt.date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def date_macro(name: str, today: dt.date) -> tuple[dt.date, dt.date]:
    """Intuit date macros (case-insensitive). :raises CEError: 400 for an unknown macro."""
    key = name.strip().lower().replace("_", " ")
    month_start = today.replace(day=1)
    if key == "today":
        return today, today
    if key == "yesterday":
        day = today - dt.timedelta(days=1)
        return day, day
    if key in ("this week", "this week-to-date"):
        start = today - dt.timedelta(days=(today.weekday() + 1) % 7)
        return start, today if key.endswith("date") else start + dt.timedelta(days=6)
    if key == "last week":
        start = today - dt.timedelta(days=(today.weekday() + 1) % 7 + 7)
        return start, start + dt.timedelta(days=6)
    if key in ("this month", "this month-to-date"):
        last = calendar.monthrange(today.year, today.month)[1]
        return month_start, today if key.endswith("date") else today.replace(day=last)
    if key == "last month":
        end = month_start - dt.timedelta(days=1)
        return end.replace(day=1), end
    if key in ("this quarter", "this quarter-to-date"):
        start = _quarter_start(today)
        nxt = dt.date(start.year + (start.month == 10), (start.month + 2) % 12 + 1, 1)
        return start, today if key.endswith("date") else nxt - dt.timedelta(days=1)
    if key == "last quarter":
        end = _quarter_start(today) - dt.timedelta(days=1)
        return _quarter_start(end), end
    if key in ("this year", "this fiscal year"):
        return dt.date(today.year, 1, 1), dt.date(today.year, 12, 31)
    if key in ("this year-to-date", "this fiscal year-to-date"):
        return dt.date(today.year, 1, 1), today
    if key in ("last year", "last fiscal year"):
        return dt.date(today.year - 1, 1, 1), dt.date(today.year - 1, 12, 31)
    raise CEError(400, f"Unknown date macro {name!r}")


def _in_period(record: dict[str, Any], field: str, start: dt.date, end: dt.date) -> bool:
    value = lookup(record, field)
    if not isinstance(value, str) or len(value) < 10:
        return False
    return start.isoformat() <= value[:10] <= end.isoformat()


@dataclass(frozen=True)
class _Spec:
    """One report: ``sections`` of (section title, source resource, group-by path, amount path)."""

    title: str
    sections: tuple[tuple[str, str, str, str], ...]
    dated: bool = True


# ---------------------------------------------------------------- QuickBooks Online
_QBO_SPECS: dict[str, _Spec] = {
    "profit-and-loss": _Spec(
        "ProfitAndLoss",
        (
            ("Income", "invoices", "customerRef.name", "totalAmt"),
            ("Income", "sales-receipts", "customerRef.name", "totalAmt"),
            ("Expenses", "bills", "vendorRef.name", "totalAmt"),
            ("Expenses", "purchases", "entityRef.name", "totalAmt"),
        ),
    ),
    "profit-and-loss-detail": _Spec(
        "ProfitAndLossDetail",
        (("Income", "invoices", "docNumber", "totalAmt"), ("Expenses", "bills", "docNumber", "totalAmt")),
    ),
    "balance-sheet": _Spec(
        "BalanceSheet", (("Accounts", "ledger-accounts", "classification", "currentBalance"),), dated=False
    ),
    "trial-balance": _Spec("TrialBalance", (("Accounts", "ledger-accounts", "name", "currentBalance"),), dated=False),
    "cash-flow": _Spec(
        "CashFlow",
        (
            ("Cash received", "payments", "customerRef.name", "totalAmt"),
            ("Cash paid", "bill-payments", "vendorRef.name", "totalAmt"),
        ),
    ),
    "general-ledger": _Spec("GeneralLedger", (("Journal entries", "journal-entries", "docNumber", "totalAmt"),)),
    "aged-receivables": _Spec("AgedReceivables", (("Open invoices", "invoices", "customerRef.name", "balance"),)),
    "aged-payables": _Spec("AgedPayables", (("Open bills", "bills", "vendorRef.name", "balance"),)),
    "customer-income": _Spec("CustomerIncome", (("Customers", "invoices", "customerRef.name", "totalAmt"),)),
    "vendor-expenses": _Spec("VendorExpenses", (("Vendors", "bills", "vendorRef.name", "totalAmt"),)),
}
assert set(_QBO_SPECS) == set(QBO_REPORTS)


def _names(report_id: str) -> str:
    return " ".join(w.capitalize() for w in report_id.split("-")).replace(" And ", " and ")


def qbo_metadata() -> list[dict[str, Any]]:
    """``GET /reports/metadata`` (QBO): one entry per report id."""
    return [
        {
            "id": rid,
            "name": _names(rid),
            "reportName": _QBO_SPECS[rid].title,
            "dateFilters": ["startDate", "endDate", "dateMacro"],
        }
        for rid in QBO_REPORTS
    ]


def _group(records: Iterable[dict[str, Any]], group_path: str, amount_path: str) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for record in records:
        key = lookup(record, group_path)
        name = str(key) if key is not None and key.__class__ is not object else "(not specified)"
        totals[name] += _num(lookup(record, amount_path))
    return dict(sorted(totals.items()))


def qbo_period(params: dict[str, Any], today: dt.date) -> tuple[dt.date, dt.date, str | None]:
    """``(start, end, macro)`` from ``startDate``/``endDate`` or a date macro (default year-to-date)."""
    macro = params.get("dateMacro") or params.get("createdDateRange") or params.get("date_macro")
    if params.get("startDate") or params.get("start_date") or params.get("endDate") or params.get("end_date"):
        start_raw = params.get("startDate") or params.get("start_date")
        end_raw = params.get("endDate") or params.get("end_date")
        end = _parse_day(end_raw, "endDate") if end_raw else today
        start = _parse_day(start_raw, "startDate") if start_raw else dt.date(end.year, 1, 1)
        macro = None
    else:
        macro = str(macro or "This Year-to-date")
        start, end = date_macro(macro, today)
    if start > end:
        raise CEError(400, f"startDate {start} is after endDate {end}")
    return start, end, macro


def qbo_report(report_id: str, params: dict[str, Any], records: Records) -> dict[str, Any]:
    """``GET /reports/{reportId}`` (QBO). :raises CEError: 404 unknown id, 400 bad period."""
    spec = _QBO_SPECS.get(report_id)
    if spec is None:
        raise CEError(404, f"No report '{report_id}'. Reports: {', '.join(QBO_REPORTS)}")
    start, end, macro = qbo_period(params, timefmt_today())
    sections: dict[str, dict[str, float]] = {}
    for title, resource, group_path, amount_path in spec.sections:
        rows = [r for r in records(resource) if not spec.dated or _in_period(r, "txnDate", start, end)]
        bucket = sections.setdefault(title, {})
        for name, value in _group(rows, group_path, amount_path).items():
            bucket[name] = bucket.get(name, 0.0) + value
    out_rows = []
    for title, bucket in sections.items():
        out_rows.append(
            {
                "type": "Section",
                "group": title.replace(" ", ""),
                "header": {"colData": [{"value": title}, {"value": ""}]},
                "rows": {
                    "row": [
                        {"type": "Data", "colData": [{"value": k}, {"value": _money(v)}]} for k, v in bucket.items()
                    ]
                },
                "summary": {"colData": [{"value": f"Total {title}"}, {"value": _money(sum(bucket.values()))}]},
            }
        )
    header = {
        "time": timefmt.iso_utc(timefmt.now_ms()),
        "reportName": spec.title,
        "reportBasis": str(params.get("accountingMethod") or "Accrual"),
        "startPeriod": start.isoformat(),
        "endPeriod": end.isoformat(),
        "summarizeColumnsBy": "Total",
        "currency": "USD",
    }
    if macro:
        header["dateMacro"] = macro.lower()
    return {
        "header": header,
        "columns": {"column": [{"colTitle": "", "colType": "Account"}, {"colTitle": "Total", "colType": "Money"}]},
        "rows": {"row": out_rows},
    }


def timefmt_today() -> dt.date:
    return dt.datetime.fromtimestamp(timefmt.now_ms() / 1000, tz=dt.timezone.utc).date()


# ---------------------------------------------------------------- QuickBooks Enterprise
def _qbe_spec(name: str) -> _Spec:
    lower = name.lower()
    if lower.startswith("balance sheet") or lower == "trial balance":
        return _Spec(name, (("Accounts", "ledger-accounts", "Name", "Balance"),), dated=False)
    if lower.startswith("profit and loss"):
        group = "ClassRef.FullName" if "class" in lower else "CustomerRef.FullName"
        return _Spec(
            name,
            (
                ("Income", "invoices", group, "TotalAmount"),
                ("Expense", "bills", "VendorRef.FullName", "AmountDue"),
            ),
        )
    if lower.startswith("ar aging") or lower.startswith("sales by customer"):
        return _Spec(name, (("Customers", "invoices", "CustomerRef.FullName", "TotalAmount"),))
    if lower.startswith("sales by rep"):
        return _Spec(name, (("Sales reps", "invoices", "SalesRepRef.FullName", "TotalAmount"),))
    if lower.startswith("sales by item"):
        return _Spec(name, (("Items", "invoice-lines", "ItemRef.FullName", "Amount"),))
    if lower.startswith("ap aging") or lower.startswith("expense by vendor"):
        return _Spec(name, (("Vendors", "bills", "VendorRef.FullName", "AmountDue"),))
    if lower == "customer balance summary":
        return _Spec(name, (("Customers", "customers", "FullName", "Balance"),), dated=False)
    if lower == "vendor balance summary":
        return _Spec(name, (("Vendors", "vendors", "FullName", "Balance"),), dated=False)
    return _Spec(name, (("Journal entries", "journal-entries", "RefNumber", "JournalDebitLine"),))


def qbe_report_types() -> list[dict[str, str]]:
    """``GET /report-types`` (QBE)."""
    return [{"ReportName": name, "ReportTitle": title} for name, title in QBE_REPORT_TYPES.items()]


def qbe_reports(where: str | None, records: Records) -> list[dict[str, Any]]:
    """``GET /reports?where=ReportName='…' …`` (QBE). :raises CEError: 400 without/unknown ``ReportName``."""
    params = where_equalities(where)
    name = params.get("ReportName")
    if not name:
        raise CEError(400, "ReportName is required, e.g. where=ReportName='Balance Sheet Standard' (GET /report-types)")
    canonical = {k.lower(): k for k in QBE_REPORT_TYPES}.get(str(name).lower())
    if canonical is None:
        raise CEError(400, f"Unknown ReportName {name!r}; see GET /report-types")
    today = timefmt_today()
    fiscal = params.get("FiscalYear")
    if fiscal is not None:
        start, end = dt.date(int(fiscal), 1, 1), dt.date(int(fiscal), 12, 31)
    else:
        start = (
            _parse_day(params["ReportPeriodStart"], "ReportPeriodStart")
            if params.get("ReportPeriodStart")
            else dt.date(today.year, 1, 1)
        )
        end = _parse_day(params["ReportPeriodEnd"], "ReportPeriodEnd") if params.get("ReportPeriodEnd") else today
    if start > end:
        raise CEError(400, f"ReportPeriodStart {start} is after ReportPeriodEnd {end}")
    spec = _qbe_spec(canonical)
    data_rows: list[dict[str, Any]] = []
    total = 0.0
    for title, resource, group_path, amount_path in spec.sections:
        if resource == "invoice-lines":
            rows = [
                line
                for inv in records("invoices")
                if _in_period(inv, "TxnDate", start, end)
                for line in inv.get("InvoiceLineRet") or []
            ]
        else:
            rows = [r for r in records(resource) if not spec.dated or _in_period(r, "TxnDate", start, end)]
        for key, value in _group(rows, group_path, amount_path).items():
            total += value if title != "Expense" else -value
            data_rows.append(
                {
                    "rowNumber": str(len(data_rows) + 1),
                    "RowData": {"rowType": title.lower(), "value": key},
                    "ColData": [{"colID": "1", "value": key}, {"colID": "2", "value": _money(value)}],
                }
            )
    subtitle = f"As of {end:%B %d, %Y}" if not spec.dated else f"{start:%B %d, %Y} through {end:%B %d, %Y}"
    return [
        {
            "ReportName": canonical,
            "ReportTitle": QBE_REPORT_TYPES[canonical],
            "ReportSubtitle": subtitle,
            "ReportBasis": str(params.get("ReportBasis") or "Accrual"),
            "ReportPeriodStart": start.isoformat(),
            "ReportPeriodEnd": end.isoformat(),
            "NumRows": str(len(data_rows) + 1),
            "NumColumns": "2",
            "NumColTitleRows": "1",
            "ColDesc": [
                {"colID": "1", "ColTitle": {"titleRow": "1", "value": ""}, "ColType": "Label"},
                {"colID": "2", "ColTitle": {"titleRow": "1", "value": "Total"}, "ColType": "Amount"},
            ],
            "ReportData": {
                "DataRow": data_rows,
                "TotalRow": {
                    "rowNumber": str(len(data_rows) + 1),
                    "RowData": {"rowType": "total", "value": "TOTAL"},
                    "ColData": [{"colID": "1", "value": "TOTAL"}, {"colID": "2", "value": _money(total)}],
                },
            },
        }
    ]
