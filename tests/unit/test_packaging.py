"""The built wheels and sdists are those of a first-class provider: Apache-2.0 LICENSE inside both, an
SPDX license expression, the Airflow provider classifiers, project URLs, ``py.typed``, the provider
entry point, and ``twine check --strict`` passes on all four; the emulator is its own distribution and the
provider wheel neither ships it nor depends on its server libraries (scripts/check_dists.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    src = tmp_path_factory.mktemp("src") / "repo"
    # build from a copy: setuptools writes build/ and *.egg-info next to pyproject.toml
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(".venv*", ".git", "build", "*.egg-info", "__pycache__", ".demo", "output"),
    )
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    emu_out = tmp_path_factory.mktemp("dist-emulator")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(emu_out), str(src / "emulator")],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (emu_wheel,) = emu_out.glob("*.whl")
    (emu_sdist,) = emu_out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist, "emulator_wheel": emu_wheel, "emulator_sdist": emu_sdist}


def test_wheel_metadata_and_files(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as whl:
        names = whl.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(whl.read(meta_name).decode())
        license_name = next(n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
        license_text = whl.read(license_name).decode()
        entry_points = whl.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "airflow_provider_cloudelements/py.typed" in names
    assert license_text == (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta.get("License") is None  # the deprecated license table is gone
    classifiers = meta.get_all("Classifier") or []
    assert "Framework :: Apache Airflow" in classifiers
    assert "Framework :: Apache Airflow :: Provider" in classifiers
    assert "Typing :: Typed" in classifiers
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(urls)
    assert all(u.startswith("https://") for u in urls.values())
    assert "[apache_airflow_provider]" in entry_points
    assert "provider_info = airflow_provider_cloudelements.get_provider_info:get_provider_info" in entry_points


def test_sdist_contains_license_and_marker(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    assert {"LICENSE", "airflow_provider_cloudelements/py.typed", "pyproject.toml"} <= names


def test_twine_check_passes(dist: dict[str, Path]) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.values())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 4


def test_provider_wheel_pulls_no_emulator_dependency(dist: dict[str, Path], tmp_path: Path) -> None:
    for key in ("wheel", "emulator_wheel"):
        shutil.copy(dist[key], tmp_path)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "check_dists.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with zipfile.ZipFile(dist["wheel"]) as whl:
        meta = Parser().parsestr(whl.read(next(n for n in whl.namelist() if n.endswith("METADATA"))).decode())
    runtime = {r.split(">")[0].split("=")[0].strip() for r in meta.get_all("Requires-Dist") or [] if "extra" not in r}
    assert not runtime & {"faker", "fastapi", "uvicorn", "python-multipart"}, runtime
    assert "sqlglot" in runtime and "httpx" in runtime


def test_importing_every_provider_module_never_imports_the_emulator() -> None:
    """Walk the whole provider package in a fresh interpreter; neither the emulator nor Faker gets imported."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import airflow_provider_cloudelements as pkg\n"
        "mods = [m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.')]\n"
        "for name in mods: importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('cloudelements_emulator', 'faker'))\n"
        "print(len(mods), bad)\n"
        "sys.exit(1 if bad or len(mods) < 20 else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
