"""CloudElementsReportOperator against the emulator over real HTTP (QBO and QBE reports, issue 13)."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.exceptions import CloudElementsConfigError, CloudElementsNotFoundError
from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from airflow_provider_cloudelements.models.window import ExtractWindow
from airflow_provider_cloudelements.operators.reports import CloudElementsReportOperator, report_period
from tests.operators.conftest import Ctx, files_under, run_operator

START = datetime(2025, 1, 1, tzinfo=timezone.utc)
END = datetime(2025, 7, 1, tzinfo=timezone.utc)  # period 2025-01-01 .. 2025-06-30
FIRST, LAST = "2025-01-01", "2025-06-30"


def local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def rows_of(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in local(manifest["path"]).read_text().splitlines() if line.strip()]


def income_truth(emu: Any, instance_id: int, sources: dict[str, tuple[str, str, str]]) -> dict[str, str]:
    """Per-customer income of the period from the emulator's records (ground truth, not its report code)."""
    totals: dict[str, float] = defaultdict(float)
    for resource, (date_field, name_path, amount_field) in sources.items():
        for record in emu.state.records(instance_id, resource):
            if FIRST <= str(record[date_field])[:10] <= LAST:
                ref, key = name_path.split(".")
                totals[record[ref][key]] += float(record[amount_field])
    return {k: f"{v:.2f}" for k, v in totals.items()}


