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

from cloudelements_emulator.generator.common import Builder, Pools, Record, pools
from cloudelements_emulator.generator.fixtures import FIXTURES
from cloudelements_emulator.generator.qbe import builder_for, generate
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
