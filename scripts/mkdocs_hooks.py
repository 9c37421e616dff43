"""MkDocs hooks of the documentation site (``mkdocs.yml`` ``hooks:``; ``make docs`` builds it strictly).

The Markdown under ``docs/`` is written for GitHub's rendering; these hooks make the same files a site
without copying anything into ``docs/``:

* ``CHANGELOG.md``, ``benchmarks/RESULTS.md`` and one page per example DAG (``dags_examples/*.py``) are
  added as generated pages (:data:`EXTERNAL_PAGES`, :func:`example_page`).
* A line ``<!-- example-dag: ../../dags_examples/x.py -->`` (invisible on GitHub, next to a link to the
  file) is replaced by the file's source in a Python code block.
* Links are resolved against the page's place in the repository: a target under ``docs/`` is left to
  MkDocs' own validation; a target that is a page of the site (the changelog, the benchmarks, an example
  DAG) becomes a link to that page; any other file of the repository becomes
  ``<repo_url>/blob/main/<path>``; a target that does not exist is a warning (a strict build fails).
* Headings get GitHub's anchors (lower case, punctuation dropped, each space a ``-``), so a
  ``#fragment`` works on GitHub and in the site alike; ``validation.anchors: warn`` checks them. (A
  repeated heading is ``x_1`` in the site, ``x-1`` on GitHub: a link to one fails the strict build.)
* A generated page's "Edit on GitHub" link edits the repository file it shows.
"""

from __future__ import annotations

import ast
import logging
import posixpath
import re
import xml.etree.ElementTree as etree
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from markdown import Markdown
from markdown.extensions import Extension
from markdown.treeprocessors import Treeprocessor
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("mkdocs.hooks.cloudelements")

#: Repository files outside ``docs/`` that are pages of the site: repository path -> site path.
EXTERNAL_PAGES = {"CHANGELOG.md": "changelog.md", "benchmarks/RESULTS.md": "benchmarks.md"}
#: The example DAGs' folder; each ``<stem>.py`` there is the page ``examples/<stem>.md``.
EXAMPLES = "dags_examples"
BRANCH = "main"
_EMBED = re.compile(r"^<!-- example-dag: (?P<target>\S+) -->[ \t]*$", re.MULTILINE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)


def github_slug(value: str, separator: str = "-") -> str:
    """The anchor GitHub gives a heading text: lower case, punctuation removed, each space a ``-``."""
    return re.sub(r"[^\w\- ]", "", value.strip().lower()).replace(" ", separator)


def example_site_path(repo_path: str) -> str:
    """The site page of an example DAG (``dags_examples/x.py`` -> ``examples/x.md``)."""
    return f"examples/{posixpath.splitext(posixpath.basename(repo_path))[0]}.md"


def site_pages() -> dict[str, str]:
    """Repository path -> site path of every page that does not live under ``docs/``."""
    pages = dict(EXTERNAL_PAGES)
    for path in sorted((ROOT / EXAMPLES).glob("*.py")):
        repo_path = f"{EXAMPLES}/{path.name}"
        pages[repo_path] = example_site_path(repo_path)
    return pages


def repo_path_of(file: File) -> str:
    """Where a page of the site lives in the repository."""
    for repo_path, site_path in site_pages().items():
        if file.src_uri == site_path:
            return repo_path
    return f"docs/{file.src_uri}"


