"""The user documentation keeps its promises: README is a short user document, and every
relative link of the user-facing pages reaches an existing file and heading."""

import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO

PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", REPO / "CHANGELOG.md",
         *sorted((REPO / "docs").glob("*.md")), REPO / "docs" / "results" / "README.md"]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but - and _ dropped, spaces
    to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    return {slug(h) for h in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE)}


def section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_is_a_short_user_document():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(text.encode("utf-8")) <= 10 * 1024
    # What a reader cannot use: commit hashes and the project's issue numbers.
    assert not re.findall(r"\b[0-9a-f]{7,40}\b", text)
    assert not re.findall(r"(?i)\bissues? \d+|#\d+\b", text)
    headings = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert headings[0] == "Install"  # after what ple is and the paper
    results = section(text, "Results").strip().splitlines()
    figures = [line for line in results if line.startswith("![")]
    prose = [line for line in results if line.strip() and not line.startswith("![")]
    assert len(figures) == 1 and len(prose) <= 5
    assert "docs/results/README.md" in section(text, "Results")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_reach_a_file_and_heading(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{page.name}: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name}: {target}"


def test_citation_file_names_the_paper():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    assert cff["preferred-citation"]["title"] == ("Progressively Label Enhancement for Large "
                                                  "Language Model Alignment")


def test_architecture_layout_is_the_packages():
    """docs/architecture.md's layout names every module of src/ple, and no module that is
    not there: a module added, moved or removed shows up here until the page says so."""
    src = REPO / "src" / "ple"
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    layout = text.split("```\nsrc/ple/\n", 1)[1].split("```", 1)[0]
    # One entry per top-level line; more deeply indented lines continue it.
    entries: dict[str, str] = {}
    for line in layout.splitlines():
        if re.match(r"  \S", line):
            name = line.split()[0]
            entries[name] = line
        else:
            entries[name] += line
    listed = set()
    for name, entry in entries.items():
        if name.endswith("/"):
            listed.update(f"{name}{m}" for m in re.findall(r"\b(\w+\.py)\b", entry))
        else:
            listed.add(name)
    modules = {str(p.relative_to(src)) for p in src.rglob("*.py")
               if p.name != "__init__.py" or p.parent == src}
    assert modules - listed == set(), "modules missing from the layout"
    assert listed - modules == set(), "the layout names modules that do not exist"
