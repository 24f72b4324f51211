"""The last stage: explain the run on one page (HTML + Markdown) and record the round."""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import logging
from typing import Any

from labelloop import state, storage

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReportResult:
    """The round's outcome as recorded in the state."""

    trained: bool
    reason: str
    accuracy: float | None
    label_count: int


def _read_json(uri: str) -> dict[str, Any]:
    if not uri or not storage.exists(uri):
        return {}
    data = json.loads(storage.read_text(uri))
    return data if isinstance(data, dict) else {}


def write_report(
    *,
    quality_uri: str,
    selection_uri: str,
    outcome: str,
    state_uri: str,
    run_id: str,
    min_labeled_count: int,
    min_agreement: float,
    html_uri: str,
    markdown_uri: str,
) -> ReportResult:
    """Write the report and record this round's outcome under `state_uri/rounds/`.

    Args:
        quality_uri: The quality gate's JSON.
        selection_uri: The selection summary JSON.
        outcome: The training outcome JSON (trained, or the closed gate and its reason).
        state_uri: The loop's state.
        run_id: The pipeline run id (names the round record, so a retry overwrites it).
        min_labeled_count: The count gate's threshold.
        min_agreement: The agreement gate's threshold.
        html_uri: Where to write the HTML page.
        markdown_uri: Where to write the Markdown summary.
    """
    quality = _read_json(quality_uri)
    selection = _read_json(selection_uri)
    result_outcome = json.loads(outcome)
    label_count = int(quality.get("label_count", 0))
    rows = [
        ("Items selected", selection.get("selected", 0)),
        ("Selection strategy", selection.get("strategy", "")),
        ("Labeled items", quality.get("labeled_items", 0)),
        ("Label count (gate)", f"{label_count} (min {min_labeled_count})"),
        (
            f"Agreement ({quality.get('agreement_metric', '')})",
            f"{quality.get('agreement', 0.0):.3f} (min {min_agreement:.3f})",
        ),
        ("Training", "ran" if result_outcome.get("trained") else "did not run"),
        ("Reason", result_outcome.get("reason", "")),
    ]
    if result_outcome.get("accuracy") is not None:
        rows.append(("Model accuracy (held-out)", f"{result_outcome['accuracy']:.3f}"))
    markdown = "# labelloop run report\n\n| | |\n|---|---|\n" + "".join(
        f"| {k} | {v} |\n" for k, v in rows
    )
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>labelloop run report</title>"
        "</head><body><h1>labelloop run report</h1><table>" + body + "</table></body></html>"
    )
    storage.write_text(html_uri, page)
    storage.write_text(markdown_uri, markdown)
    accuracy = result_outcome.get("accuracy")
    record = {
        "run_id": run_id,
        "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "label_count": label_count,
        "labeled_items": int(quality.get("labeled_items", 0)),
        "agreement": quality.get("agreement"),
        "trained": bool(result_outcome.get("trained")),
        "reason": result_outcome.get("reason", ""),
        "accuracy": accuracy,
        "train_items": result_outcome.get("train_items"),
    }
    if state_uri:
        storage.write_text(
            state.path(state_uri, state.ROUNDS, f"{run_id}.json"), json.dumps(record, sort_keys=True)
        )
    return ReportResult(
        trained=record["trained"],
        reason=str(record["reason"]),
        accuracy=None if accuracy is None else float(accuracy),
        label_count=label_count,
    )
