"""CloudElementsReportOperator inside a real DAG run (``dag.test()``, tests/dags/ce_ops_reports.py) against
the emulator over loopback HTTP: a QuickBooks Online and a QuickBooks Enterprise profit-and-loss report
for the run's data interval, landed files compared value by value with the emulator's records."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_cloudelements.hooks.cloudelements import CloudElementsHook
from tests.operators.test_dags import load, task_states, value, xcoms
from tests.operators.test_reports import FIRST, LAST, income_truth, local, rows_of

DAG_ID = "ce_ops_reports"
LOGICAL_DATE = datetime(2025, 7, 1, tzinfo=timezone.utc)  # a manual run: the interval ending there, [Jan 1, Jul 1)

#: Per section of each report: (resource, date field, group-by path, amount field) of the source records.
QBO_SECTIONS = {
    "Income": {
        "invoices": ("txnDate", "customerRef.name", "totalAmt"),
        "sales-receipts": ("txnDate", "customerRef.name", "totalAmt"),
    },
    "Expenses": {
        "bills": ("txnDate", "vendorRef.name", "totalAmt"),
        "purchases": ("txnDate", "entityRef.name", "totalAmt"),
    },
}
QBE_SECTIONS = {
    "income": {"invoices": ("TxnDate", "CustomerRef.FullName", "TotalAmount")},
    "expense": {"bills": ("TxnDate", "VendorRef.FullName", "AmountDue")},
}


def dated_folder(manifest: dict[str, Any]) -> Path:
    return local(manifest["manifest_path"]).parent


@pytest.mark.usefixtures("dag_bundles")
def test_report_dag_lands_qbo_and_qbe_reports_equal_to_the_emulator(
    emu: Any, conn: str, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    qbo = emu.state.create_instance("quickbooks", "report-dag-qbo")
    qbe = emu.state.create_instance("quickbooksonprem", "report-dag-qbe")
    monkeypatch.setenv("CE_OPS_QBO_INSTANCE_ID", str(qbo["id"]))
    monkeypatch.setenv("CE_OPS_QBE_INSTANCE_ID", str(qbe["id"]))
    before = emu.state.stats()["requests"].get("GET /elements/api-v2/hubs/{hub}/reports/{report_id}", 0)

    run = load(DAG_ID).test(logical_date=LOGICAL_DATE)
    assert run.state == "success"
    assert task_states(DAG_ID, run.run_id) == {"qbo_profit_and_loss": "success", "qbe_profit_and_loss": "success"}
    found = xcoms(DAG_ID, run.run_id)
    # the report was really requested over HTTP, once for the QBO task
    assert emu.state.stats()["requests"]["GET /elements/api-v2/hubs/{hub}/reports/{report_id}"] == before + 1

    # QuickBooks Online: every line of both sections equals the period's records, grouped and summed
    pnl = value(found[("qbo_profit_and_loss", "return_value")])
    assert pnl["mode"] == "report" and pnl["instance_id"] == qbo["id"] and pnl["element_key"] == "quickbooks"
    assert pnl["period"] == {"start": FIRST, "end": LAST} and pnl["report_title"] == "ProfitAndLoss"
    assert dated_folder(pnl).name == f"period={FIRST}_{LAST}"
    rows = rows_of(pnl)
    assert pnl["records"] == len(rows) > 0
    for section, sources in QBO_SECTIONS.items():
        truth = income_truth(emu, qbo["id"], sources)
        mine = [r for r in rows if r["section_path"] == [section]]
        data = {r["columns"]["Account"]: r["columns"]["Total"] for r in mine if r["row_type"] == "Data"}
        summary = [r["columns"] for r in mine if r["row_type"] == "Summary"]
        assert data == truth and truth, section
        assert len(mine) == len(data) + 1
        assert summary == [{"Account": f"Total {section}", "Total": f"{sum(map(float, truth.values())):.2f}"}]
    landed = json.loads(local(pnl["report_path"]).read_text())
    assert (landed["header"]["startPeriod"], landed["header"]["endPeriod"]) == (FIRST, LAST)
    served = CloudElementsHook(conn, instance_id=qbo["id"]).get_report(
        "profit-and-loss", start_date=FIRST, end_date=LAST
    )
    served["header"].pop("time"), landed["header"].pop("time")
    assert landed == served  # the raw report is what Cloud Elements answers for exactly those dates

    # QuickBooks Enterprise: one report with its ReportTitle; data rows per section, TOTAL = income - expense
    qbe_pnl = value(found[("qbe_profit_and_loss", "return_value")])
    assert qbe_pnl["element_key"] == "quickbooksonprem" and qbe_pnl["report_title"] == "Profit & Loss"
    assert qbe_pnl["period"] == {"start": FIRST, "end": LAST}
    qbe_rows = rows_of(qbe_pnl)
    totals = {}
    for section, sources in QBE_SECTIONS.items():
        truth = income_truth(emu, qbe["id"], sources)
        data = {r["columns"]["Label"]: r["columns"]["Total"] for r in qbe_rows if r["section_path"] == [section]}
        assert data == truth and truth, section
        totals[section] = sum(map(float, truth.values()))
    assert qbe_rows[-1]["row_type"] == "Total" and qbe_rows[-1]["columns"] == {
        "Label": "TOTAL",
        "Total": f"{totals['income'] - totals['expense']:.2f}",
    }
    raw = json.loads(local(qbe_pnl["report_path"]).read_text())
    assert (raw["ReportName"], raw["ReportPeriodStart"], raw["ReportPeriodEnd"]) == (
        "Profit and Loss Standard",
        FIRST,
        LAST,
    )
    assert int(raw["NumRows"]) == len(qbe_rows) == qbe_pnl["records"]
