"""The item ledger: every item's lifecycle in `state_uri`, the single source of truth.

    pool --queue--> queued (open job: key, provider, round, when) --collect--> labeled
      ^                 |  job cancelled / failed / too old / closed without an answer
      +-----------------+  (also `return_items`: labeled -> pool, for relabeling)

Layout under `<state_uri>/ledger/`:

    events/<seq>.json           append-only log; each event is created once (create-if-absent),
                                so two writers can never both write event N
    snapshot.json               the state folded up to an event (`last_event`), replaced only
                                if unchanged since it was read (generation match)
    annotations/<job-key>.jsonl every annotation collected from a job, with its provenance
                                (annotator, provider, job, round); rewritten whole, only growing
    lease.json                  who may write (see `labelloop.lease`)

Loading reads the snapshot and applies the events after it; each event is validated against the
state before it is written (an item moves only from the state the event expects), so a replay
from the first event rebuilds the same state, which `check` verifies.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from labelloop import atomic, storage
from labelloop.errors import LabelloopError

log = logging.getLogger(__name__)

LEDGER = "ledger"
EVENTS = "events"
SNAPSHOT = "snapshot.json"
ANNOTATIONS = "annotations"

POOL, QUEUED, LABELED = "pool", "queued", "labeled"
STATES = (POOL, QUEUED, LABELED)
OPEN, CLOSED = "open", "closed"
# Why items go back to the pool (counted per reason).
RETURN_REASONS = ("cancelled", "failed", "expired", "unanswered", "relabel")
RUNS_KEPT = 50


class LedgerError(LabelloopError):
    """An event that does not fit the ledger's state (a bug or a second writer)."""


class ConcurrentWriter(LedgerError):
    """Someone else appended to the ledger since it was loaded."""