def code_block(source: str, language: str = "python") -> str:
    """A fenced code block holding ``source`` (the fence is longer than any backtick run inside)."""
    longest = max((len(run) for run in re.findall(r"`+", source)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{source.rstrip()}\n{fence}\n"


def example_page(repo_path: str, repo_url: str) -> str:
    """The generated page of one example DAG: its docstring's summary, a link to the file, its source."""
    source = (ROOT / repo_path).read_text(encoding="utf-8")
    docstring = ast.get_docstring(ast.parse(source)) or ""
    summary = docstring.strip().split("\n\n", 1)[0].replace("\n", " ")
    return (
        f"# Example DAG `{posixpath.basename(repo_path)}`\n\n{summary}\n\n"
        f"[`{repo_path}` in the repository]({repo_url}/blob/{BRANCH}/{repo_path})\n\n{code_block(source)}"
    )


class _RepositoryLinks(Treeprocessor):
    """Rewrites links by the rules of the module docstring (runs before MkDocs' ``relpath`` at 0)."""

    def __init__(self, md: Markdown, owner: RepositoryLinksExtension) -> None:
        super().__init__(md)
        self.owner = owner

    def run(self, root: etree.Element) -> None:
        for element in root.iter():
            attribute = {"a": "href", "img": "src"}.get(element.tag)
            if attribute and (value := element.get(attribute)):
                element.set(attribute, self.owner.rewrite(value))


class RepositoryLinksExtension(Extension):
    """The Markdown extension of the link rules; :func:`on_page_markdown` names the page being rendered."""

    def __init__(self, repo_url: str) -> None:
        super().__init__()
        self.repo_url = repo_url.rstrip("/")
        self.page_repo_path = "docs/index.md"
        self.page_site_path = "index.md"

    def extendMarkdown(self, md: Markdown) -> None:
        md.treeprocessors.register(_RepositoryLinks(md, self), "cloudelements_repository_links", 10)

    def rewrite(self, url: str) -> str:
        """The site's link for a link of the page's Markdown."""
        parts = urlsplit(url)
        if _SCHEME.match(url) or parts.netloc or not parts.path or parts.path.startswith("/"):
            return url
        target = posixpath.normpath(posixpath.join(posixpath.dirname(self.page_repo_path), parts.path))
        if target.startswith("docs/"):
            site_path = target[len("docs/") :]
        elif target in (pages := site_pages()):
            site_path = pages[target]
        elif target.startswith("../") or not (ROOT / target).exists():
            log.warning("%s links to %r: no such file in the repository", self.page_repo_path, url)
            return url
        else:
            kind = "tree" if (ROOT / target).is_dir() else "blob"
            return urlunsplit(("", "", f"{self.repo_url}/{kind}/{BRANCH}/{target}", parts.query, parts.fragment))
        relative = posixpath.relpath(site_path, posixpath.dirname(self.page_site_path) or ".")
        return urlunsplit(("", "", relative, parts.query, parts.fragment))


_LINKS: dict[str, RepositoryLinksExtension] = {}


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    if not config.repo_url:
        raise PluginError("mkdocs.yml: repo_url is required (links to repository files point there)")
    config.mdx_configs.setdefault("toc", {})["slugify"] = github_slug
    _LINKS["extension"] = RepositoryLinksExtension(config.repo_url)
    config.markdown_extensions.append(_LINKS["extension"])  # type: ignore[arg-type]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    repo_url = (config.repo_url or "").rstrip("/")
    for repo_path, site_path in site_pages().items():
        if files.get_file_from_path(site_path) is not None:
            raise PluginError(f"docs/{site_path} would hide {repo_path}, which the site shows under that path")
        if repo_path.startswith(f"{EXAMPLES}/"):
            content = example_page(repo_path, repo_url)
        else:
            content = (ROOT / repo_path).read_text(encoding="utf-8")
        files.append(File.generated(config, site_path, content=content))
    return files


def on_pre_page(page: Page, config: MkDocsConfig, files: Files) -> Page:
    repo_path = repo_path_of(page.file)
    if not repo_path.startswith("docs/"):  # a generated page: edit the repository file it shows
        page.edit_url = f"{(config.repo_url or '').rstrip('/')}/edit/{BRANCH}/{repo_path}"
    return page


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files, **_: Any) -> str:
    repo_path = repo_path_of(page.file)
    extension = _LINKS["extension"]
    extension.page_repo_path, extension.page_site_path = repo_path, page.file.src_uri

    def embed(match: re.Match[str]) -> str:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), match.group("target")))
        path = ROOT / target
        if target.startswith("../") or not path.is_file():
            raise PluginError(f"{repo_path}: example-dag {match.group('target')!r} is not a file of the repository")
        return code_block(path.read_text(encoding="utf-8"))

    return _EMBED.sub(embed, markdown)
