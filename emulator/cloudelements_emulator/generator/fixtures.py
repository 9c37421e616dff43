"""Seeded lookup data (:data:`FIXTURES`) and the builder wrapper that makes it the first records."""

from __future__ import annotations

import random

from cloudelements_emulator.generator.common import Builder, Pools, Record

#: Lookup data the vendor's tests (churros) expect in a sandbox company, seeded as the first records.
FIXTURES: dict[tuple[str, str], list[Record]] = {
    ("qbe", "classes"): [{"Name": "Automatic Pool Systems", "FullName": "Automatic Pool Systems"}],
    ("qbe", "credit-terms"): [
        {"Name": "1% 10 Net 30", "FullName": "1% 10 Net 30", "StdDueDays": "30", "StdDiscountDays": "10"},
        {
            "Name": "Net 30",
            "FullName": "Net 30",
            "StdDueDays": "30",
            "StdDiscountDays": "0",
            "DiscountPct": "0.00",
        },
    ],
    ("qbe", "ledger-accounts"): [
        {"Name": "Checking", "FullName": "Checking", "AccountType": "Bank"},
        {
            "Name": "Accounts Receivable",
            "FullName": "Accounts Receivable",
            "AccountType": "AccountsReceivable",
        },
        {"Name": "Accounts Payable", "FullName": "Accounts Payable", "AccountType": "AccountsPayable"},
    ],
    ("qbe", "payment-methods"): [
        {"Name": "Check", "FullName": "Check", "PaymentMethodType": "Check"},
        {"Name": "Cash", "FullName": "Cash", "PaymentMethodType": "Cash"},
    ],
    ("qbe", "tax-codes"): [
        {"Name": "Non", "FullName": "Non", "IsTaxable": False, "Desc": "Non-Taxable Sales"},
        {"Name": "Tax", "FullName": "Tax", "IsTaxable": True, "Desc": "Taxable Sales"},
    ],
    ("qbe", "inventory-sites"): [{"Name": "Sample Site", "FullName": "Sample Site"}],
    ("qbe", "vendors"): [{"Name": "TEST", "FullName": "TEST", "CompanyName": "TEST"}],
    ("qbe", "customers"): [{"Name": "Blue, Dale", "FullName": "Blue, Dale", "FirstName": "Dale", "LastName": "Blue"}],
    ("qbo", "departments"): [{"name": "Sales", "fullyQualifiedName": "Sales"}],
    ("qbo", "payment-methods"): [
        {"name": "Cash", "type": "NON_CREDIT_CARD"},
        {"name": "Check", "type": "NON_CREDIT_CARD"},
    ],
}


def _with_fixtures(build: Builder, fixtures: list[Record]) -> Builder:
    def wrapped(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
        rec = build(r, p, seq, created, n)
        if seq <= len(fixtures):
            rec.update(fixtures[seq - 1])
        return rec

    return wrapped