def now() -> str:
    """The current UTC time, ISO 8601 (what every event records)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def age_hours(stamp: str, *, at: str | None = None) -> float:
    """Hours between `stamp` and `at` (default now)."""
    end = dt.datetime.fromisoformat(at or now())
    return (end - dt.datetime.fromisoformat(stamp)).total_seconds() / 3600.0


@dataclasses.dataclass
class State:
    """The folded ledger: items, jobs, counters and the last runs (plain JSON-able data)."""

    items: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    jobs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    returned: dict[str, int] = dataclasses.field(default_factory=dict)
    runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    used: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Items the last selection saw in the source that never entered the ledger (never sent).
    unseen: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> State:
        data = copy.deepcopy(dict(data))
        return cls(
            items=data.get("items") or {},
            jobs=data.get("jobs") or {},
            returned=data.get("returned") or {},
            runs=data.get("runs") or [],
            used=data.get("used") or {},
            unseen=int(data.get("unseen") or 0),
        )

    # -- queries ------------------------------------------------------------------------------

    def ids_in(self, *states: str) -> set[str]:
        return {i for i, e in self.items.items() if e["state"] in states}

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for entry in self.items.values():
            out[entry["state"]] += 1
        out[POOL] += self.unseen
        out["total"] = len(self.items) + self.unseen
        return out

    def open_jobs(self) -> list[dict[str, Any]]:
        return sorted(
            (j for j in self.jobs.values() if j["status"] == OPEN), key=lambda j: j["created_at"]
        )

    # -- transitions --------------------------------------------------------------------------

    def _move(self, item: str, frm: tuple[str, ...], to: str, event: Mapping[str, Any]) -> None:
        entry = self.items.get(item)
        state = entry["state"] if entry else POOL
        if state not in frm:
            raise LedgerError(
                f"event {event.get('seq')} ({event['kind']}): item {item} is {state}, "
                f"expected {' or '.join(frm)}"
            )
        if entry is None:
            entry = self.items[item] = {"state": POOL}
            self.unseen = max(0, self.unseen - 1)
        entry["state"] = to
        entry["since"] = event["at"]

    def apply(self, event: Mapping[str, Any]) -> None:
        """Fold one event in; raise `LedgerError` if it does not fit."""
        kind = event["kind"]
        handler = getattr(self, f"_on_{kind}", None)
        if handler is None:
            raise LedgerError(f"event {event.get('seq')}: unknown kind {kind!r}")
        handler(event)

    def _job(self, event: Mapping[str, Any]) -> dict[str, Any]:
        job = self.jobs.get(event["job"])
        if job is None:
            raise LedgerError(f"event {event.get('seq')} ({event['kind']}): no job {event['job']}")
        return job

    def _on_queue(self, event: Mapping[str, Any]) -> None:
        key = event["job"]
        job = self.jobs.get(key)
        if job is None:
            job = self.jobs[key] = {
                "key": key,
                "provider": event["provider"],
                "options": event.get("options", {}),
                "task_type": event["task_type"],
                "labels": event["labels"],
                "labelers_per_item": event["labelers_per_item"],
                "round": event["run"],
                "created_at": event["at"],
                "external_id": None,
                "status": OPEN,
                "items": [],
                "collections": 0,
                "annotations": 0,
                "labeled": 0,
                "progress": {"labeled": 0, "total": 0},
                "errors": 0,
                "last_error": "",
            }
        elif job["status"] != OPEN:
            # The same items picked again give the same deterministic key: the job reopens.
            job.update(status=OPEN, round=event["run"], created_at=event["at"], items=[])
            job.pop("closed_reason", None)
        for row in event["items"]:
            self._move(row["id"], (POOL,), QUEUED, event)
            entry = self.items[row["id"]]
            entry.update(job=key, round=event["run"], record=row.get("record"))
            entry.pop("reason", None)
            job["items"].append(row["id"])

    def _on_submit(self, event: Mapping[str, Any]) -> None:
        job = self._job(event)
        job["external_id"] = event["external_id"]
        job["submitted_at"] = event["at"]

    def _on_collect(self, event: Mapping[str, Any]) -> None:
        job = self._job(event)
        if job["status"] != OPEN:
            raise LedgerError(f"event {event.get('seq')}: job {job['key']} is closed")
        job["collections"] += 1
        job["annotations"] = int(event["annotations"])
        job["annotation_keys"] = event.get("annotation_keys", "")
        job["progress"] = dict(event["progress"])
        job["last_collected_at"] = event["at"]
        job["errors"] = 0
        for item in event["labeled"]:
            if self.items.get(item, {}).get("job") != job["key"]:
                raise LedgerError(f"event {event.get('seq')}: {item} is not in job {job['key']}")
            self._move(item, (QUEUED,), LABELED, event)
            self.items[item]["collected_round"] = event["run"]
        job["labeled"] = sum(1 for i in job["items"] if self.items[i]["state"] == LABELED)

    def _on_close(self, event: Mapping[str, Any]) -> None:
        job = self._job(event)
        if job["status"] != OPEN:
            raise LedgerError(f"event {event.get('seq')}: job {job['key']} is already closed")
        for item in event["returned"]:
            if self.items.get(item, {}).get("job") != job["key"]:
                raise LedgerError(f"event {event.get('seq')}: {item} is not in job {job['key']}")
        reason = event.get("return_reason", event["reason"])
        self._return(event["returned"], reason, event, frm=(QUEUED,))
        job.update(status=CLOSED, closed_reason=event["reason"], closed_at=event["at"])

    def _return(
        self, items: Sequence[str], reason: str, event: Mapping[str, Any], *, frm: tuple[str, ...]
    ) -> None:
        for item in items:
            self._move(item, frm, POOL, event)
            self.items[item]["reason"] = reason
            self.items[item]["returned"] = int(self.items[item].get("returned", 0)) + 1
        if items:
            self.returned[reason] = self.returned.get(reason, 0) + len(items)

    def _on_return(self, event: Mapping[str, Any]) -> None:
        frm = tuple(event.get("from", (QUEUED, LABELED)))
        job_key = event.get("job")
        for item in event["items"]:
            if job_key and self.items.get(item, {}).get("job") != job_key:
                raise LedgerError(f"event {event.get('seq')}: {item} is not in job {job_key}")
        self._return(event["items"], event["reason"], event, frm=frm)
        if job_key:
            job = self._job(event)
            gone = set(event["items"])
            job["items"] = [i for i in job["items"] if i not in gone]

    def _on_listed(self, event: Mapping[str, Any]) -> None:
        self.unseen = int(event["unseen"])

    def _on_error(self, event: Mapping[str, Any]) -> None:
        job = self._job(event)
        job["errors"] = int(job.get("errors", 0)) + 1
        job["last_error"] = event["error"]
        job["last_error_at"] = event["at"]

    def _on_cancel(self, event: Mapping[str, Any]) -> None:
        self._job(event)["cancel_requested"] = event["at"]

    def _on_run(self, event: Mapping[str, Any]) -> None:
        if self.runs and self.runs[-1]["run"] == event["run"]:
            self.runs[-1].update(event.get("summary", {}))  # a later step of the same run
            return
        self.runs.append({"run": event["run"], "at": event["at"], **event.get("summary", {})})
        del self.runs[:-RUNS_KEPT]

    def _on_spend(self, event: Mapping[str, Any]) -> None:
        # A model call's tokens (priced when read, by `labelloop.accounting`).
        self._job(event).setdefault("spend", []).append(
            {k: event[k] for k in ("run", "at", "model", "prompt_tokens", "output_tokens")}
        )

    def _on_use(self, event: Mapping[str, Any]) -> None:
        self.used[event["stage"]] = {
            "run": event["run"],
            "at": event["at"],
            "items": event["items"],
            "annotations": event.get("annotations"),
            **({"model": event["model"]} if "model" in event else {}),
        }


def _event_name(seq: int) -> str:
    return f"{seq:010d}.json"


class Ledger:
    """The ledger of one `state_uri` ("" keeps it in memory: nothing is written).

    Use `Ledger.load(state_uri)`, then `append(kind, ...)` for each change; `compact()` folds the
    log into the snapshot. Appends fail with `ConcurrentWriter` if someone else appended since.
    """

    def __init__(self, state_uri: str, state: State, seq: int, snapshot_generation: int | None):
        self.state_uri = state_uri
        self.state = state
        self.seq = seq
        self._snapshot_seq = seq
        self._snapshot_generation = snapshot_generation

    @property
    def root(self) -> str:
        return storage.join(self.state_uri, LEDGER)

    @staticmethod
    def uri(state_uri: str, *parts: str) -> str:
        return storage.join(state_uri, LEDGER, *parts)

    @classmethod
    def load(cls, state_uri: str) -> Ledger:
        """Read the snapshot and the events after it."""
        if not state_uri:
            return cls("", State(), 0, None)
        snap = atomic.read(cls.uri(state_uri, SNAPSHOT))
        state, seq, generation = State(), 0, None
        if snap is not None:
            data = json.loads(snap[0])
            state, seq, generation = (
                State.from_json(data["state"]),
                int(data["last_event"]),
                snap[1],
            )
        ledger = cls(state_uri, state, seq, generation)
        for number, event in ledger._events_after(seq):
            if number != ledger.seq + 1:
                raise LedgerError(f"event {ledger.seq + 1} is missing (found {number} next)")
            ledger.state.apply(event)
            ledger.seq = number
        return ledger

    def _event_numbers(self) -> list[int]:
        folder = self.uri(self.state_uri, EVENTS)
        if not storage.is_gcs(folder) and not storage.local_path(folder).is_dir():
            return []
        return sorted(
            int(storage.basename(u)[:-5])
            for u in storage.iter_files(folder, suffixes=(".json",))
            if storage.basename(u)[:-5].isdigit()
        )

    def _events_after(self, seq: int) -> Iterable[tuple[int, dict[str, Any]]]:
        for number in self._event_numbers():
            if number > seq:
                text = storage.read_text(self.uri(self.state_uri, EVENTS, _event_name(number)))
                yield number, json.loads(text)

    def append(self, kind: str, *, run: str, **body: Any) -> dict[str, Any]:
        """Validate the event against the state, write it, and fold it in."""
        event = {"seq": self.seq + 1, "kind": kind, "at": now(), "run": run, **body}
        try:
            self.state.apply(event)  # raises before anything is written
            if self.state_uri:
                uri = self.uri(self.state_uri, EVENTS, _event_name(event["seq"]))
                if not atomic.create(uri, json.dumps(event, sort_keys=True).encode("utf-8")):
                    raise ConcurrentWriter(
                        f"another run appended event {event['seq']} to {self.root} since this "
                        "run read it; run again (the lease should prevent this)"
                    )
        except BaseException:
            # The state may be half-changed: go back to what is written.
            fresh = Ledger.load(self.state_uri)
            self.state, self.seq = fresh.state, fresh.seq
            self._snapshot_seq, self._snapshot_generation = (
                fresh._snapshot_seq,
                fresh._snapshot_generation,
            )
            raise
        self.seq = event["seq"]
        return event

    def compact(self) -> None:
        """Write the snapshot (state up to the last event) if events were added since."""
        if not self.state_uri or self.seq == self._snapshot_seq:
            return
        data = json.dumps(
            {"version": 1, "last_event": self.seq, "state": self.state.to_json()}, sort_keys=True
        ).encode("utf-8")
        uri = self.uri(self.state_uri, SNAPSHOT)
        try:
            atomic.replace(uri, data, generation=self._snapshot_generation)
        except atomic.PreconditionFailed:
            # Someone else compacted: theirs is at least as new as the events they read.
            log.info("snapshot already replaced by another writer; kept theirs")
            return
        got = atomic.read(uri)
        self._snapshot_generation = got[1] if got else None
        self._snapshot_seq = self.seq

    # -- annotations --------------------------------------------------------------------------

    def annotations_uri(self, job_key: str) -> str:
        return self.uri(self.state_uri, ANNOTATIONS, f"{job_key}.jsonl")

    def read_annotations(self, job_key: str) -> list[dict[str, Any]]:
        """Every annotation row collected from a job (empty when none yet)."""
        if not self.state_uri:
            return list(self._memory_annotations.get(job_key, []))
        uri = self.annotations_uri(job_key)
        got = atomic.read(uri)
        if got is None:
            return []
        rows, bad = storage.parse_jsonl_objects(got[0].splitlines(), source=uri, required=None)
        if bad:  # written whole by atomic writes: a bad line means the file was damaged
            raise LedgerError(f"{bad[0]}: the job's annotation file is damaged")
        return [row for _, row in rows]

    @property
    def _memory_annotations(self) -> dict[str, list[dict[str, Any]]]:
        store: dict[str, list[dict[str, Any]]] = self.__dict__.setdefault("_mem", {})
        return store

    def merge_annotations(
        self, job_key: str, rows: Iterable[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Add newly collected rows to the job's file (one row per item and annotator; a
        later answer by the same annotator replaces the earlier one); returns every row."""
        existing = self.read_annotations(job_key)
        merged = {(r["item"], r["annotator"]): r for r in existing}
        for row in rows:
            key = (row["item"], row["annotator"])
            old = merged.get(key)
            if old is None or _answer(old) != _answer(row):
                merged[key] = row
        out = [merged[k] for k in sorted(merged)]
        if not self.state_uri:
            self._memory_annotations[job_key] = out
            return out
        if out != existing:
            text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in out)
            storage.write_text(self.annotations_uri(job_key), text)
        return out

    def collected_annotations(self) -> list[dict[str, Any]]:
        """Every annotation collected so far that counts: those of labeled items, and the
        partial answers of queued items, each from the item's current job (an item returned
        to the pool, e.g. for relabeling, has none until it is labeled again)."""
        wanted: dict[str, set[str]] = {}
        for item, entry in self.state.items.items():
            if entry["state"] in (LABELED, QUEUED):
                wanted.setdefault(entry["job"], set()).add(item)
        rows: list[dict[str, Any]] = []
        for job_key in sorted(wanted):
            rows.extend(r for r in self.read_annotations(job_key) if r["item"] in wanted[job_key])
        return rows


