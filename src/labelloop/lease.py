"""One writer at a time: a lease file in `state_uri` (`ledger/lease.json`).

A run takes the lease before it changes the ledger and gives it back at the end. A second run
finds it held and waits (`wait_seconds`) or stops with a message naming the holder. A lease is
stale, and taken over, when it has expired (`expires_at`; a run renews it at every step) or when
its holder ran on this machine and that process is gone (a killed local run does not block the
next one). The holder is a run id and a process: the steps of one run (kfp.local subprocesses of
the runner, or the tasks of one Vertex pipeline job) share their run's lease.

A run gives its lease back when it ends, whatever the outcome: the last step on success, the
pipeline's exit handler on failure or cancellation (`release`: only the run's own lease, by its
run id, and only the version it read). `labelloop state URI --break-lease` removes a lease
whose holder will never give it back (after saying who holds it and for how long).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from labelloop import atomic, storage
from labelloop.errors import LabelloopError

log = logging.getLogger(__name__)

LEASE = "ledger/lease.json"
# Renewed at every step; long enough for an AutoML training between two steps of a run.
TTL_SECONDS = 6 * 3600.0


class LeaseHeld(LabelloopError):
    """Another run holds the state's lease."""


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds (or wants) the lease."""

    run: str
    host: str
    pid: int

    @classmethod
    def here(cls, run: str) -> Holder:
        return cls(run=run, host=socket.gethostname(), pid=os.getpid())


def alive(pid: int) -> bool:
    """Whether a process of this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ancestors() -> set[int]:
    """This process and its ancestors (Linux /proc; elsewhere just the parent)."""
    out = {os.getpid(), os.getppid()}
    pid = os.getppid()
    for _ in range(32):
        stat = Path(f"/proc/{pid}/stat")
        if not stat.is_file():
            break
        try:
            pid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        if pid <= 1:
            break
        out.add(pid)
    return out


def _record(holder: Holder, ttl: float) -> bytes:
    stamp = dt.datetime.now(dt.UTC)
    return json.dumps(
        {
            "run": holder.run,
            "host": holder.host,
            "pid": holder.pid,
            "acquired_at": stamp.isoformat(timespec="seconds"),
            "expires_at": (stamp + dt.timedelta(seconds=ttl)).isoformat(timespec="seconds"),
        },
        sort_keys=True,
    ).encode("utf-8")


def _ours(rec: dict[str, Any], holder: Holder) -> bool:
    if holder.run and rec.get("run") == holder.run:
        return True
    return rec.get("host") == holder.host and int(rec.get("pid", -1)) in _ancestors()


def _stale(rec: dict[str, Any], holder: Holder) -> str:
    """Why the lease may be taken over ("" when its holder may still be working)."""
    expires = dt.datetime.fromisoformat(str(rec.get("expires_at")))
    if expires <= dt.datetime.now(dt.UTC):
        return f"expired at {rec.get('expires_at')}"
    if rec.get("host") == holder.host and not alive(int(rec.get("pid", -1))):
        return f"its holder (pid {rec.get('pid')} on {rec.get('host')}) is gone"
    return ""


def held_for(rec: dict[str, Any]) -> str:
    """How long the lease has been held, in words ("?" when the record has no time)."""
    try:
        since = dt.datetime.fromisoformat(str(rec.get("acquired_at")))
    except ValueError:
        return "?"
    minutes = max((dt.datetime.now(dt.UTC) - since).total_seconds(), 0.0) / 60.0
    return f"{minutes:.0f} min" if minutes < 90 else f"{minutes / 60.0:.1f} h"


def describe(rec: dict[str, Any]) -> str:
    return (
        f"run {rec.get('run') or '?'} (pid {rec.get('pid')} on {rec.get('host')}), "
        f"since {rec.get('acquired_at')}, expires {rec.get('expires_at')}"
    )


def read(state_uri: str) -> dict[str, Any] | None:
    """The current lease record, or None."""
    got = atomic.read(storage.join(state_uri, LEASE))
    return json.loads(got[0]) if got else None


def acquire(
    state_uri: str,
    holder: Holder,
    *,
    wait_seconds: float = 0.0,
    ttl_seconds: float = TTL_SECONDS,
    poll_seconds: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Take (or renew) the lease for `holder`.

    Raises:
        LeaseHeld: Another live run holds it after `wait_seconds`; the message names it.
    """
    if not state_uri:
        return
    uri = storage.join(state_uri, LEASE)
    waited = 0.0
    while True:
        got = atomic.read(uri)
        if got is None:
            if atomic.create(uri, _record(holder, ttl_seconds)):
                log.info("lease on %s taken by run %s", state_uri, holder.run)
                return
            continue
        rec = json.loads(got[0])
        if _ours(rec, holder):
            try:
                # Keep the original holder's identity: renewing extends the time only.
                same = Holder(str(rec.get("run", "")), str(rec["host"]), int(rec["pid"]))
                atomic.replace(uri, _record(same, ttl_seconds), generation=got[1])
            except atomic.PreconditionFailed:
                continue
            return
        why = _stale(rec, holder)
        if why:
            log.warning("lease on %s taken over: %s (%s)", state_uri, why, describe(rec))
            try:
                atomic.replace(uri, _record(holder, ttl_seconds), generation=got[1])
            except atomic.PreconditionFailed:
                continue
            return
        if waited >= wait_seconds:
            raise LeaseHeld(
                f"{state_uri} is in use by {describe(rec)}, for {held_for(rec)}. One run at a "
                "time changes the loop's state: wait for that run to finish, then run again; "
                "if it has stopped for good (a failed run), free the state with `labelloop "
                f"state {state_uri} --break-lease`."
            )
        step = min(poll_seconds, max(wait_seconds - waited, 0.01))
        sleep(step)
        waited += step


def release(state_uri: str, holder: Holder) -> bool:
    """Give the lease back if `holder` has it (its run id, or its process on this host), and
    only the version read here (a lease another run took over in between stays); True when it
    was released."""
    if not state_uri:
        return False
    uri = storage.join(state_uri, LEASE)
    got = atomic.read(uri)
    if got is None:
        return False
    rec = json.loads(got[0])
    mine = (holder.run and rec.get("run") == holder.run) or (
        rec.get("host") == holder.host and int(rec.get("pid", -1)) == holder.pid
    )
    if not mine:
        return False
    try:
        return atomic.delete(uri, generation=got[1])
    except atomic.PreconditionFailed:
        return False


def break_lease(state_uri: str, rec: dict[str, Any]) -> bool:
    """Remove the lease if it is still the one described by `rec` (what the user was shown and
    confirmed); False when it is gone or changed since (then nothing is removed)."""
    uri = storage.join(state_uri, LEASE)
    got = atomic.read(uri)
    if got is None or json.loads(got[0]) != rec:
        return False
    try:
        removed = atomic.delete(uri, generation=got[1])
    except atomic.PreconditionFailed:
        return False
    if removed:
        log.warning("lease on %s broken: it was held by %s", state_uri, describe(rec))
    return removed
