"""What labels cost, per source, per round and in total, and a budget selection respects.

Three sources are priced:

* **human** labels: a rate per label (`human_usd_per_label`) and/or per hour of work
  (`human_usd_per_hour`) applied to the time the provider reports (Label Studio's `lead_time`
  per annotation). A per-hour rate with no reported time falls back to
  `seconds_per_label` (an estimate, counted in `estimated_seconds`);
* **model** labels: prompt and output tokens times the provider's price table
  (`labelloop.providers.gemini_models.token_cost`, the one table; a model missing from it is
  counted as `unpriced`, never as free);
* **compute**: hours of a step times `compute_usd_per_hour`, where the step reports them.

A `Budget` caps spend per run and in total. Selection asks it how many items it can afford
(`affordable_items`: fewer items rather than overspend) and whether the loop must stop
(`stop_reason`). The cost of one item is estimated before labeling: from the rates, and from
earlier rounds' real cost per item when there were any, whichever is higher, so the estimate
errs towards spending less.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from labelloop.errors import InputError

DEFAULT_SECONDS_PER_LABEL = 30.0


@dataclasses.dataclass(frozen=True)
class Rates:
    """Prices: USD per human label and per hour, USD per compute hour.

    Args:
        human_usd_per_label: Paid per human annotation (a crowd rate).
        human_usd_per_hour: Paid per hour of annotation time the provider reports.
        seconds_per_label: Time assumed per human label when the provider reports none.
        compute_usd_per_hour: Paid per hour of the steps that report compute time.
    """

    human_usd_per_label: float = 0.0
    human_usd_per_hour: float = 0.0
    seconds_per_label: float = DEFAULT_SECONDS_PER_LABEL
    compute_usd_per_hour: float = 0.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not math.isfinite(value) or value < 0:
                raise InputError(
                    f"must be a finite number >= 0, got {value!r}", field=f"costs.{field.name}"
                )

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Rates:
        """Rates from a mapping with this class's field names (unknown keys are an error)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise InputError(
                f"unknown cost option {unknown[0]!r}; expected one of {', '.join(sorted(names))}",
                field=f"costs.{unknown[0]}",
            )
        values: dict[str, float] = {}
        for key, value in options.items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                raise InputError(f"not a number: {value!r}", field=f"costs.{key}") from None
        return cls(**values)

    @property
    def priced(self) -> bool:
        """Whether any human rate is set (otherwise human labels cost nothing we know of)."""
        return self.human_usd_per_label > 0 or self.human_usd_per_hour > 0


@dataclasses.dataclass(frozen=True)
class Cost:
    """Spend and what it bought. Adds with `+`; `total_usd` is the sum of the sources."""

    human_usd: float = 0.0
    model_usd: float = 0.0
    compute_usd: float = 0.0
    human_labels: int = 0
    model_labels: int = 0
    items: int = 0
    human_seconds: float = 0.0
    estimated_seconds: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    unpriced: int = 0

    @property
    def total_usd(self) -> float:
        return self.human_usd + self.model_usd + self.compute_usd

    @property
    def usd_per_item(self) -> float | None:
        return self.total_usd / self.items if self.items else None

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            **{
                f.name: getattr(self, f.name) + getattr(other, f.name)
                for f in dataclasses.fields(self)
            }
        )

    def to_json(self) -> dict[str, Any]:
        row = dataclasses.asdict(self)
        row["total_usd"] = self.total_usd
        return row

    @classmethod
    def from_json(cls, row: Mapping[str, Any]) -> Cost:
        """The inverse of `to_json` (derived and unknown keys are ignored)."""
        kwargs: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name in row and row[field.name] is not None:
                kind = int if field.type in ("int", int) else float
                kwargs[field.name] = kind(row[field.name])
        return cls(**kwargs)


def total(costs: Iterable[Cost]) -> Cost:
    """The sum of several costs (an empty sum is zero)."""
    out = Cost()
    for cost in costs:
        out = out + cost
    return out


def human_cost(rates: Rates, *, lead_times: Iterable[float | None]) -> Cost:
    """The cost of human annotations, one entry per annotation: its reported seconds or None.

    Per-label rates apply to every annotation; the per-hour rate to the reported time, or to
    `seconds_per_label` where none was reported (that time is counted as estimated).
    """
    labels = 0
    seconds = 0.0
    estimated = 0.0
    for lead in lead_times:
        labels += 1
        if lead is None or not math.isfinite(lead) or lead < 0:
            estimated += rates.seconds_per_label
        else:
            seconds += float(lead)
    usd = labels * rates.human_usd_per_label
    if rates.human_usd_per_hour:
        usd += (seconds + estimated) / 3600.0 * rates.human_usd_per_hour
    else:
        estimated = 0.0  # nothing is paid by the hour: no time was estimated for a price
    return Cost(
        human_usd=usd, human_labels=labels, human_seconds=seconds, estimated_seconds=estimated
    )


