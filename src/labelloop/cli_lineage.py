"""`labelloop lineage`: every label and trained model an annotator, a model or a prompt touched."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the `lineage` subcommand."""
    p = subparsers.add_parser(
        "lineage",
        help="list the labels and models an annotator, model or prompt touched",
        description=(
            "Read the label lineage kept in the loop's state and list every consolidated "
            "label whose inputs came from the named source, and every trained model that used "
            "one of those labels, so a bad source can be relabeled and its models retrained."
        ),
    )
    p.add_argument("state_uri", help="the loop's state_uri (a folder or gs:// prefix)")
    p.add_argument("--annotator", help="an annotator id, e.g. sim-06 or someone@example.com")
    p.add_argument("--model", help="a model name, e.g. gemini-2.5-flash")
    p.add_argument("--prompt", help="a prompt hash, e.g. prompt-1a2b3c4d5e6f")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run `labelloop lineage`; returns the exit code (1 when nothing matched)."""
    from labelloop import lineage

    hits = lineage.query(
        args.state_uri, annotator=args.annotator, model=args.model, prompt=args.prompt
    )
    out = sys.stdout
    if args.json:
        json.dump(hits.to_json(), out, indent=1, sort_keys=True)
        out.write("\n")
        return 0 if hits.labels else 1
    named = ", ".join(
        f"{k} {v}"
        for k, v in (("annotator", args.annotator), ("model", args.model), ("prompt", args.prompt))
        if v is not None
    )
    if not hits.labels:
        print(f"no label in {args.state_uri} came from {named}")  # noqa: T201
        return 1
    print(f"{len(hits.labels)} label(s) came from {named}:")  # noqa: T201
    print(f"  {'round':>5}  {'job':<18} {'label':<12} item")  # noqa: T201
    for row in hits.labels:
        print(  # noqa: T201
            f"  {row.get('round', ''):>5}  {row['job']:<18} {row.get('label')!s:<12} {row['item']}"
        )
    if hits.models:
        print(f"{len(hits.models)} trained model(s) used them:")  # noqa: T201
        for m in hits.models:
            where = f" {m['uri']}" if m.get("uri") else ""
            print(  # noqa: T201
                f"  round {m.get('round', '')}: {m['model']}{where} "
                f"({m['touched']} of {m['labels']} labels)"
            )
    else:
        print("no trained model used them")  # noqa: T201
    return 0
