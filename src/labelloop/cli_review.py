"""`labelloop review push|pull`: the quality step's review queue as a project people work through.

`review push` sends the review file (items likeliest to be wrong first) to a provider that hosts
review projects (Label Studio; the simulated workforce for demos): each task shows the answers,
the consolidated label pre-selected and why it needs a person. Pushing the same file again
reuses the project. With `--state`, the job is recorded in the loop's state, and the next run's
reconcile step (or `review pull`) brings the corrections back: the quality step then takes a
reviewer's answer as the item's label. Credentials come from the environment, as in the pipeline.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from labelloop import review, storage
from labelloop.errors import InputError
from labelloop.options import options_argument
from labelloop.providers import LabelingTask
from labelloop.providers.registry import JOB_OPTIONS, get_reviewer
from labelloop.schemas import TaskType, parse_labels


def _provider_options(value: str) -> dict[str, Any]:
    """`--options` without the labeling step's own keys."""
    return {k: v for k, v in options_argument(value).items() if k not in JOB_OPTIONS}


def cmd_push(args: argparse.Namespace) -> int:
    options = _provider_options(args.options)
    provider = get_reviewer(args.provider, options)
    task = LabelingTask(TaskType.parse(args.task_type), tuple(parse_labels(args.labels)))
    rows = review.read_review_file(args.review, top=args.top)
    items = review.items_for(rows, state_uri=args.state or "", items_uri=args.items or "")
    pushed = review.push(provider, rows, items, task, state_uri=args.state or "", options=options)
    record = {**pushed.job.to_json(), "url": pushed.url, "items": pushed.items}
    if args.job_out:
        storage.write_text(args.job_out, json.dumps(record, indent=1, sort_keys=True))
    print(  # noqa: T201 - the command's output
        f"review project for {pushed.items} item(s): {pushed.url or pushed.job.external_id}"
        + ("" if args.state else " (not recorded: give --state to bring the answers back)")
    )
    return 0


def cmd_pull(args: argparse.Namespace) -> int:
    options = _provider_options(args.options)

    def reviewer_for(record: dict[str, Any]) -> Any:
        if args.provider and record["provider"] != args.provider:
            return None
        opts = options if args.provider else record.get("options", {})
        return get_reviewer(str(record["provider"]), opts)

    if not review.jobs(args.state):
        raise InputError("no review job recorded in this state (labelloop review push --state)")
    counts = review.pull(args.state, reviewer_for)
    if args.out:
        rows = [
            {k: v for k, v in r.items() if k != "earlier"}
            for r in review.expert_answers(args.state)
        ]
        storage.write_jsonl(args.out, rows)
    total = sum(counts.values())
    print(  # noqa: T201 - the command's output
        f"{total} reviewer answer(s) from {len(counts)} review job(s); the next quality step"
        " uses them as the items' labels"
    )
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `review push|pull`."""
    parser = subparsers.add_parser(
        "review",
        help="send the review queue to people and bring their corrections back",
        description=__doc__.split("\n\n")[0].split(": ", 1)[1].capitalize(),
    )
    sub = parser.add_subparsers(dest="review_command", required=True, metavar="ACTION")
    push = sub.add_parser(
        "push",
        help="create (or reuse) a review project from a review file",
        description="Create a review project at the provider from the quality step's review"
        " file: one task per row, likeliest errors first, pre-filled with the consolidated"
        " label, showing every answer and why it needs a person. Idempotent: the same file"
        " gives the same project.",
    )
    push.add_argument("review", help="the review file the quality step wrote (JSONL)")
    push.add_argument("--provider", required=True, help="label_studio (or simulated)")
    push.add_argument(
        "--options", default="{}", help="provider options as JSON, or @file.json (no secrets)"
    )
    push.add_argument("--task-type", required=True, help="task type of the items")
    push.add_argument("--labels", required=True, help="label set, comma-separated")
    push.add_argument("--items", help="the import file the items came from (their URIs/text)")
    push.add_argument(
        "--state", help="the loop's state: records the job so the next run uses the answers"
    )
    push.add_argument("--top", type=int, default=0, help="push only the first N rows (0 = all)")
    push.add_argument("--job-out", help="also write the review job record here (JSON)")
    push.set_defaults(func=cmd_push)
    pull = sub.add_parser(
        "pull",
        help="collect reviewers' answers into the state",
        description="Collect the answers of every review project recorded in the state. The"
        " pipeline's reconcile step does the same at the start of each run.",
    )
    pull.add_argument("--state", required=True, help="the loop's state (local folder or gs://)")
    pull.add_argument("--provider", help="only this provider's review jobs, with --options")
    pull.add_argument(
        "--options", default="{}", help="provider options as JSON, or @file.json (no secrets)"
    )
    pull.add_argument("--out", help="also write every reviewer answer so far here (JSONL)")
    pull.set_defaults(func=cmd_pull)
