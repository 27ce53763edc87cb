"""The report for people: a PDF laid out with reportlab (pure Python; charts are drawn as
vector graphics inside the PDF — nothing is fetched from anywhere)."""

from __future__ import annotations

import io
from typing import Any
from xml.sax.saxutils import escape

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.shapes import Drawing, String
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (
    KeepTogether,
    LongTable,
    Paragraph,
    SimpleDocTemplate,
    Spacer,
    TableStyle,
)
from reportlab.platypus.flowables import HRFlowable

BRAND = colors.HexColor("#1f4e8c")
MUTED = colors.HexColor("#5b6472")
LINE = colors.HexColor("#d5dae1")
DANGER = colors.HexColor("#b42318")
PDF_TABLE_ROWS = 60

_styles = getSampleStyleSheet()
TITLE = ParagraphStyle("title", parent=_styles["Title"], textColor=BRAND, alignment=0,
                       fontSize=20, spaceAfter=4)
H2 = ParagraphStyle("h2", parent=_styles["Heading2"], textColor=BRAND, spaceBefore=10)
H3 = ParagraphStyle("h3", parent=_styles["Heading4"], spaceBefore=6, spaceAfter=2)
BODY = ParagraphStyle("body", parent=_styles["BodyText"], fontSize=9, leading=12)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9.5, textColor=MUTED)
CELL = ParagraphStyle("cell", parent=BODY, fontSize=7.5, leading=9)
FINDING = ParagraphStyle("finding", parent=BODY, textColor=DANGER)


def _p(text: Any, style: ParagraphStyle = BODY) -> Paragraph:
    return Paragraph(escape(str(text)), style)


def _grid(rows: list[list[Any]], widths: list[float] | None = None, header: bool = True):
    table = LongTable([[_p(cell, CELL) for cell in row] for row in rows], colWidths=widths,
                      repeatRows=1 if header else 0)
    style = [("GRID", (0, 0), (-1, -1), 0.25, LINE), ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 2)]
    if header:
        style += [("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef2f7"))]
    table.setStyle(TableStyle(style))
    return table


def _chart(chart: dict[str, Any], width: float) -> Drawing:
    labels, values = chart["labels"], chart["values"]
    drawing = Drawing(width, 62 * mm)
    drawing.add(String(0, 58 * mm, chart["title"], fontSize=9, fillColor=MUTED))
    bars = VerticalBarChart()
    bars.x, bars.y, bars.width, bars.height = 12 * mm, 14 * mm, width - 16 * mm, 40 * mm
    bars.data = [values]
    bars.bars[0].fillColor = BRAND
    bars.valueAxis.valueMin = 0
    bars.valueAxis.labels.fontSize = 7
    bars.categoryAxis.categoryNames = labels
    bars.categoryAxis.labels.fontSize = 6.5
    bars.categoryAxis.labels.angle = 30 if len(labels) > 6 else 0
    bars.categoryAxis.labels.boxAnchor = "ne" if len(labels) > 6 else "n"
    drawing.add(bars)
    return drawing


def _cover(report: dict[str, Any], width: float, scope: str) -> list[Any]:
    """The first lines: title, site and scope, the report's facts, and where the evidence is."""
    meta = report["report"]
    return [
        _p(f"Compliance report — {meta['period']['label']}", TITLE),
        _p(f"{meta['site_name']} · scope: {scope}", BODY),
        Spacer(0, 3 * mm),
        _grid([["Period", f"{meta['period']['start']} to {meta['period']['end']} (UTC, end "
                          "excluded)"],
               ["Generated", meta["generated_at"]],
               ["Report", f"#{meta['id']} ({meta['period']['kind']})"],
               ["Signing key", meta["key_id"]],
               ["Sections", ", ".join(s["title"] for s in report["sections"])]],
              widths=[35 * mm, width - 35 * mm], header=False),
        Spacer(0, 2 * mm),
        _p("The signed evidence bundle that accompanies this PDF holds the same figures "
           "(report.json), the audit events of the period with their hashes, and the signed "
           "checkpoints; verify it with the platform's public key.", SMALL),
    ]


def _findings(report: dict[str, Any]) -> list[Any]:
    """Every section's findings in one list up front, each named by its section."""
    findings = [(s["title"], f) for s in report["sections"] for f in s["findings"]]
    story: list[Any] = [_p("Findings", H2)]
    if findings:
        story += [_p(f"• {title}: {text}", FINDING) for title, text in findings]
    else:
        story.append(_p("No findings: nothing in this period needs attention.", BODY))
    return story


def _section(section: dict[str, Any], width: float) -> list[Any]:
    """One section: title, intro, figures, charts with values, and its tables cut at
    PDF_TABLE_ROWS rows (the evidence bundle holds them all)."""
    story: list[Any] = [HRFlowable(width="100%", color=LINE, spaceBefore=6, spaceAfter=2),
                        _p(section["title"], H2)]
    if section["intro"]:
        story.append(_p(section["intro"], SMALL))
    if section["figures"]:
        story.append(Spacer(0, 2 * mm))
        story.append(_grid([[k, v] for k, v in section["figures"].items()],
                           widths=[70 * mm, width - 70 * mm], header=False))
    for chart in section["charts"]:
        if chart["values"]:
            story.append(KeepTogether([Spacer(0, 2 * mm), _chart(chart, width)]))
    for table in section["tables"]:
        story.append(_p(table["title"], H3))
        if not table["rows"]:
            story.append(_p("None.", SMALL))
            continue
        rows = table["rows"][:PDF_TABLE_ROWS]
        story.append(_grid([table["columns"], *rows]))
        if table["total_rows"] > len(rows):
            story.append(_p(f"Showing {len(rows)} of {table['total_rows']}; the evidence "
                            "bundle holds every event.", SMALL))
    return story


def _footer(meta: dict[str, Any], scope: str):
    """The page callback that writes site, report and scope, and the page number, at the foot."""
    def footer(canvas, document):
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(MUTED)
        canvas.drawString(16 * mm, 9 * mm, f"{meta['site_name']} · compliance report "
                                           f"{meta['period']['label']} · {scope}")
        canvas.drawRightString(A4[0] - 16 * mm, 9 * mm, f"page {document.page}")
        canvas.restoreState()

    return footer


def render_pdf(report: dict[str, Any]) -> bytes:
    """report.json's content → PDF bytes."""
    buffer = io.BytesIO()
    meta = report["report"]
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=16 * mm, rightMargin=16 * mm,
                            topMargin=16 * mm, bottomMargin=16 * mm,
                            title=f"Compliance report {meta['period']['label']}",
                            author=meta["site_name"])
    width = doc.width
    scope = meta["scope"]["tenant"] or "the whole platform"
    story = _cover(report, width, scope) + _findings(report)
    for section in report["sections"]:
        story += _section(section, width)
    story.append(Spacer(0, 6 * mm))
    story.append(_p("Sections appear for the data this installation holds; each further part of "
                    "the platform adds its own section when it is installed.", SMALL))
    footer = _footer(meta, scope)
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
