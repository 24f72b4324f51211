"""The report's plots: arrays in, PNG bytes out (matplotlib's Agg canvas, no pyplot state).

matplotlib takes about a second to import, so it is imported inside `_figure`: only the report
stage pays for it, and only when it draws.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

ACCENT = "#2563eb"
GOOD = "#16a34a"
BAD = "#dc2626"
MUTED = "#94a3b8"
INK = "#1e293b"
DPI = 110
# Cell labels get unreadable past this many rows or columns.
MAX_ANNOTATED = 14


def _figure(width: float, height: float, *, layout: Literal["tight"] | None = "tight") -> Figure:
    from matplotlib.figure import Figure

    # "tight" is about a third faster to draw than "constrained" and looks the same here.
    fig = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    fig.patch.set_facecolor("white")
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor="white")
    return buffer.getvalue()


def _style(ax: Any) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)
    ax.tick_params(colors=INK, labelsize=8)
    ax.title.set_color(INK)


def _draw_heatmap(
    ax: Any,
    values: np.ndarray,
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    vmin: float,
    vmax: float,
    cmap: str,
    fmt: str,
    annotate: bool,
    ticks: bool = True,
) -> Any:
    masked = np.ma.masked_invalid(values)
    from matplotlib import colormaps

    colormap = colormaps[cmap].with_extremes(bad="#e2e8f0")
    image = ax.imshow(masked, cmap=colormap, vmin=vmin, vmax=vmax, aspect="auto")
    if ticks:
        ax.set_xticks(range(len(col_labels)), labels=list(col_labels), rotation=45, ha="right")
        ax.set_yticks(range(len(row_labels)), labels=list(row_labels))
        ax.tick_params(labelsize=7, length=0)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    rows, cols = values.shape
    if annotate and rows <= MAX_ANNOTATED and cols <= MAX_ANNOTATED:
        span = (vmax - vmin) or 1.0
        for (r, c), v in np.ndenumerate(values):
            if np.isnan(v):
                continue
            dark = (v - vmin) / span > 0.6
            ax.text(
                c,
                r,
                format(v, fmt),
                ha="center",
                va="center",
                fontsize=6.5 if cols > 8 else 8,
                color="white" if dark else INK,
            )
    return image


def heatmap_png(
    values: np.ndarray,
    *,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    title: str,
    xlabel: str = "",
    ylabel: str = "",
    vmin: float = 0.0,
    vmax: float = 1.0,
    cmap: str = "Blues",
    fmt: str = ".2f",
    colorbar: str = "",
) -> bytes:
    """A heatmap with each cell's value written in it (NaN cells grey and blank)."""
    values = np.asarray(values, dtype=float)
    rows, cols = values.shape
    # Kept small in inches so the cell labels stay legible when the page scales the image down.
    size = max(3.2, min(6.0, 0.3 * max(rows, cols) + 1.6))
    fig = _figure(size + 0.8, size)
    ax = fig.add_subplot()
    image = _draw_heatmap(
        ax,
        values,
        row_labels=row_labels,
        col_labels=col_labels,
        vmin=vmin,
        vmax=vmax,
        cmap=cmap,
        fmt=fmt,
        annotate=True,
    )
    ax.set_title(title, fontsize=10, color=INK)
    ax.set_xlabel(xlabel, fontsize=8, color=INK)
    ax.set_ylabel(ylabel, fontsize=8, color=INK)
    bar = fig.colorbar(image, ax=ax, shrink=0.8)
    bar.ax.tick_params(labelsize=7)
    if colorbar:
        bar.set_label(colorbar, fontsize=8)
    return _png(fig)


