"""FreshBooks record builders (snake_case): Cloud Accounting ``freshbooksv2`` and Classic ``freshbooks``."""

from __future__ import annotations

import random

from cloudelements_emulator import timefmt
from cloudelements_emulator.generator.common import Builder, Pools, Record, _email, _int, _money, _pick


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