def test_qbo_report_lands_json_and_rows_for_the_interval(emu: Any, conn: str, out: Path) -> None:
    inst = emu.state.create_instance("quickbooks", "reports-qbo")
    ctx = Ctx(data_interval_start=START, data_interval_end=END)
    op = CloudElementsReportOperator(task_id="pnl", report="profit-and-loss", instance_id=inst["id"])
    manifest = run_operator(op, ctx, expect_defer=False)

    assert manifest["mode"] == "report" and manifest["report"] == "profit-and-loss"
    assert manifest["period"] == {"start": FIRST, "end": LAST}
    assert manifest["report_title"] == "ProfitAndLoss" and manifest["complete"] is True
    folder = local(manifest["manifest_path"]).parent
    assert folder.name == f"period={FIRST}_{LAST}"
    assert f"/quickbooks/instance={inst['id']}/reports/profit-and-loss/period=" in str(folder)
    # the JSON is the report Cloud Elements serves for exactly those dates
    landed = json.loads(local(manifest["report_path"]).read_text())
    served = CloudElementsHook(conn, instance_id=inst["id"]).get_report(
        "profit-and-loss", start_date=FIRST, end_date=LAST
    )
    served["header"].pop("time"), landed["header"].pop("time")
    assert landed == served
    assert (landed["header"]["startPeriod"], landed["header"]["endPeriod"]) == (FIRST, LAST)
    # flat rows: one per line, with the section path and named columns; income = invoices + sales receipts
    rows = rows_of(manifest)
    assert manifest["records"] == len(rows) and [r["line"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["period_start"] == FIRST and r["period_end"] == LAST for r in rows)
    income = {
        r["columns"]["Account"]: r["columns"]["Total"]
        for r in rows
        if r["section_path"] == ["Income"] and r["row_type"] == "Data"
    }
    truth = income_truth(
        emu,
        inst["id"],
        {
            "invoices": ("txnDate", "customerRef.name", "totalAmt"),
            "sales-receipts": ("txnDate", "customerRef.name", "totalAmt"),
        },
    )
    assert income == truth and truth
    summary = [r for r in rows if r["row_type"] == "Summary" and r["section_path"] == ["Income"]]
    assert len(summary) == 1
    assert summary[0]["columns"]["Total"] == f"{sum(float(v) for v in truth.values()):.2f}"
    assert {r["section_path"][0] for r in rows} == {"Income", "Expenses"}

    # rerun of the interval: the manifest is replaced, the first run's files removed
    again = run_operator(
        CloudElementsReportOperator(task_id="pnl", report="profit-and-loss", instance_id=inst["id"]),
        Ctx(data_interval_start=START, data_interval_end=END),
    )
    names = sorted(p.name for p in files_under(folder))
    assert names == sorted(["_manifest.json", local(again["path"]).name, local(again["report_path"]).name])
    assert json.loads((folder / "_manifest.json").read_text())["path"] == again["path"]
    assert rows_of(again) == rows


def test_qbe_report_lands_one_report_with_its_title(emu: Any, conn: str, out: Path) -> None:
    inst = emu.state.create_instance("quickbooksonprem", "reports-qbe")
    manifest = run_operator(
        CloudElementsReportOperator(task_id="pnl", report="Profit and Loss Standard", instance_id=inst["id"]),
        Ctx(data_interval_start=START, data_interval_end=END),
    )
    assert manifest["report_title"] == "Profit & Loss" and manifest["resource"] == "profit-and-loss-standard"
    assert manifest["period"] == {"start": FIRST, "end": LAST}
    landed = json.loads(local(manifest["report_path"]).read_text())
    assert (landed["ReportName"], landed["ReportPeriodStart"], landed["ReportPeriodEnd"]) == (
        "Profit and Loss Standard",
        FIRST,
        LAST,
    )
    rows = rows_of(manifest)
    income = {r["columns"]["Label"]: r["columns"]["Total"] for r in rows if r["section_path"] == ["income"]}
    assert income == income_truth(emu, inst["id"], {"invoices": ("TxnDate", "CustomerRef.FullName", "TotalAmount")})
    assert rows[-1]["row_type"] == "Total" and rows[-1]["columns"]["Label"] == "TOTAL"
    assert len(rows) == int(landed["NumRows"])


def test_bad_input_fails_before_the_report_call(emu: Any, conn: str, out: Path) -> None:
    fb = emu.state.create_instance("freshbooksv2", "reports-fb")
    qbo = emu.state.create_instance("quickbooks", "reports-bad")
    before = emu.state.stats()["requests"].get("GET /elements/api-v2/hubs/{hub}/reports/{report_id}", 0)
    ctx = Ctx(data_interval_start=START, data_interval_end=END)
    with pytest.raises(CloudElementsConfigError, match="no reports API"):
        CloudElementsReportOperator(task_id="r", report="profit-and-loss", instance_id=fb["id"]).execute(ctx.context)
    with pytest.raises(CloudElementsConfigError, match="has no reports"):
        CloudElementsReportOperator(task_id="r", report="x", element_key="freshbooks")
    with pytest.raises(CloudElementsConfigError, match="report_timezone 'Mars/Olympus' is not a known time zone"):
        CloudElementsReportOperator(task_id="r", report="profit-and-loss", report_timezone="Mars/Olympus")
    with pytest.raises(CloudElementsConfigError, match="Invalid report id"):
        CloudElementsReportOperator(task_id="r", report="p&l/x", instance_id=qbo["id"]).execute(ctx.context)
    with pytest.raises(CloudElementsConfigError, match="not before end"):
        CloudElementsReportOperator(
            task_id="r", report="profit-and-loss", instance_id=qbo["id"], period_start=END, period_end=START
        ).execute(ctx.context)
    assert emu.state.stats()["requests"].get("GET /elements/api-v2/hubs/{hub}/reports/{report_id}", 0) == before
    with pytest.raises(CloudElementsNotFoundError):
        CloudElementsReportOperator(task_id="r", report="no-such-report", instance_id=qbo["id"]).execute(ctx.context)
    assert not [p for p in files_under(out) if p.suffix in (".json", ".ndjson")] if out.exists() else True


def test_period_is_the_interval_in_calendar_days() -> None:
    month = ExtractWindow(start=START, end=datetime(2025, 2, 1, tzinfo=timezone.utc), full_refresh=False)
    assert report_period(month, "UTC") == (date(2025, 1, 1), date(2025, 1, 31))
    # read in the books' zone: a UTC-midnight interval is the previous evening in New York
    assert report_period(month, "America/New_York") == (date(2024, 12, 31), date(2025, 1, 31))
    open_start = ExtractWindow(start=None, end=datetime(2025, 3, 2, tzinfo=timezone.utc), full_refresh=False)
    assert report_period(open_start, "UTC") == (date(2025, 3, 1), date(2025, 3, 1))