def confusion_grid_png(
    matrices: Sequence[np.ndarray],
    *,
    titles: Sequence[str],
    labels: Sequence[str],
    highlight: Sequence[bool],
    columns: int = 4,
) -> bytes:
    """Small multiples of row-normalised confusion matrices (rows true, columns given)."""
    count = len(matrices)
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    cell, top, bottom = 2.2, 0.35, 0.3
    height = cell * rows + top + bottom
    fig = _figure(cell * columns + 1.0, height, layout=None)
    # A fixed grid (no layout engine): small multiples do not need one and it halves draw time.
    grid = fig.add_gridspec(
        rows,
        columns,
        left=0.04,
        right=0.9,
        bottom=bottom / height,
        top=1 - top / height,
        wspace=0.25,
        hspace=0.35,
    )
    image = None
    for index, (values, title, flagged) in enumerate(zip(matrices, titles, highlight, strict=True)):
        ax = fig.add_subplot(grid[index // columns, index % columns])
        image = _draw_heatmap(
            ax,
            np.asarray(values, dtype=float),
            row_labels=labels,
            col_labels=labels,
            vmin=0.0,
            vmax=1.0,
            cmap="Reds" if flagged else "Blues",
            fmt=".1f",
            annotate=False,
            # Dozens of tick labels per panel are unreadable and slow to draw.
            ticks=len(labels) <= MAX_ANNOTATED,
        )
        ax.set_title(title, fontsize=8, color=BAD if flagged else INK)
        if len(labels) <= MAX_ANNOTATED:
            ax.tick_params(labelsize=6)
            ax.tick_params(axis="x", rotation=0)
            for tick in ax.get_xticklabels():
                tick.set_horizontalalignment("center")
    if image is not None:
        bar = fig.colorbar(
            image, cax=fig.add_axes((0.92, 0.25, 0.015, 0.5)), label="share of the true class"
        )
        bar.ax.tick_params(labelsize=7)
    return _png(fig)


def bar_png(
    names: Sequence[str],
    values: np.ndarray,
    *,
    title: str,
    xlabel: str,
    threshold: float | None = None,
    threshold_label: str = "",
    limits: tuple[float, float] | None = None,
    fmt: str = ".2f",
) -> bytes:
    """Horizontal bars, one per name (NaN values drawn as an empty row marked n/a)."""
    values = np.asarray(values, dtype=float)
    height = max(1.8, 0.28 * len(names) + 1.0)
    fig = _figure(5.2, height)
    ax = fig.add_subplot()
    _style(ax)
    y = np.arange(len(names))
    shown = np.nan_to_num(values, nan=0.0)
    colors = [ACCENT if threshold is None or v >= threshold else BAD for v in shown]
    ax.barh(y, shown, color=colors, height=0.7)
    ax.set_yticks(y, labels=list(names))
    ax.invert_yaxis()
    low, high = limits if limits is not None else (min(0.0, float(shown.min(initial=0.0))), 1.0)
    high = max(high, float(shown.max(initial=0.0)) * 1.08)
    ax.set_xlim(low, high)
    for yi, v in enumerate(values.tolist()):
        text = "n/a" if np.isnan(v) else format(v, fmt)
        x = 0.0 if np.isnan(v) else max(v, low)
        ax.text(x, yi, f" {text}", va="center", fontsize=7, color=INK)
    if threshold is not None:
        ax.axvline(threshold, color=INK, linestyle="--", linewidth=1)
        ax.text(threshold, -0.9, f" {threshold_label}", fontsize=7, color=INK, va="bottom")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8, color=INK)
    return _png(fig)


def histogram_png(counts: np.ndarray, edges: np.ndarray, *, title: str, xlabel: str) -> bytes:
    """A histogram from precomputed counts and bin edges."""
    counts = np.asarray(counts, dtype=float)
    edges = np.asarray(edges, dtype=float)
    fig = _figure(5.2, 2.8)
    ax = fig.add_subplot()
    _style(ax)
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color=ACCENT, edgecolor="white")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8, color=INK)
    ax.set_ylabel("items", fontsize=8, color=INK)
    return _png(fig)


def column_png(names: Sequence[str], values: np.ndarray, *, title: str, ylabel: str) -> bytes:
    """Vertical bars, one per name, each with its value on top."""
    values = np.asarray(values, dtype=float)
    fig = _figure(5.2, 2.8)
    ax = fig.add_subplot()
    _style(ax)
    x = np.arange(len(names))
    ax.bar(x, values, color=ACCENT, width=0.7)
    ax.set_xticks(x, labels=list(names), rotation=45 if len(names) > 12 else 0)
    for xi, v in enumerate(values.tolist()):
        ax.text(xi, v, f"{v:g}", ha="center", va="bottom", fontsize=7, color=INK)
    ax.set_ylim(0, max(1.0, float(values.max(initial=0.0)) * 1.15))
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=8, color=INK)
    return _png(fig)


