"""The documentation site (``make docs``: mkdocs.yml, scripts/mkdocs_hooks.py) builds strictly and is whole.

* The strict build logs no warning (MkDocs' link and anchor validation, the hook's repository links).
* Every page under ``docs/``, the changelog, the benchmarks and each example DAG is in ``nav`` (MkDocs
  only reports a page left out at INFO level by default) and became an HTML page.
* Every class heading page shows code naming its class, and the full source of an example DAG using the
  class wherever one does (the bulk extract page shows ``cloudelements_finance_sync``).
* No page links a ``.md`` file, a path outside the site or a file the site does not have.
"""

from __future__ import annotations

import html
import importlib.util
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.unit.test_docs import ROLE_PAGES, headings
from tests.unit.test_provider_info import public_classes

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EXAMPLES = sorted((ROOT / "dags_examples").glob("*.py"))
REPO_URL = "https://github.com/airflow-provider-cloudelements/airflow-provider-cloudelements"
#: Pages of the site that are repository files outside docs/: site page -> repository file.
OUTSIDE_PAGES = {
    "changelog.md": ROOT / "CHANGELOG.md",
    "benchmarks.md": ROOT / "benchmarks" / "RESULTS.md",
    **{f"examples/{path.stem}.md": path for path in EXAMPLES},
}
_CODE = re.compile(r"<pre><code[^>]*>(.*?)</code></pre>", re.DOTALL)
_URL = re.compile(r"""\b(?:href|src)="([^"]*)\"""")


@dataclass
class Site:
    out: Path
    nav: list[Any]
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record.getMessage())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Site:
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    out = tmp_path_factory.mktemp("site")
    config = load_config(str(ROOT / "mkdocs.yml"), site_dir=str(out), strict=True)
    result = Site(out=out, nav=config.nav or [])
    handler = _Collect(result.warnings)
    logging.getLogger("mkdocs").addHandler(handler)
    try:
        build(config)
    except Exception as exc:  # strict mode aborts after the warnings it counted
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        logging.getLogger("mkdocs").removeHandler(handler)
    return result


def html_of(site: Site, page: str) -> Path:
    """The HTML file MkDocs writes for a page (``use_directory_urls: false``: ``a/b.md`` -> ``a/b.html``)."""
    return site.out / f"{page.removesuffix('.md')}.html"


def code_blocks(path: Path) -> list[str]:
    """The text of every code block of an HTML page."""
    return [html.unescape(block).strip() for block in _CODE.findall(path.read_text(encoding="utf-8"))]


def nav_pages(nav: list[Any]) -> list[str]:
    """Every page path named in a MkDocs ``nav`` (nested sections included)."""
    found: list[str] = []
    for entry in nav:
        values = entry.values() if isinstance(entry, dict) else [entry]
        for value in values:
            if isinstance(value, list):
                found += nav_pages(value)
            elif isinstance(value, str) and not re.match(r"^[a-z]+://", value):
                found.append(value)
    return found


def load_hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cloudelements_mkdocs_hooks", ROOT / "scripts" / "mkdocs_hooks.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_strict_build_has_no_warnings(site: Site) -> None:
    assert site.error is None and not site.warnings, "\n".join([*site.warnings, site.error or ""])


def test_nav_lists_every_page_once() -> None:
    from mkdocs.config import load_config

    listed = nav_pages(load_config(str(ROOT / "mkdocs.yml")).nav or [])
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")} | set(OUTSIDE_PAGES)
    assert sorted(pages - set(listed)) == [], "pages missing from mkdocs.yml nav"
    assert sorted(set(listed) - pages) == [], "nav entries that are no page"
    assert len(listed) == len(set(listed)), "a page listed twice in nav"


def test_every_page_became_html(site: Site) -> None:
    pages = [str(p.relative_to(DOCS)) for p in sorted(DOCS.rglob("*.md"))] + list(OUTSIDE_PAGES)
    missing = [page for page in pages if not html_of(site, page).is_file()]
    assert not missing, missing
    changelog = html_of(site, "changelog.md").read_text(encoding="utf-8")
    assert '<h1 id="changelog">Changelog' in changelog and "Unreleased" in changelog
    first = headings(ROOT / "benchmarks" / "RESULTS.md")[0]
    assert html.escape(first, quote=False) in html_of(site, "benchmarks.md").read_text(encoding="utf-8")


def test_example_dag_pages_show_their_source(site: Site) -> None:
    for path in EXAMPLES:
        blocks = code_blocks(html_of(site, f"examples/{path.stem}.md"))
        assert path.read_text(encoding="utf-8").strip() in blocks, path.name


def test_class_pages_show_their_example_dag(site: Site) -> None:
    """A class heading page shows code naming the class, and an example DAG using it in full where one does."""
    sources = {path.name: path.read_text(encoding="utf-8").strip() for path in EXAMPLES}
    problems: list[str] = []
    checked = 0
    for role in ("operators", "sensors", "triggers"):
        classes = {path.rsplit(".", 1)[1] for path in public_classes()[role]}
        for page in ROLE_PAGES[role]:
            named = {name for name in classes if any(name in heading for heading in headings(page))}
            blocks = code_blocks(html_of(site, str(page.relative_to(DOCS))))
            for name in sorted(named):
                checked += 1
                users = [dag for dag, source in sources.items() if re.search(rf"\b{name}\b", source)]
                if not any(name in block for block in blocks):
                    problems.append(f"{page.relative_to(ROOT)}: no code names {name}")
                if users and not any(sources[dag] in blocks for dag in users):
                    problems.append(f"{page.relative_to(ROOT)}: shows none of the example DAGs using {name}: {users}")
    assert checked >= 14, checked
    assert not problems, "\n".join(problems)
    bulk = code_blocks(html_of(site, "operators/bulk-extract.md"))
    assert sources["cloudelements_finance_sync.py"] in bulk


