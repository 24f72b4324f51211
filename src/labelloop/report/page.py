"""The run report as one self-contained HTML page.

Plots are embedded PNGs (`data:` URIs), styles are inline, there is no script and a
Content-Security-Policy forbids every fetch: the page reads the same in the Vertex AI console,
in a browser from disk, and offline.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import html
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from labelloop.report import plots
from labelloop.report.data import Gate, ReportData, integer, matrix, number, row_normalize
from labelloop.report.data import per_class_scores as class_scores
from labelloop.report.thumbnails import preview

log = logging.getLogger(__name__)

# Caps that keep the page light whatever the run's size; the page says what it left out.
MAX_REVIEW_ITEMS = 60
REVIEW_ITEMS_OPEN = 12
MAX_ANNOTATOR_MATRICES = 16
MAX_CLASSES_PLOTTED = 30
ANNOTATOR_ROWS_OPEN = 20

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f1f5f9;color:#1e293b;font:14px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:20px 24px 48px}
header.top{background:#0f172a;color:#f8fafc;padding:22px 24px}
header.top .inner{max-width:1180px;margin:0 auto;padding:0 24px}
header.top h1{margin:0;font-size:22px;font-weight:650;letter-spacing:.2px}
header.top .meta{color:#94a3b8;font-size:12.5px;margin-top:4px}
nav{margin-top:12px;display:flex;flex-wrap:wrap;gap:6px}
nav a{color:#cbd5e1;text-decoration:none;font-size:12.5px;padding:3px 10px;border:1px solid #334155;
border-radius:999px}
nav a:hover{background:#1e293b}
.verdict{display:flex;align-items:center;gap:14px;border-radius:10px;padding:14px 18px;
margin:18px 0;font-size:15px;border:1px solid}
.verdict b{font-size:17px}
.verdict.ok{background:#f0fdf4;border-color:#86efac;color:#14532d}
.verdict.no{background:#fff7ed;border-color:#fdba74;color:#7c2d12}
.verdict .icon{font-size:26px;line-height:1}
section{background:#fff;border:1px solid #e2e8f0;border-radius:12px;padding:18px 22px;margin:16px 0;
box-shadow:0 1px 2px rgba(15,23,42,.04)}
section>h2{margin:0 0 4px;font-size:17px}
section>p.lead{margin:0 0 14px;color:#64748b;font-size:13px}
h3{font-size:14px;margin:16px 0 8px}
.notes{margin:0 0 12px;padding:0;list-style:none}
.notes li{background:#fefce8;border:1px solid #fde68a;color:#713f12;border-radius:8px;
padding:7px 12px;margin:6px 0;font-size:13px}
.kpis{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:10px;
margin:6px 0 8px}
.kpi{background:#f8fafc;border:1px solid #e2e8f0;border-radius:10px;padding:10px 12px}
.kpi .v{font-size:20px;font-weight:650;font-variant-numeric:tabular-nums}
.kpi .v.txt{font-size:15px;line-height:30px;overflow-wrap:anywhere}
.kpi .k{font-size:12px;color:#64748b}
.gates{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:14px}
.gate{border:1px solid #e2e8f0;border-radius:10px;padding:14px 16px}
.gate .head{display:flex;justify-content:space-between;align-items:center}
.gate .name{font-weight:600}
.gate .num{font-size:24px;font-weight:650;margin:6px 0 2px;font-variant-numeric:tabular-nums}
.gate .num small{font-size:13px;color:#64748b;font-weight:500}
.gate .sub{font-size:12.5px;color:#475569}
.pill{display:inline-block;font-size:11.5px;font-weight:650;text-transform:uppercase;letter-spacing:.4px;
padding:2px 9px;border-radius:999px}
.pill.open{background:#dcfce7;color:#166534}
.pill.closed{background:#fee2e2;color:#991b1b}
.pill.skip{background:#e2e8f0;color:#475569}
.pill.flag{background:#fee2e2;color:#991b1b;text-transform:none;letter-spacing:0}
.meter{position:relative;height:12px;background:#e2e8f0;border-radius:6px;margin:12px 0 20px}
.meter .fill{position:absolute;left:0;top:0;bottom:0;border-radius:6px}
.meter .fill.open{background:#22c55e}
.meter .fill.closed{background:#ef4444}
.meter .ci{position:absolute;top:-3px;bottom:-3px;border:2px solid #0f172a;border-radius:4px;
opacity:.55}
.meter .mark{position:absolute;top:-5px;bottom:-5px;width:2px;background:#0f172a}
.meter .mark span{position:absolute;top:18px;left:-40px;width:80px;text-align:center;font-size:11px;
color:#0f172a}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(440px,1fr));gap:16px;align-items:start}
figure{margin:0;text-align:center}
figure img{max-width:100%;height:auto}
figcaption{font-size:12px;color:#64748b;margin-top:4px}
table{border-collapse:collapse;width:100%;font-size:13px;font-variant-numeric:tabular-nums}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #e2e8f0;vertical-align:top}
th{background:#f8fafc;font-weight:600;color:#334155}
tr.flagged td{background:#fef2f2}
td.n,th.n{text-align:right}
.bar{display:inline-block;height:8px;border-radius:4px;background:#3b82f6;vertical-align:middle;
margin-right:6px}
.bar.low{background:#ef4444}
.reviews{display:grid;grid-template-columns:repeat(auto-fill,minmax(250px,1fr));gap:10px;
margin-top:4px}
.rv{display:flex;gap:10px;border:1px solid #e2e8f0;border-radius:10px;padding:8px;background:#fff}
.rv .thumb{flex:0 0 80px;height:80px;display:flex;align-items:center;justify-content:center;
background:#f8fafc;border-radius:6px;overflow:hidden}
.rv .thumb img{width:80px;height:80px;object-fit:contain}
.rv .thumb img.px{image-rendering:pixelated;image-rendering:crisp-edges}
.rv .thumb.none{font-size:11px;color:#94a3b8;text-align:center;padding:4px}
.rv .snippet{flex:1 1 auto;font-size:12.5px;background:#f8fafc;border-radius:6px;padding:6px 8px;
max-height:120px;overflow:auto}
.rv .info{flex:1 1 auto;min-width:0;font-size:12.5px}
.rv .id{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:11px;color:#64748b;
overflow-wrap:anywhere}
.chips{display:flex;flex-wrap:wrap;gap:4px;margin:4px 0}
.chip{display:inline-block;border-radius:6px;padding:1px 7px;font-size:12px;background:#eff6ff;
color:#1e3a8a;border:1px solid #bfdbfe}
.chip.vote{background:#f1f5f9;color:#334155;border-color:#cbd5e1}
.chip b{font-weight:650}
.chip .who{color:#64748b}
.muted{color:#64748b}
details{margin-top:10px}
details>.reviews{margin-top:10px}
summary{cursor:pointer;color:#2563eb;font-size:13px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12.5px;background:#f1f5f9;
padding:1px 5px;border-radius:4px}
footer{color:#94a3b8;font-size:12px;text-align:center;margin-top:24px}
@media print{body{background:#fff}section{box-shadow:none;break-inside:avoid}}
"""