def rounds_png(
    labels_used: np.ndarray,
    accuracy: np.ndarray,
    *,
    names: Sequence[str],
    current: int,
) -> bytes:
    """Labels used (x) against held-out accuracy (y), one point per round, joined in order.

    Rounds without a model (NaN accuracy) are drawn as hollow markers along the bottom.
    """
    labels_used = np.asarray(labels_used, dtype=float)
    accuracy = np.asarray(accuracy, dtype=float)
    fig = _figure(6.4, 3.0)
    ax = fig.add_subplot()
    _style(ax)
    trained = ~np.isnan(accuracy)
    # Zoom on the trained rounds' accuracies: a flat-looking line on [0, 1] hides the trend.
    floor = float(np.floor(max(0.0, np.nanmin(accuracy) - 0.1) * 10) / 10) if trained.any() else 0.0
    shown = np.where(trained, accuracy, floor)
    if trained.any():
        ax.plot(labels_used[trained], accuracy[trained], color=ACCENT, linewidth=1.5, zorder=1)
        ax.scatter(labels_used[trained], accuracy[trained], color=ACCENT, s=28, zorder=2)
    untrained = ~trained & ~np.isnan(labels_used)
    if untrained.any():
        ax.scatter(
            labels_used[untrained],
            shown[untrained],
            facecolors="none",
            edgecolors=MUTED,
            s=28,
            zorder=2,
            label="no model (gate closed)",
        )
        ax.legend(fontsize=7, frameon=False, loc="lower right")
    if 0 <= current < len(names) and not np.isnan(labels_used[current]):
        ax.scatter(
            [labels_used[current]],
            [shown[current]],
            s=110,
            facecolors="none",
            edgecolors=INK,
            zorder=3,
        )
    for name, x, y in zip(names, labels_used.tolist(), shown.tolist(), strict=True):
        if not np.isnan(x):
            ax.annotate(
                name, (x, y), textcoords="offset points", xytext=(4, 6), fontsize=7, color=INK
            )
    ax.set_ylim(floor, 1.02)
    ax.set_xlabel("labels used to train (cumulative)", fontsize=8, color=INK)
    ax.set_ylabel("held-out accuracy", fontsize=8, color=INK)
    ax.set_title("Model accuracy across rounds", fontsize=10)
    ax.grid(axis="y", color="#e2e8f0", linewidth=0.8)
    return _png(fig)


def learning_curve_png(arms: dict[str, np.ndarray]) -> bytes:
    """Evaluation-set accuracy (y) against labels (x) for each arm, with 95% intervals.

    Args:
        arms: Arm name (`active`, `random`) -> (n, 4) rows of labels, accuracy, low, high,
            one per round, in label order.
    """
    fig = _figure(6.4, 3.0)
    ax = fig.add_subplot()
    _style(ax)
    colors = {"active": ACCENT, "random": MUTED}
    lows = []
    for name, given in arms.items():
        x, y, lo, hi = np.asarray(given, dtype=float).reshape(-1, 4).T
        color = colors.get(name, INK)
        ax.plot(x, y, color=color, linewidth=1.5, zorder=1)
        err = np.vstack([np.clip(y - lo, 0, None), np.clip(hi - y, 0, None)])
        ax.errorbar(
            x, y, yerr=np.nan_to_num(err), fmt="o", color=color, ecolor=color, elinewidth=1,
            capsize=3, markersize=5, label=f"{name} labels", zorder=2,
        )  # fmt: skip
        lows.append(np.nanmin(lo) if np.isfinite(lo).any() else np.nanmin(y))
    floor = float(np.floor(max(0.0, min(lows) - 0.05) * 10) / 10) if lows else 0.0
    ax.set_ylim(floor, 1.02)
    ax.set_xlabel("labels the model was trained on (each arm)", fontsize=8, color=INK)
    ax.set_ylabel("evaluation-set accuracy", fontsize=8, color=INK)
    ax.set_title("Learning curve: actively chosen vs random labels", fontsize=10)
    ax.legend(fontsize=7, frameon=False, loc="lower right")
    ax.grid(axis="y", color="#e2e8f0", linewidth=0.8)
    return _png(fig)