PROVENANCE = ("provider", "job", "round", "collected_round", "collected_at")


def _answer(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in PROVENANCE}


def annotation_keys_digest(rows: Iterable[Mapping[str, Any]]) -> str:
    """A digest of the (item, annotator) pairs of rows: `check` finds a lost annotation by it."""
    import hashlib

    keys = sorted(f"{r['item']}\t{r['annotator']}" for r in rows)
    return hashlib.sha256("\n".join(keys).encode("utf-8")).hexdigest()[:16]


def return_items(state_uri: str, items: Sequence[str], *, reason: str, run: str = "") -> int:
    """Send items back to the pool (e.g. for relabeling after review); returns how many moved.

    Labeled or queued items go back (queued ones leave their job); items already in the pool
    or unknown are skipped. Their annotations stay in the ledger; the next selection may pick
    them again and their new job's annotations are then the ones used.
    """
    ledger = Ledger.load(state_uri)
    moved = 0
    by_job: dict[str, list[str]] = {}
    for item in items:
        entry = ledger.state.items.get(item)
        if entry and entry["state"] in (QUEUED, LABELED):
            by_job.setdefault(str(entry.get("job") or ""), []).append(item)
    for job_key, group in sorted(by_job.items()):
        queued = [i for i in group if ledger.state.items[i]["state"] == QUEUED]
        labeled = [i for i in group if ledger.state.items[i]["state"] == LABELED]
        if queued:
            ledger.append(
                "return", run=run, items=queued, reason=reason, job=job_key, **{"from": [QUEUED]}
            )
        if labeled:
            ledger.append("return", run=run, items=labeled, reason=reason, **{"from": [LABELED]})
        moved += len(group)
    ledger.compact()
    return moved


