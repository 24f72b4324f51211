"""A failed step's own reason, recorded where the console and the failure report find it.

Each component runs its step inside `recorded(output_uri)`. If the step raises, the
reason (the message's first and last lines, the error type and the traceback's tail) is written
to `<run folder>/failures/<stage>.json` and the error goes on. The run folder is the parent of
the step's task folder: on kfp.local `<pipeline root>/<run>/<task>/<output>`, on Vertex AI
`<pipeline root>/<project number>/<job>/<task>_<id>/<output>`, so every task of a run (and the
exit handler's failure report) agrees on it without a new parameter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import re
import traceback
from collections.abc import Iterator
from typing import Any

from labelloop import storage

log = logging.getLogger(__name__)

FAILURES = "failures"
TRACEBACK_LINES = 40

# What each stage changes in the loop's state, in pipeline order (task names as KFP makes them).
# A failed stage made none of its own changes (state writes are whole-file and come last),
# and no later stage ran: the report lists these as left untouched.
STAGE_EFFECTS: tuple[tuple[str, str], ...] = (
    ("generate-import-file", "the list of imported items was not extended"),
    ("select-for-labeling", "no items were taken for labeling this round"),
    ("create-dataset", "no dataset was recorded for this round"),
    ("run-labeling-job", "no labels were collected or recorded (a rerun finds the same job)"),
    ("quality-gate", "no labels were consolidated or added to the training set"),
    ("train-model", "the current model stayed as it was (nothing was trained or replaced)"),
    ("write-report", "no run report was written for this round"),
)


@dataclasses.dataclass(frozen=True)
class Failure:
    """Why one step failed."""

    stage: str
    error_type: str
    message: str
    traceback: str
    time: str

    @property
    def first_line(self) -> str:
        lines = [line for line in self.message.splitlines() if line.strip()]
        return lines[0] if lines else self.error_type

    @property
    def last_line(self) -> str:
        lines = [line for line in self.message.splitlines() if line.strip()]
        return lines[-1] if lines else self.error_type

    def headline(self) -> str:
        """One or two lines a person reads first: the message's first and last lines."""
        first, last = self.first_line, self.last_line
        if self.error_type and not self.error_type.startswith("labelloop"):
            first = f"{self.error_type.rsplit('.', 1)[-1]}: {first}"
        return first if last in first else f"{first}\n... {last}"

    @classmethod
    def from_exception(cls, stage: str, exc: BaseException) -> Failure:
        kind = type(exc)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        lines = traceback.format_exception(kind, exc, exc.__traceback__)
        tail = "".join(lines).splitlines()[-TRACEBACK_LINES:]
        return cls(
            stage=stage,
            error_type=name,
            message=str(exc) or name,
            traceback="\n".join(tail),
            time=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_folder(output_uri: str) -> str:
    """The run's folder, from the URI of any output of any of its tasks."""
    task_folder = output_uri.rstrip("/").rsplit("/", 1)[0]
    return task_folder.rsplit("/", 1)[0]


def task_name(output_uri: str) -> str:
    """The task's name, from one of its outputs' URIs (Vertex AI appends `_<task id>`)."""
    folder = output_uri.rstrip("/").rsplit("/", 2)[-2]
    return re.sub(r"_\d+$", "", folder)


def failure_uri(run_dir: str, stage: str) -> str:
    return storage.join(run_dir, FAILURES, f"{stage}.json")


@contextlib.contextmanager
def recorded(output_uri: str) -> Iterator[None]:
    """Run the block; if it raises, record why under the run folder, then re-raise.

    Args:
        output_uri: The URI of one of the task's outputs: it names the task and the run folder.
    """
    try:
        yield
    except Exception as exc:
        stage = task_name(output_uri)
        failure = Failure.from_exception(stage, exc)
        try:
            storage.write_text(
                failure_uri(run_folder(output_uri), stage),
                json.dumps(failure.to_json(), indent=2, sort_keys=True),
            )
        except Exception:  # the original error matters more than a failed record of it
            log.exception("could not record the failure of %s", stage)
        log.error("%s failed: %s", stage, failure.headline())
        raise


def read_failures(run_dir: str) -> list[Failure]:
    """The failures recorded in a run folder, oldest first."""
    folder = storage.join(run_dir, FAILURES)
    if not storage.is_dir(folder):
        return []
    found: list[Failure] = []
    for uri in storage.iter_files(folder, suffixes=(".json",)):
        try:
            data = json.loads(storage.read_text(uri))
            found.append(
                Failure(**{f.name: str(data[f.name]) for f in dataclasses.fields(Failure)})
            )
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable failure record %s", uri)
    return sorted(found, key=lambda f: f.time)


# Tasks of the Vertex target that are not stages of their own: the stage they run within.
_ALIASES = {
    "vertex-task-plan": "generate-import-file",
    "latest-vertex-model": "select-for-labeling",
    "batch-predict-instances": "select-for-labeling",
    "model-batch-predict": "select-for-labeling",
    "labeled-import-file": "train-model",
    "image-dataset-create": "train-model",
    "text-dataset-create": "train-model",
    "automl-image-training-job": "train-model",
    "record-vertex-model": "train-model",
}


def left_untouched(failed_stage: str) -> list[str]:
    """What the loop's state did not get because `failed_stage` failed (and later ones did not
    run); every stage's effect when the stage is not known."""
    names = [name for name, _ in STAGE_EFFECTS]
    base = re.sub(r"-\d+$", "", failed_stage)
    base = _ALIASES.get(base, base)
    start = names.index(base) if base in names else 0
    return [effect for _, effect in STAGE_EFFECTS[start:]]
