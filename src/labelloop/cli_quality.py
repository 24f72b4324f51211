"""`labelloop consolidate` and `labelloop agreement`: label quality for exports from any tool.

Input is long format, one row per (item, annotator): CSV/TSV with columns `item,annotator,label`
or JSONL with those keys. Rejected rows are reported on stderr (and to `--rejects`), never
dropped silently.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from labelloop import arrays, tables
from labelloop.annotations import read_gold, read_label_table, write_bad_records
from labelloop.errors import BadRecord, summarize_bad_records
from labelloop.quality import agreement as agr
from labelloop.quality.consolidation import DawidSkene, MajorityVote
from labelloop.quality.encode import Encoded, vote_counts
from labelloop.schemas import parse_labels

log = logging.getLogger(__name__)


def _progress(args: argparse.Namespace) -> Callable[[str], None] | None:
    """Progress lines on stderr when it is a terminal (long reads and fits), else nothing."""
    if not sys.stderr.isatty():
        return None
    start = time.monotonic()

    def say(message: str) -> None:
        print(f"[{time.monotonic() - start:6.1f}s] {message}", file=sys.stderr, flush=True)  # noqa: T201

    return say


def _load(args: argparse.Namespace) -> tuple[Encoded, list[BadRecord]]:
    labels = parse_labels(args.labels) if args.labels else None
    read = read_label_table(args.annotations, labels=labels, progress=_progress(args))
    if read.bad:
        log.warning("%s", summarize_bad_records(read.bad))
    if args.rejects:
        write_bad_records(args.rejects, read.bad)
    return read.encoded, list(read.bad)


def _num(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


def _gold_codes(uri: str, enc: Encoded) -> tuple[np.ndarray, np.ndarray]:
    """Gold `(item index, label index)` arrays for the items that were annotated."""
    import pyarrow.compute as pc

    gold, bad = read_gold(uri, labels=enc.labels)
    if bad:
        log.warning("gold: %s", summarize_bad_records(bad))
    names = list(gold)
    position = pc.index_in(arrays.strings(names), value_set=enc.items)
    found = arrays.filled(position, -1).astype(np.int64)
    used = found >= 0
    unused = int((~used).sum())
    if unused:
        log.warning(
            "gold: %d of %d gold item(s) have no annotation and were not used", unused, len(names)
        )
    index = {label: j for j, label in enumerate(enc.labels)}
    labels = np.asarray([index[gold[n]] for n in names], dtype=np.int64)
    return found[used], labels[used]


def consolidate_command(args: argparse.Namespace) -> int:
    """Consolidate one label per item; write `item,label,confidence` (CSV, JSONL or Parquet)."""
    import pyarrow as pa

    tables.output_format(args.out)  # refuse an unknown extension before any work
    enc, _ = _load(args)
    say = _progress(args)
    kwargs: dict[str, Any] = {
        "n_items": enc.n_items,
        "n_labels": enc.n_labels,
        "n_annotators": enc.n_annotators,
    }
    model: MajorityVote | DawidSkene
    if args.method == "mv":
        model = MajorityVote().fit(enc.item, enc.annotator, enc.label, **kwargs)
    else:
        g_item, g_label = (
            _gold_codes(args.gold, enc)
            if args.gold
            else (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        )
        if say:
            say(f"Dawid-Skene on {enc.item.shape[0]} annotations ({enc.n_items} items)")
        model = DawidSkene(n_iter=args.n_iter, tol=args.tol).fit(
            enc.item, enc.annotator, enc.label, gold_item=g_item, gold_label=g_label, **kwargs
        )
    decided = model.labels_ >= 0
    label_names = arrays.strings(enc.labels)
    out = pa.Table.from_arrays(
        [
            enc.items,
            # Ties (and items without a label) are missing values, never a class.
            label_names.take(arrays.arrow(np.maximum(model.labels_, 0), valid=decided)),
            arrays.arrow(np.round(model.confidence_, 6)),
        ],
        names=["item", "label", "confidence"],
    )
    if say:
        say(f"writing {args.out}")
    tables.write_table(args.out, out)
    ties = int(model.ties_.sum())
    log.info(
        "%d items consolidated with %s (%d ties left unlabeled)", enc.n_items, args.method, ties
    )
    return 0


def agreement_report(enc: Encoded, *, n_boot: int, seed: int) -> dict[str, Any]:
    """Every nominal agreement metric, bootstrap intervals and per-class agreement as JSON."""
    counts = vote_counts(enc.item, enc.label, n_items=enc.n_items, n_labels=enc.n_labels)
    stats = agr.item_statistics(counts)
    values = agr.metrics_from_sums(stats.sum(axis=0), n_labels=enc.n_labels)
    replicates = agr.bootstrap_all(
        stats, agr.METRICS, n_labels=enc.n_labels, n_boot=n_boot, seed=seed
    )
    intervals = {
        name: [_num(v) for v in agr.generic_interval(replicates[name])] for name in agr.METRICS
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
    parser.add_argument(
        "annotations", help="item,annotator,label rows (.csv, .tsv, .jsonl or .parquet; .gz ok)"
    )
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
    cons.add_argument(
        "--out", required=True, help="output file: .csv, .tsv, .jsonl or .parquet (by extension)"
    )
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
