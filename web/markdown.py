"""The report's markdown as HTML, for the run page: the subset the report uses, escaped.

The report (:mod:`orchestrator.report`) writes headings, paragraphs, bullet lists, one table,
a rule, ``**bold**``, ``*italic*`` and ``code``; that is all this renders. Every character of
the text is escaped before any markup is added, so a report (whose sentences quote sources the
agents did not write) cannot inject HTML.
"""

from __future__ import annotations

import re
from html import escape

_INLINE = [
    (re.compile(r"`([^`]+)`"), r"<code>\1</code>"),
    (re.compile(r"\*\*(.+?)\*\*"), r"<b>\1</b>"),
    (re.compile(r"\*(.+?)\*"), r"<i>\1</i>"),
]


def _inline(text: str) -> str:
    html = escape(text)
    for pattern, replacement in _INLINE:
        html = pattern.sub(replacement, html)
    return html


def _table(rows: list[str]) -> str:
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    head, body = cells[0], [r for r in cells[1:] if not all(set(c) <= set("-:") for c in r)]
    header = "".join(f"<th>{_inline(c)}</th>" for c in head)
    lines = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><tr>{header}</tr>{lines}</table>"


def to_html(markdown: str) -> str:
    """The markdown as HTML: blocks separated by blank lines."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", markdown.strip()):
        lines = block.splitlines()
        first = lines[0]
        if heading := re.match(r"(#{1,6}) (.*)", first):
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            if lines[1:]:
                out.append(to_html("\n".join(lines[1:])))
        elif first.strip() == "---":
            out.append("<hr>")
            if lines[1:]:
                out.append(to_html("\n".join(lines[1:])))
        elif first.startswith("|"):
            out.append(_table(lines))
        elif first.startswith("- "):
            items = "".join(f"<li>{_inline(line[2:])}</li>" for line in lines)
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f"<p>{_inline(' '.join(lines))}</p>")
    return "\n".join(out)
