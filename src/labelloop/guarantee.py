"""Auto-accept with an error guarantee: a threshold certified by an upper confidence bound,
audits every round, and a pause when the audited error drifts above the target.

A model answer is auto-accepted when its confidence reaches a threshold. A point estimate of
precision on a small calibration sample (0.964 on 40 items, say) says little: the threshold
here is the lowest one whose accepted calibration items have a one-sided Clopper-Pearson
*upper* bound on their error rate at or below `target_error` with probability `confidence`
(for example error <= 5% at 95%).

Trying many thresholds and keeping the best would spend the 5% many times over. The
thresholds are tested in a fixed order instead (fixed-sequence testing, as in Learn then Test,
Angelopoulos et al. 2021): from the most confident down, starting where enough calibration
items are accepted for a certificate to be possible at all (an order that depends on the
confidences only, never on the labels), stopping at the first threshold that fails. Such a
sequence needs no multiplicity correction.

Every round a small random share of the auto-accepted items also goes to people (`audit_ids`).
Their labels re-estimate the error of what is being accepted now, on the items actually being
labeled (active learning picks harder items than a calibration sample). `decide` pauses
auto-accept, with the reason, when the audited error is significantly above the target (the
Clopper-Pearson *lower* bound of the last round, or of the last rounds pooled, exceeds it). A
paused round sends everything to people, and those labels are a fresh calibration sample: a
certificate computed from them resumes auto-accept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from labelloop.errors import InputError

METHOD = "clopper_pearson_fixed_sequence"
# Thresholds tried, most confident first: a grid fixed in advance, so the order of the tests
# does not depend on the labels.
GRID = np.round(np.linspace(1.0, 0.0, 201), 6)
STARTS = (1, 2, 4, 8)


def upper_bound(errors: int, n: int, *, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson upper bound of an error rate (1.0 with no sample)."""
    from scipy.stats import beta

    _check(errors, n, confidence)
    if n == 0 or errors >= n:
        return 1.0
    return float(beta.ppf(confidence, errors + 1, n - errors))


def lower_bound(errors: int, n: int, *, confidence: float = 0.95) -> float:
    """One-sided Clopper-Pearson lower bound of an error rate (0.0 with no errors)."""
    from scipy.stats import beta

    _check(errors, n, confidence)
    if n == 0 or errors == 0:
        return 0.0
    return float(beta.ppf(1.0 - confidence, errors, n - errors + 1))


def _check(errors: int, n: int, confidence: float) -> None:
    if n < 0 or errors < 0 or errors > n:
        raise InputError(f"need 0 <= errors <= n, got errors={errors}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise InputError(f"must lie in (0, 1), got {confidence}", field="confidence")


def min_sample(target_error: float, confidence: float) -> int:
    """Fewest accepted items that can certify `target_error` at all (with zero errors)."""
    if not 0.0 < target_error < 1.0:
        raise InputError(f"must lie in (0, 1), got {target_error}", field="target_error")
    return math.ceil(math.log(1.0 - confidence) / math.log(1.0 - target_error))


@dataclasses.dataclass(frozen=True)
class Certificate:
    """The certified threshold and the evidence for it.

    `threshold` is `inf` when nothing can be certified (accept nothing); `reason` says why.
    `id` names the certificate in label lineage (a hash of its content).
    """

    threshold: float
    target_error: float
    confidence: float
    sample: int
    accepted: int
    errors: int
    upper_bound: float | None
    reason: str = ""
    round: int = 0
    method: str = METHOD

    @property
    def certified(self) -> bool:
        return math.isfinite(self.threshold)

    @property
    def id(self) -> str:
        payload = json.dumps(self._fields(), sort_keys=True)
        return "cal-" + hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]

    def _fields(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["threshold"] = None if math.isinf(self.threshold) else self.threshold
        return row

    def to_json(self) -> dict[str, Any]:
        return {**self._fields(), "id": self.id}

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Certificate:
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in row.items() if k in fields}
        kwargs["threshold"] = math.inf if row.get("threshold") is None else row["threshold"]
        return cls(**kwargs)


