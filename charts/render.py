"""The one-page visit summary and the trial at a glance, as PNG (for the phone) and PDF
(to print), both A4.

Why matplotlib: well kept, draws PNG and PDF from one figure, runs headless (Agg)
and needs no browser or server. The drawing is CPU work: callers in the event loop use
`summary_files`/`overview_files`, which run it in a worker thread.

Colour: the Okabe-Ito palette (told apart with the common colour-vision deficiencies),
and every colour has a symbol or a number beside it, so a grey print still reads.
Every page carries the study id (or the trial id) and the date; never a name."""

from __future__ import annotations

import asyncio
import io
import textwrap
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

import matplotlib

matplotlib.use("Agg")

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.transforms import Bbox

from domain.summary import (
    OVERVIEW_WEEKS,
    AdherenceStrip,
    DoseMark,
    HeatMap,
    OverviewRow,
    ScoreSeries,
    Summary,
    overview_page,
)

A4_PORTRAIT = (8.27, 11.69)
A4_LANDSCAPE = (11.69, 8.27)
DPI = 150
"""1240 x 1754 px: sharp on a phone after Telegram's downscaling, and small (< 1 MB)."""

# Okabe-Ito
GREEN = "#009E73"
ORANGE = "#E69F00"
VERMILLION = "#D55E00"
BLUE = "#0072B2"
SKY = "#56B4E9"
YELLOW = "#F0E442"
PURPLE = "#CC79A7"
GREY = "#BBBBBB"
LIGHT = "#EEEEEE"
INK = "#222222"

DOSE_STYLE: dict[DoseMark, tuple[str, str, str]] = {
    # mark: (fill, symbol, symbol colour)
    DoseMark.TAKEN: (GREEN, "✓", "white"),
    DoseMark.SKIPPED: (VERMILLION, "✗", "white"),
    DoseMark.NO_ANSWER: (ORANGE, "?", INK),
    DoseMark.NOT_REMINDED: (GREY, "–", INK),
    DoseMark.PENDING: (LIGHT, "·", INK),
}
GRADE_COLOURS = ("#FFFFFF", "#FDE725", "#5EC962", "#21918C", "#3B528B", "#440154")
"""Grade 0 (white), 1 .. 4 from viridis (light to dark); the grade is written in each cell."""


@dataclass(frozen=True)
class Rendered:
    """One page as PNG and as PDF."""

    png: bytes
    pdf: bytes
    width: int
    height: int


def _save(fig: Figure) -> Rendered:
    png, pdf = io.BytesIO(), io.BytesIO()
    fig.savefig(png, format="png", dpi=DPI)
    fig.savefig(pdf, format="pdf")
    data = png.getvalue()  # the size as written (IHDR), not as computed: matplotlib rounds down
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return Rendered(data, pdf.getvalue(), width, height)


def _footer(fig: Figure, who: str, generated: datetime, tz: tzinfo) -> None:
    zone = getattr(tz, "key", str(tz))
    stamp = generated.astimezone(tz).strftime("%a %d %b %Y %H:%M")
    fig.text(0.04, 0.012, f"{who} · made {stamp} ({zone}) by the trial bot", fontsize=7.5, color="#555555")
    fig.text(
        0.96, 0.012, "Study ids only: no names. Grades are provisional.", fontsize=7.5, color="#555555", ha="right"
    )


def _d(day: date | None) -> str:
    return day.strftime("%d %b %Y") if day else "—"


# --------------------------------------------------------------------------- the summary


