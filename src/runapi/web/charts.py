"""Server-rendered SVG bar charts (no script, no CDN): pure functions returning safe markup.

Geometry uses presentation attributes only, and colours come from the stylesheet, so the
charts live within the pages' strict Content-Security-Policy (no inline styles).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from markupsafe import Markup, escape

Point = tuple[str, int]  # (label, value)


def _frame(width: int, height: int, title: str, body: list[str]) -> Markup:
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="xMidYMid meet">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def column_chart(points: Sequence[Point], fmt: Callable[[int], str], title: str,
                 width: int = 640, height: int = 180, label_every: int = 5) -> Markup:
    """Vertical bars, one per point (e.g. per day); every `label_every`-th label under the axis."""
    peak = max((v for _, v in points), default=0)
    left, bottom, top = max(40, 7 * max(len(fmt(peak)), len(fmt(0))) + 12), 22, 10  # room for the tick labels
    plot_w, plot_h = width - left - 8, height - bottom - top
    slot = plot_w / max(len(points), 1)
    body = [
        f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}"/>',
        f'<text class="tick" x="{left - 6}" y="{top + 8}" text-anchor="end">{escape(fmt(peak))}</text>',
        f'<text class="tick" x="{left - 6}" y="{top + plot_h}" text-anchor="end">{escape(fmt(0))}</text>',
    ]
    for index, (label, value) in enumerate(points):
        bar_h = 0.0 if peak == 0 else plot_h * value / peak
        x = left + index * slot + slot * 0.15
        y = top + plot_h - bar_h
        body.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{bar_h:.1f}">'
                    f"<title>{escape(label)}: {escape(fmt(value))}</title></rect>")
        if index % label_every == 0 or index == len(points) - 1:
            body.append(f'<text class="tick" x="{x + slot * 0.35:.1f}" y="{height - 6}" text-anchor="middle">'
                        f"{escape(label[5:] if len(label) == 10 else label)}</text>")
    return _frame(width, height, title, body)


def bar_chart(points: Sequence[Point], fmt: Callable[[int], str], title: str, width: int = 640) -> Markup:
    """Horizontal bars, one row per point (e.g. per model), labelled with name and value."""
    row = 26
    label_w = max([80] + [7 * len(label) + 16 for label, _ in points])
    value_w = max([60] + [7 * len(fmt(value)) + 16 for _, value in points])
    height = max(len(points), 1) * row + 8
    plot_w = max(width - label_w - value_w, 40)
    peak = max((v for _, v in points), default=0)
    body = []
    for index, (label, value) in enumerate(points):
        y = 4 + index * row
        bar_w = 0.0 if peak == 0 else max(plot_w * value / peak, 1.0 if value else 0.0)
        body.append(f'<text class="label" x="{label_w - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>')
        body.append(f'<rect class="bar" x="{label_w}" y="{y + 3}" width="{bar_w:.1f}" height="{row - 8}">'
                    f"<title>{escape(label)}: {escape(fmt(value))}</title></rect>")
        body.append(f'<text class="value" x="{label_w + bar_w + 6:.1f}" y="{y + 16}">{escape(fmt(value))}</text>')
    if not points:
        body.append(f'<text class="label" x="{width / 2:.0f}" y="20" text-anchor="middle">—</text>')
    return _frame(width, height, title, body)