SECTIONS = (
    ("gates", "Gates"),
    ("agreement", "Agreement"),
    ("annotators", "Annotators"),
    ("disagreements", "Disagreements"),
    ("active-learning", "Active learning"),
    ("model", "Model"),
    ("rounds", "Across rounds"),
)


def esc(value: Any) -> str:
    """HTML-escape any value."""
    return html.escape(str(value), quote=True)


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


def img(png: bytes, alt: str, caption: str = "") -> str:
    """An embedded PNG figure."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def _numeric(text: str) -> bool:
    """Whether a formatted value is a number (big type) rather than a word (smaller type)."""
    return text.replace(",", "").replace(".", "").replace("%", "").lstrip("-").isdigit()


def kpis(pairs: Sequence[tuple[str, str]]) -> str:
    """A row of key-figure tiles, `(label, value)` each."""
    cells = "".join(
        f'<div class="kpi"><div class="v{"" if _numeric(v) else " txt"}">{esc(v)}</div>'
        f'<div class="k">{esc(k)}</div></div>'
        for k, v in pairs
    )
    return f'<div class="kpis">{cells}</div>'


def notes(lines: Sequence[str]) -> str:
    """Yellow notes: what the page could not show, and why."""
    if not lines:
        return ""
    return '<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in lines) + "</ul>"


def table(
    head: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: Sequence[int] = (),
    row_classes: Sequence[str] = (),
) -> str:
    """A table of already-escaped cells; `numeric` columns align right, rows take CSS classes."""
    cls = [' class="n"' if i in numeric else "" for i in range(len(head))]
    th = "".join(f"<th{c}>{esc(h)}</th>" for h, c in zip(head, cls, strict=True))
    body = "".join(
        (f'<tr class="{row_classes[i]}">' if i < len(row_classes) and row_classes[i] else "<tr>")
        + "".join(f"<td{c}>{v}</td>" for v, c in zip(row, cls, strict=True))
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def section(anchor: str, title: str, lead: str, body: str) -> str:
    """One card of the page, with an anchor the top navigation links to."""
    return (
        f'<section id="{anchor}"><h2>{esc(title)}</h2>'
        f'<p class="lead">{esc(lead)}</p>{body}</section>'
    )


def _plot(make: Callable[[], bytes], alt: str, caption: str = "") -> str:
    """Draw one plot; a plot that fails leaves a note instead of taking the page down."""
    try:
        return img(make(), alt, caption)
    # RuntimeError: matplotlib's font rasteriser on absurd coordinates.
    except (ValueError, TypeError, IndexError, RuntimeError) as exc:
        log.warning("report: plot %r failed: %s", alt, exc)
        return notes([f"The plot “{alt}” could not be drawn ({exc})."])


# Sections ------------------------------------------------------------------------------------


def _meter(gate: Gate, *, low: float, high: float) -> str:
    span = (high - low) or 1.0

    def pos(v: float) -> float:
        return float(np.clip((v - low) / span * 100.0, 0.0, 100.0))

    value = gate.value if gate.value is not None else low
    state = "open" if gate.passed else "closed"
    parts = [f'<div class="fill {state}" style="width:{pos(value):.1f}%"></div>']
    if gate.ci is not None:
        left, right = pos(gate.ci[0]), pos(gate.ci[1])
        parts.append(
            f'<div class="ci" style="left:{left:.1f}%;width:{max(right - left, 0.5):.1f}%"'
            ' title="95% confidence interval"></div>'
        )
    threshold = fmt(gate.threshold, ",.0f" if gate.metric == "label_count" else ".2f")
    parts.append(
        f'<div class="mark" style="left:{pos(gate.threshold):.1f}%">'
        f"<span>min {threshold}</span></div>"
    )
    return f'<div class="meter" role="img" aria-label="{esc(gate.name)}">{"".join(parts)}</div>'


def _gate_card(gate: Gate) -> str:
    pill = {"open": "open", "closed": "closed"}.get(gate.status, "skip")
    if gate.metric == "label_count":
        value = fmt(integer(gate.value))
        threshold = fmt(int(gate.threshold))
        num = f"{value} <small>labels of {threshold} needed</small>"
        sub = "Consolidated labels that pass the minimum confidence."
        high = max(gate.threshold * 1.25, gate.value or 0.0, 1.0)
        meter = _meter(gate, low=0.0, high=high)
    else:
        num = f"{fmt(gate.value)} <small>{esc(gate.metric)}, min {fmt(gate.threshold)}</small>"
        sub = ""
        if gate.ci is not None:
            sub = f"95% bootstrap CI [{fmt(gate.ci[0])}, {fmt(gate.ci[1])}]."
            if gate.ci_straddles:
                sub += " The threshold lies inside the interval: a close call."
        if gate.value is None:
            sub += " Agreement could not be computed; the gate counts it as 0."
        if not gate.evaluated:
            sub += " Not reached: the count gate closed first."
        lows = [0.0, gate.threshold] + ([gate.ci[0]] if gate.ci else [])
        lows += [gate.value] if gate.value is not None else []
        meter = _meter(gate, low=min(*lows, 0.0), high=1.0)
    return (
        f'<div class="gate"><div class="head"><span class="name">{esc(gate.name)}</span>'
        f'<span class="pill {pill}">{esc(gate.status)}</span></div>'
        f'<div class="num">{num}</div>{meter}<div class="sub">{esc(sub.strip())}</div></div>'
    )


def gates_section(data: ReportData) -> str:
    """Both gates with value, threshold and CI, then the round's counts."""
    count, agreement = data.gates()
    q = data.quality
    facts = kpis(
        [
            ("items labeled", fmt(integer(q.get("labeled_items")))),
            ("annotations", fmt(data.annotations)),
            ("annotators", fmt(data.annotator_count)),
            ("all agree", pct(q.get("all_agree_rate"))),
            ("ties", fmt(integer(q.get("ties")))),
            ("sent to review", fmt(integer(q.get("review_items")))),
            ("bad records", fmt(integer(q.get("bad_records")))),
            ("consolidation", str(q.get("consolidation_method") or "n/a")),
            ("min confidence", fmt(q.get("min_confidence"), ".2f")),
        ]
    )
    cards = _gate_card(count) + _gate_card(agreement)
    body = f'<div class="gates">{cards}</div><h3>This round</h3>{facts}'
    return section(
        "gates",
        "Gates",
        "Training runs only when there are enough consolidated labels and the annotators agree.",
        body,
    )


