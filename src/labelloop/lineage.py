"""Lineage of every label: who produced its inputs, how it was consolidated, which models used it.

For each consolidated label the lineage keeps the annotators and models whose answers went
into it (a model with its name, prompt hash and the calibration certificate that let its
answer through), the consolidation method and labelloop version, the round and the job. For
each trained model it keeps which label (item, job) it was trained on. So a bad source can be
traced: `query(state_uri, annotator="sim-06")` lists every label that annotator touched and
every model trained on one of them, for relabeling and retraining.

Layout under `state_uri` (each file written whole under a deterministic name, so a retried
step overwrites it):

    lineage/labels/<job-key>.jsonl   one row per consolidated label of that job
    lineage/models/<model-key>.json  the labels one trained model used
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from labelloop import __version__, storage
from labelloop.schemas import Annotation, AnnotatorKind, gemini_annotator

log = logging.getLogger(__name__)

LABELS = "lineage/labels"
MODELS = "lineage/models"


@dataclasses.dataclass(frozen=True)
class Source:
    """Who or what produced an annotation: a person (`human`) or a model (`model`)."""

    annotator: str
    kind: str = "human"
    provider: str = ""
    model: str = ""
    prompt_hash: str = ""
    calibration_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v != ""}


def prompt_hash(*parts: str) -> str:
    """A short, stable hash of a prompt (system instruction, guidelines, label set)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return "prompt-" + digest[:12]


def source_for(
    annotator: str,
    *,
    kind: AnnotatorKind = AnnotatorKind.HUMAN,
    provider: str = "",
    models: Mapping[str, Source] | None = None,
) -> Source:
    """The source of an annotator id: a known model source, a model (its answers'
    `annotator_kind`; the model's name is the id after `provider:`), or a person."""
    models = models or {}
    if annotator in models:
        return models[annotator]
    if kind is AnnotatorKind.MODEL:
        return Source(annotator, kind.value, provider, model=annotator.split(":", 1)[-1])
    return Source(annotator, kind.value, provider)


def model_sources(job_record: Mapping[str, Any]) -> dict[str, Source]:
    """Model sources by annotator id from a labeling job record's provider summary (Gemini
    alone, or routed with people: model name, prompt hash and the calibration behind it)."""
    summary = job_record.get("provider_summary")
    if not isinstance(summary, Mapping):
        return {}
    provider = str(job_record.get("provider", ""))
    nested = summary.get("gemini")
    gemini: Mapping[str, Any] = nested if isinstance(nested, Mapping) else summary
    model = str(gemini.get("model") or "")
    if not model:
        return {}
    annotator = str(summary.get("model_annotator") or gemini_annotator(model))
    # The guarantee's certificate names itself; a plain calibration is named by its content.
    decision = summary.get("guarantee")
    certificate = decision.get("certificate") if isinstance(decision, Mapping) else None
    calibration = summary.get("calibration")
    if isinstance(certificate, Mapping) and certificate.get("id"):
        calibration_id = str(certificate["id"])
    elif isinstance(calibration, Mapping):
        digest = hashlib.sha256(json.dumps(calibration, sort_keys=True).encode()).hexdigest()
        calibration_id = "cal-" + digest[:12]
    else:
        calibration_id = ""
    source = Source(
        annotator,
        "model",
        provider,
        model=model,
        prompt_hash=str(gemini.get("prompt_hash") or ""),
        calibration_id=calibration_id,
    )
    return {annotator: source}


def label_rows(
    consolidated: Iterable[Mapping[str, Any]],
    annotations: Sequence[Annotation],
    *,
    job: str,
    round: int,
    method: str,
    provider: str = "",
    models: Mapping[str, Source] | None = None,
    run: str = "",
    jobs: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One lineage row per consolidated label: its sources, consolidation, round and job.

    Args:
        consolidated: Consolidated label rows (`item`, `label`, ...).
        annotations: The annotations consolidation read (every source of every item).
        job: The labeling job's key.
        round: The loop's round.
        method: The consolidation method (`mv`, `ds`, ...).
        provider: The provider that returned the annotations.
        models: Model sources by annotator id (model name, prompt hash, calibration id).
        run: The pipeline run's id.
        jobs: Each item's own labeling job (the ledger's), where it differs from `job`.
    """
    by_item: dict[str, dict[str, AnnotatorKind]] = {}
    for a in annotations:
        by_item.setdefault(a.item, {}).setdefault(a.annotator, a.annotator_kind)
    rows = []
    for row in consolidated:
        item = str(row["item"])
        given = by_item.get(item, {})
        sources = [
            source_for(name, kind=given[name], provider=provider, models=models).to_json()
            for name in sorted(given)
        ]
        rows.append(
            {
                "item": item,
                "label": row.get("label"),
                "round": round,
                "job": (jobs or {}).get(item, job),
                "run": run,
                "consolidation": {"method": method, "version": __version__},
                "sources": sources,
            }
        )
    return rows


def write_labels(state_uri: str, rows: Iterable[Mapping[str, Any]]) -> str:
    """Keep each item's newest label lineage (these rows over the earlier ones) in the lineage
    folder's one file (`state.keep_one_file`: written once per content, nothing piles up);
    returns its URI."""
    from labelloop.state import keep_one_file

    latest = latest_by_item(state_uri)
    latest.update({str(r["item"]): dict(r) for r in rows})
    return keep_one_file(state_uri, LABELS, latest)


def write_model(
    state_uri: str,
    model: str,
    *,
    trained_on: Iterable[tuple[str, str]],
    round: int,
    uri: str = "",
    run: str = "",
) -> str:
    """Record which labels (item, job) a trained model used; returns the record's URI."""
    by_job: dict[str, list[str]] = {}
    for item, job in trained_on:
        by_job.setdefault(job, []).append(item)
    record = {
        "model": model,
        "uri": uri,
        "round": round,
        "run": run,
        "labels": sum(len(v) for v in by_job.values()),
        "trained_on": {job: sorted(items) for job, items in sorted(by_job.items())},
    }
    out = storage.join(state_uri, MODELS, f"{_safe(model)}.json")
    storage.write_text(out, json.dumps(record, indent=1, sort_keys=True))
    return out


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def read_labels(state_uri: str) -> list[dict[str, Any]]:
    """Every label lineage row in the state."""
    folder = storage.join(state_uri, LABELS)
    if not storage.is_dir(folder):
        return []
    rows: list[dict[str, Any]] = []
    for uri in storage.iter_files(folder, suffixes=(".jsonl",)):
        got, bad = storage.read_jsonl_objects(uri, required=None)
        for record in bad:  # our own atomic writes: a bad line means the file was damaged
            log.warning("lineage line skipped: %s", record)
        rows.extend(row for _, row in got)
    return rows


