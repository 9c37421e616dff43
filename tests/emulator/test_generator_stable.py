"""The emulator's generated data is byte-stable for a given seed (pinned in ``generator_golden.json``).

Every record resource of every element is generated with two seeds (QuickBooks Online also with
composite ``<id>|<syncToken>`` ids); the canonical JSON of each ``(seq, created_ms, updated_ms,
record)`` row, plus what :func:`seq_of`, :func:`version_of` and :func:`strip_system` make of it, is
hashed with SHA-256 and compared with the committed hash. Refactoring the generator must keep every
hash; a deliberate data change (or a Faker upgrade, whose word lists feed the pools) regenerates the
file with ``python -m tests.emulator.test_generator_stable --update`` and says so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from cloudelements_emulator.elements import ELEMENTS
from cloudelements_emulator.generator import generate, seq_of, strip_system, version_of

GOLDEN = Path(__file__).with_name("generator_golden.json")
SEEDS = (7, 20240601)
INSTANCE_ID = 3
COUNT = 25
#: 2026-09-21, the anchor the typed-table tests use too
ANCHOR_MS = 1_790_000_000_000


def digests() -> dict[str, str]:
    """``{"<element>/<resource>/<seed>[/composite]": sha256 hex}`` of the generated rows."""
    out: dict[str, str] = {}
    for element in ELEMENTS.values():
        modes = (False, True) if element.style == "qbo" else (False,)
        for resource in element.resources:
            for seed in SEEDS:
                for composite in modes:
                    h = hashlib.sha256()
                    for seq, created, updated, record in generate(
                        element, resource, INSTANCE_ID, seed, COUNT, ANCHOR_MS, composite
                    ):
                        raw_id = record.get(element.id_field(resource), record.get("id"))
                        derived = [seq_of(element, str(raw_id)), version_of(element, record)]
                        derived.append(sorted(strip_system(element, resource, record)))
                        row = [seq, created, updated, record, derived]
                        h.update(json.dumps(row, sort_keys=True, separators=(",", ":")).encode())
                        h.update(b"\n")
                    key = f"{element.key}/{resource}/{seed}" + ("/composite" if composite else "")
                    out[key] = h.hexdigest()
    return out


def test_generated_data_matches_the_pinned_hashes() -> None:
    pinned = json.loads(GOLDEN.read_text(encoding="utf-8"))
    got = digests()
    missing = sorted(set(pinned) - set(got))
    new = sorted(set(got) - set(pinned))
    changed = sorted(k for k in set(got) & set(pinned) if got[k] != pinned[k])
    assert not (missing or new or changed), (
        f"generated data drifted: changed={changed} new={new} missing={missing} "
        "(regenerate with `python -m tests.emulator.test_generator_stable --update` only for a deliberate change)"
    )
    assert len(got) > 100  # every element's resources, not an empty catalog


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python -m tests.emulator.test_generator_stable --update")
    GOLDEN.write_text(json.dumps(digests(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