def request_cancel(state_uri: str, job_key: str, *, run: str = "") -> None:
    """Mark an open job for cancellation: the next run cancels it at the provider, keeps what
    was labeled and returns the rest to the pool."""
    ledger = Ledger.load(state_uri)
    job = ledger.state.jobs.get(job_key)
    if job is None or job["status"] != OPEN:
        raise LedgerError(f"no open job {job_key} in {ledger.root}")
    ledger.append("cancel", run=run, job=job_key)
    ledger.compact()


def open_job_rows(state: State) -> list[dict[str, Any]]:
    """One row per open job, oldest first: provider, key, round, age, items queued and labeled,
    progress at the provider, collections and errors (what `labelloop state`, the console and
    the report show)."""
    rows = []
    for j in state.open_jobs():
        mine = [state.items.get(i, {}) for i in j["items"]]
        queued = sum(1 for e in mine if e.get("state") == QUEUED and e.get("job") == j["key"])
        rows.append(
            {
                **{k: j[k] for k in ("key", "provider", "round", "created_at")},
                **{k: j.get(k, 0) for k in ("labeled", "annotations", "collections", "errors")},
                "external_id": j.get("external_id"),
                "age_hours": round(age_hours(j["created_at"]), 2),
                "items": len(j["items"]),
                "queued": queued,
                "progress": j.get("progress", {}),
                "last_collected_at": j.get("last_collected_at"),
                "last_error": j.get("last_error", ""),
                "cancel_requested": bool(j.get("cancel_requested")),
            }
        )
    return rows


