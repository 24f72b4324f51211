"""Small formatting helpers shared by the HTML page, its templates and the Markdown summary."""

from __future__ import annotations

import base64
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from labelloop.report.data import number

log = logging.getLogger(__name__)


def fmt(value: Any, spec: str = ".3f") -> str:
    """A number formatted, or `n/a` for null/NaN; integers without decimals."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    num = number(value)
    if num is None:
        return "n/a"
    return format(num, spec)


def pct(value: Any) -> str:
    """A share as a whole percentage, or `n/a`."""
    num = number(value)
    return "n/a" if num is None else f"{num:.0%}"


def plural(count: int, singular: str, plural_form: str = "") -> str:
    """`1 item`, `3 items` (or the given plural form)."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{count:,} {word}"


def is_numeric(text: str) -> bool:
    """Whether a formatted value is a number (big type) rather than a word (smaller type)."""
    return text.replace(",", "").replace(".", "").replace("%", "").lstrip("-").isdigit()


@dataclasses.dataclass(frozen=True)
class Kpi:
    """One key-figure tile."""

    label: str
    value: str

    @property
    def numeric(self) -> bool:
        return is_numeric(self.value)


def kpis(pairs: list[tuple[str, str]]) -> list[Kpi]:
    """Key-figure tiles from `(label, value)` pairs."""
    return [Kpi(label, value) for label, value in pairs]


@dataclasses.dataclass(frozen=True)
class Figure:
    """An embedded PNG plot, or the note that replaces a plot that could not be drawn."""

    src: str = ""
    alt: str = ""
    caption: str = ""
    note: str = ""


def png_figure(png: bytes, alt: str, caption: str = "") -> Figure:
    """An embedded PNG figure."""
    data = base64.b64encode(png).decode("ascii")
    return Figure(src=f"data:image/png;base64,{data}", alt=alt, caption=caption)


def plot(make: Callable[[], bytes], alt: str, caption: str = "") -> Figure:
    """Draw one plot; a plot that fails leaves a note instead of taking the page down."""
    try:
        return png_figure(make(), alt, caption)
    # RuntimeError: matplotlib's font rasteriser on absurd coordinates.
    except (ValueError, TypeError, IndexError, RuntimeError) as exc:
        log.warning("report: plot %r failed: %s", alt, exc)
        return Figure(alt=alt, note=f"The plot “{alt}” could not be drawn ({exc}).")