def render_summary(summary: Summary, tz: tzinfo) -> Rendered:
    """The visit summary page of one participant."""
    fig = Figure(figsize=A4_PORTRAIT)
    head = summary.header
    _summary_header(fig, summary, tz)
    _footer(fig, f"{head.study_id} · visit summary", summary.generated, tz)
    if summary.empty:
        fig.text(
            0.5,
            0.55,
            "No data yet",
            ha="center",
            fontsize=26,
            weight="bold",
            color="#555555",
        )
        fig.text(
            0.5,
            0.49,
            "\n".join(
                [
                    f"{head.study_id} has no dose answers, check-ins, reports or questionnaires recorded.",
                    *summary.notes,
                    "The charts appear once the bot has something to show.",
                ]
            ),
            ha="center",
            va="top",
            fontsize=11,
            linespacing=1.6,
        )
        return _save(fig)
    _adherence(fig, summary, [0.06, 0.665, 0.88, 0.15])
    _heatmap(fig, summary.heatmap, top=0.595, bottom=0.43)
    _events(fig, summary, [0.04, 0.185, 0.92, 0.14])
    for i, series in enumerate(summary.scores[:2]):
        _scores(fig.add_axes((0.08 + 0.47 * i, 0.065, 0.38, 0.08)), series)
    return _save(fig)


def _summary_header(fig: Figure, summary: Summary, tz: tzinfo) -> None:
    head = summary.header
    fig.text(0.04, 0.965, f"Visit summary · {head.study_id}", fontsize=18, weight="bold", va="top")
    fig.text(0.96, 0.965, summary.generated.astimezone(tz).strftime("%d %b %Y"), fontsize=12, ha="right", va="top")
    visit = head.visit
    visit_line = (
        f"This visit: {visit.name}, {_d(visit.day)} (window {_d(visit.window_start)} – {_d(visit.window_end)})"
        if visit
        else "This visit: none planned"
    )
    lines = [
        f"{head.arm_label} · " + "; ".join(head.regimen),
        f"Baseline {_d(head.baseline)} · study week {head.study_week} · status {head.status}",
        visit_line,
    ]
    fig.text(0.04, 0.932, "\n".join(lines), fontsize=10, va="top", linespacing=1.5)
    if head.flags:
        fig.text(
            0.04,
            0.868,
            "   ".join(f"⚠ {flag}" for flag in head.flags),
            fontsize=10.5,
            weight="bold",
            color=VERMILLION,
            va="top",
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "#FFF3E8", "edgecolor": VERMILLION},
        )


def _adherence(fig: Figure, summary: Summary, box: list[float]) -> None:
    start, end = summary.period
    fig.text(
        box[0] - 0.02,
        box[1] + box[3] + 0.012,
        f"Adherence since the last visit ({_d(start)} – {_d(end)})",
        fontsize=12,
        weight="bold",
    )
    strips = summary.adherence or []
    if not strips:
        fig.text(box[0], box[1] + box[3] / 2, "No drug in this arm's protocol.", fontsize=10)
        return
    height = box[3] / max(len(strips), 2)
    for i, strip in enumerate(strips):
        top = box[1] + box[3] - (i + 1) * height
        ax = fig.add_axes((box[0] + 0.16, top + height * 0.3, box[2] - 0.16, height * 0.42))
        _strip(ax, strip, start, end)
        percent = "—" if strip.percent is None else f"{strip.percent:.0f}%"
        fig.text(box[0] - 0.02, top + height * 0.68, strip.drug, fontsize=10.5, weight="bold", va="center")
        fig.text(box[0] - 0.02, top + height * 0.45, f"{percent} taken", fontsize=14, weight="bold", va="center")
        counts = ", ".join(
            f"{strip.count(mark)} {mark.value}"
            for mark in DoseMark
            if strip.count(mark) and mark is not DoseMark.PENDING
        )
        fig.text(
            box[0] + box[2],
            top + height * 0.8,
            f"{strip.taken} taken of {strip.reminded} reminded · {counts or 'no dose day yet'}",
            fontsize=8.5,
            color="#444444",
            va="center",
            ha="right",
        )
    # The key, once.
    x = box[0] + 0.16
    for mark in DoseMark:
        fill, symbol, colour = DOSE_STYLE[mark]
        fig.patches.append(
            Rectangle(
                (x, box[1] - 0.018), 0.018, 0.013, transform=fig.transFigure, facecolor=fill, edgecolor=INK, lw=0.4
            )
        )
        fig.text(x + 0.009, box[1] - 0.0115, symbol, ha="center", va="center", fontsize=8, color=colour, weight="bold")
        fig.text(x + 0.022, box[1] - 0.0115, mark.value, va="center", fontsize=8.5)
        x += 0.14