def agreement_section(data: ReportData) -> str:
    """Overall metrics, per-class bars and pairwise heatmaps."""
    q = data.quality
    parts: list[str] = []
    warn: list[str] = []
    if data.no_labels:
        warn.append("No annotations this round: there is no agreement to measure.")
    if data.single_annotator:
        warn.append("Only one annotator: inter-annotator agreement needs at least two.")
    if data.single_class:
        warn.append(
            "Only one class: chance-corrected agreement (alpha, kappa) is undefined when every"
            " answer is the same class."
        )
    parts.append(notes(warn))
    metrics = q.get("metrics")
    rows: list[list[str]] = []
    if isinstance(metrics, dict) and metrics:
        for name, value in metrics.items():
            label = f"<b>{esc(name)}</b> (gate)" if name == data.agreement_metric else esc(name)
            rows.append([label, fmt(value)])
    else:
        rows.append([f"<b>{esc(data.agreement_metric)}</b> (gate)", fmt(data.agreement)])
        if "all_agree_rate" in q:
            rows.append(["all_agree_rate", fmt(q.get("all_agree_rate"))])
    if data.agreement_ci is not None:
        lo, hi = data.agreement_ci
        rows.append([f"{esc(data.agreement_metric)} 95% CI", f"[{fmt(lo)}, {fmt(hi)}]"])
    left = "<h3>Overall</h3>" + table(["metric", "value"], rows, numeric=(1,))
    per_class = q.get("per_class_agreement")
    right = ""
    if isinstance(per_class, dict) and per_class:
        names = [str(k) for k in per_class]
        values = np.array(
            [number(v) if number(v) is not None else np.nan for v in per_class.values()]
        )
        caption = ""
        if len(names) > MAX_CLASSES_PLOTTED:
            # The weakest classes are the ones worth a look (NaN sorts last).
            keep = np.sort(np.argsort(values, kind="stable")[:MAX_CLASSES_PLOTTED])
            caption = (
                f"The {MAX_CLASSES_PLOTTED} classes with the lowest agreement of {len(names)}."
            )
            names, values = [names[i] for i in keep], values[keep]
        right = _plot(
            lambda: plots.bar_png(
                names,
                values,
                title="Agreement per class",
                xlabel="per-class agreement",
                limits=(min(0.0, float(np.nanmin(values, initial=0.0))), 1.0),
            ),
            "Agreement per class",
            caption,
        )
    elif not data.no_labels:
        right = notes(["Per-class agreement is not in the quality artifact."])
    parts.append(f'<div class="grid2"><div>{left}</div><div>{right}</div></div>')
    pairwise = q.get("pairwise")
    if isinstance(pairwise, dict) and isinstance(pairwise.get("annotators"), list):
        ids = [str(a) for a in pairwise["annotators"]]
        figures = []
        for key, title, vmin, cmap in (
            ("agreement", "Pairwise agreement (share of shared items)", 0.0, "Blues"),
            ("cohen_kappa", "Pairwise Cohen's kappa", -0.2, "PuBu"),
        ):
            values_m = matrix(pairwise.get(key))
            if values_m is None or values_m.shape != (len(ids), len(ids)):
                continue
            figures.append(
                _plot(
                    functools.partial(
                        plots.heatmap_png,
                        values_m,
                        row_labels=ids,
                        col_labels=ids,
                        title=title,
                        vmin=vmin,
                        vmax=1.0,
                        cmap=cmap,
                    ),
                    title,
                    "Grey cells: no items in common (or the annotator with itself).",
                )
            )
        if len(ids) < 2:
            parts.append(notes(["Pairwise agreement needs at least two annotators."]))
        elif figures:
            parts.append(f'<div class="grid2">{"".join(figures)}</div>')
    elif not data.single_annotator:
        parts.append(notes(["Pairwise agreement is not in the quality artifact."]))
    return section(
        "agreement",
        "Agreement",
        "How consistently annotators gave the same answer, overall, per class and per pair.",
        "".join(parts),
    )


