"""Writing a built report: self-contained HTML (Jinja2, inline CSS and SVG) or PDF (matplotlib).

Both renderers print only what the :class:`Report` holds: text cells of tables that already
passed suppression and charts drawn from them. Neither reads the warehouse.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from edsight.ops._report_charts import RC, to_svg
from edsight.ops._report_model import SUPPRESSION_NOTE, PublishedTable, Report

if TYPE_CHECKING:
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

PAGE = (8.5, 11.0)  # US letter, inches
ROWS_PER_PAGE = 34
WRAP = 95


def render_html(report: Report) -> str:
    """The report as one HTML document with no external references."""
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup

    env = Environment(
        loader=PackageLoader("edsight.ops", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.get_template("report.html.j2")
    sections = []
    for section in report.sections:
        sections.append(
            {
                "section": section,
                "svgs": [(chart, Markup(to_svg(chart.figure))) for chart in section.charts],
            }
        )
    return template.render(
        report=report,
        sections=sections,
        suppression_note=SUPPRESSION_NOTE.format(min_n=report.min_n),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def _text_page(pdf: PdfPages, blocks: list[tuple[str, float, str]]) -> None:
    """One page of wrapped text blocks: (text, font size, weight); overflow goes to the next page."""
    from matplotlib.figure import Figure

    lines: list[tuple[str, float, str]] = []
    for text, size, weight in blocks:
        width = int(WRAP * 10 / size)
        for paragraph in text.split("\n"):
            wrapped = textwrap.wrap(paragraph, width) or [""]
            lines.extend((line, size, weight) for line in wrapped)
        lines.append(("", size, "normal"))
    while lines:
        fig = Figure(figsize=PAGE)
        y = 0.94
        while lines and y > 0.06:
            text, size, weight = lines.pop(0)
            fig.text(0.08, y, text, fontsize=size, fontweight=weight, va="top")
            y -= size * 1.45 / (72 * PAGE[1])
        _save(pdf, fig)


def _table_lines(table: PublishedTable) -> list[str]:
    """The table as fixed-width text lines: a header, a rule, then the rows."""
    frame = table.frame
    cols = [str(c) for c in frame.columns]
    cells = frame.astype(str).to_numpy().tolist()
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]
    right = [c in table.count_columns for c in frame.columns]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)
        )

    return [line(cols), "  ".join("-" * w for w in widths), *(line(row) for row in cells)]


def _table_pages(pdf: PdfPages, heading: str, table: PublishedTable) -> None:
    """A table in a monospaced font, split over pages (one text block per page: fast to draw)."""
    from matplotlib.figure import Figure

    lines = _table_lines(table)
    header, body = lines[:2], lines[2:]
    width = max(len(text) for text in lines)
    size = min(8.5, max(5.0, 7.0 * 100 / max(width, 1)))
    chunks = [body[i : i + ROWS_PER_PAGE] for i in range(0, max(len(body), 1), ROWS_PER_PAGE)]
    for page, chunk in enumerate(chunks):
        fig = Figure(figsize=PAGE)
        title = f"{heading}: {table.caption}" + (" (continued)" if page else "")
        fig.text(0.06, 0.95, textwrap.fill(title, 90), fontsize=11, fontweight="bold", va="top")
        block = "\n".join([*header, *chunk]) if chunk else "(no rows)"
        fig.text(0.06, 0.9, block, fontsize=size, family="monospace", va="top", linespacing=1.5)
        if table.note:
            fig.text(0.06, 0.05, textwrap.fill(table.note, 110), fontsize=7, va="bottom")
        _save(pdf, fig)


def _save(pdf: PdfPages, fig: Figure) -> None:
    pdf.savefig(fig)


def write_pdf(report: Report, path: Path) -> None:
    """Pages of text, tables and charts, all drawn with matplotlib (PdfPages)."""
    import matplotlib
    from matplotlib.backends.backend_pdf import PdfPages

    with (
        matplotlib.rc_context(RC),  # type: ignore[arg-type]
        PdfPages(path, metadata={"Title": report.title, "Creator": "edsight"}) as pdf,
    ):
        header = (
            f"As of {report.as_of.isoformat()}, school year {report.year_label}. Every count in this report "
            f"is 0 or at least {report.min_n}; " + SUPPRESSION_NOTE.format(min_n=report.min_n)
        )
        contents = "Contents: " + "; ".join(s.title for s in report.sections)
        _text_page(
            pdf,
            [
                (report.title, 18, "bold"),
                (header, 9, "normal"),
                ("Summary", 13, "bold"),
                (report.narrative, 10, "normal"),
                (contents, 9, "normal"),
            ],
        )
        for section in report.sections:
            blocks: list[tuple[str, float, str]] = [(section.title, 15, "bold")]
            blocks += [(p, 10, "normal") for p in section.paragraphs]
            if section.unavailable:
                blocks.append((section.unavailable, 10, "normal"))
            _text_page(pdf, blocks)
            for table in section.tables:
                _table_pages(pdf, section.title, table)
            for chart in section.charts:
                _save(pdf, chart.figure)


def write_html(report: Report, path: Path) -> None:
    path.write_text(render_html(report), encoding="utf-8")
