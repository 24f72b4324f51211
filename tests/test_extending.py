"""docs/extending.md's walkthroughs, run: each common change made in as few files as it claims.

- a strategy: one decorated function, anywhere imported before the config is loaded;
- a provider: one registered class with its options;
- a task type with an existing shape: one line in `TaskType` (done here on a copy of the package);
- a gate rule: `labelloop.gates.decide` (its tests pin today's rule).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from labelloop.config import load_config
from labelloop.errors import ConfigError, InputError
from labelloop.providers.base import CollectResult, Job, LabelingTask, Progress, job_key
from labelloop.schemas import Annotation, Item, TaskType
from tests.conftest import ROOT

NEW_TASK_LINE = """    TEXT_MULTILABEL_CLASSIFICATION = (
        "text_multilabel_classification",
        Modality.TEXT,
        Shape.MULTI,
        "text_classification_multi_label_io_format_1.0.0.yaml",
    )
"""

WALKTHROUGH = textwrap.dedent(
    """
    import json, pathlib, sys
    from labelloop.schemas import Annotation, Item, TaskType
    from labelloop.annotations import read_annotations
    from labelloop.providers.base import LabelingTask
    from labelloop.providers.label_studio import _task_from_config
    from labelloop.providers.label_studio_format import from_result, labeling_config, to_result
    from labelloop.providers.simulated import SimulatedWorkforce
    from labelloop.training.targets import trainer
    from labelloop.vertex_labels import _annotation

    tmp = pathlib.Path(sys.argv[1])
    task = TaskType.parse("text_multilabel_classification")
    labels = ("sports", "politics", "tech")
    # The Label Studio project config, and the task type read back from it.
    config = labeling_config(task, labels)
    assert 'choice="multiple"' in config and "<Text " in config, config
    assert _task_from_config(config) == (task, labels)
    answer = frozenset({"sports", "tech"})
    assert from_result(task, to_result(task, answer), frozenset(labels)) == answer
    # The simulated workforce answers with label sets.
    items = [Item(f"text:{i}", text=f"item {i}") for i in range(30)]
    truth = {it.id: "sports|tech" if i % 2 else "politics" for i, it in enumerate(items)}
    sim = SimulatedWorkforce(truth, workforce="expert", seed=1)
    got = sim.collect(sim.submit(items, LabelingTask(task, labels), labelers_per_item=3))
    assert not got.bad, got.bad
    assert all(isinstance(a.value, frozenset) for a in got.annotations)
    # The long-format file round-trips through the validating reader.
    path = tmp / "annotations.jsonl"
    path.write_text("".join(json.dumps(a.to_json(task)) + "\\n" for a in got.annotations))
    read = read_annotations(str(path), task_type=task, labels=list(labels))
    assert not read.bad and len(read.annotations) == len(got.annotations)
    # Vertex import records, and which target trains it.
    assert "classificationAnnotations" in _annotation({"label": ["tech"]}, task)
    assert task.import_schema_uri.endswith("text_classification_multi_label_io_format_1.0.0.yaml")
    print(json.dumps({"portable": trainer(task, target="portable"),
                      "vertex": trainer(task, target="vertex")}))
    """
)


def test_a_task_type_with_an_existing_shape_is_one_line(tmp_path: Path) -> None:
    import shutil

    package = tmp_path / "src" / "labelloop"
    shutil.copytree(ROOT / "src" / "labelloop", package)
    schemas = package / "schemas.py"
    text = schemas.read_text(encoding="utf-8")
    anchor = "\n    @classmethod\n    def parse("
    assert anchor in text
    schemas.write_text(text.replace(anchor, "\n" + NEW_TASK_LINE + anchor, 1), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-c", WALKTHROUGH, str(tmp_path)],
        env={"PYTHONPATH": str(tmp_path / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    # Nothing trains label sets of text yet: both targets refuse it, at config load.
    assert result.stdout.strip().splitlines()[-1] == '{"portable": null, "vertex": null}'


# --- A labeling provider: one registered class with its options ------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class EchoOptions:
    """Args:
    answer: The label every annotator gives.
    annotators: How many annotators answer each item.
    """

    answer: str
    annotators: int = 2

    def validate(self, field: str) -> None:
        if self.annotators < 1:
            raise InputError("must be at least 1", field=f"{field}.annotators")


class EchoProvider:
    """Every annotator answers `answer`: the smallest provider there is."""

    name = "echo"
    # Jobs live as long as the process (a real provider keeps them at the tool).
    jobs: dict[str, list[Item]] = {}  # noqa: RUF012

    def __init__(self, options: EchoOptions) -> None:
        self.options = options

    @classmethod
    def from_options(cls, options: EchoOptions) -> EchoProvider:
        return cls(options)

    def submit(
        self,
        items: Sequence[Item],
        task: LabelingTask,
        *,
        labelers_per_item: int,
        instructions: str = "",
    ) -> Job:
        key = job_key(self.name, items, task, labelers_per_item)
        self.jobs[key] = list(items)
        return Job(self.name, key, key, len(items), labelers_per_item)

    def progress(self, job: Job) -> Progress:
        return Progress(job.items, job.items)

    def collect(self, job: Job) -> CollectResult:
        who = [f"echo-{i}" for i in range(self.options.annotators)]
        items = self.jobs[job.key]
        return CollectResult(
            [Annotation(i.id, w, self.options.answer) for i in items for w in who], []
        )

    def cancel(self, job: Job) -> None:
        self.jobs.pop(job.key, None)


@pytest.fixture
def echo_provider() -> Iterator[str]:
    from labelloop.providers import registry

    registry.register("echo", options=EchoOptions)(EchoProvider)
    yield "echo"
    registry._REGISTRY.pop("echo")


def test_a_registered_provider_is_checked_by_the_config_and_runs_the_labeling_step(
    echo_provider: str, tmp_path: Path
) -> None:
    from labelloop.stages.run_labeling_job import run_labeling_job

    text = (
        "pipeline:\n  source_uri: gs://my-bucket/raw\n  labels: [cat, dog]\n"
        f"  provider: {echo_provider}\n  provider_options:\n    answer: cat\n    annotatorz: 3\n"
    )
    path = str(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match="did you mean 'annotators'"):
        load_config(path, text=text)
    params = load_config(path, text=text.replace("annotatorz", "annotators")).pipeline
    items = [Item(f"gs://b/{i}.png", uri=f"gs://b/{i}.png") for i in range(4)]
    items_uri = tmp_path / "items.jsonl"
    task = TaskType.IMAGE_CLASSIFICATION
    items_uri.write_text("".join(json.dumps(i.to_import_record(task)) + "\n" for i in items))
    run_labeling_job(
        items_uri=str(items_uri),
        task_type=params.task_type,
        labels=params.labels,
        provider=params.provider,
        provider_options=params.provider_options,
        labelers_per_item=3,
        annotations_uri=str(tmp_path / "annotations.jsonl"),
        job_uri=str(tmp_path / "job.json"),
        rejects_uri=str(tmp_path / "rejects.jsonl"),
    )
    rows = [json.loads(x) for x in (tmp_path / "annotations.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 3
    assert {r["label"] for r in rows} == {"cat"}
    assert {r["annotator"] for r in rows} == {"echo-0", "echo-1", "echo-2"}
