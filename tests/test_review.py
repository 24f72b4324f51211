"""Review projects: the review file goes to a provider, reviewers' corrections come back and
decide their items in the next round's consolidation (the simulated reviewer; Label Studio's
review project is tested against the real server in test_provider_label_studio.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from labelloop import relabel, review, state, storage
from labelloop.cli import main
from labelloop.errors import InputError
from labelloop.gates import GatePolicy
from labelloop.providers.base import review_note
from labelloop.providers.registry import get_reviewer
from labelloop.providers.simulated import REVIEWER
from labelloop.stages.quality_gate import quality_gate

LABELS = ["cat", "dog", "fox"]


def _gate(tmp_path: Path, rows: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    ann = tmp_path / f"{name}-ann.jsonl"
    storage.write_jsonl(str(ann), rows)
    quality_gate(
        annotations_uri=str(ann),
        task_type="image_classification",
        labels=",".join(LABELS),
        consolidation_method="mv",
        agreement_metric="krippendorff_alpha",
        min_confidence=0.7,
        state_uri=str(tmp_path / "state"),
        consolidated_uri=str(tmp_path / f"{name}-cons.jsonl"),
        review_uri=str(tmp_path / f"{name}-review.jsonl"),
        metrics_uri=str(tmp_path / f"{name}-quality.json"),
        rejects_uri=str(tmp_path / f"{name}-rej.jsonl"),
        policy=GatePolicy(min_labeled_count=1, min_agreement=0.0),
    )
    return [json.loads(x) for x in (tmp_path / f"{name}-cons.jsonl").read_text().splitlines()]


def _answers(items: range, wrong: set[int]) -> list[dict[str, Any]]:
    """Three people; on `wrong` items two of them agree on the wrong label (1 right)."""
    rows = []
    for i in items:
        right, bad = LABELS[i % 3], LABELS[(i + 1) % 3]
        given = [bad, bad, right] if i in wrong else [right, right, bad if i % 4 == 0 else right]
        rows += [
            {"item": f"i{i}", "annotator": f"p{k}", "annotator_kind": "human", "label": lab}
            for k, lab in enumerate(given)
        ]
    return rows


def test_review_push_pull_and_the_corrections_decide_the_next_round(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth = tmp_path / "truth.csv"
    truth.write_text("item,label\n" + "".join(f"i{i},{LABELS[i % 3]}\n" for i in range(20)))
    stt = str(tmp_path / "state")
    first = _gate(tmp_path, _answers(range(12), wrong={1, 5}), "r1")
    assert {r["item"]: r["label"] for r in first}["i1"] == LABELS[2]  # two wrong answers won
    review_file = tmp_path / "r1-review.jsonl"
    queued = [json.loads(x)["item"] for x in review_file.read_text().splitlines()]
    assert {"i1", "i5"} <= set(queued)  # 2 of 3: below min_confidence, to review
    options = json.dumps({"truth_uri": str(truth)})
    push = ["review", "push", str(review_file), "--provider", "simulated", "--options", options]
    push += ["--task-type", "image_classification", "--labels", ",".join(LABELS), "--state", stt]
    assert main(push) == 0
    assert main(push) == 0  # a retry: the same job, nothing twice
    assert len(review.jobs(stt)) == 1
    assert "review project for" in capsys.readouterr().out
    # Nobody answered yet: the pending relabel requests still stand.
    assert {"i1", "i5"} <= {r["item"] for r in relabel.pending(stt)}

    # The next run's reconcile step collects the reviewers' answers by itself ...
    from labelloop.stages.reconcile import reconcile

    pulled = reconcile(
        state_uri=stt, provider="simulated", provider_options=options, max_job_age_hours=0,
        run_id="run-2", summary_uri=str(tmp_path / "reconcile.json"),
    )  # fmt: skip
    assert pulled.review_answers == len(queued)
    # ... and `review pull` does the same by hand (here also writing them out).
    assert main(["review", "pull", "--state", stt, "--out", str(tmp_path / "expert.jsonl")]) == 0
    expert = [json.loads(x) for x in (tmp_path / "expert.jsonl").read_text().splitlines()]
    assert {(r["annotator"], r["annotator_kind"]) for r in expert} == {(REVIEWER, "expert")}
    assert "reviewer answer(s)" in capsys.readouterr().out
    # A reviewed item is settled: it is not sent back for more labels.
    assert not {"i1", "i5"} & {r["item"] for r in relabel.pending(stt)}

    # Round 2 labels new items; the reviewed items of round 1 are consolidated again, with the
    # reviewer's answer deciding them.
    second = {r["item"]: r for r in _gate(tmp_path, _answers(range(12, 20), wrong=set()), "r2")}
    for item in ("i1", "i5"):
        row = second[item]
        assert (row["label"], row["source"], row["confidence"]) == (
            LABELS[int(item[1:]) % 3], "expert", 1.0,
        )  # fmt: skip
        assert row["reviewed_by"] == [REVIEWER]
        assert row["votes"]  # the earlier answers are kept alongside
    assert state.latest_labels(stt)["i1"]["label"] == LABELS[1]
    # A third round does not consolidate them again: the latest label already has the review.
    third = _gate(tmp_path, _answers(range(20, 24), wrong=set()), "r3")
    assert not {"i1", "i5"} & {r["item"] for r in third}


def test_a_provider_without_review_projects_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot host review projects; use one of") as err:
        get_reviewer("import", {"uri": str(tmp_path / "a.jsonl")})
    assert "label_studio" in str(err.value)


def test_review_note_says_what_to_check() -> None:
    row = {
        "item": "x", "label": "dog", "confidence": 0.52, "reasons": ["disagreement"],
        "annotations": [
            {"annotator": "ann1", "label": "dog", "annotator_kind": "human"},
            {"annotator": "gemini:flash", "label": "cat", "annotator_kind": "model"},
            {"annotator": "ann9", "label": "dog", "flagged": True},
        ],
    }  # fmt: skip
    assert review_note(row) == (
        "Consolidated: dog (confidence 0.52) · Answers: ann1: dog; gemini:flash: cat (model);"
        " ann9: dog (flagged) · Why: disagreement"
    )
