"""The documentation covers the package and its links resolve.

* Every public operator, sensor, trigger and hook class the package defines (the same walk as the
  provider-info test, so moved modules are followed) has a page in its role's folder whose headings
  name it; every extra link is named somewhere in the docs.
* ``docs/index.md`` links every page under ``docs/``.
* Every relative link in ``README.md``, ``CHANGELOG.md``, ``emulator/README.md`` and ``docs/**/*.md``
  points at an existing file and, with a ``#fragment``, at an existing heading (GitHub's anchor rules).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.test_provider_info import public_classes

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: Where the how-to page of each role lives (a page there must name the class in a heading).
ROLE_PAGES = {
    "operators": sorted((DOCS / "operators").glob("*.md")),
    "sensors": sorted((DOCS / "sensors").glob("*.md")),
    "triggers": sorted((DOCS / "triggers").glob("*.md")),
    "hooks": [DOCS / "hooks.md"],
}
PAGES = sorted({ROOT / "README.md", ROOT / "CHANGELOG.md", ROOT / "emulator" / "README.md", *DOCS.rglob("*.md")})

_FENCE = re.compile(r"^(```|~~~)")
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"""!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)""")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def headings(path: Path) -> list[str]:
    """The heading texts of a Markdown file (outside code blocks)."""
    return [m.group(2) for line in prose_lines(path.read_text(encoding="utf-8")) if (m := _HEADING.match(line))]


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation removed, spaces to ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file, numbered like GitHub's for repeated headings (``x``, ``x-1`` …)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in headings(path):
        base = github_anchor(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    """``(line number, target)`` of each link that is not an absolute URL, in prose (not in code)."""
    found: list[tuple[int, str]] = []
    lines, fenced = path.read_text(encoding="utf-8").splitlines(), False
    for number, line in enumerate(lines, start=1):
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        if fenced:
            continue
        for match in _LINK.finditer(_CODE_SPAN.sub("", line)):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # http:, https:, mailto: …
                continue
            found.append((number, target))
    return found


def test_link_checker_sees_links_and_anchors(tmp_path: Path) -> None:
    """The helpers find what they must (a checker that finds nothing would pass everything)."""
    page = tmp_path / "p.md"
    page.write_text(
        "# §3.4 CEQL (the `where` language)\n## Same\n## Same\n"
        "See [a](b.md#x), ![i](img.png) and [web](https://example.com).\n"
        "```\n[not](code.md)\n```\nInline `[not](span.md)` and [t](c.md 'x').\n",
        encoding="utf-8",
    )
    assert relative_links(page) == [(4, "b.md#x"), (4, "img.png"), (8, "c.md")]
    assert anchors(page) == {"34-ceql-the-where-language", "same", "same-1"}


@pytest.mark.parametrize("role", sorted(ROLE_PAGES))
def test_every_public_class_has_a_page_naming_it(role: str) -> None:
    classes = {path.rsplit(".", 1)[1] for path in public_classes()[role]}
    assert classes, f"the package walk found no {role}"
    missing = [
        name
        for name in sorted(classes)
        if not any(name in heading for page in ROLE_PAGES[role] for heading in headings(page))
    ]
    folder = "docs/hooks.md" if role == "hooks" else f"docs/{role}/"
    assert not missing, f"no page in {folder} has a heading naming: {', '.join(missing)}"


def test_every_extra_link_is_documented() -> None:
    text = "\n".join(page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md"))
    missing = [path for path in public_classes()["extra-links"] if path.rsplit(".", 1)[1] not in text]
    assert not missing, missing


def test_index_links_every_page() -> None:
    index = DOCS / "index.md"
    linked = {(index.parent / target.split("#", 1)[0]).resolve() for _, target in relative_links(index)}
    missing = [str(p.relative_to(ROOT)) for p in sorted(DOCS.rglob("*.md")) if p != index and p not in linked]
    assert not missing, f"docs/index.md does not link: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken: list[str] = []
    for number, target in relative_links(page):
        file_part, _, fragment = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        if not dest.exists():
            broken.append(f"{where} (no such file)")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{where} (no heading with anchor #{fragment})")
    assert not broken, "\n".join(broken)


#: Where code and docs cite "reference §N.M" (sections of docs/api-facts.md).
CITING = [
    ROOT / "airflow_provider_cloudelements",
    ROOT / "emulator",
    ROOT / "tests",
    ROOT / "scripts",
    ROOT / "dags_examples",
    DOCS,
]
_SECTION = re.compile(r"(user-needs\s+)?§(\d+(?:\.\d+)*)")
#: Background files that are not in the repository; citing them leaves a reader nowhere to look.
_OUTSIDE = ("cloud-elements-api.md", "../shared/", "user-needs", "airflow-provider-guide", "code-style-anchors")


def cited_files() -> list[Path]:
    files: list[Path] = []
    for top in CITING:
        files += [p for p in top.rglob("*") if p.suffix in (".py", ".md") and ".egg-info" not in str(p)]
    return sorted(files)


def test_every_cited_section_exists_in_api_facts() -> None:
    """``§N.M`` in code and docs names a numbered heading of docs/api-facts.md (renumbering breaks this)."""
    numbers = {m.group(1) for h in headings(DOCS / "api-facts.md") if (m := re.match(r"§(\d+(?:\.\d+)*)\s", h))}
    assert {"0", "1.2", "3.3", "4.1", "5.6", "10.5"} <= numbers
    unknown: list[str] = []
    for path in cited_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for match in _SECTION.finditer(line):
                if match.group(1) is None and match.group(2) not in numbers:
                    unknown.append(f"{path.relative_to(ROOT)}:{number}: §{match.group(2)}")
    assert not unknown, "not a section of docs/api-facts.md:\n" + "\n".join(unknown)


def test_nothing_cites_files_outside_the_repository() -> None:
    offending = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in cited_files()
        if path != Path(__file__)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if any(name in line for name in _OUTSIDE)
    ]
    assert not offending, offending


def test_connection_page_documents_every_field() -> None:
    """docs/connection.md has a table row for the Host and every form field of the provider info."""
    from airflow_provider_cloudelements.get_provider_info import CONN_FIELDS

    rows = {m.group(1) for m in re.finditer(r"^\| `([a-z_]+)` \|", (DOCS / "connection.md").read_text(), re.M)}
    assert {"host", *CONN_FIELDS} <= rows, sorted({"host", *CONN_FIELDS} - rows)
