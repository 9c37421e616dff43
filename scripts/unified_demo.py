"""`make demo`, unified part: the ``cloudelements_unified_finance_sync`` DAG against the demo's emulator.

Runs ``airflow dags test cloudelements_unified_finance_sync`` once (model apply, paged extracts of every
common resource from QuickBooks Online, QuickBooks Enterprise and FreshBooks, one table per common
resource), then prints, per common resource and element, the unified table's live ids against the
emulator's records (``GET /_emulator/instances/{id}/records/{resource}``), every invoice's mapped values
against the rules of docs/common-model.md, and the cross-system answer — open receivables per customer
across the three systems — next to the same figure computed from the emulator's raw invoices.

``scripts/demo.py`` calls :func:`run_unified` after its own checks::

    from unified_demo import run_unified          # scripts/ is on sys.path when demo.py runs
    ok &= run_unified(emu, env, airflow, WORK)
"""

from __future__ import annotations

import sqlite3
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

DAG_ID = "cloudelements_unified_finance_sync"
ELEMENTS = ("quickbooks", "quickbooksonprem", "freshbooksv2")


def _records(emu: Any, instance_id: int, resource: str) -> list[dict[str, Any]]:
    import requests

    resp = requests.get(f"{emu.url}/_emulator/instances/{instance_id}/records/{resource}", timeout=30)
    resp.raise_for_status()
    return list(resp.json())


def _raw_id(element: str, record: dict[str, Any]) -> str:
    if element == "quickbooksonprem":
        return str(record.get("ListID") or record.get("TxnID"))
    return str(record["id"]).split("|", 1)[0]


def run_unified(emu: Any, env: dict[str, str], airflow: list[str], work: Path) -> bool:
    """Run the unified DAG once and print the comparison; ``True`` when ids, values and the answer match.

    :param emu: the running ``EmulatorServer``; :param env: the demo's environment (connections,
        ``cloudelements_warehouse`` → ``<work>/warehouse.db``); :param airflow: the ``airflow`` command
        prefix; :param work: the demo directory (logs go to ``<work>/logs/unified.log``).
    """
    import sqlalchemy as sa

    from airflow_provider_cloudelements.common_model import finance_model
    from airflow_provider_cloudelements.common_model.unified import (
        invoice_truth,
        open_receivables_truth,
        print_receivables_report,
    )
    from airflow_provider_cloudelements.utils.records import is_soft_deleted

    print("\nUnified finance sync: one schema across QuickBooks Online, QuickBooks Enterprise and FreshBooks")
    log = work / "logs" / "unified.log"
    when = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    with log.open("w") as out:
        code = subprocess.run([*airflow, "dags", "test", DAG_ID, when], env=env, stdout=out, stderr=subprocess.STDOUT)
    if code.returncode:
        print(f"  the unified DAG failed; see {log}")
        return False
    db = work / "warehouse.db"
    ok = True
    with sqlite3.connect(db) as conn:
        instances = dict(conn.execute("select distinct source_element, instance_id from common_invoices"))
        for name, resource in finance_model().resources.items():
            table = name.replace("-", "_")
            for element in ELEMENTS:
                if element not in resource.mappings:
                    continue
                raw = _records(emu, instances[element], resource.mappings[element].resource)
                want = {_raw_id(element, r) for r in raw if not is_soft_deleted(r, element)}
                got = {
                    str(r[0])
                    for r in conn.execute(
                        f'select id from "{table}" where source_element = ? and instance_id = ? and is_deleted = 0',
                        (element, instances[element]),
                    )
                }
                same = got == want
                ok &= same
                verdict = "ok" if same else "MISMATCH"
                print(f"  {table:<24} {element:<17} rows {len(got):>4}  emulator {len(want):>4}  {verdict}")
        bad = 0
        truth = []
        for element in ELEMENTS:
            raw = _records(emu, instances[element], "invoices")
            truth += open_receivables_truth(element, instances[element], raw)
            rows = {
                str(r[0]): r[1:]
                for r in conn.execute(
                    "select id, customer_id, total_amount, balance, status from common_invoices "
                    "where source_element = ? and instance_id = ?",
                    (element, instances[element]),
                )
            }
            for record in raw:
                inv = invoice_truth(element, record)
                have = rows.get(inv["id"])
                expected = (inv["customer_id"], float(inv["total_amount"]), float(inv["balance"]), inv["status"])
                if have is None or (have[0], float(have[1]), float(have[2]), have[3]) != expected:
                    bad += 1
        print(f"  common_invoices mapped values (customer, total, balance, status): {bad} mismatches")
        ok &= bad == 0
    engine = sa.create_engine(f"sqlite:///{db}")
    ok &= print_receivables_report(engine, truth)
    return ok