def annotators_section(data: ReportData) -> str:
    """The per-annotator table and confusion matrices."""
    entries = data.quality.get("annotator_table")
    if not isinstance(entries, list) or not entries:
        msg = (
            "No annotators this round."
            if data.no_labels
            else "The per-annotator table is not in the quality artifact."
        )
        return section("annotators", "Annotators", "Who labeled well.", notes([msg]))
    rows = [e for e in entries if isinstance(e, dict)]
    flagged = [r for r in rows if r.get("flagged")]
    head = ["annotator", "annotations", "estimated accuracy", "gold score", "flag"]
    body = []
    for r in rows:
        acc = number(r.get("accuracy"))
        bar = ""
        if acc is not None:
            low = " low" if r.get("flagged") else ""
            bar = f'<span class="bar{low}" style="width:{acc * 80:.0f}px"></span>'
        gold = number(r.get("gold_accuracy"))
        gold_items = integer(r.get("gold_items")) or 0
        gold_text = (
            f"{fmt(gold)} <span class='muted'>({gold_items} gold)</span>"
            if gold is not None
            else "n/a"
        )
        flag = ""
        if r.get("flagged"):
            flag = f'<span class="pill flag">flagged</span> {esc(r.get("flag_reason", ""))}'
        body.append(
            [
                esc(r.get("annotator", "?")),
                fmt(integer(r.get("annotations"))),
                f"{bar}{fmt(acc)}",
                gold_text,
                flag,
            ]
        )
    classes = ["flagged" if r.get("flagged") else "" for r in rows]
    open_rows = ANNOTATOR_ROWS_OPEN
    html_rows = table(head, body[:open_rows], numeric=(1,), row_classes=classes[:open_rows])
    if len(body) > open_rows:
        rest = table(head, body[open_rows:], numeric=(1,), row_classes=classes[open_rows:])
        html_rows += (
            f"<details><summary>Show {len(body) - open_rows} more</summary>{rest}</details>"
        )
    lead = (
        f"{len(rows)} annotator(s), {len(flagged)} flagged. Estimated accuracy comes from the"
        " consolidation model; the gold score from items with a known answer."
    )
    parts = [html_rows]
    labels = data.labels
    with_cm: list[tuple[dict[str, Any], np.ndarray]] = []
    for r in rows:
        m = matrix(r.get("confusion"))
        if m is not None and labels and m.shape == (len(labels), len(labels)):
            with_cm.append((r, m))
    if with_cm:
        # Flagged first, then the least accurate: the ones worth a look.
        with_cm.sort(
            key=lambda rm: (not rm[0].get("flagged"), number(rm[0].get("accuracy")) or 0.0)
        )
        shown = with_cm[:MAX_ANNOTATOR_MATRICES]
        more = len(with_cm) - len(shown)
        caption = (
            "Rows: true class (estimated); columns: the annotator's answer; each row sums to 1."
        )
        if more:
            caption += f" {more} more annotator(s) not drawn."
        parts.append("<h3>Confusion matrix per annotator</h3>")
        parts.append(
            _plot(
                lambda: plots.confusion_grid_png(
                    [row_normalize(m) for _, m in shown],
                    titles=[
                        f"{r.get('annotator', '?')} ({fmt(r.get('accuracy'), '.2f')})"
                        for r, _ in shown
                    ],
                    labels=labels,
                    highlight=[bool(r.get("flagged")) for r, _ in shown],
                ),
                "Confusion matrix per annotator",
                caption,
            )
        )
    return section("annotators", "Annotators", lead, "".join(parts))