def certify(
    confidence_scores: np.ndarray,
    correct: np.ndarray,
    *,
    target_error: float = 0.05,
    confidence: float = 0.95,
    round: int = 0,
    grid: Sequence[float] | None = None,
    starts: Sequence[int] = STARTS,
) -> Certificate:
    """The lowest threshold whose accepted calibration items certify `target_error`.

    Fixed-sequence testing down `grid` from several starting points: start `s` begins at the
    most confident threshold accepting at least `s` times the smallest certifiable sample.
    Each sequence runs at level `(1 - confidence) / len(starts)` (a union bound over the
    starts), so a late start on a large sample is not lost to an unlucky early one.

    Args:
        confidence_scores: Shape (n,), the model's confidence on human-labeled items (a random
            sample of the items to be labeled, or a paused round's items).
        correct: Shape (n,), whether the model's answer matched the human label.
        target_error: The error rate accepted labels may have at most.
        confidence: Probability that the certified bound holds.
        round: The round the sample comes from (audits after it are checked for drift).
        grid: Thresholds to try, most confident first (default `GRID`).
        starts: Multiples of the smallest certifiable sample where sequences start.

    Returns:
        The certificate; its threshold is `inf` (accept nothing) when no threshold certifies.
    """
    conf = np.asarray(confidence_scores, dtype=float)
    ok = np.asarray(correct, dtype=bool)
    if conf.shape != ok.shape or conf.ndim != 1:
        raise InputError("confidence and correct must be 1-d arrays of the same length")
    if not starts or min(starts) < 1:
        raise InputError("need at least one start, each >= 1", field="starts")
    thresholds = np.asarray(GRID if grid is None else grid, dtype=float)
    if np.any(np.diff(thresholds) > 0):
        raise InputError("thresholds must be given most confident first", field="grid")
    level = 1.0 - (1.0 - confidence) / len(starts)
    need = min_sample(target_error, level)

    def cert(threshold: float, n: int, k: int, ucb: float | None, reason: str = "") -> Certificate:
        return Certificate(
            threshold, target_error, confidence, int(conf.size), n, k, ucb, reason, round
        )

    if conf.size < need:
        return cert(
            math.inf,
            0,
            0,
            None,
            f"{conf.size} calibration item(s); certifying error <= {target_error:.0%} at "
            f"{confidence:.0%} needs at least {need}",
        )
    accepted_at = (conf[None, :] >= thresholds[:, None]).sum(axis=1)
    wrong_at = ((conf[None, :] >= thresholds[:, None]) & ~ok[None, :]).sum(axis=1)
    best: int | None = None
    for start in sorted(set(starts)):
        # Where this sequence starts depends on the confidences only, never on the labels.
        starting = np.flatnonzero(accepted_at >= start * need)
        if starting.size == 0:
            continue
        for i in range(int(starting[0]), thresholds.size):
            if upper_bound(int(wrong_at[i]), int(accepted_at[i]), confidence=level) > target_error:
                break
            best = i if best is None else max(best, i)
    if best is not None:
        n, k = int(accepted_at[best]), int(wrong_at[best])
        return cert(float(thresholds[best]), n, k, upper_bound(k, n, confidence=level))
    first = int(np.flatnonzero(accepted_at >= need)[0])
    n, k = int(accepted_at[first]), int(wrong_at[first])
    return cert(
        math.inf,
        0,
        0,
        None,
        f"no threshold certifies error <= {target_error:.0%}: the {n} most confident "
        f"calibration answers have {k} error(s), upper bound "
        f"{upper_bound(k, n, confidence=level):.1%} at {confidence:.0%}",
    )


def audit_ids(
    accepted: Iterable[str], *, share: float = 0.05, minimum: int = 5, seed: int = 0
) -> set[str]:
    """A random share of auto-accepted items for people to label too (at least `minimum`).

    Deterministic in the seed and the item ids (a retried step audits the same items).
    """
    if not 0.0 <= share <= 1.0:
        raise InputError("must lie in [0, 1]", field="audit_share")
    ids = sorted(set(accepted))
    if not ids or (share == 0.0 and minimum <= 0):
        return set()

    def key(item: str) -> str:
        return hashlib.sha256(f"{seed}:audit:{item}".encode()).hexdigest()

    count = min(len(ids), max(math.ceil(share * len(ids)), minimum))
    return set(sorted(ids, key=key)[:count])


@dataclasses.dataclass(frozen=True)
class AuditRound:
    """One round's audit: auto-accepted items, how many people checked, how many were wrong."""

    round: int
    threshold: float
    accepted: int
    audited: int
    errors: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> AuditRound:
        return cls(
            int(row["round"]),
            float(row["threshold"]),
            int(row["accepted"]),
            int(row["audited"]),
            int(row["errors"]),
        )


def audit_round(
    round: int,
    *,
    threshold: float,
    model_labels: dict[str, str],
    human_labels: dict[str, str],
    audited: Iterable[str],
) -> AuditRound:
    """Score an audit: the model's accepted answers against people's labels of the same items.

    Audited items people did not (yet) label are left out of the count.
    """
    checked = [i for i in audited if i in human_labels and i in model_labels]
    errors = sum(model_labels[i] != human_labels[i] for i in checked)
    return AuditRound(round, threshold, len(model_labels), len(checked), errors)


@dataclasses.dataclass(frozen=True)
class Decision:
    """Whether to auto-accept this round, at which threshold, and the evidence shown."""

    status: str  # "active", "paused" or "uncertified"
    threshold: float
    reason: str
    certificate: Certificate
    audited: int
    audit_errors: int
    audit_upper_bound: float | None
    trend: list[dict[str, Any]]

    @property
    def accepting(self) -> bool:
        return self.status == "active"

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "threshold": None if math.isinf(self.threshold) else self.threshold,
            "reason": self.reason,
            "certificate": self.certificate.to_json(),
            "audited": self.audited,
            "audit_errors": self.audit_errors,
            "audit_upper_bound": self.audit_upper_bound,
            "trend": self.trend,
        }


