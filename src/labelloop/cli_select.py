"""`labelloop select`: pick the next batch to label from a predictions file or folder."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from labelloop import storage
from labelloop.active_learning.strategies import strategy_names

log = logging.getLogger(__name__)


def register(subparsers: Any) -> None:
    """Add the `select` subcommand."""
    p = subparsers.add_parser(
        "select",
        help="select the next items to label from model predictions",
        description=(
            "Stream predictions (Vertex AI batch-prediction output or the local model's, same "
            "JSONL shape) and write the k items most worth labeling as a Vertex import file."
        ),
    )
    p.add_argument("predictions", help="predictions JSONL, or a folder / gs:// prefix of them")
    p.add_argument("--k", type=int, required=True, help="how many items to select")
    p.add_argument(
        "--strategy", choices=strategy_names(), default="margin", help="selection strategy"
    )
    p.add_argument("--out", required=True, help="output Vertex import JSONL")
    p.add_argument(
        "--summary", help="summary JSON (default: OUT with its extension replaced by .summary.json)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed for random and k-center choices")
    p.add_argument(
        "--task-type",
        default="image_classification",
        help="decides the import record fields",
    )
    p.add_argument("--labels", help="label set, comma-separated (default: the display names)")
    p.add_argument("--exclude", help="file of item ids to skip, one per line (labeled/queued)")
    p.add_argument("--balance", action="store_true", help="spread picks over predicted classes")
    p.add_argument(
        "--rejects",
        default="",
        help="write the bad lines here (JSONL: source, line, field, reason; the first 10,000, "
        "all are counted)",
    )
    p.set_defaults(func=run)


def summary_path(out: str) -> str:
    """`next.jsonl` and `next.csv` both get `next.summary.json` beside them."""
    head, _, name = out.rpartition("/")
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    return f"{head}/{stem}.summary.json" if head else f"{stem}.summary.json"


def run(args: argparse.Namespace) -> int:
    """Run `labelloop select`; returns the exit code."""
    from labelloop.active_learning.predictions import select_from_predictions
    from labelloop.errors import InputError
    from labelloop.schemas import Item, TaskType, ml_use_for, parse_labels, text_item_id
    from labelloop.stages.select_for_labeling import HISTOGRAM_EDGES

    if args.k < 1:
        raise InputError(f"--k must be at least 1, got {args.k}", field="--k")
    task = TaskType.parse(args.task_type, field="--task-type")
    labels = parse_labels(args.labels, field="--labels") if args.labels else None
    exclude: list[str] = []
    if args.exclude:
        exclude = [x.strip() for x in storage.read_text(args.exclude).splitlines() if x.strip()]
    # This command lists the bad lines itself (below): the library's warning would repeat them.
    logging.getLogger("labelloop.active_learning.predictions").setLevel(logging.ERROR)
    picked = select_from_predictions(
        args.predictions,
        args.k,
        strategy=args.strategy,
        seed=args.seed,
        exclude_ids=exclude,
        labels=labels,
        class_balance=args.balance,
    )

    def item_for(content: str, item_id: str) -> Item:
        if item_id == text_item_id(content):
            return Item(id=item_id, text=content, ml_use=ml_use_for(item_id))
        return Item(id=item_id, uri=item_id, ml_use=ml_use_for(item_id))

    storage.write_jsonl(
        args.out, (item_for(p.content, p.item).to_import_record(task) for p in picked.items)
    )
    import numpy as np

    scores = np.asarray([p.score for p in picked.items])
    hist, edges = np.histogram(np.clip(scores, 0, 1), bins=HISTOGRAM_EDGES)
    mix: dict[str, int] = dict.fromkeys(picked.labels, 0)
    for p in picked.items:
        mix[p.predicted] = mix.get(p.predicted, 0) + 1
    summary = {
        "strategy": args.strategy,
        "cold_start": False,
        "pool": picked.pool,
        "selected": len(picked.items),
        "bad_records": picked.bad_records,
        "items": [
            {"item": p.item, "score": p.score, "predicted": p.predicted} for p in picked.items
        ],
        "score_histogram": {"counts": hist.tolist(), "edges": edges.tolist()},
        "predicted_class_mix": mix,
        "excluded": picked.excluded,
        "class_balance": args.balance,
        "source": args.predictions,
        "pool_score_histogram": picked.pool_histogram,
        "bad": [
            {"source": b.source, "line": b.line, "field": b.field, "reason": b.reason}
            for b in picked.bad[:100]
        ],
    }
    summary_uri = args.summary or summary_path(args.out)
    if args.rejects:
        from labelloop.annotations import write_bad_records

        write_bad_records(args.rejects, picked.bad)
    storage.write_text(summary_uri, json.dumps(summary, indent=1, sort_keys=True))
    out = sys.stdout
    out.write(
        f"selected {len(picked.items)} of {picked.pool} ({args.strategy}); "
        f"excluded {picked.excluded}; bad lines {picked.bad_records}\n"
    )
    # Bad lines go to stderr, once each (the first ten; the summary file has up to 100).
    for b in picked.bad[:10]:
        sys.stderr.write(f"bad line: {b}\n")
    if picked.bad_records > 10:
        sys.stderr.write(f"... {picked.bad_records - 10} more bad lines (see {summary_uri})\n")
    out.write(f"wrote {args.out} and {summary_uri}\n")
    return 0