def _strip(ax: Axes, strip: AdherenceStrip, start: date, end: date) -> None:
    days = (end - start).days + 1
    ax.set_xlim(0, days)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    width = 1.0
    size = max(5.0, min(11.0, 300 / days))
    for day, mark in strip.days:
        fill, symbol, colour = DOSE_STYLE[mark]
        x = (day - start).days
        ax.add_patch(Rectangle((x + 0.06, 0.05), width - 0.12, 0.9, facecolor=fill, edgecolor="white", lw=0.5))
        if days <= 120:
            ax.text(x + 0.5, 0.47, symbol, ha="center", va="center", fontsize=size, color=colour, weight="bold")
    # Weeks along the bottom, labelled by date.
    ticks = list(range(0, days, 7))
    ax.set_xticks([t + 0.5 for t in ticks])
    ax.set_xticklabels([(start.fromordinal(start.toordinal() + t)).strftime("%d %b") for t in ticks], fontsize=7.5)
    if len(ticks) > 10:
        for label in ax.get_xticklabels()[1::2]:
            label.set_visible(False)
    ax.tick_params(axis="x", length=2, pad=1)


def _heatmap(fig: Figure, heat: HeatMap, *, top: float, bottom: float) -> None:
    """Rows of symptoms (worst first) by study week, a red-flag row on top; the cells keep
    one size (a short list is not stretched over the page)."""
    fig.text(0.04, top + 0.03, "Symptoms in the weekly check-ins, worst first", fontsize=12, weight="bold")
    seen = sorted({*heat.weeks, *heat.red_flags})
    if not seen:
        fig.text(0.06, top - 0.02, "No weekly check-in answered yet.", fontsize=10.5)
        return
    weeks = list(range(min(seen), max(seen) + 1))
    rows = heat.symptoms or [("", "no check-in finished" if not heat.weeks else "every symptom: none")]
    cell = min(0.024, (top - bottom) / (len(rows) + 1))
    width = min(0.72, 0.045 * len(weeks))
    ax = fig.add_axes((0.22, top - 0.008 - cell * (len(rows) + 1), width, cell * (len(rows) + 1)))
    ax.set_xlim(-0.5, len(weeks) - 0.5)
    ax.set_ylim(len(rows) - 0.5, -1.5)
    for col, week in enumerate(weeks):
        answered = week in heat.weeks
        for row, (code, _name) in enumerate(rows):
            grade = heat.cells.get((code, week)) if answered and code else None
            if not answered:
                ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, facecolor=LIGHT, hatch="///", edgecolor="white"))
                continue
            if grade is None:
                ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, facecolor="white", edgecolor="#DDDDDD", lw=0.5))
                continue
            ax.add_patch(
                Rectangle(
                    (col - 0.5, row - 0.5), 1, 1, facecolor=GRADE_COLOURS[min(grade, 5)], edgecolor="#DDDDDD", lw=0.5
                )
            )
            ax.text(
                col,
                row,
                str(grade) if grade else "·",
                ha="center",
                va="center",
                fontsize=8.5,
                color="white" if grade >= 3 else INK,
                weight="bold" if grade >= 3 else "normal",
            )
        flags = heat.red_flags.get(week)
        if flags:
            ax.add_patch(Rectangle((col - 0.5, -1.5), 1, 1, facecolor=VERMILLION, edgecolor="white"))
            ax.text(col, -1, "▲", ha="center", va="center", fontsize=9, color="white")
            ax.add_patch(Rectangle((col - 0.5, -0.5), 1, len(rows), fill=False, edgecolor=VERMILLION, lw=1.6))
    ax.set_yticks([-1, *range(len(rows))])
    ax.set_yticklabels(["Red flag"] + [name for _code, name in rows], fontsize=8.5)
    ax.get_yticklabels()[0].set_color(VERMILLION)
    ax.get_yticklabels()[0].set_fontweight("bold")
    ax.set_xticks(range(len(weeks)))
    ax.set_xticklabels([str(w) for w in weeks], fontsize=8)
    ax.set_xlabel("study week (hatched: no check-in that week)", fontsize=8.5)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    notes = []
    if heat.quiet:
        notes.append(f"{heat.quiet} other symptom(s): none every week.")
    if heat.red_flags:
        notes.append(
            "Red flags: "
            + "; ".join(
                f"wk {w}: {', '.join(c.removeprefix('rf_').replace('_', ' ') for c in f)}"
                for w, f in sorted(heat.red_flags.items())
            )
        )
    bbox = ax.get_position()
    if notes:
        fig.text(0.06, bbox.y0 - 0.04, textwrap.fill(" ".join(notes), 110), fontsize=8.5, va="top", color="#444444")
    # The grade key, beside the title.
    x, y = 0.22, top + 0.012
    fig.text(x - 0.01, y, "provisional grade:", ha="right", va="center", fontsize=8)
    for grade, name in enumerate(("none", "mild", "moderate", "severe", "grade 4")):
        fig.patches.append(
            Rectangle(
                (x, y - 0.007),
                0.02,
                0.014,
                transform=fig.transFigure,
                facecolor=GRADE_COLOURS[grade],
                edgecolor=INK,
                lw=0.4,
            )
        )
        fig.text(
            x + 0.01,
            y,
            str(grade) if grade else "·",
            ha="center",
            va="center",
            fontsize=7.5,
            color="white" if grade >= 3 else INK,
        )
        fig.text(x + 0.023, y, name, va="center", fontsize=7.5)
        x += 0.1


