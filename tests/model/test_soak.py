"""``make soak SOAK_SECONDS=...``: the model of ``test_model.py`` for as long as asked.

Skipped unless ``CE_SOAK_SECONDS`` is set (``make soak`` sets it). Collects every violation instead of
stopping at the first, prints the steps run, the rate and, per violation kind, how many were found and
the step and second of the first one; fails when any was found.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import pytest

from tests.model.test_model import World, soak


@pytest.mark.skipif(not os.environ.get("CE_SOAK_SECONDS"), reason="soak run: make soak SOAK_SECONDS=...")
def test_soak(model_emulator: Any, model_dags: dict[str, Any]) -> None:
    seconds = float(os.environ["CE_SOAK_SECONDS"])
    steps = int(os.environ.get("CE_MODEL_STEPS", "60"))
    violations = soak(model_emulator, model_dags, seconds, steps)
    by_kind: dict[str, list[Any]] = defaultdict(list)
    for v in violations:
        by_kind[v.kind].append(v)
    lines = [World.summary, f"soak: {len(violations)} violation(s)"]
    for kind, found in sorted(by_kind.items(), key=lambda item: item[1][0].step):
        first = found[0]
        lines.append(f"  {kind}: {len(found)} (first at step {first.step}, {first.seconds:.1f} s): {first}")
    by_defect: dict[str, list[Any]] = defaultdict(list)
    for v in violations:
        by_defect[v.defect].append(v)
    for defect, found in sorted(by_defect.items(), key=lambda item: item[1][0].step):
        first = found[0]
        lines.append(f"  defect {defect}: {len(found)} (first at step {first.step}, {first.seconds:.1f} s)")
    for kind, found in sorted(by_kind.items(), key=lambda item: item[1][0].step):
        lines.append(f"  trace before the first {kind} ({found[0]}):")
        lines.extend(f"    {line}" for line in found[0].trace)
    print("\n".join(lines))
    if os.environ.get("CE_SOAK_REPORT"):
        with open(os.environ["CE_SOAK_REPORT"], "w") as handle:
            handle.write("\n".join(lines) + "\n")
    assert not violations, f"{len(violations)} violation(s), see above"
