"""`labelloop consolidate` and `labelloop agreement`: label quality for exports from any tool.

Input is long format, one row per (item, annotator): CSV/TSV with columns `item,annotator,label`
or JSONL with those keys. Rejected rows are reported on stderr (and to `--rejects`), never
dropped silently.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import sys
from typing import Any

import numpy as np

from labelloop import storage
from labelloop.annotations import infer_labels, read_annotations, read_gold, write_bad_records
from labelloop.errors import BadRecord, InputError, summarize_bad_records
from labelloop.quality import agreement as agr
from labelloop.quality.consolidation import DawidSkene, MajorityVote
from labelloop.quality.encode import Encoded, encode, vote_counts
from labelloop.schemas import TaskType, parse_labels

log = logging.getLogger(__name__)


def _load(args: argparse.Namespace) -> tuple[Encoded, list[BadRecord]]:
    labels = parse_labels(args.labels) if args.labels else infer_labels(args.annotations)
    read = read_annotations(args.annotations, task_type=TaskType.TEXT_CLASSIFICATION, labels=labels)
    if read.bad:
        log.warning("%s", summarize_bad_records(read.bad))
    if args.rejects:
        write_bad_records(args.rejects, read.bad)
    if not read.annotations:
        raise InputError("no valid annotations", source=args.annotations)
    return encode(read.annotations, labels), list(read.bad)


def _num(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


def consolidate_command(args: argparse.Namespace) -> int:
    """Consolidate one label per item; write `item,label,confidence` (CSV or JSONL)."""
    enc, _ = _load(args)
    kwargs: dict[str, Any] = {
        "n_items": enc.n_items,
        "n_labels": enc.n_labels,
        "n_annotators": enc.n_annotators,
    }
    model: MajorityVote | DawidSkene
    if args.method == "mv":
        model = MajorityVote().fit(enc.item, enc.annotator, enc.label, **kwargs)
    else:
        g_item = np.zeros(0, dtype=np.int64)
        g_label = np.zeros(0, dtype=np.int64)
        if args.gold:
            gold, bad = read_gold(args.gold, labels=enc.labels)
            if bad:
                log.warning("gold: %s", summarize_bad_records(bad))
            position = {str(item): i for i, item in enumerate(enc.items)}
            index = {label: j for j, label in enumerate(enc.labels)}
            pairs = [(position[i], index[g]) for i, g in gold.items() if i in position]
            if pairs:
                g_item, g_label = np.array(pairs, dtype=np.int64).T
        model = DawidSkene(n_iter=args.n_iter, tol=args.tol).fit(
            enc.item, enc.annotator, enc.label, gold_item=g_item, gold_label=g_label, **kwargs
        )
    rows = [
        {
            "item": str(item),
            "label": enc.labels[int(model.labels_[i])] if model.labels_[i] >= 0 else "",
            "confidence": round(float(model.confidence_[i]), 6),
        }
        for i, item in enumerate(enc.items)
    ]
    if args.out.lower().endswith(".csv"):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["item", "label", "confidence"])
        writer.writeheader()
        writer.writerows(rows)
        storage.write_text(args.out, buffer.getvalue())
    else:
        storage.write_jsonl(args.out, rows)
    ties = int(model.ties_.sum())
    log.info("%d items consolidated with %s (%d ties left unlabeled)", len(rows), args.method, ties)
    return 0


def agreement_report(enc: Encoded, *, n_boot: int, seed: int) -> dict[str, Any]:
    """Every nominal agreement metric, bootstrap intervals and per-class agreement as JSON."""
    counts = vote_counts(enc.item, enc.label, n_items=enc.n_items, n_labels=enc.n_labels)
    stats = agr.item_statistics(counts)
    values = agr.metrics_from_sums(stats.sum(axis=0), n_labels=enc.n_labels)
    intervals = {
        name: [
            _num(v)
            for v in agr.bootstrap_ci(stats, name, n_labels=enc.n_labels, n_boot=n_boot, seed=seed)
        ]
        for name in agr.METRICS
    }
    per_class = agr.per_class_agreement(counts)
    return {
        "items": enc.n_items,
        "annotations": int(enc.item.shape[0]),
        "annotators": enc.n_annotators,
        "labels": list(enc.labels),
        "metrics": {name: _num(v[0]) for name, v in values.items()},
        "ci95": intervals,
        "per_class_agreement": {enc.labels[j]: _num(v) for j, v in enumerate(per_class)},
    }


def agreement_command(args: argparse.Namespace) -> int:
    """Print agreement metrics as JSON on stdout."""
    enc, bad = _load(args)
    report = agreement_report(enc, n_boot=args.n_boot, seed=args.seed)
    report["bad_records"] = len(bad)
    print(json.dumps(report, indent=2, sort_keys=True))  # noqa: T201 - the command's output
    return 0


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("annotations", help="item,annotator,label rows (.csv, .tsv or .jsonl)")
    parser.add_argument(
        "--labels", default="", help="the label set, comma-separated (default: labels seen)"
    )
    parser.add_argument("--rejects", default="", help="write rejected rows here (JSONL)")


def register(subparsers: Any) -> None:
    """Add `consolidate` and `agreement` to the `labelloop` command."""
    cons = subparsers.add_parser(
        "consolidate",
        help="one label per item from several annotators' labels",
        description="Consolidate item,annotator,label rows into item,label,confidence.",
    )
    _common(cons)
    cons.add_argument("--out", required=True, help="output file (.csv, else JSONL)")
    cons.add_argument(
        "--method",
        choices=("mv", "ds"),
        default="ds",
        help="ds: Dawid-Skene (default, the most accurate); mv: majority vote, ties unlabeled",
    )
    cons.add_argument("--gold", default="", help="known answers, item,label (CSV or JSONL); ds")
    cons.add_argument("--n-iter", type=int, default=100, help="Dawid-Skene iterations")
    cons.add_argument("--tol", type=float, default=1e-5, help="Dawid-Skene tolerance")
    cons.set_defaults(func=consolidate_command)
    agree = subparsers.add_parser(
        "agreement",
        help="inter-annotator agreement metrics as JSON",
        description="Krippendorff's alpha, Fleiss' kappa, percent and all-agree rates.",
    )
    _common(agree)
    agree.add_argument("--n-boot", type=int, default=200, help="bootstrap replicates")
    agree.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    agree.set_defaults(func=agreement_command)


if __name__ == "__main__":  # pragma: no cover - use the `labelloop` console script
    from labelloop.cli import main

    sys.exit(main())
