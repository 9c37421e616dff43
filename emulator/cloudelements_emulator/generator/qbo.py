"""QuickBooks Online (``quickbooks``) record builders: camelCase QBO v3 shapes."""

from __future__ import annotations

import random

from cloudelements_emulator import timefmt
from cloudelements_emulator.generator.common import (
    _CURRENCIES,
    _MONTH_MS,
    Builder,
    Pools,
    Record,
    _email,
    _int,
    _money,
    _pick,
    _ref,
)


def _qbo_party(resource: str) -> Builder:
    def build(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
        first, last = _pick(r, p.first), _pick(r, p.last)
        rec: Record = {"givenName": first, "familyName": last, "displayName": f"{last}, {first} {seq}"}
        if resource != "employees":
            rec["companyName"] = _pick(r, p.company)
            rec["balance"] = _money(r, 0, 20000) if r.random() < 0.6 else 0
        rec["primaryEmailAddr"] = {"address": _email(r, p, first, last)}
        rec["primaryPhone"] = {"freeFormNumber": _pick(r, p.phone)}
        addr = "primaryAddr" if resource == "employees" else "billAddr"
        rec[addr] = {
            "id": str(seq + 1000),
            "line1": _pick(r, p.street),
            "city": _pick(r, p.city),
            "countrySubDivisionCode": _pick(r, p.state),
            "postalCode": _pick(r, p.postcode),
        }
        if resource == "customers":
            rec["taxable"] = r.random() < 0.5
            rec["currencyRef"] = {"value": "USD", "name": "United States Dollar"}
        elif resource == "vendors":
            rec["acctNum"] = str(_int(r, 10000, 99999))
            rec["vendor1099"] = r.random() < 0.2
        else:
            rec["employeeNumber"] = f"E{seq:05d}"
            rec["hiredDate"] = timefmt.date_str(created)
        return rec

    return build


_QBO_VENDOR_TXN = frozenset({"bills", "purchase-orders", "vendor-credits", "purchases"})


def _qbo_txn(resource: str) -> Builder:
    vendor_side = resource in _QBO_VENDOR_TXN

    def build(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
        lines = []
        total = 0.0
        for i in range(_int(r, 1, 3)):
            qty = _int(r, 1, 10)
            price = _money(r, 5, 500)
            amount = round(qty * price, 2)
            total += amount
            if vendor_side:
                lines.append(
                    {
                        "id": str(i + 1),
                        "lineNum": i + 1,
                        "amount": amount,
                        "detailType": "ACCOUNT_BASED_EXPENSE_LINE_DETAIL",
                        "accountBasedExpenseLineDetail": {
                            "accountRef": {"value": str(_int(r, 1, 90)), "name": _pick(r, p.words).title()},
                            "billableStatus": "NOT_BILLABLE",
                            "taxCodeRef": {"value": "NON"},
                        },
                    }
                )
            else:
                lines.append(
                    {
                        "id": str(i + 1),
                        "lineNum": i + 1,
                        "amount": amount,
                        "description": _pick(r, p.sentences),
                        "detailType": "SALES_ITEM_LINE_DETAIL",
                        "salesItemLineDetail": {
                            "itemRef": {"value": str(_int(r, 1, 40)), "name": _pick(r, p.products)},
                            "qty": qty,
                            "unitPrice": price,
                            "taxCodeRef": {"value": "NON"},
                        },
                    }
                )
        total = round(total, 2)
        rec: Record = {"docNumber": f"{seq + 1000}", "txnDate": timefmt.date_str(created)}
        party = "vendorRef" if vendor_side else "customerRef"
        rec[party] = _ref(r, p, n)
        rec["line"] = lines
        rec["totalAmt"] = total
        rec["currencyRef"] = {"value": "USD", "name": "United States Dollar"}
        if resource in ("invoices", "bills"):
            rec["dueDate"] = timefmt.date_str(created + _MONTH_MS)
            rec["balance"] = total if r.random() < 0.4 else 0
        if resource == "invoices":
            rec["billEmail"] = {"address": _email(r, p, _pick(r, p.first), _pick(r, p.last))}
            rec["salesTermRef"] = {"value": str(_int(r, 1, 5))}
            rec["printStatus"] = "NEED_TO_PRINT" if r.random() < 0.3 else "NOT_SET"
            rec["emailStatus"] = "EMAIL_SENT" if r.random() < 0.6 else "NOT_SET"
            rec["txnTaxDetail"] = {"totalTax": 0}
        if resource == "estimates":
            rec["expirationDate"] = timefmt.date_str(created + _MONTH_MS)
            rec["txnStatus"] = r.choice(["Pending", "Accepted", "Closed"])
            rec["billEmail"] = {"address": _email(r, p, _pick(r, p.first), _pick(r, p.last))}
        if resource == "purchases":
            vendor = rec.pop("vendorRef")
            rec["entityRef"] = {**vendor, "type": "Vendor"}
            rec["paymentType"] = r.choice(["CHECK", "CASH", "CREDIT_CARD"])
            rec["accountRef"] = {"value": "35", "name": "Checking"}
        if r.random() < 0.3:
            rec["privateNote"] = _pick(r, p.sentences)
        return rec

    return build


def _qbo_payment(resource: str) -> Builder:
    bill = resource == "bill-payments"

    def build(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
        amount = _money(r)
        rec: Record = {
            ("vendorRef" if bill else "customerRef"): _ref(r, p, n),
            "txnDate": timefmt.date_str(created),
            "totalAmt": amount,
        }
        linked = {"txnId": str(_int(r, 1, max(n, 1))), "txnType": "Bill" if bill else "Invoice"}
        rec["line"] = [{"amount": amount, "linkedTxn": [linked]}]
        if bill:
            rec["payType"] = r.choice(["Check", "CreditCard"])
            rec["docNumber"] = str(seq + 5000)
        else:
            rec["unappliedAmt"] = 0
            rec["paymentRefNum"] = str(_int(r, 1000, 99999))
            rec["depositToAccountRef"] = {"value": "4", "name": "Undeposited Funds"}
        rec["currencyRef"] = {"value": "USD", "name": "United States Dollar"}
        return rec

    return build


def _qbo_journal(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
    amount = _money(r)
    lines = [
        {
            "id": str(i),
            "amount": amount,
            "detailType": "JOURNAL_ENTRY_LINE_DETAIL",
            "journalEntryLineDetail": {
                "postingType": posting,
                "accountRef": {"value": str(_int(r, 1, 90)), "name": _pick(r, p.words).title()},
            },
        }
        for i, posting in enumerate(("DEBIT", "CREDIT"))
    ]
    return {
        "docNumber": f"JE{seq}",
        "txnDate": timefmt.date_str(created),
        "privateNote": _pick(r, p.sentences),
        "totalAmt": amount,
        "line": lines,
        "adjustment": False,
    }


_ACCOUNT_TYPES = [
    ("Accounts Payable", "ACCOUNTS_PAYABLE", "LIABILITY"),
    ("Bank", "CHECKING", "ASSET"),
    ("Income", "SALES_OF_PRODUCT_INCOME", "REVENUE"),
    ("Expense", "ADVERTISING_PROMOTIONAL", "EXPENSE"),
    ("Accounts Receivable", "ACCOUNTS_RECEIVABLE", "ASSET"),
]


def _qbo_list(resource: str) -> Builder:
    def build(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
        name = f"{_pick(r, p.words).title()} {seq}"
        if resource == "ledger-accounts":
            acct, sub, cls = r.choice(_ACCOUNT_TYPES)
            return {
                "name": name,
                "fullyQualifiedName": name,
                "accountType": acct,
                "accountSubType": sub,
                "classification": cls,
                "currentBalance": _money(r, 0, 50000),
                "acctNum": str(1000 + seq),
                "currencyRef": {"value": "USD", "name": "United States Dollar"},
            }
        if resource == "products":
            return {
                "name": f"{_pick(r, p.products)} {seq}",
                "sku": f"SKU-{seq:06d}",
                "description": _pick(r, p.sentences),
                "type": r.choice(["Inventory", "Service", "NonInventory"]),
                "unitPrice": _money(r, 1, 900),
                "purchaseCost": _money(r, 1, 400),
                "qtyOnHand": _int(r, 0, 500),
                "taxable": r.random() < 0.5,
                "incomeAccountRef": {"value": "79", "name": "Sales of Product Income"},
            }
        if resource == "currencies":
            code, cname = _CURRENCIES[(seq - 1) % len(_CURRENCIES)]
            return {"code": code if seq <= len(_CURRENCIES) else f"{code}{seq}", "name": cname}
        if resource == "credit-terms":
            days = r.choice([7, 10, 15, 30, 45, 60, 90])
            return {
                "name": f"Net {days} ({seq})",
                "dueDays": days,
                "discountPercent": r.choice([0, 1, 2]),
                "type": "STANDARD",
            }
        if resource == "payment-methods":
            return {"name": name, "type": r.choice(["CREDIT_CARD", "NON_CREDIT_CARD"])}
        if resource == "departments":
            return {"name": name, "fullyQualifiedName": name, "subDepartment": False}
        if resource == "tax-agencies":
            return {
                "displayName": f"{_pick(r, p.city)} Tax Agency {seq}",
                "taxTrackedOnSales": True,
                "taxTrackedOnPurchases": r.random() < 0.3,
            }
        if resource == "tax-codes":
            return {"name": name, "description": _pick(r, p.sentences), "taxable": True, "taxGroup": False}
        if resource == "tax-rates":
            return {
                "name": name,
                "rateValue": round(r.uniform(0, 12), 2),
                "agencyRef": {"value": "1"},
                "specialTaxType": "NONE",
                "displayType": "ReadOnly",
            }
        return {"name": name, "fullyQualifiedName": name, "subClass": False}  # classes

    return build


def _qbo_time(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
    return {
        "txnDate": timefmt.date_str(created),
        "nameOf": "EMPLOYEE",
        "employeeRef": _ref(r, p, n),
        "customerRef": _ref(r, p, n),
        "itemRef": {"value": str(_int(r, 1, 40))},
        "hours": _int(r, 0, 8),
        "minutes": r.choice([0, 15, 30, 45]),
        "hourlyRate": _money(r, 20, 200),
        "billableStatus": r.choice(["Billable", "NotBillable"]),
        "description": _pick(r, p.sentences),
    }


def _qbo_company(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
    company = _pick(r, p.company)
    return {
        "companyName": company,
        "legalName": f"{company} LLC",
        "companyAddr": {
            "line1": _pick(r, p.street),
            "city": _pick(r, p.city),
            "countrySubDivisionCode": "CA",
        },
        "country": "US",
        "email": {"address": f"accounts@{_pick(r, p.domain)}"},
        "fiscalYearStartMonth": "January",
        "supportedLanguages": "en",
        "companyStartDate": timefmt.date_str(created),
    }


def _qbo_preferences(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
    return {
        "accountingInfoPrefs": {
            "trackDepartments": True,
            "classTrackingPerTxn": False,
            "customerTerminology": "Customers",
        },
        "salesFormsPrefs": {"allowDiscount": True, "allowDeposit": True, "defaultTerms": {"value": "3"}},
        "currencyPrefs": {"multiCurrencyEnabled": False, "homeCurrency": {"value": "USD"}},
        "taxPrefs": {"usingSalesTax": True},
        "timeTrackingPrefs": {"useServices": True, "workWeekStartDate": "Monday"},
    }
