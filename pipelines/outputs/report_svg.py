"""Server-side SVG charts for report.html: plain functions from numbers to markup.

No JavaScript, fonts or images: every chart is an inline `<svg class="chart">` whose colours come
from CSS classes defined in the page (so the palette lives in one place) and whose text is
escaped here. Charts scale with the page through their viewBox; a chart with nothing to draw
returns a short "no data" note instead, so the page never shows an empty frame.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 720  # viewBox width; the page scales it to the column width
ROW = 22  # height of one bar row
CHAR_W = 6.6  # average glyph width of the 12px system font, to size label columns


@dataclass(frozen=True)
class Segment:
    value: float
    css: str  # class of the mark: k (kept/ok), r (rejected), f (failed), p (pool/light), ...
    label: str  # what the value is, for the tooltip


@dataclass(frozen=True)
class Bar:
    label: str
    segments: tuple[Segment, ...]
    note: str = ""  # text right of the bar (e.g. "57 kept of 58")
    overlay: bool = False  # segments drawn on top of each other (first = longest) not stacked


@dataclass(frozen=True)
class TreeRow:
    depth: int
    label: str
    value: float  # dark bar (e.g. examples in the dataset)
    background: float  # light bar behind it (e.g. examples after the filter)
    note: str
    muted: bool = False  # pruned nodes
    parent_index: int | None = None  # row index of the parent, for the connector


def no_data(title: str, why: str = "no data") -> str:
    return (f'<p class="nodata"><strong>{escape(title)}</strong>: {escape(why)}</p>')


def _frame(title: str, desc: str, height: float, body: list[str], width: int = WIDTH) -> str:
    uid = hashlib.sha1(f"{title}\x1f{desc}".encode()).hexdigest()[:8]  # stable per chart
    return (f'<svg class="chart" viewBox="0 0 {width} {height:.0f}" role="img" '
            f'aria-labelledby="t{uid} d{uid}">'
            f'<title id="t{uid}">{escape(title)}</title><desc id="d{uid}">{escape(desc)}</desc>'
            + "".join(body) + "</svg>")


def _text(x: float, y: float, text: str, css: str = "", anchor: str = "start") -> str:
    cls = f' class="{css}"' if css else ""
    return (f'<text x="{x:.1f}" y="{y:.1f}"{cls} text-anchor="{anchor}">{escape(text)}</text>')


def _rect(x: float, y: float, w: float, h: float, css: str, tip: str) -> str:
    return (f'<rect x="{x:.2f}" y="{y:.2f}" width="{w:.2f}" height="{h:.2f}" class="{css}">'
            f'<title>{escape(tip)}</title></rect>')


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(chars - 1, 1)] + "…"


def bar_chart(title: str, desc: str, bars: Sequence[Bar], legend: Sequence[tuple[str, str]] = ()
              ) -> str:
    """Horizontal bars, one row each, stacked (or overlaid) segments, a note on the right."""
    total = max((_bar_extent(b) for b in bars), default=0)
    if not bars or total <= 0:
        return no_data(title)
    label_w = min(max(len(b.label) for b in bars) * CHAR_W + 12, WIDTH * 0.36)
    note_w = min(max((len(b.note) for b in bars), default=0) * CHAR_W + 10, WIDTH * 0.3)
    plot_w = WIDTH - label_w - note_w
    top = 26 if legend else 6
    body = _legend(legend, 0, 14)
    for i, bar in enumerate(bars):
        y = top + i * ROW
        body.append(_text(label_w - 8, y + 15, _clip(bar.label, int(label_w / CHAR_W)), "lbl",
                          "end"))
        x = label_w
        for seg in bar.segments:
            w = plot_w * seg.value / total
            if w <= 0:
                continue
            tip = f"{bar.label}: {seg.label} {_fmt(seg.value)}"
            body.append(_rect(label_w if bar.overlay else x, y + 3, max(w, 1.5), ROW - 6,
                              seg.css, tip))
            x += w
        end = label_w + plot_w * _bar_extent(bar) / total
        body.append(_text(end + 6, y + 15, bar.note, "val"))
    return _frame(title, desc, top + len(bars) * ROW + 6, body)


def _bar_extent(bar: Bar) -> float:
    values = [s.value for s in bar.segments]
    return max(values, default=0) if bar.overlay else sum(values)


def _legend(items: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    out = []
    for css, label in items:
        out.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" '
                   f'class="legend {css}"/>')
        out.append(_text(x + 14, y, label, "lbl"))
        x += 14 + len(label) * CHAR_W + 18
    return out


def histogram(title: str, desc: str, edges: Sequence[float],
              series: Sequence[tuple[str, str, Sequence[int]]], *, x_label: str,
              marker: tuple[float, str] | None = None, overflow: bool = False,
              width: int = WIDTH, legend: bool = True) -> str:
    """Stacked column histogram: `series` is (css, name, counts per bin); `marker` is a dashed
    vertical line (value, label), e.g. the novelty threshold; `overflow` labels the last bin
    "≥" because it also holds everything above its upper edge."""
    bins = len(edges) - 1
    totals = [sum(s[2][i] for s in series) for i in range(bins)]
    peak = max(totals, default=0)
    if bins <= 0 or peak <= 0:
        return no_data(title)
    left, right, top, bottom = 40, 12, 28 if legend else 12, 40
    height = 230 if legend else 190
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = edges[0], edges[-1]
    sx = lambda v: left + plot_w * (v - lo) / (hi - lo)  # noqa: E731
    body = _legend([(css, name) for css, name, _ in series], left, 14) if legend else []
    for tick in _ticks(peak):  # horizontal grid with counts
        y = top + plot_h * (1 - tick / peak)
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'class="gl"/>')
        body.append(_text(left - 6, y + 4, _fmt(tick), "axis", "end"))
    for i in range(bins):
        base = 0
        x0, x1 = sx(edges[i]), sx(edges[i + 1])
        for css, name, counts in series:
            n = counts[i]
            if n <= 0:
                continue
            y1 = top + plot_h * (1 - (base + n) / peak)
            h = plot_h * n / peak
            span = f"{edges[i]:g}–{edges[i + 1]:g}" + ("+" if overflow and i == bins - 1 else "")
            body.append(_rect(x0 + 1, y1, max(x1 - x0 - 2, 1), h, css, f"{name} {span}: {n}"))
            base += n
    body.append(f'<line x1="{left}" x2="{width - right}" y1="{top + plot_h}" '
                f'y2="{top + plot_h}" class="axisline"/>')
    step = max(1, math.ceil(bins / (plot_w / 45)))  # tick labels at least ~45 units apart
    for i in range(0, bins + 1, step):
        label = f"{edges[i]:g}" + ("+" if overflow and i == bins else "")
        body.append(_text(sx(edges[i]), top + plot_h + 15, label, "axis", "middle"))
    body.append(_text(left + plot_w / 2, height - 6, x_label, "axis", "middle"))
    if marker is not None and lo <= marker[0] <= hi:
        x = sx(marker[0])
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{top + plot_h}" '
                    f'class="marker"/>')
        body.append(_text(x - 4, top + 8, marker[1], "axis", "end"))
    return _frame(title, desc, height, body, width)


def _ticks(peak: float) -> list[float]:
    step = nice_step(peak / 5)
    return [step * i for i in range(1, int(peak // step) + 1)]


def nice_step(raw: float) -> float:
    """The smallest of 1, 2, 5 × 10^k that is ≥ raw (at least 1: counts are integers)."""
    step = 1.0
    while True:
        for m in (1, 2, 5):
            if step * m >= raw:
                return step * m
        step *= 10


def tree_chart(title: str, desc: str, rows: Sequence[TreeRow],
               legend: Sequence[tuple[str, str]]) -> str:
    """An indented tree, one node per row (pre-order), with connectors, a dot per node and a
    bar of its example counts (dark over light)."""
    if not rows:
        return no_data(title)
    indent, top = 16, 26
    label_w = min(max(r.depth * indent + len(r.label) * CHAR_W for r in rows) + 24, WIDTH * 0.5)
    note_w = min(max(len(r.note) for r in rows) * CHAR_W + 10, WIDTH * 0.25)
    plot_w = WIDTH - label_w - note_w
    peak = max(max(r.value, r.background) for r in rows) or 1
    body = _legend(legend, 0, 14)
    for i, row in enumerate(rows):
        y = top + i * ROW + ROW / 2
        x = 6 + row.depth * indent
        if row.parent_index is not None:
            px = 6 + rows[row.parent_index].depth * indent
            py = top + row.parent_index * ROW + ROW / 2
            body.append(f'<path d="M{px:.1f} {py + 4:.1f}V{y:.1f}H{x - 4:.1f}" class="conn"/>')
        dot = "dot muted" if row.muted else "dot"
        body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" class="{dot}"/>')
        chars = int((label_w - x - 10) / CHAR_W)
        body.append(_text(x + 8, y + 4, _clip(row.label, chars), "lbl muted" if row.muted
                          else "lbl"))
        for value, css, what in ((row.background, "p", "light"), (row.value, "k", "dark")):
            if value > 0:
                body.append(_rect(label_w, y - 6, max(plot_w * value / peak, 1.5), 12, css,
                                  f"{row.label}: {row.note}" if what == "dark" else row.note))
        end = label_w + plot_w * max(row.value, row.background) / peak
        body.append(_text(end + 6, y + 4, row.note, "val"))
    return _frame(title, desc, top + len(rows) * ROW + 6, body)