def _answer_text(answer: dict[str, Any]) -> str:
    if "label" in answer:
        return str(answer["label"])
    if isinstance(answer.get("labels"), list):
        return ", ".join(str(v) for v in answer["labels"]) or "(none)"
    for key in ("boxes", "spans"):
        if isinstance(answer.get(key), list):
            return f"{len(answer[key])} {key}"
    return "?"


def _review_card(row: dict[str, Any], data: ReportData) -> str:
    item_id = str(row["item"])
    p = preview(item_id, data.items)
    if p.data_uri:
        cls = ' class="px"' if p.pixelated else ""
        thumb = f'<div class="thumb"><img{cls} alt="{esc(item_id)}" src="{p.data_uri}"></div>'
    elif p.snippet:
        thumb = f'<div class="snippet">{esc(p.snippet)}</div>'
    else:
        thumb = f'<div class="thumb none">{esc(p.note or "no preview")}</div>'
    raw_answers = row.get("annotations")
    answers: list[Any] = raw_answers if isinstance(raw_answers, list) else []
    chips = "".join(
        f'<span class="chip"><span class="who">{esc(a.get("annotator", "?"))}</span> '
        f"<b>{esc(_answer_text(a))}</b></span>"
        for a in answers
        if isinstance(a, dict)
    )
    if not chips:
        # No per-annotator answers: fall back to the vote counts.
        raw_votes = row.get("votes")
        votes: dict[str, Any] = raw_votes if isinstance(raw_votes, dict) else {}
        chips = "".join(
            f'<span class="chip vote">{esc(k)} <b>×{esc(v)}</b></span>'
            for k, v in sorted(votes.items(), key=lambda kv: -(number(kv[1]) or 0))
        )
    confidence = number(row.get("confidence"))
    conf = f" · confidence {fmt(confidence, '.2f')}" if confidence is not None else ""
    name = item_id.rstrip("/").rsplit("/", 1)[-1]
    return (
        f'<div class="rv">{thumb}<div class="info">'
        f"<div><b>{esc(row.get('reason', 'review'))}</b>"
        f'<span class="muted">{esc(conf)}</span></div>'
        f'<div class="chips">{chips or "<span class=muted>no answers</span>"}</div>'
        f'<div class="id" title="{esc(item_id)}">{esc(name)}</div></div></div>'
    )


