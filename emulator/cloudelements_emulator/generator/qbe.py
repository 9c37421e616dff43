"""QuickBooks Enterprise (``quickbooksonprem``) record builders: PascalCase QBXML ``*Ret`` shapes."""

from __future__ import annotations

import random
from collections.abc import Iterator

from cloudelements_emulator import timefmt
from cloudelements_emulator.elements import ElementDef
from cloudelements_emulator.generator.common import (
    _CURRENCIES,
    _MONTH_MS,
    _QBE_ID_BASE,
    _YEAR_MS,
    Builder,
    Pools,
    Record,
    _email,
    _int,
    _money,
    _pick,
    _ref,
    pools,
)
from cloudelements_emulator.generator.fixtures import FIXTURES, _with_fixtures
from cloudelements_emulator.generator.system import stamp


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


def _qbe_ref(r: random.Random, p: Pools, n: int) -> dict[str, str]:
    i = _int(r, 1, max(n, 1))
    return {
        "ListID": f"{_QBE_ID_BASE + i:08X}-1484948017",
        "FullName": f"{p.last[i % 300]}, {p.first[i % 300]}",
    }


def _qbe_list(resource: str) -> Builder:
    def build(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
        first, last = _pick(r, p.first), _pick(r, p.last)
        if resource == "products":
            name = f"{_pick(r, p.products)} {seq}"
            return {
                "Name": name,
                "FullName": name,
                "Type": r.choice(["ItemService", "ItemInventory", "ItemNonInventory"]),
                "SalesOrPurchase": {
                    "Desc": _pick(r, p.sentences),
                    "Price": f"{_money(r, 1, 900):.2f}",
                    "AccountRef": {"FullName": "Sales"},
                },
                "Sublevel": "0",
            }
        name = f"{last}, {first} {seq}"
        rec: Record = {"Name": name, "FullName": name, "FirstName": first, "LastName": last}
        if resource != "employees":
            rec["CompanyName"] = _pick(r, p.company)
            rec["Balance"] = f"{_money(r, 0, 20000):.2f}"
        rec["BillAddress" if resource != "employees" else "EmployeeAddress"] = {
            "Addr1": _pick(r, p.street),
            "City": _pick(r, p.city),
            "State": _pick(r, p.state),
            "PostalCode": _pick(r, p.postcode),
        }
        rec["Phone"] = _pick(r, p.phone)
        rec["Email"] = _email(r, p, first, last)
        rec["Sublevel"] = "0"
        return rec

    return build


_QBE_LINES = {
    "invoices": "InvoiceLineRet",
    "sales-receipts": "SalesReceiptLineRet",
    "credit-memos": "CreditMemoLineRet",
    "sales-orders": "SalesOrderLineRet",
    "purchase-orders": "PurchaseOrderLineRet",
    "bills": "ItemLineRet",
    "item-receipts": "ItemLineRet",
}
_QBE_VENDOR = frozenset({"purchase-orders", "bills", "item-receipts", "vendor-credits"})
_QBE_MONEY_TXNS = frozenset(
    {
        "bill-payment-checks",
        "bill-payment-cards",
        "checks",
        "creditcard-charges",
        "creditcard-credits",
        "deposits",
        "inventory-adjustments",
        "time-activities",
    }
)


def _qbe_txn(resource: str) -> Builder:
    line_key = _QBE_LINES.get(resource, "ItemLineRet")
    vendor_side = resource in _QBE_VENDOR

    def build(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
        lines = []
        total = 0.0
        for i in range(_int(r, 1, 3)):
            qty = _int(r, 1, 10)
            rate = _money(r, 5, 500)
            amount = round(qty * rate, 2)
            total += amount
            lines.append(
                {
                    "TxnLineID": f"{i + 1:X}-{created // 1000}",
                    "ItemRef": {"FullName": _pick(r, p.products)},
                    "Desc": _pick(r, p.sentences),
                    "Quantity": str(qty),
                    "Rate": f"{rate:.2f}",
                    "Amount": f"{amount:.2f}",
                    "SalesTaxCodeRef": {"FullName": "Non"},
                }
            )
        rec: Record = {
            "TxnNumber": str(seq),
            "TxnDate": timefmt.date_str(created),
            "RefNumber": str(seq + 1000),
        }
        rec["VendorRef" if vendor_side else "CustomerRef"] = _qbe_ref(r, p, n)
        rec[line_key] = lines
        rec["Subtotal" if not vendor_side else "AmountDue"] = f"{total:.2f}"
        rec["TotalAmount"] = f"{total:.2f}"
        if resource == "invoices":
            rec["DueDate"] = timefmt.date_str(created + _MONTH_MS)
            rec["IsPaid"] = r.random() < 0.6
            rec["ARAccountRef"] = {"FullName": "Accounts Receivable"}
        return rec

    return build


def _qbe_payment(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
    amount = f"{_money(r):.2f}"
    return {
        "TxnNumber": str(seq),
        "CustomerRef": _qbe_ref(r, p, n),
        "ARAccountRef": {"FullName": "Accounts Receivable"},
        "TxnDate": timefmt.date_str(created),
        "RefNumber": str(seq + 2000),
        "TotalAmount": amount,
        "PaymentMethodRef": {"FullName": r.choice(["Check", "Cash", "Visa"])},
        "AppliedToTxnRet": [
            {
                "TxnID": f"{_QBE_ID_BASE + _int(r, 1, max(n, 1)):08X}-1484948017",
                "TxnType": "Invoice",
                "Amount": amount,
            }
        ],
    }


def _qbe_journal(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
    amount = f"{_money(r):.2f}"
    acct = _pick(r, p.words).title()
    return {
        "TxnNumber": str(seq),
        "TxnDate": timefmt.date_str(created),
        "RefNumber": f"JE{seq}",
        "IsAdjustment": False,
        "JournalDebitLine": [{"AccountRef": {"FullName": acct}, "Amount": amount, "Memo": _pick(r, p.sentences)}],
        "JournalCreditLine": [{"AccountRef": {"FullName": "Checking"}, "Amount": amount}],
    }


def _fb(resource: str) -> Builder:
    def build(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
        if resource == "customers":
            first, last = _pick(r, p.first), _pick(r, p.last)
            return {
                "first_name": first,
                "last_name": last,
                "organization": _pick(r, p.company),
                "email": _email(r, p, first, last),
                "work_phone": _pick(r, p.phone),
                "p_street1": _pick(r, p.street),
                "p_city": _pick(r, p.city),
                "p_state": _pick(r, p.state),
                "p_code": _pick(r, p.postcode),
                "p_country": "United States",
                "currency_code": "USD",
            }
        if resource == "invoices":
            lines = []
            total = 0.0
            for _ in range(_int(r, 1, 3)):
                qty = _int(r, 1, 10)
                cost = _money(r, 5, 500)
                amount = round(qty * cost, 2)
                total += amount
                lines.append(
                    {
                        "name": _pick(r, p.products),
                        "description": _pick(r, p.sentences),
                        "unit_cost": cost,
                        "quantity": qty,
                        "amount": amount,
                    }
                )
            return {
                "invoice_number": f"{seq:07d}",
                "client_id": _int(r, 1, max(n, 1)),
                "status": r.choice(["draft", "sent", "viewed", "paid", "partial"]),
                "date": timefmt.date_str(created),
                "currency_code": "USD",
                "amount": round(total, 2),
                "lines": lines,
                "notes": _pick(r, p.sentences),
                "terms": "Net 30",
            }
        if resource == "payments":
            return {
                "invoice_id": _int(r, 1, max(n, 1)),
                "client_id": _int(r, 1, max(n, 1)),
                "amount": _money(r),
                "date": timefmt.date_str(created),
                "type": r.choice(["Check", "Credit", "Cash", "VISA", "Bank Transfer"]),
                "notes": _pick(r, p.sentences),
                "currency_code": "USD",
            }
        if resource == "items":
            return {
                "name": f"{_pick(r, p.products)} {seq}",
                "description": _pick(r, p.sentences),
                "unit_cost": _money(r, 1, 900),
                "quantity": _int(r, 1, 10),
                "inventory": _int(r, 0, 500),
            }
        return {
            "name": f"{_pick(r, p.words).upper()} {seq}",
            "rate": round(r.uniform(0, 15), 2),
            "number": str(_int(r, 100000, 999999)),
            "compound": r.choice([0, 1]),
        }  # taxes

    return build


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


def _qbe_ref_named(name: str) -> dict[str, str]:
    return {"FullName": name}


def _qbe_lookup(resource: str) -> Builder:
    """QBE list objects other than parties/products (classes, terms, accounts, …; QBXML ``*Ret`` shapes)."""

    def build(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
        name = f"{_pick(r, p.words).title()} {seq}"
        rec: Record = {"Name": name, "FullName": name}
        if resource == "classes":
            rec["Sublevel"] = "0"
        elif resource == "credit-terms":
            days = r.choice([10, 15, 30, 45, 60])
            rec.update({"StdDueDays": str(days), "StdDiscountDays": "10", "DiscountPct": "1.00"})
        elif resource == "currencies":
            code, cname = _CURRENCIES[(seq - 1) % len(_CURRENCIES)]
            rec.update(
                {
                    "Name": cname if seq <= len(_CURRENCIES) else f"{cname} {seq}",
                    "FullName": cname if seq <= len(_CURRENCIES) else f"{cname} {seq}",
                    "CurrencyCode": code,
                    "CurrencyFormat": {
                        "DecimalPlaces": "2",
                        "DecimalSeparator": "Period",
                        "ThousandSeparator": "Comma",
                    },
                    "IsUserDefinedCurrency": False,
                }
            )
        elif resource == "inventory-sites":
            rec.update({"SiteDesc": _pick(r, p.sentences), "Contact": _pick(r, p.first), "Phone": _pick(r, p.phone)})
        elif resource == "ledger-accounts":
            acct = r.choice(["Bank", "AccountsReceivable", "AccountsPayable", "Income", "Expense", "OtherCurrentAsset"])
            rec.update(
                {
                    "AccountType": acct,
                    "AccountNumber": str(1000 + seq * 10),
                    "Balance": f"{_money(r, 0, 50000):.2f}",
                    "TotalBalance": f"{_money(r, 0, 50000):.2f}",
                    "Sublevel": "0",
                }
            )
        elif resource == "payment-methods":
            rec["PaymentMethodType"] = r.choice(["Cash", "Check", "Visa", "MasterCard", "AmericanExpress"])
        elif resource == "payroll-wage-items":
            rec.update(
                {
                    "WageType": r.choice(["HourlyRegular", "SalaryRegular"]),
                    "ExpenseAccountRef": {"FullName": "Payroll Expenses"},
                }
            )
        elif resource == "tax-codes":
            rec.update({"IsTaxable": r.random() < 0.5, "Desc": _pick(r, p.sentences)})
        elif resource == "tax-rates":
            rec.update(
                {
                    "TaxRate": f"{r.uniform(0, 12):.2f}",
                    "ItemDesc": _pick(r, p.sentences),
                    "TaxVendorRef": {"FullName": f"{_pick(r, p.city)} Tax Agency"},
                }
            )
        return rec

    return build


def _qbe_money_txn(resource: str) -> Builder:
    """Build QBE transactions without item lines (QBXML ``*Ret`` field names).

    Used for bill payments, checks, card charges/credits, deposits, inventory adjustments and time
    tracking.
    """

    def build(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
        amount = f"{_money(r):.2f}"
        payee = _qbe_ref(r, p, n)
        rec: Record = {
            "TxnNumber": str(seq),
            "TxnDate": timefmt.date_str(created),
            "RefNumber": str(seq + 3000),
        }
        if resource.startswith("bill-payment-"):
            rec["PayeeEntityRef"] = payee
            rec["APAccountRef"] = _qbe_ref_named("Accounts Payable")
            if resource == "bill-payment-checks":
                rec["BankAccountRef"] = _qbe_ref_named("Checking")
            else:
                rec["CreditCardAccountRef"] = _qbe_ref_named("QuickBooks Credit Card")
            rec["Amount"] = amount
            rec["AppliedToTxnRet"] = [
                {
                    "TxnID": f"{_QBE_ID_BASE + _int(r, 1, max(n, 1)):08X}-1484948017",
                    "TxnType": "Bill",
                    "Amount": amount,
                }
            ]
        elif resource in ("checks", "creditcard-charges", "creditcard-credits"):
            rec["AccountRef"] = _qbe_ref_named("Checking" if resource == "checks" else "QuickBooks Credit Card")
            rec["PayeeEntityRef"] = payee
            rec["Amount"] = amount
            rec["ExpenseLineRet"] = [
                {
                    "TxnLineID": f"1-{created // 1000}",
                    "AccountRef": _qbe_ref_named(_pick(r, p.words).title()),
                    "Amount": amount,
                    "Memo": _pick(r, p.sentences),
                }
            ]
        elif resource == "deposits":
            rec["DepositToAccountRef"] = _qbe_ref_named("Checking")
            rec["DepositTotal"] = amount
            rec["DepositLineRet"] = [
                {
                    "TxnLineID": f"1-{created // 1000}",
                    "EntityRef": payee,
                    "AccountRef": _qbe_ref_named("Undeposited Funds"),
                    "Amount": amount,
                }
            ]
        elif resource == "inventory-adjustments":
            rec["AccountRef"] = _qbe_ref_named("Inventory Adjustments")
            rec["InventorySiteRef"] = _qbe_ref_named("Sample Site")
            rec["InventoryAdjustmentLineRet"] = [
                {
                    "TxnLineID": f"1-{created // 1000}",
                    "ItemRef": _qbe_ref_named(_pick(r, p.products)),
                    "QuantityDifference": str(_int(r, -20, 50)),
                    "ValueDifference": "0.00",
                }
            ]
        else:  # time-activities (QBXML TimeTracking)
            rec.pop("RefNumber")
            rec["EntityRef"] = payee
            rec["CustomerRef"] = _qbe_ref(r, p, n)
            rec["ItemServiceRef"] = _qbe_ref_named(_pick(r, p.products))
            rec["Duration"] = f"PT{_int(r, 0, 8)}H{r.choice([0, 15, 30, 45])}M0S"
            rec["BillableStatus"] = r.choice(["Billable", "NotBillable", "HasBeenBilled"])
            rec["Notes"] = _pick(r, p.sentences)
        return rec

    return build


def _fb_extra(resource: str, classic: bool) -> Builder:
    """FreshBooks ``vendors`` (Classic: contractors; Cloud Accounting: bill vendors) and Classic ``hooks``."""

    def build(r: random.Random, p: Pools, seq: int, created: int, n: int) -> Record:
        first, last = _pick(r, p.first), _pick(r, p.last)
        if resource == "hooks":
            return {
                "event": r.choice(["invoice.create", "invoice.update", "client.create", "payment.create"]),
                "uri": f"https://hooks.example.com/freshbooks/{seq}",
                "verified": r.random() < 0.8,
            }
        if classic:
            return {
                "name": f"{first} {last}",
                "email": _email(r, p, first, last),
                "rate": _money(r, 20, 200),
                "task_id": _int(r, 100000, 999999),
                "organization": _pick(r, p.company),
            }
        return {
            "vendor_name": _pick(r, p.company),
            "primary_contact_first_name": first,
            "primary_contact_last_name": last,
            "primary_contact_email": _email(r, p, first, last),
            "phone": _pick(r, p.phone),
            "street": _pick(r, p.street),
            "city": _pick(r, p.city),
            "province": _pick(r, p.state),
            "country": "United States",
            "currency_code": "USD",
            "is_1099": r.random() < 0.2,
        }

    return build


def builder_for(element: ElementDef, resource: str) -> Builder:
    """The business-field builder for ``(element, resource)`` (seeded lookup data first, see :data:`FIXTURES`)."""
    build = _base_builder(element, resource)
    fixtures = FIXTURES.get((element.style, resource))
    return _with_fixtures(build, fixtures) if fixtures else build


def _base_builder(element: ElementDef, resource: str) -> Builder:
    if element.style == "fb":
        if resource in ("vendors", "hooks"):
            return _fb_extra(resource, classic=element.key == "freshbooks")
        return _fb(resource)
    if element.style == "qbe":
        if resource in ("customers", "employees", "products", "vendors"):
            return _qbe_list(resource)
        if resource in element.list_resources:
            return _qbe_lookup(resource)
        if resource in _QBE_MONEY_TXNS:
            return _qbe_money_txn(resource)
        if resource == "payments":
            return _qbe_payment
        if resource == "journal-entries":
            return _qbe_journal
        return _qbe_txn(resource)
    if resource == "company-info":
        return _qbo_company
    if resource == "preferences":
        return _qbo_preferences
    if resource in ("customers", "vendors", "employees"):
        return _qbo_party(resource)
    if resource in ("payments", "bill-payments"):
        return _qbo_payment(resource)
    if resource == "journal-entries":
        return _qbo_journal
    if resource == "time-activities":
        return _qbo_time
    if resource in element.list_resources:
        return _qbo_list(resource)
    return _qbo_txn(resource)


def generate(
    element: ElementDef,
    resource: str,
    instance_id: int,
    seed: int,
    count: int,
    anchor_ms: int,
    composite: bool = False,
) -> Iterator[tuple[int, int, int, Record]]:
    """Yield ``(seq, created_ms, updated_ms, record)`` for ``count`` records, oldest first.

    Created times are spread evenly (with jitter) over the 365 days before ``anchor_ms``; 40 % of
    records were never modified, the rest within 30 days after creation (never after the anchor).
    """
    r = random.Random(f"{seed}:{element.key}:{instance_id}:{resource}")
    p = pools(seed)
    build = builder_for(element, resource)
    start = anchor_ms - _YEAR_MS
    step = _YEAR_MS / max(count, 1)
    kind = element.date_kind
    for seq in range(1, count + 1):
        created = timefmt.truncate(int(start + (seq - 1) * step + r.random() * step), kind)
        if r.random() < 0.4:
            updated = created
        else:
            updated = timefmt.truncate(min(anchor_ms - 1, created + int(r.random() * _MONTH_MS)), kind)
        yield (
            seq,
            created,
            updated,
            stamp(element, resource, build(r, p, seq, created, count), seq, created, updated, 0, composite),
        )
