"""Deterministic, fast record generation per element convention (reference §3.5).

Faker is used once per seed to build small pools (names, companies, addresses, words); records
are then combined from the pools with a ``random.Random`` seeded from
``(seed, element key, instance id, resource)`` — so 1M invoices take seconds, not minutes, and the
same config always yields the same data.

A builder returns the *business* fields of one record; :func:`stamp` adds the system fields
(id, version, timestamps, active flags) so hub creates/updates share the exact same conventions.

Modules: :mod:`.common` (types, pools, random helpers), :mod:`.system` (ids and system fields),
:mod:`.qbo`, :mod:`.qbe`, :mod:`.freshbooks` (builders per element family), :mod:`.fixtures`
(seeded lookup data); this module picks the builder (:func:`builder_for`) and yields records
(:func:`generate`).
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from cloudelements_emulator import timefmt
from cloudelements_emulator.elements import ElementDef
from cloudelements_emulator.generator.common import _MONTH_MS, _YEAR_MS, Builder, Pools, Record, pools
from cloudelements_emulator.generator.fixtures import FIXTURES, _with_fixtures
from cloudelements_emulator.generator.freshbooks import _fb, _fb_extra
from cloudelements_emulator.generator.qbe import (
    _QBE_MONEY_TXNS,
    _qbe_journal,
    _qbe_list,
    _qbe_lookup,
    _qbe_money_txn,
    _qbe_payment,
    _qbe_txn,
)
from cloudelements_emulator.generator.qbo import (
    _qbo_company,
    _qbo_journal,
    _qbo_list,
    _qbo_party,
    _qbo_payment,
    _qbo_preferences,
    _qbo_time,
    _qbo_txn,
)
from cloudelements_emulator.generator.system import record_id, seq_of, stamp, strip_system, version_of

__all__ = [
    "FIXTURES",
    "Builder",
    "Pools",
    "Record",
    "builder_for",
    "generate",
    "pools",
    "record_id",
    "seq_of",
    "stamp",
    "strip_system",
    "version_of",
]


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