def _events(fig: Figure, summary: Summary, box: list[float]) -> None:
    events = summary.events
    limit = 7
    shown = events[-limit:]  # the latest; the count of older ones is said
    title = "Adverse events and alerts"
    if len(events) > limit:
        title += f" (the latest {limit} of {len(events)}; all in /alerts and the export)"
    fig.text(box[0], box[1] + box[3] + 0.012, title, fontsize=12, weight="bold")
    if not events:
        fig.text(box[0], box[1] + box[3] - 0.02, "None recorded.", fontsize=10)
        return
    ax = fig.add_axes((box[0], box[1], box[2], box[3]))
    ax.axis("off")
    cells = [
        [
            e.day.strftime("%d %b %y"),
            e.kind,
            textwrap.shorten(e.what, 40, placeholder="…"),
            "—" if e.grade is None else str(e.grade),
            textwrap.shorten(", ".join(e.criteria) or "—", 26, placeholder="…"),
            e.acknowledged or "—",
        ]
        for e in shown
    ]
    table = ax.table(
        cellText=cells,
        colLabels=["Date", "Type", "What", "Grade", "Serious criteria", "Acknowledged"],
        colWidths=[0.1, 0.09, 0.36, 0.06, 0.16, 0.21],
        cellLoc="left",
        bbox=Bbox.from_bounds(0.0, 1 - (len(shown) + 1) / (limit + 1), 1.0, (len(shown) + 1) / (limit + 1)),
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    for (row, col), cell in table.get_celld().items():
        cell.set_edgecolor("#CCCCCC")
        if row == 0:
            cell.set_facecolor("#E8E8E8")
            cell.set_text_props(weight="bold")
            continue
        event = shown[row - 1]
        if event.kind in ("SAE", "URGENT") and col in (1, 4):
            cell.set_text_props(weight="bold", color=VERMILLION)
        if col == 5 and event.acknowledged == "OPEN":
            cell.set_text_props(weight="bold", color=VERMILLION)
            cell.get_text().set_text("⚠ OPEN")


def _scores(ax: Axes, series: ScoreSeries) -> None:
    ax.set_title(series.label + " by visit", fontsize=10, weight="bold", loc="left")
    ax.set_ylim(*series.limits)
    ax.set_xlim(-1, 25)
    ax.set_xticks([0, 4, 12, 24])
    ax.set_xlabel("visit week", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", color="#E0E0E0")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if not series.points:
        ax.text(12, sum(series.limits) / 2, "not answered yet", ha="center", va="center", fontsize=9, color="#666666")
        return
    xs = [w for w, _ in series.points]
    ys = [v for _, v in series.points]
    ax.plot(xs, ys, color=BLUE, marker="o", markersize=6, lw=1.8)
    for x, y in series.points:
        ax.annotate(f"{y:g}", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8.5)


# --------------------------------------------------------------------------- the overview


def render_overview(rows: list[OverviewRow], trial_id: str, now: datetime, tz: tzinfo) -> Rendered:
    """The trial at a glance: one line per participant, A4 landscape."""
    fig = Figure(figsize=A4_LANDSCAPE)
    today = now.astimezone(tz)
    fig.text(0.03, 0.955, f"Trial at a glance · {trial_id}", fontsize=17, weight="bold", va="top")
    fig.text(0.97, 0.955, today.strftime("%d %b %Y"), fontsize=12, ha="right", va="top")
    active = sum(1 for r in rows if r.status == "active")
    open_alerts = sum(r.open_alerts for r in rows)
    everyone = len(rows)
    rows, left_out = overview_page(rows)
    fig.text(
        0.03,
        0.915,
        f"{everyone} participant(s), {active} active · {open_alerts} open alert(s) · "
        f"adherence = doses taken of reminded, per 7-day block ending today",
        fontsize=9.5,
        va="top",
    )
    if left_out:
        fig.text(
            0.03,
            0.893,
            f"Showing the {len(rows)} needing attention most (open alerts, unreachable, lowest adherence); "
            f"{left_out} more in the export and in /summary STUDY_ID",
            fontsize=9.5,
            weight="bold",
            color=VERMILLION,
            va="top",
        )
    _footer(fig, f"{trial_id} · trial overview", now, tz)
    if not rows:
        fig.text(0.5, 0.5, "No participant enrolled yet.", ha="center", fontsize=18, color="#555555")
        return _save(fig)
    ax = fig.add_axes((0.03, 0.08, 0.94, 0.8))
    ax.axis("off")
    n = len(rows)
    line = min(0.07, 0.92 / (n + 1))
    font = max(6.0, min(10.0, line * 130))
    col = {
        "id": 0.0,
        "arm": 0.1,
        "cells": 0.15,
        "all": 0.455,
        "alerts": 0.54,
        "visit": 0.64,
        "seen": 0.8,
        "reach": 0.91,
    }
    columns = [
        ("id", "Study id"),
        ("arm", "Arm"),
        ("cells", f"Adherence, last {OVERVIEW_WEEKS} weeks (oldest → newest)"),
        ("all", f"All {OVERVIEW_WEEKS}"),
        ("alerts", "Open alerts"),
        ("visit", "Next visit"),
        ("seen", "Last check-in"),
        ("reach", "Reach"),
    ]
    top = 0.97
    for key, title in columns:
        ax.text(col[key], top, title, fontsize=font, weight="bold", va="center", transform=ax.transAxes)
    for i, row in enumerate(rows):
        y = top - (i + 1) * line
        if i % 2 == 0:
            ax.add_patch(
                Rectangle((0, y - line / 2), 1, line, facecolor="#F5F5F5", edgecolor="none", transform=ax.transAxes)
            )
        kw: dict[str, Any] = {"fontsize": font, "va": "center", "transform": ax.transAxes}
        ax.text(col["id"], y, row.study_id, weight="bold", **kw)
        ax.text(col["arm"], y, row.arm, **kw)
        for k, (_back, taken, reminded) in enumerate(row.weeks):
            x = col["cells"] + k * 0.074
            fill, label, colour = _week_cell(taken, reminded)
            ax.add_patch(
                Rectangle(
                    (x, y - line * 0.4), 0.07, line * 0.8, facecolor=fill, edgecolor="white", transform=ax.transAxes
                )
            )
            ax.text(x + 0.035, y, label, ha="center", color=colour, **{**kw, "fontsize": font * 0.9})
        overall = row.adherence
        ax.text(col["all"], y, "—" if overall is None else f"{overall:.0f}%", weight="bold", **kw)
        alerts = f"⚠ {row.open_alerts}" if row.open_alerts else "0"
        hot: dict[str, Any] = {"color": VERMILLION, "weight": "bold"} if row.open_alerts else {}
        ax.text(col["alerts"], y, alerts, **{**kw, **hot})
        if row.next_visit is not None and row.days_to_visit is not None:
            soon = row.days_to_visit <= 7
            visit = f"wk {row.next_visit.week} · {row.next_visit.day.strftime('%d %b')} · in {row.days_to_visit} d"
            ax.text(col["visit"], y, ("▶ " if soon else "") + visit, weight="bold" if soon else "normal", **kw)
        else:
            ax.text(col["visit"], y, "—", **kw)
        if row.last_checkin is not None:
            ago = (today.date() - row.last_checkin).days
            late = ago > 8
            seen = f"{row.last_checkin.strftime('%d %b')} ({ago} d ago)"
            ax.text(col["seen"], y, ("! " if late else "") + seen, color=VERMILLION if late else INK, **kw)
        else:
            ax.text(col["seen"], y, "never", color="#666666", **kw)
        reach = []
        if row.paused:
            reach.append("‖ paused")
        if row.unreachable:
            reach.append("✗ unreachable")
        if row.status == "withdrawn":
            reach.append("withdrawn")
        if row.status == "invited":
            reach.append("not linked")
        ax.text(col["reach"], y, ", ".join(reach) or "✓ ok", color=VERMILLION if row.unreachable else INK, **kw)
    # The key.
    x = 0.03
    for fill, label, text in (
        (GREEN, "✓", "≥ 90% taken"),
        (YELLOW, "~", "70–89%"),
        (VERMILLION, "!", "< 70%"),
        (LIGHT, "·", "no reminder"),
    ):
        fig.patches.append(
            Rectangle((x, 0.045), 0.025, 0.02, transform=fig.transFigure, facecolor=fill, edgecolor=INK, lw=0.4)
        )
        fig.text(
            x + 0.0125, 0.055, label, ha="center", va="center", fontsize=8, color="white" if fill == VERMILLION else INK
        )
        fig.text(x + 0.03, 0.055, text, va="center", fontsize=8.5)
        x += 0.13
    return _save(fig)


def _week_cell(taken: int, reminded: int) -> tuple[str, str, str]:
    """Fill, label and label colour of one week's adherence cell."""
    if reminded == 0:
        return LIGHT, "·", INK
    share = 100 * taken / reminded
    if share >= 90:
        return GREEN, f"✓ {taken}/{reminded}", "white"
    if share >= 70:
        return YELLOW, f"~ {taken}/{reminded}", INK
    return VERMILLION, f"! {taken}/{reminded}", "white"


# --------------------------------------------------------------------------- off the event loop


async def summary_files(summary: Summary, tz: tzinfo) -> Rendered:
    """`render_summary` in a worker thread (drawing takes a good part of a second)."""
    return await asyncio.to_thread(render_summary, summary, tz)


async def overview_files(rows: list[OverviewRow], trial_id: str, now: datetime, tz: tzinfo) -> Rendered:
    """`render_overview` in a worker thread."""
    return await asyncio.to_thread(render_overview, rows, trial_id, now, tz)