def excluded_ids(state_uri: str) -> set[str]:
    """Items a selection must not pick: queued in an open job or labeled."""
    if not state_uri:
        return set()
    return Ledger.load(state_uri).state.ids_in(QUEUED, LABELED)


def check(state_uri: str) -> list[str]:
    """The ledger's invariants; returns the violations (empty when it is valid).

    Every item in exactly one state (a replay of the whole log agrees with the snapshot), every
    queued item in an open job that lists it, every labeled item with annotations from its job,
    and every annotation a collection recorded still present.
    """
    problems: list[str] = []
    try:
        ledger = Ledger.load(state_uri)
    except (LedgerError, KeyError, ValueError) as exc:
        return [f"the ledger does not load: {exc}"]
    replay = State()
    try:
        for number, event in Ledger(state_uri, State(), 0, None)._events_after(0):
            if number <= ledger.seq:
                replay.apply(event)
    except LedgerError as exc:
        return [f"replaying the event log: {exc}"]
    if replay.items != ledger.state.items:
        names = sorted(set(replay.items) | set(ledger.state.items))
        bad = next(i for i in names if replay.items.get(i) != ledger.state.items.get(i))
        problems.append(f"item {bad}: the snapshot disagrees with the event log")
    state = ledger.state
    seen_in_jobs: dict[str, str] = {}
    for job in state.jobs.values():
        for item in job["items"]:
            if job["status"] == OPEN and item in seen_in_jobs:
                problems.append(
                    f"item {item} is in two open jobs ({seen_in_jobs[item]}, {job['key']})"
                )
            if job["status"] == OPEN:
                seen_in_jobs[item] = job["key"]
    for item, entry in sorted(state.items.items()):
        if entry["state"] not in STATES:
            problems.append(f"item {item}: unknown state {entry['state']!r}")
        elif entry["state"] == QUEUED:
            owner = state.jobs.get(entry.get("job") or "")
            if owner is None or owner["status"] != OPEN:
                problems.append(f"item {item} is queued but its job {entry.get('job')} is not open")
            elif item not in owner["items"]:
                problems.append(f"item {item} is queued in {owner['key']}, which does not list it")
    annotated: dict[str, set[str]] = {}
    for job in sorted(state.jobs.values(), key=lambda j: j["key"]):
        rows = ledger.read_annotations(job["key"])
        annotated[job["key"]] = {r["item"] for r in rows}
        if len(rows) < int(job.get("annotations", 0)):
            problems.append(
                f"job {job['key']}: {job['annotations']} annotation(s) collected, "
                f"{len(rows)} in {ledger.annotations_uri(job['key'])}"
            )
        elif (
            job.get("annotation_keys")
            and len(rows) == int(job["annotations"])
            and annotation_keys_digest(rows) != job["annotation_keys"]
        ):
            problems.append(f"job {job['key']}: collected annotations changed since collection")
    for item, entry in sorted(state.items.items()):
        if entry["state"] == LABELED and item not in annotated.get(entry.get("job") or "", set()):
            problems.append(
                f"item {item} is labeled but job {entry.get('job')} has no annotation of it"
            )
    return problems


def item_records(state_uri: str) -> dict[str, dict[str, Any]]:
    """The import record (URI or inline text) of every item the ledger has seen, by id: later
    rounds rebuild earlier rounds' items from it (inline text is nowhere else)."""
    if not state_uri:
        return {}
    return {
        item: dict(entry["record"])
        for item, entry in Ledger.load(state_uri).state.items.items()
        if entry.get("record")
    }
