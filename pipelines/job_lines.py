"""What `run-local` prints about labeling after the labeling step: the round's job (provider,
name, URL, progress, Gemini's routing) and the ledger's open jobs, with the command that shows
the whole ledger. Read from the step's `job` record in the run folder.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path


def job_line(run_dir: Path) -> str:
    """The labeling job in one line: provider, name, URL, items labeled (or "" if unknown)."""
    path = run_dir / "run-labeling-job" / "job"
    if not path.is_file():
        return ""
    try:
        job = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return ""
    summary = job.get("provider_summary") or {}
    human = summary.get("human") or {}
    title = summary.get("title") or human.get("title") or job.get("external_id", "")
    url = summary.get("url") or human.get("url") or ""
    progress = job.get("progress") or {}
    state = "complete" if job.get("complete", True) else "open"
    where = f"{title} {url}".strip()
    line = (
        f"job: {job.get('provider', '?')} {where}  "
        f"{progress.get('labeled', '?')}/{progress.get('total', '?')} items labeled ({state})"
    )
    calibration = summary.get("calibration") or {}
    if calibration:
        precision = calibration.get("precision")
        line += (
            f"\n       gemini: auto-accept at confidence >= {calibration.get('threshold')}"
            f" (precision {'n/a' if precision is None else f'{precision:.1%}'} on"
            f" {calibration.get('sample', 0)} calibration items);"
            f" {summary.get('auto_accepted', '?')} by Gemini,"
            f" {summary.get('to_people', '?')} to people;"
            f" estimated cost ${(summary.get('gemini') or {}).get('cost_usd') or 0:.4f}"
        )
    return line


def _age(hours: float) -> str:
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.1f} h"


def labelloop_command() -> str:
    """How to type the `labelloop` command from here: the virtualenv's own script (relative when
    under the current folder, so it works in a fresh shell), else the bare name."""
    script = Path(sys.executable).parent / "labelloop"
    if not script.is_file():
        return "labelloop"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


def open_job_lines(run_dir: Path, *, most: int = 5) -> list[str]:
    """The ledger's open jobs after the labeling step (every round's), one line each, and the
    command that shows the whole ledger; [] when the step kept no ledger record."""
    path = run_dir / "run-labeling-job" / "job"
    try:
        ledger = json.loads(path.read_text(encoding="utf-8")).get("ledger") or {}
    except (OSError, json.JSONDecodeError, AttributeError):
        return []
    jobs = [j for j in ledger.get("open_jobs") or [] if isinstance(j, dict)]
    items = ledger.get("items") or {}
    state_uri = ledger.get("state_uri") or ""
    if not ledger:
        return []
    lines = [
        f"ledger: {len(jobs)} open job(s), {items.get('queued', 0)} item(s) queued,"
        f" {items.get('labeled', 0)} labeled, {items.get('pool', 0)} in the pool"
    ]
    for j in jobs[:most]:
        progress = j.get("progress") or {}
        lines.append(
            f"  {j.get('provider', '?')} {j.get('key', '?')}  round {j.get('round', '?')}"
            f"  {_age(float(j.get('age_hours') or 0.0))} old  {j.get('queued', '?')} queued"
            f"  {progress.get('labeled', 0)}/{progress.get('total', j.get('items', '?'))} labeled"
        )
    if len(jobs) > most:
        lines.append(f"  ... {len(jobs) - most} more")
    if state_uri:
        lines.append(f"  see: {labelloop_command()} state {state_uri}")
    return lines
