"""The run report as one self-contained HTML page, rendered from Jinja2 templates.

The markup lives in `templates/` (one template per section, autoescaped: item ids, annotator
names and text snippets come from user data); what each section shows is prepared in Python by
`labelloop.report.sections`. Plots are embedded PNGs (`data:` URIs), styles are inline, there is
no script and a Content-Security-Policy forbids every fetch: the page reads the same in the
Vertex AI console, in a browser from disk, and offline.

To add a section: write its builder (`ReportData` in, the template's context out, or `None` to
leave the section off this run's page), its template under `templates/sections/`, and one
`Section` line in `SECTIONS`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

import jinja2
import markupsafe

from labelloop.report import budget, guidance, model_sections, sections
from labelloop.report.data import ReportData, number
from labelloop.report.format import fmt

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@dataclasses.dataclass(frozen=True)
class Section:
    """One card of the page: its anchor (the top navigation links to it), title and builder."""

    anchor: str
    title: str
    template: str
    build: Callable[[ReportData], dict[str, Any] | None]


SECTIONS: tuple[Section, ...] = (
    Section("next", "What to do next", "sections/next_steps.html.j2", guidance.next_steps),
    Section("labeling", "Labeling job", "sections/labeling.html.j2", guidance.labeling),
    Section("gates", "Gates", "sections/gates.html.j2", sections.gates),
    Section("agreement", "Agreement", "sections/agreement.html.j2", sections.agreement),
    Section("annotators", "Annotators", "sections/annotators.html.j2", sections.annotators),
    Section(
        "disagreements", "Disagreements", "sections/disagreements.html.j2", sections.disagreements
    ),
    Section(
        "active-learning",
        "Active learning",
        "sections/active_learning.html.j2",
        model_sections.active_learning,
    ),
    Section("model", "Model", "sections/model.html.j2", model_sections.model),
    Section("rounds", "Across rounds", "sections/rounds.html.j2", model_sections.rounds),
    Section("budget", "Budget", "sections/budget.html.j2", budget.budget),
)


@functools.cache
def environment() -> jinja2.Environment:
    """The templates' environment: package data, autoescaping everywhere, strict undefined."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("labelloop.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = fmt
    env.filters["code_spans"] = code_spans
    return env


def code_spans(text: str) -> markupsafe.Markup:
    """Escape `text`, then show its `backticked` parts (setting names) as code."""
    parts = str(text).split("`")
    out = markupsafe.Markup("")
    for i, part in enumerate(parts):
        # Odd parts sat between backticks (an unpaired backtick stays as text).
        if i % 2 and i < len(parts) - 1:
            out += markupsafe.Markup("<code>{}</code>").format(part)
        else:
            out += markupsafe.escape(part if i % 2 == 0 or i < len(parts) - 1 else "`" + part)
    return out


def input_notes(data: ReportData) -> list[str]:
    """Warnings about the run's input that change how to read the whole page."""
    out = []
    if data.no_labels:
        out.append("Zero labels: no annotations were collected this round.")
    if data.single_annotator:
        out.append("A single annotator: agreement between annotators cannot be measured.")
    if data.single_class:
        out.append("One class only: every answer is the same class; agreement is undefined.")
    if data.bad_records:
        out.append(
            f"{len(data.bad_records)} unreadable line(s) in the report's inputs were skipped."
        )
    return out


def verdict(data: ReportData) -> dict[str, Any]:
    """The banner: trained or not, and why."""
    if data.trained:
        acc = number(data.outcome.get("accuracy"))
        return {
            "trained": True,
            "reason": data.reason,
            "accuracy": fmt(acc) if acc is not None else "",
        }
    return {"trained": False, "reason": data.reason or "unknown reason", "accuracy": ""}


def render_html(data: ReportData, *, now: dt.datetime | None = None) -> str:
    """The whole report page."""
    shown = []
    for section in SECTIONS:
        context = section.build(data)
        if context is not None:
            shown.append(
                {
                    "anchor": section.anchor,
                    "title": section.title,
                    "template": section.template,
                    "c": context,
                }
            )
    when = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    return (
        environment()
        .get_template("page.html.j2")
        .render(
            csp=CSP,
            run_id=data.run_id,
            when=when,
            task=str(data.quality.get("task_type") or ""),
            verdict=verdict(data),
            notes=input_notes(data),
            sections=shown,
        )
    )
