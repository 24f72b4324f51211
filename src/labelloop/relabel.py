"""Items sent back to labeling: requests the quality step writes and the next selection reads.

The quality step asks for more answers on the items most likely to be wrong (its review queue,
ranked by expected error). The next round's selection weighs each request against labeling a
new item, as ActiveLab does: a request takes a batch slot when its expected error (the chance
its consolidated label is wrong) exceeds the uncertainty score of the new item it would
displace. When the request's item is labeled again, the next quality step adds the earlier
answers to the new ones, so consolidation sees every answer the item ever got.

State: one JSONL file, `relabel/requests.jsonl`, rewritten by the quality step only. Each row:
`item`, `label`, `confidence`, `expected_error`, `reasons`, `annotations` (the answers so
far), `requested_by` (the round key that asked) and `consumed_by` (the round key that labeled
it again, "" while pending). Rewriting is idempotent, so a retried quality step writes the
same file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from labelloop import state, storage
from labelloop.errors import summarize_bad_records

log = logging.getLogger(__name__)

REQUESTS = "relabel/requests.jsonl"


def requests_uri(state_uri: str) -> str:
    return state.path(state_uri, REQUESTS)


def read_requests(state_uri: str) -> list[dict[str, Any]]:
    """Every request row (pending and consumed); `[]` without a state or a file."""
    if not state_uri:
        return []
    uri = requests_uri(state_uri)
    if not storage.exists(uri):
        return []
    rows, bad = storage.read_jsonl_objects(uri)
    if bad:
        log.warning("relabel requests: %s", summarize_bad_records(bad))
    return [row for _, row in rows]


def pending(state_uri: str) -> list[dict[str, Any]]:
    """Requests not labeled again yet and not settled by a reviewer, likeliest errors first."""
    from labelloop.review import expert_answers

    reviewed = {str(r.get("item")) for r in expert_answers(state_uri)}
    rows = [
        r
        for r in read_requests(state_uri)
        if not r.get("consumed_by") and str(r["item"]) not in reviewed
    ]
    return sorted(rows, key=lambda r: (-float(r.get("expected_error") or 0.0), str(r["item"])))


def earlier_answers(
    state_uri: str, *, round_key: str, round_items: Iterable[str]
) -> list[dict[str, Any]]:
    """The earlier answers of items this round labels again (read only; `update` records it).

    Returns:
        `{"item", "annotator", "label", "annotator_kind"}` rows from the requests this round
        consumes (`annotator_kind` None in requests written before it existed).
    """
    labeled = set(round_items)
    out: list[dict[str, Any]] = []
    for row in read_requests(state_uri):
        if row.get("requested_by") == round_key:
            continue
        mine = row.get("consumed_by") == round_key
        if mine or (not row.get("consumed_by") and str(row["item"]) in labeled):
            for answer in row.get("annotations") or []:
                if isinstance(answer, dict) and "annotator" in answer and "label" in answer:
                    out.append(
                        {"item": str(row["item"]), "annotator": answer["annotator"],
                         "label": answer["label"],
                         "annotator_kind": answer.get("annotator_kind")}
                    )  # fmt: skip
    return out


def update(
    state_uri: str,
    *,
    round_key: str,
    round_items: Iterable[str],
    new_requests: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Record this round: consume requests for items it labeled, add its own requests.

    Args:
        state_uri: The loop's state.
        round_key: This round's key (a hash of its item set; the same on a retry).
        round_items: The items this round labeled.
        new_requests: This round's requests (review rows with `item`, `expected_error`, ...).

    Returns:
        The requests this round consumed: their `annotations` are the item's earlier answers.
    """
    if not state_uri:
        return []
    labeled = set(round_items)
    rows: list[dict[str, Any]] = []
    consumed: list[dict[str, Any]] = []
    for old in read_requests(state_uri):
        if old.get("requested_by") == round_key:
            continue  # written by an earlier attempt of this round: replaced below
        row = dict(old)
        if not row.get("consumed_by") and str(row["item"]) in labeled:
            row["consumed_by"] = round_key
        if row.get("consumed_by") == round_key:
            consumed.append(row)
        rows.append(row)
    rows += [{**r, "requested_by": round_key, "consumed_by": ""} for r in new_requests]
    storage.write_jsonl(requests_uri(state_uri), rows)
    return consumed


def merge_into_batch(
    picked: Sequence[tuple[str, float]], requests: Sequence[dict[str, Any]], k: int
) -> tuple[list[str], list[str]]:
    """Swap requests into a batch where relabeling gains more than a new label.

    Args:
        picked: The new items the strategy picked, with their uncertainty scores in [0, 1].
        requests: Pending requests, likeliest errors first.
        k: Batch size.

    Returns:
        (new item ids kept, request item ids taken), together at most `k`.
    """
    new = sorted(picked, key=lambda p: -p[1])[:k]
    taken: list[str] = []
    for request in requests:
        if len(taken) >= k:
            break
        gain = float(request.get("expected_error") or 0.0)
        if len(new) + len(taken) < k or (new and gain > new[-1][1]):
            if len(new) + len(taken) >= k:
                new.pop()  # the least useful new item makes room
            taken.append(str(request["item"]))
    return [item for item, _ in new], taken


def attempts(state_uri: str) -> dict[str, int]:
    """How many times each item was sent back and labeled again so far."""
    out: dict[str, int] = {}
    for row in read_requests(state_uri):
        if row.get("consumed_by"):
            out[str(row["item"])] = out.get(str(row["item"]), 0) + 1
    return out