def test_every_embedded_example_dag_is_shown(site: Site) -> None:
    """Each ``<!-- example-dag: … -->`` line of a page became that file's source (and stays out of sight)."""
    markers = 0
    for page in sorted(DOCS.rglob("*.md")):
        built = html_of(site, str(page.relative_to(DOCS)))
        for target in re.findall(r"^<!-- example-dag: (\S+) -->", page.read_text(encoding="utf-8"), re.M):
            markers += 1
            source = (page.parent / target).resolve().read_text(encoding="utf-8").strip()
            assert source in code_blocks(built), f"{page.relative_to(ROOT)}: {target} not shown"
        assert "<!-- example-dag:" not in built.read_text(encoding="utf-8"), page
    assert markers >= 10, markers


def test_no_link_leaves_the_site_or_points_at_markdown(site: Site) -> None:
    bad: list[str] = []
    for page in sorted(site.out.rglob("*.html")):
        for url in _URL.findall(page.read_text(encoding="utf-8")):
            url = html.unescape(url)
            if re.match(r"^[a-z][a-z0-9+.-]*:|^//|^#", url, re.IGNORECASE):
                continue
            path = url.split("#", 1)[0].split("?", 1)[0]
            where = f"{page.relative_to(site.out)}: {url}"
            target = (site.out / path.lstrip("/") if path.startswith("/") else page.parent / path).resolve()
            if path.endswith(".md"):
                bad.append(f"{where} (a Markdown file)")
            elif not target.is_relative_to(site.out.resolve()):
                bad.append(f"{where} (outside the site)")
            elif not (target / "index.html" if target.is_dir() else target).is_file():
                bad.append(f"{where} (no such page)")
    assert not bad, "\n".join(bad)


def test_repository_files_outside_the_site_link_to_the_repository(site: Site) -> None:
    index = html_of(site, "index.md").read_text(encoding="utf-8")
    assert f'href="{REPO_URL}/blob/main/README.md"' in index
    assert f'href="{REPO_URL}/blob/main/emulator/README.md"' in index
    assert 'href="changelog.html"' in index  # ../CHANGELOG.md is a page of the site
    bulk = html_of(site, "operators/bulk-extract.md").read_text(encoding="utf-8")
    assert 'href="../examples/cloudelements_finance_sync.html"' in bulk  # ../../dags_examples/….py
    changelog = html_of(site, "changelog.md").read_text(encoding="utf-8")
    assert f'href="{REPO_URL}/edit/main/CHANGELOG.md"' in changelog  # a generated page edits its source


def test_hook_link_rules(caplog: pytest.LogCaptureFixture) -> None:
    hooks = load_hooks()
    links = hooks.RepositoryLinksExtension(REPO_URL + "/")
    links.page_repo_path, links.page_site_path = "docs/operators/bulk-extract.md", "operators/bulk-extract.md"
    assert links.rewrite("../connection.md#hosts") == "../connection.md#hosts"  # MkDocs validates it
    assert links.rewrite("../missing.md") == "../missing.md"  # … and warns about it
    assert links.rewrite("../../CHANGELOG.md#unreleased") == "../changelog.md#unreleased"
    assert links.rewrite("../../dags_examples/unified_finance_sync.py") == "../examples/unified_finance_sync.md"
    assert links.rewrite("../../LICENSE") == f"{REPO_URL}/blob/main/LICENSE"
    assert links.rewrite("../../scripts/") == f"{REPO_URL}/tree/main/scripts"
    assert links.rewrite("https://example.com/a.md") == "https://example.com/a.md"
    assert links.rewrite("#errors") == "#errors"
    links.page_repo_path, links.page_site_path = "CHANGELOG.md", "changelog.md"
    assert links.rewrite("docs/operators/upload.md#rerun-policy") == "operators/upload.md#rerun-policy"
    assert links.rewrite("benchmarks/RESULTS.md") == "benchmarks.md"
    with caplog.at_level(logging.WARNING, logger="mkdocs"):
        assert links.rewrite("../outside.txt") == "../outside.txt"
        assert links.rewrite("nope/missing.py") == "nope/missing.py"
    assert len([r for r in caplog.records if "no such file in the repository" in r.getMessage()]) == 2


def test_headings_get_github_anchors() -> None:
    slug = load_hooks().github_slug
    assert slug("§3.4 CEQL (the where language)") == "34-ceql-the-where-language"
    assert (
        slug("CloudElementsBulkExtractOperator — extract a resource")
        == "cloudelementsbulkextractoperator--extract-a-resource"
    )
    assert slug("Parameters (in addition to the shared ones)") == "parameters-in-addition-to-the-shared-ones"
