"""`gemini_then_human` under a guarantee: certified threshold, audits to people, pause on drift.

The real google-genai client talks to the loopback fake of Vertex AI; people are simulated."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from labelloop import guarantee, storage
from labelloop.schemas import Item, TaskType
from labelloop.stages.run_labeling_job import run_labeling_job
from tests.servers import gemini_fake

LABELS = ("a", "b", "c")


def _uri(body: dict[str, Any]) -> str:
    data = body["contents"][0]["parts"][0]["fileData"]
    return str(data.get("fileUri", data.get("file_uri")))


@pytest.mark.server
def test_certified_auto_accept_with_audits_then_a_pause_on_drift(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 800
    uris = [f"gs://bucket/img{i:04d}.png" for i in range(n)]
    truth = {u: LABELS[i % 3] for i, u in enumerate(uris)}
    sure = rng.random(n) < 0.7
    # Round 1's model: right and sure on 70% of the items, unsure and often wrong on the rest.
    # From round 2 on it drifts on the items being labeled (not on the calibration sample, which
    # therefore cannot see it): still sure, but wrong on a third of the sure items.
    wrong_later = rng.random(n) < 0.33
    drifted = {"on": False}

    def model(body: dict[str, Any]) -> tuple[int, Any]:
        u = _uri(body)
        i = uris.index(u)
        if sure[i]:
            bad = drifted["on"] and wrong_later[i] and i >= 300
            return 200, gemini_fake.answer(LABELS[(i + 1) % 3] if bad else truth[u], -0.01)
        return 200, gemini_fake.answer(LABELS[(i + 1) % 3] if i % 2 else truth[u], -1.2)

    truth_csv = tmp_path / "truth.csv"
    truth_csv.write_text("item,label\n" + "".join(f"{u},{truth[u]}\n" for u in uris))
    calibration = tmp_path / "calibration.jsonl"
    storage.write_jsonl(str(calibration), [{"item": u, "label": truth[u]} for u in uris[:300]])
    state_uri = str(tmp_path / "state")

    def run(batch: list[str], name: str) -> dict[str, Any]:
        items_uri = str(tmp_path / f"{name}.jsonl")
        storage.write_jsonl(
            items_uri,
            [Item(u, uri=u).to_import_record(TaskType.IMAGE_CLASSIFICATION) for u in batch],
        )
        options = {
            "gemini": {"project": "p", "base_url": fake.url},
            "human": {
                "provider": "simulated",
                "options": {"truth_uri": str(truth_csv), "workforce": "expert"},
            },
            "calibration_uri": str(calibration),
            "guarantee": {"target_error": 0.05, "audit_share": 0.1, "audit_minimum": 20},
        }
        run_labeling_job(
            items_uri=items_uri,
            task_type="image_classification",
            labels=",".join(LABELS),
            provider="gemini_then_human",
            provider_options=json.dumps(options),
            labelers_per_item=3,
            annotations_uri=str(tmp_path / f"{name}-ann.jsonl"),
            job_uri=str(tmp_path / f"{name}-job.json"),
            rejects_uri=str(tmp_path / f"{name}-rej.jsonl"),
            state_uri=state_uri,
            run_id=name,
        )
        record = json.loads((tmp_path / f"{name}-job.json").read_text())
        rows = [json.loads(x) for x in (tmp_path / f"{name}-ann.jsonl").read_text().splitlines()]
        # The step hands on every label collected so far: keep this run's.
        rows = [r for r in rows if r["collected_round"] == name]
        record["auto"] = {r["item"] for r in rows if r["annotator"].startswith("gemini:")}
        record["people"] = {r["item"] for r in rows if not r["annotator"].startswith("gemini:")}
        return record

    with gemini_fake.serve(model) as fake:
        first = run(uris[300:500], "r1")
        summary = first["provider_summary"]
        decision = summary["guarantee"]
        assert decision["status"] == "active"
        cert = decision["certificate"]
        assert cert["upper_bound"] <= 0.05
        assert cert["accepted"] >= 59
        audit = summary["audit"]
        # Audited items were accepted, yet people labeled them; the model's answer was held back.
        assert audit["audited"] >= 20
        assert first["auto"]
        assert not first["auto"] & first["people"]
        assert len(first["auto"]) + audit["audited"] == audit["accepted"]
        assert audit["errors"] == 0
        assert first["cost"]["run"]["model_labels"] == len(first["auto"])
        assert first["cost"]["run"]["prompt_tokens"] > 0

        drifted["on"] = True
        second = run(uris[500:700], "r2")
        audit2 = second["provider_summary"]["audit"]
        assert audit2["errors"] >= 3  # the drift shows in the audit ...
        third = run(uris[700:800], "r3")  # ... and the next round pauses auto-accept
        decision3 = third["provider_summary"]["guarantee"]
        assert decision3["status"] == "paused"
        assert "above the 5% target" in decision3["reason"]
        assert not third["auto"]
        assert len(third["people"]) == 100

    audits, renewed = guarantee.read_history(str(Path(state_uri) / "audits.jsonl"))
    assert [a.errors for a in audits][:1] == [0]
    assert len(audits) == 2
    # The paused round's labels were a fresh calibration sample: 30% of the sure answers are
    # wrong now, so no threshold certifies and none is renewed.
    assert renewed is None
