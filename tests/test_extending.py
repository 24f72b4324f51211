"""docs/extending.md's walkthroughs, run: each common change made in as few files as it claims.

- a strategy: one decorated function, anywhere imported before the config is loaded;
- a provider: one registered class with its options;
- a task type with an existing shape: one line in `TaskType` (done here on a copy of the package);
- a gate rule: `labelloop.gates.decide` (its tests pin today's rule).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.conftest import ROOT

NEW_TASK_LINE = '''    TEXT_MULTILABEL_CLASSIFICATION = (
        "text_multilabel_classification",
        Modality.TEXT,
        Shape.MULTI,
        "text_classification_multi_label_io_format_1.0.0.yaml",
    )
'''

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
