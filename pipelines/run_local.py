"""Run the labeling pipeline on this machine with kfp.local, one or more rounds.

kfp.local prints ~50 lines per task; those go to `runs/<timestamp>/kfp.log` and the console
gets one line per stage. Outputs stay under `runs/<timestamp>/` (kfp.local deletes its own
workspace after each run, but not the pipeline root we give it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import io
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from labelloop import lease, storage
from labelloop.config import Config
from labelloop.quality.result import QualityResult
from labelloop.sample_data import SAMPLE_SCHEME, read_truth, resolve_sample, supplied_options
from pipelines.job_lines import job_line, labelloop_command, open_job_lines

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_START = re.compile(r"Executing task '([^']+)'")
_END = re.compile(r"Task '([^']+)' finished with status (\w+)")
# The labeling step's log lines: where the job is, and how far while it waits for people.
_JOB = re.compile(r"labeling job: (.+)$")
_WAITING = re.compile(r"labeling: (\d+)/(\d+) items done; waiting (\d+) s")

# The numbers worth a glance, per task (the rest is in the artifacts).
KEY_OUTPUTS: dict[str, tuple[str, ...]] = {
    "generate-import-file": ("listed", "new_items", "already_imported", "bad_records"),
    "reconcile-jobs": ("open_jobs", "collected", "returned", "unreachable", "queued"),
    "select-for-labeling": ("pool_size", "selected_count", "strategy_used", "stop_reason"),
    "create-dataset": ("dataset_items",),
    "run-labeling-job": ("labeled_items", "annotation_count", "queued", "open_jobs", "cost_usd"),
    "quality-gate": ("label_count", "agreement", "decision", "bad_records"),
    "train-model": ("accuracy",),
    "record-gate-decision": ("Output",),
    "write-report": ("Output",),
}


@dataclasses.dataclass
class RoundSummary:
    """One row of the summary table."""

    round: int
    run_dir: str
    seconds: float
    status: str
    imported: int | None = None
    selected: int | None = None
    labeled: int | None = None
    agreement: float | None = None
    agreement_reason: str = ""
    consolidated_accuracy: float | None = None
    count_gate: str = ""
    agreement_gate: str = ""
    reason: str = ""
    model_accuracy: float | None = None
    eval_accuracy: float | None = None
    true_accuracy: float | None = None
    labels_used: int | None = None
    cost_usd: float | None = None
    spent_usd: float | None = None
    report: str = ""
    stop_reason: str = ""
    failure_report: str = ""


def task_outputs(run_dir: Path, task: str) -> dict[str, Any]:
    """A finished task's output parameters, read from its `executor_output.json`."""
    path = run_dir / task / "executor_output.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return dict(data.get("parameterValues", {}))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, str) and value.startswith("{"):
        with contextlib.suppress(json.JSONDecodeError):
            return str(json.loads(value).get("reason", value))
    return str(value)


class StageLines(io.TextIOBase):
    """A stdout stand-in: everything to the log file, one readable line per stage to the console."""

    def __init__(self, log_file: IO[str], console: IO[str], root: Path) -> None:
        self.log_file = log_file
        self.console = console
        self.root = root
        self.started: dict[str, float] = {}
        self.failed: list[str] = []
        self.reasons: dict[str, str] = {}
        self._task_lines: list[str] = []
        self._buffer = ""

    def writable(self) -> bool:
        return True

    def run_dir(self) -> Path | None:
        dirs = sorted(
            (p for p in self.root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime
        )
        return dirs[-1] if dirs else None

    def write(self, text: str) -> int:
        self.log_file.write(text)
        self._buffer += text
        while "\n" in self._buffer:
            line, self._buffer = self._buffer.split("\n", 1)
            self._line(_ANSI.sub("", line))
        return len(text)

    def flush(self) -> None:
        self.log_file.flush()
        self.console.flush()

    def _line(self, line: str) -> None:
        if m := _JOB.search(line):
            self.console.write(f"       job: {m.group(1)}\n")
            self.console.flush()
        elif m := _WAITING.search(line):
            self.console.write(
                f"  ..   {'run-labeling-job':<28}          waiting for people:"
                f" {m.group(1)}/{m.group(2)} items labeled, next look in {m.group(3)} s\n"
            )
            self.console.flush()
        elif m := _START.search(line):
            self.started[m.group(1)] = time.perf_counter()
            self._task_lines = []
        elif m := _END.search(line):
            task, status = m.group(1), m.group(2)
            seconds = time.perf_counter() - self.started.get(task, time.perf_counter())
            run_dir = self.run_dir()
            outputs = task_outputs(run_dir, task) if run_dir else {}
            keys = KEY_OUTPUTS.get(task, ())
            numbers = "  ".join(f"{k}={_fmt(outputs[k])}" for k in keys if k in outputs)
            mark = "ok  " if status == "SUCCESS" else "FAIL"
            self.console.write(f"  {mark} {task:<28} {seconds:6.2f}s  {numbers}\n")
            if status != "SUCCESS":
                self.failed.append(task)
                reason = failure_reason(run_dir, task, self._task_lines)
                self.reasons[task] = reason
                for text in reason.splitlines():
                    self.console.write(f"       {text}\n")
            elif task == "run-labeling-job" and run_dir is not None:
                for text in filter(None, [job_line(run_dir), *open_job_lines(run_dir)]):
                    self.console.write(f"       {text}\n")
            self.console.flush()
        else:
            self._task_lines.append(line)


_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+(?:Error|Exception|Exit)|ERROR\b|error:)")


def failure_reason(run_dir: Path | None, task: str, lines: Sequence[str]) -> str:
    """The failed task's own message: what it recorded (see `labelloop.failures`), else the
    first and last error lines of its output."""
    from labelloop.failures import failure_uri, read_failures

    if run_dir is not None and Path(failure_uri(str(run_dir), task)).is_file():
        for failure in read_failures(str(run_dir)):
            if failure.stage == task:
                return failure.headline()
    errors = [line.strip() for line in lines if _ERROR_LINE.match(line)]
    if not errors:
        return "(the step printed no error line)"
    first, last = errors[0], errors[-1]
    return first if first == last else f"{first}\n... {last}"


@contextlib.contextmanager
def _quiet_kfp(writer: StageLines) -> Iterator[None]:
    """Send kfp.local's prints and log records to `writer` (the log file) for the block."""
    root = logging.getLogger()
    saved = root.handlers[:]
    handler = logging.StreamHandler(writer)
    root.handlers = [handler]
    try:
        with contextlib.redirect_stdout(writer), contextlib.redirect_stderr(writer):
            yield
    finally:
        root.handlers = saved


@contextlib.contextmanager
def _temp_dir(folder: Path) -> Iterator[None]:
    """Point TMPDIR at `folder` for the block, then put it back.

    Each kfp.local task leaves a `mktemp -d` folder behind: keep them inside the run folder. Put
    back afterwards, so nothing else in the process (a browser's sockets, say) inherits it.
    """
    saved_env, saved_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(folder)
    tempfile.tempdir = str(folder)
    try:
        yield
    finally:
        tempfile.tempdir = saved_tempdir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env


def prepare(config: Config, *, cache_dir: Path) -> tuple[dict[str, Any], str | None]:
    """Pipeline parameter values with `sample://` resolved; also the truth file, if known."""
    params = config.pipeline.as_parameter_values()
    truth_uri: str | None = None
    options = json.loads(params["provider_options"] or "{}")
    if params["source_uri"].startswith(SAMPLE_SCHEME):
        sample = resolve_sample(params["source_uri"], cache_dir)
        params["source_uri"] = sample.source_uri
        truth_uri = sample.truth_uri
        for name in supplied_options(config.pipeline.source_uri, params["provider"]):
            options.setdefault(name, truth_uri)
    truth_uri = truth_uri or options.get("truth_uri")
    params["provider_options"] = json.dumps(options, sort_keys=True)
    return params, truth_uri


def read_quality(run_dir: Path) -> QualityResult:
    """The quality gate's recorded result (defaults when the task did not run)."""
    path = run_dir / "quality-gate" / "quality"
    if not path.is_file():
        return QualityResult()
    return QualityResult.from_json(json.loads(path.read_text(encoding="utf-8")))


def consolidated_accuracy(run_dir: Path, truth: dict[str, str]) -> float | None:
    """Share of consolidated labels that match the hidden truth."""
    path = run_dir / "quality-gate" / "consolidated"
    if not path.is_file():
        return None
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    # Ties carry no label (they go to review): judge the labels that were given.
    judged = [r for r in rows if r["item"] in truth and r.get("label") is not None]
    if not judged:
        return None
    return sum(truth[r["item"]] == r["label"] for r in judged) / len(judged)


def true_model_accuracy(state_uri: str, truth: dict[str, str]) -> float | None:
    """Accuracy of the state's latest model on every item with a hidden true label."""
    from labelloop import state
    from labelloop.schemas import Item
    from labelloop.training.model import LocalModel

    model_uri = state.path(state_uri, state.MODELS_LATEST)
    if not truth or not LocalModel.exists(model_uri):
        return None
    model = LocalModel.load(model_uri)
    items = [Item(id=k, uri=k) for k in sorted(truth)]
    predicted = model.predict_proba(items).argmax(axis=1)
    hits = sum(model.labels[j] == truth[i.id] for j, i in zip(predicted, items, strict=True))
    return hits / len(items)


def summarize_round(
    index: int,
    run_dir: Path,
    *,
    seconds: float,
    status: str,
    truth: dict[str, str],
    state_uri: str,
) -> RoundSummary:
    """Read a finished round's task outputs into a table row."""
    summary = RoundSummary(round=index, run_dir=str(run_dir), seconds=seconds, status=status)
    imp = task_outputs(run_dir, "generate-import-file")
    sel = task_outputs(run_dir, "select-for-labeling")
    lab = task_outputs(run_dir, "run-labeling-job")
    gate = task_outputs(run_dir, "quality-gate")
    summary.imported = imp.get("new_items")
    summary.selected = sel.get("selected_count")
    summary.labeled = lab.get("labeled_items")
    summary.cost_usd = lab.get("cost_usd")
    summary.stop_reason = str(sel.get("stop_reason") or "")
    quality = read_quality(run_dir)
    summary.agreement = quality.agreement
    summary.agreement_reason = quality.agreement_reason
    summary.consolidated_accuracy = consolidated_accuracy(run_dir, truth)
    decision = quality.decision
    if decision is not None:
        # The quality gate recorded the decision; the runner reads it, it does not re-derive it.
        summary.count_gate = "open" if decision.count_passed else "closed"
        summary.agreement_gate = (
            ("open" if decision.agreement_passed else "closed")
            if decision.agreement_evaluated
            else "-"
        )
        summary.reason = decision.reason
    elif gate:
        summary.reason = str(gate.get("outcome", ""))
    train = task_outputs(run_dir, "train-model")
    if train:
        outcome = json.loads(train["outcome"])
        summary.model_accuracy = train.get("accuracy")
        summary.eval_accuracy = outcome.get("eval_accuracy")
        summary.labels_used = int(outcome["train_items"]) + int(outcome["test_items"])
        summary.true_accuracy = true_model_accuracy(state_uri, truth)
        # Trained by a rule other than measured agreement (e.g. a policy): say which.
        by_policy = decision is not None and decision.rule.startswith("unmeasurable:")
        summary.reason = str(outcome["reason"]) + (
            f" ({decision.reason})" if by_policy and decision else ""
        )
    if summary.stop_reason:
        summary.reason = summary.stop_reason
    exit_outputs = task_outputs(run_dir, "write-failure-report")
    failure_page = run_dir / "write-failure-report" / "report"
    if exit_outputs.get("final_state") not in (None, "SUCCEEDED") and failure_page.is_file():
        page = run_dir / "failure-report.html"
        shutil.copyfile(failure_page, page)
        summary.failure_report = str(page)
    report = run_dir / "write-report" / "report"
    if report.is_file():
        # kfp names the artifact file `report`; browsers need the extension to render it.
        page = run_dir / "report.html"
        shutil.copyfile(report, page)
        summary.report = str(page)
    return summary


def _spent(params: dict[str, Any]) -> float | None:
    """What the loop has spent so far, priced from the ledger at the budget's rates."""
    from labelloop import accounting, costs
    from labelloop.ledger import Ledger

    if not params.get("state_uri"):
        return None
    rates = costs.parse_budget(str(params.get("budget") or "{}")).rates
    return accounting.spend(Ledger.load(str(params["state_uri"])), rates).total.total_usd


def format_table(rows: Sequence[RoundSummary]) -> str:
    """The summary table printed after the run."""
    head = (
        "round",
        "imported",
        "selected",
        "labeled",
        "agreement",
        "label acc",
        "count gate",
        "agree gate",
        "labels used",
        "model acc",
        "eval acc",
        "true acc",
        "cost $",
        "spent $",
        "reason",
        "secs",
    )

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    body = [
        (
            cell(r.round),
            cell(r.imported),
            cell(r.selected),
            cell(r.labeled),
            cell(r.agreement) if r.agreement is not None or not r.agreement_reason else "null",
            cell(r.consolidated_accuracy),
            r.count_gate or "-",
            r.agreement_gate or "-",
            cell(r.labels_used),
            cell(r.model_accuracy),
            cell(r.eval_accuracy),
            cell(r.true_accuracy),
            "-" if r.cost_usd is None else f"{r.cost_usd:.2f}",
            "-" if r.spent_usd is None else f"{r.spent_usd:.2f}",
            r.reason or r.status,
            f"{r.seconds:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True))
        for row in [head, *body]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run_local(
    config: Config,
    *,
    rounds: int,
    runs_dir: Path,
    cache_dir: Path,
    console: IO[str] = sys.stdout,
    pipeline: Callable[..., Any] | None = None,
    lease_wait_seconds: float = 0.0,
) -> tuple[Path, list[RoundSummary]]:
    """Run `rounds` rounds of the pipeline locally; each round selects with the last model.

    The run holds the state's lease throughout (its steps share it): a second run on the same
    `state_uri` waits up to `lease_wait_seconds`, then stops with `LeaseHeld` naming this one.
    A killed run's lease does not block the next run (its process is known to be gone).

    Returns:
        The run folder (`runs/<timestamp>/`) and one summary per round.
    """

    if pipeline is None:
        from pipelines.labeling_pipeline import labeling_pipeline

        pipeline = labeling_pipeline

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    run_root = (runs_dir / stamp).resolve()
    outputs = run_root / "outputs"
    tmp = run_root / "tmp"
    for folder in (outputs, tmp):
        folder.mkdir(parents=True, exist_ok=True)
    params, truth_uri = prepare(config, cache_dir=cache_dir)
    if not params["state_uri"]:
        params["state_uri"] = str(run_root / "state")
    truth = read_truth(truth_uri) if truth_uri and storage.exists(truth_uri) else {}
    holder = lease.Holder.here(f"local-{stamp}")
    lease.acquire(params["state_uri"], holder, wait_seconds=lease_wait_seconds)
    try:
        return _run_rounds(
            params, rounds=rounds, run_root=run_root, outputs=outputs, tmp=tmp, truth=truth,
            console=console, pipeline=pipeline,
        )  # fmt: skip
    finally:
        lease.release(params["state_uri"], holder)


def _run_rounds(
    params: dict[str, Any],
    *,
    rounds: int,
    run_root: Path,
    outputs: Path,
    tmp: Path,
    truth: dict[str, str],
    console: IO[str],
    pipeline: Callable[..., Any],
) -> tuple[Path, list[RoundSummary]]:
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(outputs),
        raise_on_error=True,
    )
    summaries: list[RoundSummary] = []
    log_path = run_root / "kfp.log"
    console.write(f"labelloop: {rounds} round(s), outputs in {run_root}\n")
    with log_path.open("a", encoding="utf-8") as log_file, _temp_dir(tmp):
        for index in range(1, rounds + 1):
            round_params = dict(params, seed=int(params["seed"]) + index - 1)
            console.write(f"round {index}/{rounds}\n")
            writer = StageLines(log_file, console, outputs)
            start = time.perf_counter()
            status = "ok"
            try:
                with _quiet_kfp(writer):
                    pipeline(**round_params)
            except RuntimeError as exc:
                failed = ", ".join(writer.failed) or _ANSI.sub("", str(exc))
                status = f"failed: {failed}"
                console.write(f"  round {index} failed in {failed}; full log: {log_path}\n")
            seconds = time.perf_counter() - start
            run_dir = writer.run_dir()
            if run_dir is None:
                break
            summaries.append(
                summarize_round(
                    index,
                    run_dir,
                    seconds=seconds,
                    status=status,
                    truth=truth,
                    state_uri=params["state_uri"],
                )
            )
            summaries[-1].spent_usd = _spent(params)
            if summaries[-1].report:
                console.write(f"  report: {summaries[-1].report}\n")
            if status != "ok":
                break
            if summaries[-1].stop_reason:
                console.write(f"  stopping: {summaries[-1].stop_reason}\n")
                break
    (run_root / "summary.json").write_text(
        json.dumps([dataclasses.asdict(s) for s in summaries], indent=2), encoding="utf-8"
    )
    console.write("\n" + format_table(summaries) + "\n")
    reports = [s for s in summaries if s.report]
    if reports:
        console.write("\n")
    for row in reports:
        name = "report:" if len(reports) == 1 else f"report {row.round}:"
        console.write(f"{name:<10}{row.report}\n")
    if summaries and summaries[-1].failure_report:
        console.write(f"\nfailure report: {summaries[-1].failure_report}\n")
    console.write(
        f"{'state:':<10}{labelloop_command()} state {params['state_uri']}"
        "   (items per state, open jobs, last runs)\n"
    )
    console.write(f"{'logs:':<10}{log_path}\n")
    return run_root, summaries
