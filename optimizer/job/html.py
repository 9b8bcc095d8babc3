"""The report's Markdown as one self-contained HTML page (figures embedded), without a Markdown library.

:func:`markdown_to_html` reads the subset :func:`~fundguard.optimizer.job.report.render_report`
writes, and nothing more: ``#`` / ``##`` headings, fenced code blocks, pipe tables (``---:`` right
aligned), ``- `` lists, image lines ``![caption](file.png)``, paragraphs, and inline ``**bold**``,
```code``` and backslash escapes. Every text run is HTML-escaped after the report's own escapes are
undone, so a market named ``<script>`` stays text.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping

__all__ = ["markdown_to_html", "inline"]

_IMAGE = re.compile(r"^!\[(?P<alt>[^\]]*)\]\((?P<src>[^)\s]+)\)$")

_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 62rem; margin: 2rem auto;
       padding: 0 1rem; color: #1b1f24; line-height: 1.45; }
h1 { font-size: 1.6rem; border-bottom: 2px solid #1b1f24; padding-bottom: .3rem; }
h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; font-size: .85rem; border-radius: 4px; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .9em; }
table { border-collapse: collapse; margin: .6rem 0; font-size: .9rem; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; }
th { background: #f6f8fa; }
td.r, th.r { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1rem 0; }
figure img { width: 100%; max-width: 56rem; border: 1px solid #d0d7de; }
figcaption { font-size: .85rem; color: #57606a; }
@media print { h2 { break-after: avoid; } figure { break-inside: avoid; } }
"""


def inline(text: str) -> str:
    """One line of report Markdown as HTML: backslash escapes taken literally, ``**bold**`` and
    ```code``` rendered, every other character escaped."""
    out: list[str] = []
    literal: list[str] = []
    bold = False

    def flush() -> None:
        if literal:
            out.append(html.escape(html.unescape("".join(literal)), quote=False))
            literal.clear()

    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            literal.append(text[i + 1])
            i += 2
        elif ch == "`":
            end = text.find("`", i + 1)
            if end < 0:
                literal.append(ch)
                i += 1
                continue
            flush()
            out.append(f"<code>{html.escape(text[i + 1:end], quote=False)}</code>")
            i = end + 1
        elif text.startswith("**", i):
            flush()
            out.append("</strong>" if bold else "<strong>")
            bold = not bold
            i += 2
        else:
            literal.append(ch)
            i += 1
    flush()
    if bold:
        out.append("</strong>")
    return "".join(out)


def _cells(row: str) -> list[str]:
    """The cells of a pipe-table row (``\\|`` inside a cell is not a separator)."""
    cells, current, i = [], [], 0
    row = row.strip()
    if row.startswith("|"):
        row = row[1:]
    while i < len(row):
        if row[i] == "\\" and i + 1 < len(row):
            current.append(row[i:i + 2])
            i += 2
            continue
        if row[i] == "|":
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(row[i])
        i += 1
    if "".join(current).strip():
        cells.append("".join(current).strip())
    return cells


def markdown_to_html(markdown: str, *, title: str, images: Mapping[str, bytes] | None = None) -> str:
    """The page: ``markdown`` rendered, each image line whose file is in ``images`` embedded as a
    base64 data URI (PNG), any other left as a link to the file."""
    images = images or {}
    lines = markdown.splitlines()
    body: list[str] = []
    paragraph: list[str] = []
    i = 0

    def end_paragraph() -> None:
        if paragraph:
            body.append("<p>" + " ".join(inline(p) for p in paragraph) + "</p>")
            paragraph.clear()

    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            end_paragraph()
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            body.append("<pre>" + html.escape("\n".join(block), quote=False) + "</pre>")
        elif line.startswith("## ") or line.startswith("# "):
            end_paragraph()
            level = 2 if line.startswith("## ") else 1
            body.append(f"<h{level}>{inline(line[level + 1:])}</h{level}>")
        elif _IMAGE.match(line.strip()):
            end_paragraph()
            m = _IMAGE.match(line.strip())
            alt, src = m.group("alt"), m.group("src")
            data = images.get(src)
            where = (f"data:image/png;base64,{base64.b64encode(data).decode('ascii')}" if data is not None
                     else html.escape(src))
            body.append(f'<figure><img src="{where}" alt="{html.escape(alt)}" data-file="{html.escape(src)}">'
                        f"<figcaption>{html.escape(alt)}</figcaption></figure>")
        elif line.startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|[\s:|-]+\|?", lines[i + 1].strip()):
            end_paragraph()
            header, spec = _cells(line), _cells(lines[i + 1])
            right = [s.strip().endswith(":") for s in spec]
            cls = lambda j: ' class="r"' if j < len(right) and right[j] else ""  # noqa: E731
            rows = ["<tr>" + "".join(f"<th{cls(j)}>{inline(c)}</th>" for j, c in enumerate(header)) + "</tr>"]
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append("<tr>" + "".join(f"<td{cls(j)}>{inline(c)}</td>" for j, c in enumerate(_cells(lines[i])))
                            + "</tr>")
                i += 1
            body.append("<table>" + "".join(rows) + "</table>")
            continue
        elif line.startswith("- "):
            end_paragraph()
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
            continue
        elif not line.strip():
            end_paragraph()
        else:
            paragraph.append(line)
        i += 1
    end_paragraph()
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")