def model_cost(model: str, *, prompt_tokens: int, output_tokens: int, labels: int) -> Cost:
    """The cost of a model's labels from its tokens and the provider's price table.

    A model the table does not know is `unpriced` (its labels counted, its cost 0 and named
    as unknown in every summary), never silently free.
    """
    from labelloop.providers.gemini_models import token_cost

    usd = token_cost(model, prompt_tokens=prompt_tokens, output_tokens=output_tokens)
    if math.isnan(usd):
        return Cost(
            model_labels=labels,
            prompt_tokens=prompt_tokens,
            output_tokens=output_tokens,
            unpriced=labels,
        )
    return Cost(
        model_usd=usd,
        model_labels=labels,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
    )


def compute_cost(rates: Rates, *, seconds: float) -> Cost:
    """The cost of `seconds` of a step's compute at the configured rate."""
    return Cost(compute_usd=max(seconds, 0.0) / 3600.0 * rates.compute_usd_per_hour)


def estimate_item_cost(
    rates: Rates,
    *,
    labelers_per_item: int,
    human_share: float = 1.0,
    model_usd_per_item: float = 0.0,
    history: Iterable[Cost] = (),
) -> float:
    """Expected USD to label one more item, erring high.

    From the rates: `human_share` of items (those that go to people) times `labelers_per_item`
    human labels each, plus the model's cost per item. When earlier rounds were paid for, their
    real cost per item counts too; the higher of the two is the estimate.
    """
    if labelers_per_item < 1:
        raise InputError("must be at least 1", field="labelers_per_item")
    if not 0.0 <= human_share <= 1.0:
        raise InputError("must lie in [0, 1]", field="human_share")
    per_label = rates.human_usd_per_label + rates.seconds_per_label / 3600.0 * (
        rates.human_usd_per_hour
    )
    a_priori = human_share * labelers_per_item * per_label + model_usd_per_item
    spent = total(history)
    observed = spent.usd_per_item or 0.0
    return max(a_priori, observed)


