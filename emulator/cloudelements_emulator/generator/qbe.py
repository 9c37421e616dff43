"""QuickBooks Enterprise (``quickbooksonprem``) record builders: PascalCase QBXML ``*Ret`` shapes."""

from __future__ import annotations

import random

from cloudelements_emulator import timefmt
from cloudelements_emulator.generator.common import (
    _CURRENCIES,
    _MONTH_MS,
    _QBE_ID_BASE,
    Builder,
    Pools,
    Record,
    _email,
    _int,
    _money,
    _pick,
)


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