def decide(
    certificate: Certificate,
    audits: Sequence[AuditRound],
    *,
    window: int = 3,
    drift_confidence: float = 0.95,
) -> Decision:
    """Auto-accept at the certificate's threshold unless audits since it show drift.

    Audits from rounds after the certificate's are checked: the last round alone and the last
    `window` rounds pooled. When either's Clopper-Pearson lower bound (at `drift_confidence`)
    is above the target, the error has drifted: pause. The audited upper bound over the window
    is reported either way.
    """
    target = certificate.target_error
    since = [a for a in audits if a.round > certificate.round]
    recent = since[-window:]
    n = sum(a.audited for a in recent)
    k = sum(a.errors for a in recent)
    trend = [
        {
            "round": a.round,
            "audited": a.audited,
            "errors": a.errors,
            "error_rate": a.errors / a.audited if a.audited else None,
        }
        for a in audits
    ]
    ucb = upper_bound(k, n, confidence=certificate.confidence) if n else None

    def decision(status: str, threshold: float, reason: str) -> Decision:
        return Decision(status, threshold, reason, certificate, n, k, ucb, trend)

    checks = [(f"round {since[-1].round}", since[-1:])] if since else []
    if len(recent) > 1:
        checks.append((f"rounds {recent[0].round}-{recent[-1].round}", recent))
    for label, group in checks:
        gn = sum(a.audited for a in group)
        gk = sum(a.errors for a in group)
        if gn and lower_bound(gk, gn, confidence=drift_confidence) > target:
            low = lower_bound(gk, gn, confidence=drift_confidence)
            return decision(
                "paused",
                math.inf,
                f"auto-accept paused: audited error {gk}/{gn} ({gk / gn:.1%}) in {label} is "
                f"above the {target:.0%} target (lower bound {low:.1%} at "
                f"{drift_confidence:.0%}); every item goes to people until a new "
                "calibration certifies a threshold",
            )
    if not certificate.certified:
        return decision("uncertified", math.inf, certificate.reason)
    reason = (
        f"auto-accept at confidence >= {certificate.threshold:.3f}: error <= "
        f"{certificate.upper_bound or 0:.1%} at {certificate.confidence:.0%} on "
        f"{certificate.accepted} calibration item(s)"
    )
    if n:
        reason += f"; audits {k}/{n} wrong, upper bound {ucb:.1%}"
    return decision("active", certificate.threshold, reason)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Policy:
    """How `gemini_then_human` auto-accepts under a guarantee (its `guarantee` option).

    Args:
        target_error: The error rate accepted labels may have at most.
        confidence: Probability that the certified bound holds.
        audit_share: Share of auto-accepted items people label too, every round.
        audit_minimum: Fewest audited items a round (all of them when fewer are accepted).
        audits_uri: JSONL where audits and renewed certificates are kept across rounds
            (default: `audits.jsonl` in the loop's state).
    """

    target_error: float = 0.05
    confidence: float = 0.95
    audit_share: float = 0.05
    audit_minimum: int = 20
    audits_uri: str = ""

    def validate(self, field: str) -> None:
        """Range checks, naming the bad option."""
        if not 0.0 < self.target_error < 1.0:
            raise InputError("must lie in (0, 1)", field=f"{field}.target_error")
        if not 0.0 < self.confidence < 1.0:
            raise InputError("must lie in (0, 1)", field=f"{field}.confidence")
        if not 0.0 <= self.audit_share <= 1.0:
            raise InputError("must lie in [0, 1]", field=f"{field}.audit_share")
        if self.audit_minimum < 0:
            raise InputError("must be >= 0", field=f"{field}.audit_minimum")


def read_history(uri: str) -> tuple[list[AuditRound], Certificate | None]:
    """Audits (one per job, oldest first) and the newest renewed certificate kept at `uri`."""
    from labelloop import storage

    if not uri or not storage.exists(uri):
        return [], None
    audits: list[AuditRound] = []
    latest: Certificate | None = None
    for row in _history_rows(uri):
        if "certificate" in row:
            latest = Certificate.from_json(row["certificate"])
        else:
            audits.append(AuditRound.from_json(row))
    return audits, latest


def _history_rows(uri: str) -> list[dict[str, Any]]:
    """The history file's rows (none when it does not exist yet); a damaged line is an error."""
    from labelloop import storage

    rows, bad = storage.read_jsonl_objects(uri, required=None)
    if bad:
        raise InputError(bad[0].reason, source=uri, line=bad[0].line)
    return [row for _, row in rows]


def write_history(
    uri: str, *, job: str, audit: AuditRound | None, certificate: Certificate | None
) -> None:
    """Record a job's audit (and a renewed certificate) at `uri`; a retried job replaces its own."""
    from labelloop import storage

    rows = [r for r in _history_rows(uri) if r.get("job") != job]
    if audit is not None:
        rows.append({**audit.to_json(), "job": job})
    if certificate is not None:
        rows.append({"certificate": certificate.to_json(), "job": job})
    storage.write_jsonl(uri, rows)