def disagreements_section(data: ReportData) -> str:
    """The review items: preview, reason and every answer."""
    if not data.review:
        msg = "No items were sent to review."
        if data.no_labels:
            msg = "No items were labeled, so none were sent to review."
        return section(
            "disagreements", "Disagreements", "Items a person should look at.", notes([msg])
        )
    shown = data.review[:MAX_REVIEW_ITEMS]
    cards = [_review_card(row, data) for row in shown]
    reasons: dict[str, int] = {}
    for row in data.review:
        key = str(row.get("reason", "review"))
        reasons[key] = reasons.get(key, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    lead = (
        f"{len(data.review)} item(s) sent to review ({summary}),"
        " each with every annotator's answer."
    )
    body = f'<div class="reviews">{"".join(cards[:REVIEW_ITEMS_OPEN])}</div>'
    if len(cards) > REVIEW_ITEMS_OPEN:
        # <details> folds the rest natively: no script needed.
        body += (
            f"<details><summary>Show {len(cards) - REVIEW_ITEMS_OPEN} more</summary>"
            f'<div class="reviews">{"".join(cards[REVIEW_ITEMS_OPEN:])}</div></details>'
        )
    more = len(data.review) - len(shown)
    if more:
        body += notes([f"{more} more item(s) are in the review artifact."])
    return section("disagreements", "Disagreements", lead, body)


def active_learning_section(data: ReportData) -> str:
    """How the batch was chosen: score histogram and predicted class mix."""
    s = data.selection
    if not s:
        return section(
            "active-learning",
            "Active learning",
            "How this round's batch was chosen.",
            notes(["The selection summary is missing."]),
        )
    cold = bool(s.get("cold_start"))
    facts = kpis(
        [
            ("strategy", str(s.get("strategy", "n/a"))),
            ("pool", fmt(integer(s.get("pool")))),
            ("selected", fmt(integer(s.get("selected")))),
            ("bad records", fmt(integer(s.get("bad_records")))),
        ]
    )
    warn = []
    if cold:
        warn.append(
            "Cold start: no model yet, so the batch is a seeded random sample and has no"
            " uncertainty scores or predicted classes."
        )
    figures = []
    hist = s.get("score_histogram")
    if isinstance(hist, dict) and not cold:
        counts = np.array([number(c) or 0.0 for c in hist.get("counts", [])])
        edges = np.array([number(e) or 0.0 for e in hist.get("edges", [])])
        if len(counts) and len(edges) == len(counts) + 1:
            figures.append(
                _plot(
                    lambda: plots.histogram_png(
                        counts,
                        edges,
                        title="Uncertainty of the selected items",
                        xlabel="score (higher = the model is less sure)",
                    ),
                    "Score histogram",
                )
            )
    mix = s.get("predicted_class_mix")
    if isinstance(mix, dict) and mix:
        names = [str(k) for k in mix]
        # Counts: anything that is not a finite non-negative number counts as none.
        given = [number(v) for v in mix.values()]
        values = np.array([c if c is not None and 0.0 <= c < math.inf else 0.0 for c in given])
        caption = ""
        if len(names) > MAX_CLASSES_PLOTTED:
            keep = np.sort(np.argsort(-values, kind="stable")[:MAX_CLASSES_PLOTTED])
            caption = f"The {MAX_CLASSES_PLOTTED} most frequent of {len(names)} classes."
            names, values = [names[i] for i in keep], values[keep]
        figures.append(
            _plot(
                lambda: plots.column_png(
                    names, values, title="Predicted class of the selected items", ylabel="items"
                ),
                "Class mix",
                caption,
            )
        )
    elif not cold:
        warn.append("The selected batch has no predicted class mix.")
    body = facts + notes(warn) + (f'<div class="grid2">{"".join(figures)}</div>' if figures else "")
    return section(
        "active-learning",
        "Active learning",
        "How this round's batch was chosen from the unlabeled pool.",
        body,
    )


def model_section(data: ReportData) -> str:
    """Held-out metrics, per-class scores and the confusion matrix."""
    o = data.outcome
    if not data.trained:
        return section(
            "model",
            "Model",
            "The model trained on every consolidated label so far.",
            notes([f"No model this round: {data.reason or 'training did not run'}."]),
        )
    labels = [str(v) for v in o.get("labels", [])] if isinstance(o.get("labels"), list) else []
    cm = matrix(o.get("confusion_matrix"))
    facts = kpis(
        [
            ("held-out accuracy", fmt(o.get("accuracy"))),
            ("train items", fmt(integer(o.get("train_items")))),
            ("test items", fmt(integer(o.get("test_items")))),
        ]
    )
    body = facts
    if cm is not None and labels and cm.shape == (len(labels), len(labels)):
        scores = class_scores(cm)
        rows = [
            [esc(name), fmt(p, ".2f"), fmt(r, ".2f"), fmt(f, ".2f"), fmt(integer(n))]
            for name, p, r, f, n in zip(
                labels,
                scores["precision"],
                scores["recall"],
                scores["f1"],
                scores["support"],
                strict=True,
            )
        ]
        per_class = table(
            ["class", "precision", "recall", "F1", "support"], rows, numeric=(1, 2, 3, 4)
        )
        figure = _plot(
            lambda: plots.heatmap_png(
                cm,
                row_labels=labels,
                col_labels=labels,
                title="Confusion matrix (held-out)",
                xlabel="predicted",
                ylabel="consolidated label",
                vmax=max(1.0, float(np.nanmax(cm))),
                fmt=".0f",
                colorbar="items",
            ),
            "Model confusion matrix",
        )
        body += f'<div class="grid2"><div>{per_class}</div><div>{figure}</div></div>'
    else:
        body += notes(["The training outcome carries no confusion matrix."])
    return section(
        "model", "Model", "Evaluated on a held-out split of the consolidated labels.", body
    )


def _labels_used(rounds: Sequence[dict[str, Any]]) -> np.ndarray:
    """Labels behind each round: train+test items when a model was trained, else the last
    trained round's count plus the labels gathered since (what the next model would use)."""
    out = []
    running = 0.0
    for r in rounds:
        used = number(r.get("labels_used"))
        if used is None and number(r.get("train_items")) is not None:
            used = (number(r.get("train_items")) or 0.0) + (number(r.get("test_items")) or 0.0)
        if used is not None and r.get("trained"):
            running = used
        else:
            running += number(r.get("label_count")) or 0.0
        out.append(running)
    return np.array(out, dtype=float)


def rounds_section(data: ReportData) -> str:
    """Labels used against model accuracy, one point per round."""
    rounds = data.rounds
    if not rounds:
        return section(
            "rounds", "Across rounds", "One point per round.", notes(["No rounds recorded."])
        )
    used = _labels_used(rounds)
    accuracy = np.array(
        [number(r.get("accuracy")) if r.get("trained") else None for r in rounds], dtype=float
    )
    names = [f"r{i}" for i in range(1, len(rounds) + 1)]
    current = next(
        (i for i, r in enumerate(rounds) if r.get("run_id") == data.run_id), len(rounds) - 1
    )
    figure = _plot(
        lambda: plots.rounds_png(used, accuracy, names=names, current=current),
        "Model accuracy across rounds",
        "Each point is one round; the circled point is this run.",
    )
    rows = []
    for i, r in enumerate(rounds):
        this = " <b>(this run)</b>" if i == current else ""
        rows.append(
            [
                f"{names[i]}{this}",
                esc(str(r.get("finished_at", ""))[:19].replace("T", " ")),
                fmt(integer(r.get("label_count"))),
                fmt(r.get("agreement")),
                fmt(integer(used[i])),
                fmt(r.get("accuracy")) if r.get("trained") else "–",
                esc(r.get("reason", "")),
            ]
        )
    tbl = table(
        ["round", "finished (UTC)", "labels", "agreement", "labels used", "accuracy", "outcome"],
        rows,
        numeric=(2, 3, 4, 5),
    )
    lead = (
        f"{len(rounds)} round(s) recorded in the loop's state: is more labeling still paying off?"
    )
    if len(rounds) == 1:
        lead += " The first round has no trend yet."
    return section(
        "rounds",
        "Across rounds",
        lead,
        f"{figure}<details open><summary>Rounds table</summary>{tbl}</details>",
    )


def _verdict(data: ReportData) -> str:
    """The banner: trained or not, and why."""
    if data.trained:
        acc = number(data.outcome.get("accuracy"))
        extra = f" Held-out accuracy <b>{fmt(acc)}</b>." if acc is not None else ""
        return (
            '<div class="verdict ok"><span class="icon">✔</span><div><b>Model trained.</b> '
            f"{esc(data.reason)}.{extra}</div></div>"
        )
    return (
        '<div class="verdict no"><span class="icon">⚠</span><div><b>No model this round.</b> '
        f"Gate closed: {esc(data.reason or 'unknown reason')}.</div></div>"
    )


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


def render_html(data: ReportData, *, now: dt.datetime | None = None) -> str:
    """The whole report page."""
    when = (now or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC")
    task = data.quality.get("task_type") or ""
    meta = f"run {esc(data.run_id)} · {esc(when)}" + (f" · {esc(task)}" if task else "")
    nav = "".join(f'<a href="#{a}">{esc(t)}</a>' for a, t in SECTIONS)
    body = "".join(
        [
            _verdict(data),
            notes(input_notes(data)),
            gates_section(data),
            agreement_section(data),
            annotators_section(data),
            disagreements_section(data),
            active_learning_section(data),
            model_section(data),
            rounds_section(data),
        ]
    )
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>labelloop run report · {esc(data.run_id)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><div class="inner"><h1>labelloop run report</h1>'
        f'<div class="meta">{meta}</div><nav>{nav}</nav></div></header>'
        f"<main>{body}<footer>Generated by labelloop · self-contained page, no scripts, no"
        " network.</footer></main></body></html>\n"
    )
