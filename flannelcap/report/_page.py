"""The HTML of a report: sections in, one self-contained page out.

Rule: pure, and every piece of text from a capture or a table goes through ``html.escape``
(packet contents, pod names and HTTP paths are chosen by whoever sent the packets). The page
makes no request: styles and the one script are inline, figures are inline SVG, and a
Content-Security-Policy allows that script (by its hash) and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape

from flannelcap.analysis.flows import missing

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:80em;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;margin-top:2em}
table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.js table.sortable th{cursor:pointer}
td.mono,pre,code{font-family:ui-monospace,monospace}
.error{color:#a00}.warning{color:#a60}.info{color:#357}
.filter{display:none;margin:.3em 0}.js .filter{display:block}
tr:target{background:#fff3b0}
details summary{cursor:pointer}dl{margin:.2em 0 .2em 1em}dt{font-weight:600}dd{margin:0 0 0 1.5em}
svg{max-width:100%;height:auto}
@media print{.filter{display:none!important}details{display:block}a{color:inherit;text-decoration:none}
h2{break-after:avoid}tr{break-inside:avoid}}
"""

# Filtering and sorting of the tables marked for it; the page is whole without it.
SCRIPT = """
document.documentElement.classList.add("js");
for (const input of document.querySelectorAll("input.filter")) {
  input.addEventListener("input", () => {
    const query = input.value.toLowerCase();
    for (const row of document.getElementById(input.dataset.table).tBodies[0].rows)
      row.hidden = query !== "" && !row.textContent.toLowerCase().includes(query);
  });
}
for (const table of document.querySelectorAll("table.sortable")) {
  table.tHead.querySelectorAll("th").forEach((th, column) => th.addEventListener("click", () => {
    const rows = [...table.tBodies[0].rows];
    const key = row => row.cells[column].textContent.trim();
    const numeric = rows.every(row => key(row) === "" || !isNaN(Number(key(row))));
    const down = th.dataset.order !== "up";
    th.dataset.order = down ? "up" : "down";
    rows.sort((a, b) => {
      const [x, y] = [key(a), key(b)];
      const order = numeric ? Number(x) - Number(y) : x.localeCompare(y);
      return down ? order : -order;
    });
    table.tBodies[0].append(...rows);
  }));
}
"""
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
POLICY = f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; script-src 'sha256-{_SCRIPT_HASH}'"


def text(value: object) -> str:
    """A value as escaped text; an unknown one (None, NaN, pandas' NA) as an em dash."""
    return "—" if missing(value) else escape(str(value))


@dataclass
class Table:
    """A table: headers, rows of cells (already HTML), and whether it can be sorted/filtered."""

    ident: str
    headers: Sequence[str]
    rows: Sequence[Sequence[str]]
    row_ids: Sequence[str] = ()
    interactive: bool = True

    def html(self) -> str:
        head = "".join(f"<th>{escape(h)}</th>" for h in self.headers)
        body = []
        for i, cells in enumerate(self.rows):
            ident = f' id="{self.row_ids[i]}"' if self.row_ids else ""
            body.append(f"<tr{ident}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        filter_box = (
            f'<input class="filter" type="search" placeholder="filter rows" data-table="{self.ident}" '
            f'aria-label="filter {escape(self.ident)}">'
            if self.interactive
            else ""
        )
        kind = ' class="sortable"' if self.interactive else ""
        table = f'<table id="{self.ident}"{kind}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
        return filter_box + table


@dataclass
class Section:
    """One part of the page: a title, and its HTML (already escaped)."""

    ident: str
    title: str
    body: list[str] = field(default_factory=list)


def page(title: str, sections: Iterable[Section], footer: str) -> str:
    """The whole document."""
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    for section in sections:
        parts.append(f'<section id="{section.ident}"><h2>{escape(section.title)}</h2>')
        parts.extend(section.body)
        parts.append("</section>")
    parts.append(f"<footer><p>{footer}</p></footer><script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)


def definition_list(items: Iterable[tuple[str, str]]) -> str:
    """Terms and their (escaped) descriptions."""
    return "<dl>" + "".join(f"<dt>{escape(term)}</dt><dd>{value}</dd>" for term, value in items) + "</dl>"
