"""Finance-hub resource names per element (reference §3.2 resource matrix, §5.2 polling lists).

Plain constants with no Airflow import, shared by the client catalog (``utils/elements.py``) and the
emulator (which must stay importable without Airflow).
"""

from __future__ import annotations

#: The 22 QuickBooks Online polling resources (reference §5.2, §3.2).
QBO_RESOURCES: tuple[str, ...] = (
    "bill-payments",
    "bills",
    "classes",
    "credit-memos",
    "credit-terms",
    "currencies",
    "customers",
    "employees",
    "invoices",
    "journal-entries",
    "ledger-accounts",
    "payment-methods",
    "payments",
    "products",
    "purchase-orders",
    "refund-receipts",
    "sales-receipts",
    "tax-codes",
    "tax-rates",
    "time-activities",
    "vendor-credits",
    "vendors",
)
#: The 13 QuickBooks Enterprise polling resources (reference §5.2, §3.2).
QBE_RESOURCES: tuple[str, ...] = (
    "bills",
    "credit-memos",
    "item-receipts",
    "invoices",
    "journal-entries",
    "payments",
    "sales-receipts",
    "purchase-orders",
    "sales-orders",
    "customers",
    "employees",
    "products",
    "vendors",
)
#: FreshBooks (Cloud Accounting and Classic) resources (reference §3.2).
FRESHBOOKS_RESOURCES: tuple[str, ...] = ("customers", "invoices", "payments", "items", "taxes")
