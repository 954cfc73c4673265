"""A statement as CSV, JSON, HTML (self-contained: inline CSS and an SVG chart, no script) or PDF (fpdf2)."""

from __future__ import annotations

import csv
import html
import io
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal, get_args

from ..api.export import safe_cell

Format = Literal["csv", "json", "html", "pdf"]
FORMATS: tuple[str, ...] = get_args(Format)
MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}
TOTAL = "TOTAL"
# Column heading -> figure, in order; costs in USD with all nine decimals (exact nano-USD).
_COLUMNS = (
    ("requests", "requests"),
    ("input tokens", "input_tokens"),
    ("output tokens", "output_tokens"),
    ("cached tokens", "cached_tokens"),
    ("provider cost USD", "provider_cost_nusd"),
    ("markup USD", "markup_nusd"),
    ("fee USD", "fee_nusd"),
    ("customer cost USD", "customer_cost_nusd"),
    ("unpriced", "unpriced_requests"),
)


def dollars(nusd: int) -> str:
    """Nano-USD as exact dollars with nine decimals."""
    return f"{Decimal(nusd).scaleb(-9):.9f}"


def _cell(name: str, value: Any) -> str:
    return dollars(int(value)) if name.endswith("_nusd") else f"{int(value)}"


def _sources(sources: dict[str, int]) -> str:
    return "; ".join(f"{source} ({count})" for source, count in sources.items())


def _lines(body: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Headings and text cells of every row, then the total row."""
    groups = body["group_by"] or ["all"]
    headings = [*groups, *(h for h, _ in _COLUMNS), "price sources"]
    lines = []
    for row in [*body["rows"], None]:
        shown = body["totals"] if row is None else row
        names = [TOTAL, *([""] * (len(groups) - 1))] if row is None else [str(row.get(g, "")) for g in groups]
        if row is not None and not body["group_by"]:
            names = ["all"]
        lines.append([*names, *(_cell(n, shown[n]) for _, n in _COLUMNS), _sources(shown["price_sources"])])
    return headings, lines


def _notes(body: dict[str, Any]) -> list[str]:
    notes = []
    comparison = body.get("comparison")
    if comparison:
        notes.append(comparison["message"])
        for change in comparison.get("changes", [])[:20]:
            where = ", ".join(f"{g}={change[g]}" for g in body["group_by"]) or "all"
            before, now = change["before"], change["now"]
            if change["figure"].endswith("_nusd"):
                before, now = dollars(before), dollars(now)
            notes.append(f"{where}: {change['figure']} {before} -> {now}")
    return notes


def _heading(body: dict[str, Any]) -> str:
    period = body["period"]
    by = ", ".join(body["group_by"]) or "all"
    return f"{body['title']}: {period['name']} ({period['start']} to {period['end']}), by {by}"


def to_csv(body: dict[str, Any]) -> bytes:
    headings, lines = _lines(body)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(headings)
    writer.writerows([[safe_cell(c) for c in line] for line in lines])
    return buffer.getvalue().encode()


def to_json(body: dict[str, Any]) -> bytes:
    return (json.dumps(body, indent=2, ensure_ascii=False) + "\n").encode()


def _chart(body: dict[str, Any], width: int = 640, bar: int = 22) -> str:
    """A horizontal bar chart of customer cost per group, as inline SVG."""
    rows = body["rows"][:20]
    top = max((int(r["customer_cost_nusd"]) for r in rows), default=0) or 1
    label = 220
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{bar * len(rows) + 10}" role="img" '
        'aria-label="customer cost per group">'
    ]
    for i, row in enumerate(rows):
        name = ", ".join(str(row[g]) or "(none)" for g in body["group_by"]) or "all"
        length = max(int((width - label - 130) * int(row["customer_cost_nusd"]) / top), 1)
        y = i * bar + 5
        parts.append(
            f'<text x="{label - 6}" y="{y + 15}" text-anchor="end" font-size="12">{html.escape(name[:32])}</text>'
            f'<rect x="{label}" y="{y + 3}" width="{length}" height="{bar - 6}" fill="#3b6ea8"/>'
            f'<text x="{label + length + 6}" y="{y + 15}" font-size="12">'
            f"${dollars(int(row['customer_cost_nusd']))}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def to_html(body: dict[str, Any]) -> bytes:
    headings, lines = _lines(body)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
    total = len(lines) - 1
    cells = "".join(
        ("<tr class='total'>" if i == total else "<tr>") + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>"
        for i, line in enumerate(lines)
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in _notes(body))
    text = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(_heading(body))}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
tr.total{{font-weight:bold}}</style></head>
<body><h1>{html.escape(_heading(body))}</h1>
<p>Generated {html.escape(body["generated_at"])}; fingerprint <code>{body["fingerprint"]}</code></p>
{_chart(body)}
<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>
<ul>{notes}</ul>
</body></html>
"""
    return text.encode()


def _latin(text: str) -> str:
    """PDF core fonts hold Latin-1 only."""
    return text.encode("latin-1", "replace").decode("latin-1")


def to_pdf(body: dict[str, Any]) -> bytes:
    from fpdf import FPDF

    headings, lines = _lines(body)
    pdf = FPDF(orientation="L", format="A4")
    pdf.set_auto_page_break(True, margin=12)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 12)
    pdf.multi_cell(0, 7, _latin(_heading(body)), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=8)
    pdf.multi_cell(
        0,
        5,
        _latin(f"Generated {body['generated_at']}; fingerprint {body['fingerprint']}"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(2)
    # Bars of customer cost per group.
    top = max((int(r["customer_cost_nusd"]) for r in body["rows"][:15]), default=0) or 1
    for row in body["rows"][:15]:
        name = ", ".join(str(row[g]) or "(none)" for g in body["group_by"]) or "all"
        pdf.cell(50, 5, _latin(name[:30]))
        length = max(150 * int(row["customer_cost_nusd"]) / top, 0.5)
        pdf.set_fill_color(59, 110, 168)
        pdf.cell(length, 4, "", fill=True)
        pdf.cell(0, 5, f" ${dollars(int(row['customer_cost_nusd']))}", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    with pdf.table(text_align="RIGHT", line_height=5) as table:
        for line in [headings, *lines]:
            table_row = table.row()
            for cell in line:
                table_row.cell(_latin(cell))
    pdf.ln(2)
    for note in _notes(body):
        pdf.multi_cell(0, 5, _latin(note), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


RENDER: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "csv": to_csv,
    "json": to_json,
    "html": to_html,
    "pdf": to_pdf,
}


def render(body: dict[str, Any], fmt: str) -> bytes:
    """The statement in `fmt` (csv, json, html, pdf)."""
    if fmt not in RENDER:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return RENDER[fmt](body)
