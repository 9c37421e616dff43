"""Deterministic, fast record generation per element convention (reference §3.5); see :mod:`.qbe` for now."""

from cloudelements_emulator.generator.qbe import (
    FIXTURES,
    Builder,
    Pools,
    Record,
    builder_for,
    generate,
    pools,
    record_id,
    seq_of,
    stamp,
    strip_system,
    version_of,
)

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