@dataclasses.dataclass(frozen=True)
class Budget:
    """Spend limits in USD: per run and in total across runs (None = no limit).

    `affordable_items` is how selection respects it; `stop_reason` is why a loop stops.
    """

    per_run_usd: float | None = None
    total_usd: float | None = None

    def __post_init__(self) -> None:
        for name in ("per_run_usd", "total_usd"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise InputError(f"must be a number >= 0, got {value!r}", field=f"budget.{name}")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> Budget:
        """From `{"per_run_usd": x, "total_usd": y}` (either may be missing or null)."""
        unknown = sorted(set(options) - {"per_run_usd", "total_usd"})
        if unknown:
            raise InputError(
                f"unknown budget option {unknown[0]!r}; expected per_run_usd or total_usd",
                field=f"budget.{unknown[0]}",
            )

        def num(key: str) -> float | None:
            value = options.get(key)
            if value is None or value == "":
                return None
            try:
                return float(value)
            except (TypeError, ValueError):
                raise InputError(f"not a number: {value!r}", field=f"budget.{key}") from None

        return cls(per_run_usd=num("per_run_usd"), total_usd=num("total_usd"))

    @property
    def limited(self) -> bool:
        return self.per_run_usd is not None or self.total_usd is not None

    def remaining(self, *, spent_total: float) -> float:
        """USD this run may still spend (inf without a limit)."""
        left = math.inf
        if self.per_run_usd is not None:
            left = min(left, self.per_run_usd)
        if self.total_usd is not None:
            left = min(left, self.total_usd - spent_total)
        return max(left, 0.0)

    def affordable_items(self, wanted: int, *, item_usd: float, spent_total: float) -> int:
        """How many of `wanted` items fit in what is left (all of them when items are free)."""
        if wanted <= 0:
            return 0
        left = self.remaining(spent_total=spent_total)
        if item_usd <= 0 or math.isinf(left):
            return wanted
        # A hair of tolerance so that 10 x $0.1 fits $1.0 despite floating point.
        return min(wanted, math.floor(left / item_usd + 1e-9))

    def stop_reason(self, *, item_usd: float, spent_total: float) -> str:
        """Why the loop must stop ("" when at least one more item is affordable)."""
        if not self.limited:
            return ""
        if self.affordable_items(1, item_usd=item_usd, spent_total=spent_total) >= 1:
            return ""
        left = self.remaining(spent_total=spent_total)
        run_cap = math.inf if self.per_run_usd is None else self.per_run_usd
        if self.total_usd is not None and self.total_usd - spent_total <= run_cap:
            which = f"total budget ${self.total_usd:.2f} (spent ${spent_total:.2f})"
        else:
            which = f"per-run budget ${run_cap:.2f}"
        return (
            f"budget exhausted: ${left:.2f} left of the {which}, "
            f"one more item costs about ${item_usd:.4f}"
        )


STOP_RULE_KEYS = ("min_gain_per_100", "min_gain_per_usd")


@dataclasses.dataclass(frozen=True)
class BudgetOptions:
    """The pipeline's `budget` parameter: rates, limits and the stop rule's floors."""

    rates: Rates = dataclasses.field(default_factory=Rates)
    budget: Budget = dataclasses.field(default_factory=Budget)
    min_gain_per_100: float = 0.005
    min_gain_per_usd: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The `budget` JSON object this parses back from (`parse_budget`)."""
        out: dict[str, Any] = dataclasses.asdict(self.rates)
        out |= {k: v for k, v in dataclasses.asdict(self.budget).items() if v is not None}
        out["min_gain_per_100"] = self.min_gain_per_100
        if self.min_gain_per_usd is not None:
            out["min_gain_per_usd"] = self.min_gain_per_usd
        return out


def parse_budget(text: str, *, field: str = "budget") -> BudgetOptions:
    """Parse the `budget` parameter, a JSON object (`{}`: nothing priced, no limit).

    Keys: the `Rates` fields (`human_usd_per_label`, `human_usd_per_hour`, `seconds_per_label`,
    `compute_usd_per_hour`), the `Budget` limits (`per_run_usd`, `total_usd`) and the stop
    rule's floors (`min_gain_per_100`, `min_gain_per_usd`). Errors name `field.key`.
    """
    try:
        options = json.loads(text or "{}")
    except json.JSONDecodeError:
        raise InputError("must be a JSON object", field=field) from None
    if not isinstance(options, dict):
        raise InputError("must be a JSON object", field=field)
    rate_keys = {f.name for f in dataclasses.fields(Rates)}
    limit_keys = {"per_run_usd", "total_usd"}
    unknown = sorted(set(options) - rate_keys - limit_keys - set(STOP_RULE_KEYS))
    if unknown:
        known = ", ".join(sorted(rate_keys | limit_keys | set(STOP_RULE_KEYS)))
        raise InputError(f"unknown key {unknown[0]!r}; expected {known}", field=field)
    try:
        rates = Rates.from_options({k: v for k, v in options.items() if k in rate_keys})
        budget = Budget.from_options({k: v for k, v in options.items() if k in limit_keys})
    except InputError as exc:
        key = (exc.field or "").rsplit(".", 1)[-1]
        raise InputError(exc.message, field=f"{field}.{key}") from None
    floors: dict[str, float | None] = {}
    for key in STOP_RULE_KEYS:
        value = options.get(key)
        if value is None:
            continue
        try:
            floors[key] = float(value)
        except (TypeError, ValueError):
            raise InputError(f"not a number: {value!r}", field=f"{field}.{key}") from None
        if floors[key] < 0:  # type: ignore[operator]
            raise InputError("must be >= 0", field=f"{field}.{key}")
    return BudgetOptions(
        rates,
        budget,
        float(floors.get("min_gain_per_100") or 0.005),
        floors.get("min_gain_per_usd"),
    )


def model_item_estimate(provider: str, options: Mapping[str, Any], *, is_image: bool) -> float:
    """A priori model cost of one item for the Gemini providers (0 for the others)."""
    if provider not in ("gemini", "gemini_then_human"):
        return 0.0
    from labelloop.providers.gemini_models import DEFAULT_MODEL, estimate_cost

    gemini = options.get("gemini") if provider == "gemini_then_human" else options
    gemini = gemini if isinstance(gemini, Mapping) else {}
    samples = int(gemini.get("samples", 5)) if gemini.get("confidence") == "samples" else 1
    usd = estimate_cost(
        str(gemini.get("model", DEFAULT_MODEL)), items=1, is_image=is_image, samples=samples
    )
    return 0.0 if math.isnan(usd) else usd