def read_models(state_uri: str) -> list[dict[str, Any]]:
    """Every trained model's lineage record in the state."""
    folder = storage.join(state_uri, MODELS)
    if not storage.is_dir(folder):
        return []
    return [
        json.loads(storage.read_text(u)) for u in storage.iter_files(folder, suffixes=(".json",))
    ]


@dataclasses.dataclass(frozen=True)
class Hits:
    """What a source touched: label lineage rows and the models trained on any of them."""

    labels: list[dict[str, Any]]
    models: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "models": [
                {k: v for k, v in m.items() if k != "trained_on"} | {"touched": m["touched"]}
                for m in self.models
            ],
        }


def _matches(
    source: Mapping[str, Any], *, annotator: str | None, model: str | None, prompt: str | None
) -> bool:
    if annotator is not None and source.get("annotator") != annotator:
        return False
    if model is not None and source.get("model") != model:
        return False
    return prompt is None or source.get("prompt_hash") == prompt


def query(
    state_uri: str,
    *,
    annotator: str | None = None,
    model: str | None = None,
    prompt: str | None = None,
) -> Hits:
    """Every label an annotator, a model or a prompt touched, and every model trained on one.

    Give at least one of `annotator`, `model` (the model name, e.g. `gemini-2.5-flash`) and
    `prompt` (a prompt hash); a source must match all that are given.
    """
    if annotator is None and model is None and prompt is None:
        from labelloop.errors import InputError

        raise InputError("name an annotator, a model or a prompt hash", field="lineage")
    labels = [
        row
        for row in latest_by_item(state_uri).values()
        if any(
            _matches(s, annotator=annotator, model=model, prompt=prompt)
            for s in row.get("sources", [])
        )
    ]
    touched = {(str(r["item"]), str(r["job"])) for r in labels}
    models = []
    for record in read_models(state_uri):
        hits = sorted(
            item
            for job, items in record.get("trained_on", {}).items()
            for item in items
            if (item, job) in touched
        )
        if hits:
            models.append({**record, "touched": len(hits)})
    labels.sort(key=lambda r: (int(r.get("round", 0)), str(r["job"]), str(r["item"])))
    models.sort(key=lambda m: (int(m.get("round", 0)), str(m["model"])))
    return Hits(labels, models)


def resource_labels(row: Mapping[str, Any]) -> dict[str, str]:
    """A label's lineage as Vertex AI resource labels (lowercase keys and values, <= 63 chars),
    attached to its annotation in the labeled import file; `job` and `round` find its full row.
    """
    sources = row.get("sources") or []
    models = sorted({str(s.get("model", "")) for s in sources if s.get("kind") == "model"})
    labels = {
        "labelloop_job": str(row.get("job", "")),
        "labelloop_round": str(row.get("round", "")),
        "labelloop_method": str((row.get("consolidation") or {}).get("method", "")),
        "labelloop_sources": str(len(sources)),
        "labelloop_model": _label_value(models[0]) if models else "none",
    }
    return {k: _label_value(v) for k, v in labels.items() if v}


def _label_value(value: str) -> str:
    """A resource label value: lowercase letters, digits, `-` and `_`, at most 63 characters."""
    out = "".join(c if c.isalnum() or c in "-_" else "-" for c in value.lower())
    return out[:63]


def latest_by_item(state_uri: str) -> dict[str, dict[str, Any]]:
    """Each item's most recent label lineage row (the highest round)."""
    latest: dict[str, dict[str, Any]] = {}
    for row in read_labels(state_uri):
        item = str(row["item"])
        if item not in latest or int(row.get("round", 0)) >= int(latest[item].get("round", 0)):
            latest[item] = row
    return latest
