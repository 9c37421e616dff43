"""Check the two built distributions (``.ci/run`` after ``python -m build``): what each wheel pulls and holds.

Usage: ``python scripts/check_dists.py DIST_DIR`` with the provider's and the emulator's wheel in DIST_DIR.
The provider wheel must depend on none of the emulator's server libraries and ship no emulator module;
the emulator wheel must ship ``cloudelements_emulator`` and its console script. Exits 1 with one line per
problem.
"""

from __future__ import annotations

import sys
import zipfile
from email.parser import Parser
from pathlib import Path

#: Libraries only the emulator needs (Airflow may still pull some of them itself; the provider must not ask).
EMULATOR_ONLY = ("faker", "fastapi", "uvicorn", "python-multipart", "cloudelements-emulator")


def _wheel(dist: Path, name: str) -> Path:
    found = sorted(dist.glob(f"{name}-*.whl"))
    if len(found) != 1:
        raise SystemExit(f"expected one {name} wheel in {dist}, found {[p.name for p in found]}")
    return found[0]


def _metadata(wheel: Path) -> tuple[list[str], list[str], str]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
        eps = next((zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt")), "")
    return names, meta.get_all("Requires-Dist") or [], eps


def _requirement_name(spec: str) -> str:
    for sep in " ;<>=!~[(":
        spec = spec.split(sep, 1)[0]
    return spec.strip().lower().replace("_", "-")


def main(dist: Path) -> int:
    problems: list[str] = []
    names, requires, _ = _metadata(_wheel(dist, "airflow_provider_cloudelements"))
    runtime = [r for r in requires if "extra ==" not in r]
    for req in runtime:
        if _requirement_name(req) in EMULATOR_ONLY:
            problems.append(f"provider wheel requires {req!r} (emulator-only)")
    problems += [f"provider wheel ships {n}" for n in names if "emulator" in n.split("/")[0]]
    names, requires, eps = _metadata(_wheel(dist, "cloudelements_emulator"))
    if not any(n.startswith("cloudelements_emulator/") for n in names):
        problems.append("emulator wheel ships no cloudelements_emulator package")
    if "cloudelements-emulator = cloudelements_emulator.cli:main" not in eps:
        problems.append("emulator wheel lacks the cloudelements-emulator console script")
    if not any(_requirement_name(r) == "airflow-provider-cloudelements" for r in requires):
        problems.append("emulator wheel does not depend on the provider (its element catalog)")
    for p in problems:
        print(f"[FAIL] {p}")
    if not problems:
        print(f"[ok] provider wheel: {len(runtime)} runtime requirements, none emulator-only; emulator wheel ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
