"""The document a report is made of, and its two renderings.

A report is a title and a list of Sections, each a list of blocks: paragraphs (str),
Tables, Figures and Samples. ple compare's report.md/report.html and frontier.md/
frontier.html are written from the same sections by `to_markdown` and `to_html`. Both make
every text inert (model output included); the HTML embeds its figures as base64 PNG, so
it stands alone.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field

MISSING = "–"  # a cell or a reward a run does not have


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    name: str  # file name under figures/
    caption: str
    png: bytes


@dataclass
class Samples:
    query: str
    responses: list[tuple[str, str, float | None]]  # (run, response, reward)


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # paragraphs (str), Table, Figure, Samples


def _text(value) -> str:
    """Any text, model output included, made inert: one line, with <, > and & escaped
    (Markdown renderers pass raw HTML through). Quotes too where it goes in an attribute."""
    return html.escape(" ".join(str(value).split()), quote=False)


def md_cell(value) -> str:
    """Text as one Markdown table cell: inert (`_text`), its pipes escaped."""
    return _text(value).replace("|", "\\|")


def _reward(value: float | None) -> str:
    return MISSING if value is None else f"{value:+.3f}"


def to_markdown(title: str, sections: list[Section]) -> str:
    """The document as Markdown, its figures linked from figures/ (see `figures`)."""
    lines = [f"# {_text(title)}", ""]
    for section in sections:
        lines += [f"## {_text(section.title)}", ""]
        for block in section.blocks:
            if isinstance(block, str):
                lines += [_text(block), ""]
            elif isinstance(block, Table):
                lines += [f"*{_text(block.caption)}*", "",
                          "| " + " | ".join(map(md_cell, block.header)) + " |",
                          "|" + "---|" * len(block.header)]
                lines += ["| " + " | ".join(map(md_cell, row)) + " |" for row in block.rows]
                lines.append("")
            elif isinstance(block, Figure):
                lines += [f"![{_text(block.caption)}](figures/{block.name})", "",
                          f"*{_text(block.caption)}*", ""]
            else:
                lines += [f"**Query:** {_text(block.query)}", ""]
                lines += [f"- **{_text(name)}** (reward {_reward(reward)}): {_text(response)}"
                          for name, response, reward in block.responses]
                lines.append("")
    return "\n".join(lines)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { caption-side: top; font-style: italic; text-align: left; padding-bottom: 0.3rem; }
figure { margin: 1rem 0 2rem; } img { max-width: 100%; }
figcaption { font-style: italic; font-size: 0.92rem; }
.query { font-weight: 600; margin-top: 1.5rem; }
.samples td { text-align: left; vertical-align: top; }
"""


def to_html(title: str, sections: list[Section]) -> str:
    """The document as one self-contained HTML page, its figures embedded."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{_text(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>{_text(title)}</h1>"]
    for section in sections:
        parts.append(f"<h2>{_text(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, str):
                parts.append(f"<p>{_text(block)}</p>")
            elif isinstance(block, Table):
                parts.append(f"<table><caption>{_text(block.caption)}</caption><tr>"
                             + "".join(f"<th>{_text(h)}</th>" for h in block.header) + "</tr>")
                parts += ["<tr>" + "".join(f"<td>{_text(c)}</td>" for c in row) + "</tr>"
                          for row in block.rows]
                parts.append("</table>")
            elif isinstance(block, Figure):
                data = base64.b64encode(block.png).decode("ascii")
                parts.append(f'<figure><img alt="{html.escape(block.caption)}" '
                             f'src="data:image/png;base64,{data}"><figcaption>'
                             f"{_text(block.caption)}</figcaption></figure>")
            else:
                parts.append(f'<p class="query">Query: {_text(block.query)}</p>'
                             '<table class="samples"><tr><th>run</th><th>reward</th>'
                             "<th>response</th></tr>")
                parts += [f"<tr><td>{_text(name)}</td><td>{_reward(reward)}</td>"
                          f"<td>{_text(response)}</td></tr>"
                          for name, response, reward in block.responses]
                parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def figures(sections: list[Section]) -> dict[str, bytes]:
    """Every figure's PNG by its file name, to be written under figures/ beside the
    Markdown."""
    return {b.name: b.png for s in sections for b in s.blocks if isinstance(b, Figure)}
