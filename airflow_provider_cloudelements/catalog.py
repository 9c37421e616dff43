"""Finance-hub resource names per element (reference §3.2 resource matrix, §5.2 polling lists, §10.5 reports).

Plain constants with no Airflow import, shared by the client catalog (``utils/elements.py``) and the
emulator (which must stay importable without Airflow).

Two lists per element:

* ``*_RESOURCES`` — the polling resources (reference §5.2); the provider's defaults ("sync everything")
  and the emulator's poller use these.
* ``*_ALL_RESOURCES`` — every record resource of the §3.2 matrix for the element (polling resources
  first, then the rest in alphabetical order). Reports are not record resources: see
  :data:`QBO_REPORTS` and :data:`QBE_REPORT_TYPES`.
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
#: Every QuickBooks Online record resource (reference §3.2: CEQL list, release notes 2.141/2.148/2.165, churros).
QBO_ALL_RESOURCES: tuple[str, ...] = (
    *QBO_RESOURCES,
    "company-info",
    "departments",
    "estimates",
    "preferences",
    "purchases",
    "tax-agencies",
)
#: QuickBooks Online report ids served by ``GET /reports/{reportId}`` (reference §10.5; Intuit report names).
QBO_REPORTS: tuple[str, ...] = (
    "profit-and-loss",
    "profit-and-loss-detail",
    "balance-sheet",
    "cash-flow",
    "trial-balance",
    "general-ledger",
    "aged-receivables",
    "aged-payables",
    "customer-income",
    "vendor-expenses",
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
#: Every QuickBooks Enterprise record resource (reference §3.2: CEQL list, release notes 2.153-2.171, churros).
QBE_ALL_RESOURCES: tuple[str, ...] = (
    *QBE_RESOURCES,
    "bill-payment-cards",
    "bill-payment-checks",
    "checks",
    "classes",
    "credit-terms",
    "creditcard-charges",
    "creditcard-credits",
    "currencies",
    "deposits",
    "inventory-adjustments",
    "inventory-sites",
    "ledger-accounts",
    "payment-methods",
    "payroll-wage-items",
    "tax-codes",
    "tax-rates",
    "time-activities",
    "vendor-credits",
)
#: QuickBooks Enterprise ``ReportName`` values (``GET /report-types``) and each one's ``ReportTitle``
#: (reference §10.5, devportal ``quickbooksenterprise/reports.md``, QBXML report queries).
QBE_REPORT_TYPES: dict[str, str] = {
    "Balance Sheet Standard": "Balance Sheet",
    "Balance Sheet Summary": "Summary Balance Sheet",
    "Balance Sheet Detail": "Balance Sheet Detail",
    "Profit and Loss Standard": "Profit & Loss",
    "Profit and Loss Detail": "Profit & Loss Detail",
    "Profit and Loss by Class": "Profit & Loss by Class",
    "Profit and Loss by Job": "Profit & Loss by Job",
    "Profit and Loss Budget vs. Actual": "Profit & Loss Budget vs. Actual",
    "Trial Balance": "Trial Balance",
    "General Ledger": "General Ledger",
    "AR Aging Summary": "A/R Aging Summary",
    "AR Aging Detail": "A/R Aging Detail",
    "AP Aging Summary": "A/P Aging Summary",
    "AP Aging Detail": "A/P Aging Detail",
    "Customer Balance Summary": "Customer Balance Summary",
    "Vendor Balance Summary": "Vendor Balance Summary",
    "Sales by Customer Summary": "Sales by Customer Summary",
    "Sales by Item Summary": "Sales by Item Summary",
    "Sales by Rep Summary": "Sales by Rep Summary",
    "Expense by Vendor Summary": "Expenses by Vendor Summary",
}

#: FreshBooks resources shared by Cloud Accounting (``freshbooksv2``) and Classic (``freshbooks``) (reference §3.2).
FRESHBOOKS_RESOURCES: tuple[str, ...] = ("customers", "invoices", "payments", "items", "taxes")
#: FreshBooks Cloud Accounting: the resources of its CEQL page (reference §3.2, column ``freshbooksv2``).
FRESHBOOKS_V2_ALL_RESOURCES: tuple[str, ...] = (*FRESHBOOKS_RESOURCES, "vendors")
#: FreshBooks Classic: ``vendors`` are FreshBooks contractors, ``hooks`` its webhook callbacks (churros).
FRESHBOOKS_CLASSIC_ALL_RESOURCES: tuple[str, ...] = (*FRESHBOOKS_RESOURCES, "vendors", "hooks")

#: Singular paths the vendor's own test suite uses for QuickBooks Online (reference §9: ``/vendor``).
QBO_PATH_ALIASES: dict[str, str] = {"vendor": "vendors", "estimate": "estimates"}

#: Each element's own object name of a hub resource: the ``vendorName`` of a transformation (reference
#: §10.2/§10.3; QBO: Intuit entity names, QBE: QBXML object names, e.g. ``payments`` = ``ReceivePayment``;
#: FreshBooks: API object names). The emulator accepts either this name or the hub resource name.
VENDOR_OBJECT_NAMES: dict[str, dict[str, str]] = {
    "quickbooks": {
        "customers": "Customer",
        "vendors": "Vendor",
        "employees": "Employee",
        "products": "Item",
        "ledger-accounts": "Account",
        "invoices": "Invoice",
        "bills": "Bill",
        "bill-payments": "BillPayment",
        "payments": "Payment",
        "journal-entries": "JournalEntry",
        "credit-memos": "CreditMemo",
        "estimates": "Estimate",
        "purchase-orders": "PurchaseOrder",
        "purchases": "Purchase",
        "sales-receipts": "SalesReceipt",
        "refund-receipts": "RefundReceipt",
        "vendor-credits": "VendorCredit",
        "classes": "Class",
        "departments": "Department",
        "tax-codes": "TaxCode",
        "tax-rates": "TaxRate",
        "payment-methods": "PaymentMethod",
        "credit-terms": "Term",
        "time-activities": "TimeActivity",
    },
    "quickbooksonprem": {
        "customers": "Customer",
        "vendors": "Vendor",
        "employees": "Employee",
        "products": "Item",
        "ledger-accounts": "Account",
        "invoices": "Invoice",
        "bills": "Bill",
        "payments": "ReceivePayment",
        "journal-entries": "JournalEntry",
        "credit-memos": "CreditMemo",
        "sales-receipts": "SalesReceipt",
        "sales-orders": "SalesOrder",
        "purchase-orders": "PurchaseOrder",
        "item-receipts": "ItemReceipt",
        "checks": "Check",
        "deposits": "Deposit",
        "bill-payment-checks": "BillPaymentCheck",
        "bill-payment-cards": "BillPaymentCreditCard",
        "vendor-credits": "VendorCredit",
        "classes": "Class",
        "credit-terms": "StandardTerms",
        "tax-codes": "SalesTaxCode",
        "payment-methods": "PaymentMethod",
    },
    "freshbooksv2": {
        "customers": "client",
        "invoices": "invoice",
        "payments": "payment",
        "items": "item",
        "taxes": "tax",
        "vendors": "bill_vendor",
    },
    "freshbooks": {
        "customers": "client",
        "invoices": "invoice",
        "payments": "payment",
        "items": "item",
        "taxes": "tax",
        "vendors": "contractor",
    },
}
