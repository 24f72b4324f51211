"""The typed run configuration: YAML files plus `--set key=value` overrides.

A config file has a `pipeline:` section whose keys are exactly the pipeline's parameters, and
sections for where it runs (`local:`, `vertex:`). Every error names the file, line, field and
value. Nothing here reads the environment: entry points do that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import json
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from labelloop import storage
from labelloop.active_learning.strategies import strategy_names
from labelloop.costs import parse_budget
from labelloop.errors import ConfigError, InputError
from labelloop.gates import UNMEASURABLE_POLICIES
from labelloop.providers import check_options, provider_names
from labelloop.providers.secrets import refuse_secrets
from labelloop.quality.classification import FLAGGED_POLICIES
from labelloop.quality.metrics import metric_names
from labelloop.sample_data import supplied_options
from labelloop.schemas import TaskType, parse_labels

# Pipeline parameters that hold a file or folder URI (checked for well-formedness at load).
URI_FIELDS = ("source_uri", "state_uri", "predictions_uri", "gold_uri")
CONSOLIDATION_METHODS = ("mv", "ds")


def _one_of(choices: Sequence[str]) -> str:
    return ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]


def _param(default: Any, doc: str, *, required_in_pipeline: bool = False) -> Any:
    """A pipeline parameter: its default (`dataclasses.MISSING` for none) and its description.

    `doc` is the parameter's one-line description in both pipeline functions' docstrings (and
    so in the compiled templates and the Vertex console). `required_in_pipeline`: the pipeline
    takes no default although the config has one (the entry points fill it in, e.g. state_uri).
    """
    metadata = {"doc": doc, "required_in_pipeline": required_in_pipeline}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class PipelineParams:
    """The labeling pipeline's parameters: their one definition.

    Field names, types, defaults and docs here are the parameters of both pipeline functions
    (`pipelines/labeling_pipeline.py`, `pipelines/vertex_pipeline.py`), which derive their
    signatures and docstrings from `pipeline_parameters()`. To add a parameter, add a field here
    (with `_param`), check it in `validate()`, and pass it on where the DAG uses it.
    """

    source_uri: str = _param(
        dataclasses.MISSING,
        "Where the raw items are: `gs://bucket/prefix` (the only choice on Vertex AI), "
        "a local directory, or `sample://digits` (resolved by the local runner).",
    )
    state_uri: str = _param(
        "",
        "Folder holding the loop's state between rounds (imports, labels, models); "
        "a `gs://` prefix on Vertex AI.",
        required_in_pipeline=True,
    )
    task_type: str = _param(
        TaskType.IMAGE_CLASSIFICATION.value,
        f"What is labeled: {_one_of([t.value for t in TaskType])}.",
    )
    labels: str = _param("0,1,2,3,4,5,6,7,8,9", "The label set, comma-separated.")
    labelers_per_item: int = _param(3, "Different annotators per item.")
    selection_size: int = _param(200, "Most items to send for labeling this round.")
    queue_size: int = _param(
        0,
        "Items kept open at the labeling provider: each run tops the open queue up to this "
        "(backpressure; a full queue sends nothing new). 0 = selection_size.",
    )
    max_job_age_hours: float = _param(
        336.0,
        "A labeling job open longer is closed: its answers are kept, its unanswered items go "
        "back to the pool (0 = never).",
    )
    selection_strategy: str = _param(
        # Chosen by its worst case against random over seven datasets, not tuned on one
        # (benchmarks/strategy_suite.py; docs/active_learning.md).
        "margin",
        f"Active-learning strategy: {_one_of(strategy_names())}. The default, margin, held "
        "best on data it was not tuned on; k_center and cluster_margin are batch-aware, with "
        "k-center diversity on a cold start.",
    )
    class_balance: bool = _param(False, "Spread each batch evenly over the predicted classes.")
    random_share: float = _param(
        0.1,
        "Share of each batch picked at random: a control arm that shows whether active "
        "selection helps on this data (the report's learning curve on the evaluation set).",
    )
    eval_size: int = _param(
        50,
        "Items of the fixed evaluation set: a random sample chosen once, labeled once (on top "
        "of the first batch) and never trained on, at most a fifth of the pool; the model's "
        "accuracy is measured on it.",
    )
    predictions_uri: str = _param(
        "",
        "Optional predictions to select with (Vertex batch-prediction output or a predictions "
        'JSONL); "" uses the previous round\'s local model. Portable pipeline only: the Vertex '
        "one scores the pool itself.",
    )
    provider: str = _param("simulated", f"Labeling provider: {_one_of(provider_names())}.")
    provider_options: str = _param("{}", "Provider options as a JSON object (never secrets).")
    consolidation_method: str = _param(
        "ds", "Consolidation: ds (Dawid-Skene, the default) or mv (majority vote)."
    )
    agreement_metric: str = _param(
        "krippendorff_alpha",
        f"The metric the agreement gate compares: {_one_of(metric_names())}.",
    )
    min_labeled_count: int = _param(100, "The count gate: consolidated labels needed to train.")
    min_agreement: float = _param(0.6, "The agreement gate: minimum inter-annotator agreement.")
    min_confidence: float = _param(
        0.0, "Consolidated confidence an item needs to count as labeled."
    )
    unmeasurable_agreement: str = _param(
        "model_precision",
        "What the agreement gate does when agreement cannot be measured (one answer per item, "
        "one class, only model answers, or fewer than min_agreement_items items answered by "
        f"two or more people): {_one_of(UNMEASURABLE_POLICIES)} (model_precision opens it "
        "when auto-accepted model labels carry a calibrated precision >= min_model_precision).",
    )
    min_model_precision: float = _param(
        0.95, "The model_precision policy's threshold on calibrated precision."
    )
    min_agreement_items: int = _param(
        10, "Items answered by two or more people needed to measure agreement."
    )
    flagged_annotators: str = _param(
        "exclude",
        "What near-chance annotators count for: exclude (from consolidation and agreement), "
        "downweight (consolidation only, weighed by their confusion) or keep.",
    )
    gold_uri: str = _param(
        "",
        "Optional `item,label` CSV of known answers, clamped in consolidation and used to score "
        'each annotator ("" for none).',
    )
    holdout_fraction: float = _param(0.2, "Share of labels held out to evaluate the model.")
    budget: str = _param(
        "{}",
        "Costs and limits as a JSON object: human_usd_per_label, human_usd_per_hour, "
        "compute_usd_per_hour, per_run_usd, total_usd, min_gain_per_100, min_gain_per_usd "
        "(docs/budget.md); selection picks fewer items rather than overspend.",
    )
    seed: int = _param(0, "Seed for selection, splits and training.")

    def validate(
        self, *, source: str | None = None, lines: Mapping[str, int] | None = None
    ) -> None:
        """Range and choice checks; raise `ConfigError` naming the first bad field."""
        lines = lines or {}

        def fail(name: str, message: str) -> typing.NoReturn:
            value = getattr(self, name)
            raise ConfigError(
                f"{message} (got {value!r})",
                source=source,
                line=lines.get(f"pipeline.{name}"),
                field=f"pipeline.{name}",
            )

        def located(exc: InputError) -> ConfigError:
            field = f"pipeline.{exc.field}" if exc.field else "pipeline"
            return ConfigError(exc.message, source=source, line=line_of(lines, field), field=field)

        if not self.source_uri:
            fail("source_uri", "required: a gs://bucket/prefix, a local directory or sample://")
        try:
            task = TaskType.parse(self.task_type)
        except ValueError as exc:
            fail("task_type", str(exc).split(": ", 1)[-1])
        try:
            parse_labels(self.labels)
        except ValueError as exc:
            fail("labels", str(exc).split(": ", 1)[-1])
        if self.labelers_per_item < 1:
            fail("labelers_per_item", "must be at least 1")
        if self.selection_size < 1:
            fail("selection_size", "must be at least 1")
        if self.queue_size < 0:
            fail("queue_size", "must be 0 (= selection_size) or more")
        if self.max_job_age_hours < 0:
            fail("max_job_age_hours", "must be 0 (never expire) or more")
        # The choices come from the registries of the packages that implement them.
        strategies = strategy_names()
        if self.selection_strategy not in strategies:
            fail("selection_strategy", f"must be one of {', '.join(strategies)}")
        for name in URI_FIELDS:
            schemes = ("sample",) if name == "source_uri" else ()
            try:
                storage.check_uri(getattr(self, name), field=name, schemes=schemes)
            except InputError as exc:
                raise located(exc) from None
        if self.provider not in provider_names():
            fail("provider", f"must be one of {', '.join(provider_names())}")
        try:
            options = json.loads(self.provider_options)
        except json.JSONDecodeError:
            fail("provider_options", "must be a JSON object")
        if not isinstance(options, dict):
            fail("provider_options", "must be a JSON object")
        if self.consolidation_method not in CONSOLIDATION_METHODS:
            fail("consolidation_method", f"must be one of {', '.join(CONSOLIDATION_METHODS)}")
        metrics = metric_names()
        if self.agreement_metric not in metrics:
            fail("agreement_metric", f"must be one of {', '.join(metrics)}")
        if self.min_labeled_count < 0:
            fail("min_labeled_count", "must be 0 or more")
        if not -1.0 <= self.min_agreement <= 1.0:
            fail("min_agreement", "must lie in [-1, 1]")
        if not 0.0 <= self.min_confidence <= 1.0:
            fail("min_confidence", "must lie in [0, 1]")
        if self.unmeasurable_agreement not in UNMEASURABLE_POLICIES:
            fail("unmeasurable_agreement", f"must be one of {', '.join(UNMEASURABLE_POLICIES)}")
        if not 0.0 <= self.min_model_precision <= 1.0:
            fail("min_model_precision", "must lie in [0, 1]")
        if self.min_agreement_items < 1:
            fail("min_agreement_items", "must be at least 1")
        if self.flagged_annotators not in FLAGGED_POLICIES:
            fail("flagged_annotators", f"must be one of {', '.join(FLAGGED_POLICIES)}")
        if not 0.0 <= self.random_share < 1.0:
            fail("random_share", "must lie in [0, 1)")
        if self.eval_size < 0:
            fail("eval_size", "must be 0 or more")
        if not 0.0 < self.holdout_fraction < 1.0:
            fail("holdout_fraction", "must lie strictly between 0 and 1")
        try:
            parse_budget(self.budget)
        except InputError as exc:
            raise located(exc) from None
        # Last: the provider's own options, once every top-level field is known good.
        try:
            check_options(
                self.provider,
                options,
                supplied=supplied_options(self.source_uri, self.provider),
            )
        except InputError as exc:
            raise located(exc) from None
        del task

    def as_parameter_values(self) -> dict[str, Any]:
        """The values to pass to the pipeline (kfp.local call or `PipelineJob`)."""
        return dataclasses.asdict(self)


class _Required:
    """The default of a parameter the pipeline requires a value for."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclasses.dataclass(frozen=True)
class ParameterSpec:
    """One pipeline parameter as a pipeline function declares it."""

    name: str
    kind: type
    doc: str
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def pipeline_parameters() -> tuple[ParameterSpec, ...]:
    """The labeling pipeline's parameters, in `PipelineParams` order, with their pipeline
    defaults (none for a parameter the pipeline requires)."""
    hints = typing.get_type_hints(PipelineParams)
    return tuple(
        ParameterSpec(
            name=f.name,
            kind=hints[f.name],
            doc=f.metadata["doc"],
            default=(
                REQUIRED
                if f.metadata["required_in_pipeline"] or f.default is dataclasses.MISSING
                else f.default
            ),
        )
        for f in dataclasses.fields(PipelineParams)
    )


@dataclasses.dataclass(frozen=True)
class LocalSettings:
    """Where and how the embedded (kfp.local) run happens."""

    runs_dir: str = "runs"
    rounds: int = 1
    sample_cache_dir: str = ""


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole configuration file."""

    pipeline: PipelineParams
    local: LocalSettings = dataclasses.field(default_factory=LocalSettings)
    vertex: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = "<config>"
    # Dotted field -> line in `source`, so checks made after loading can name the line too.
    lines: Mapping[str, int] = dataclasses.field(default_factory=dict, compare=False)

    def error(self, message: str, *, field: str) -> ConfigError:
        """A `ConfigError` about `field` (dotted, e.g. `pipeline.gold_uri`), with its line."""
        return ConfigError(
            message, source=self.source, line=line_of(self.lines, field), field=field
        )

    def with_pipeline(self, **changes: Any) -> Config:
        """A copy with some pipeline parameters replaced."""
        return dataclasses.replace(self, pipeline=dataclasses.replace(self.pipeline, **changes))


def line_of(lines: Mapping[str, int], field: str) -> int | None:
    """The line of `field`, or of its nearest enclosing key that has one."""
    parts = field.split(".")
    while parts:
        line = lines.get(".".join(parts))
        if line is not None:
            return line or None
        parts.pop()
    return None


def line_map(text: str) -> dict[str, int]:
    """Map dotted key paths to the 1-based line where each key appears."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = f"{prefix}{key_node.value}"
                lines[key] = key_node.start_mark.line + 1
                walk(value_node, key + ".")

    try:
        root = yaml.compose(text)
    except yaml.YAMLError:
        return lines
    if root is not None:
        walk(root, "")
    return lines


# Scalar field types: (accepted YAML types, what to say when the value is not one of them).
_SCALARS: dict[type, tuple[type | tuple[type, ...], str]] = {
    bool: (bool, "expected true or false"),
    int: (int, "expected a whole number"),
    float: ((int, float), "expected a number"),
}


def _coerce(value: Any, kind: Any, *, field: str) -> Any:
    """Coerce a YAML value to a dataclass field's type, or raise ValueError."""
    if kind is str:
        # Friendlier YAML for the pipeline parameters that travel as strings.
        if isinstance(value, list | tuple) and field == "labels":
            return ",".join(str(v) for v in value)
        if isinstance(value, dict) and field in ("provider_options", "budget"):
            return json.dumps(value, sort_keys=True)
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("expected a string")
        return str(value)
    if kind in _SCALARS:
        accepted, message = _SCALARS[kind]
        # YAML's true/false are ints to Python: only a bool field takes them.
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, accepted):
            raise ValueError(message)
        return float(value) if isinstance(value, int | float) and kind is float else value
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict):
            raise ValueError("expected a mapping")
        return {str(k): str(v) for k, v in value.items()}
    raise ValueError(f"unsupported field type {kind}")


def build_section(
    cls: type[Any], data: Any, *, section: str, source: str | None, lines: Mapping[str, int]
) -> Any:
    """Build dataclass `cls` from a YAML mapping, typed field by field.

    Nested dataclass fields are built recursively (their paths are `section.field.sub`).

    Raises:
        ConfigError: Not a mapping, an unknown field (with a close-match hint), a value of the
            wrong type, or a required field missing; each naming file, line and field.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            "expected a mapping", source=source, line=lines.get(section), field=section
        )
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{section}.{key}"
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(
                f"unknown field{hint}", source=source, line=lines.get(path), field=path
            )
        kind = hints[key]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            kwargs[key] = build_section(kind, value, section=path, source=source, lines=lines)
            continue
        try:
            kwargs[key] = _coerce(value, kind, field=key)
        except ValueError as exc:
            raise ConfigError(
                f"{exc}, got {value!r}", source=source, line=lines.get(path), field=path
            ) from None
    missing = [
        f.name
        for f in fields.values()
        if f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
        and f.name not in kwargs
    ]
    if missing:
        raise ConfigError(
            "required field is missing", source=source, field=f"{section}.{missing[0]}"
        )
    return cls(**kwargs)


def _refuse_secrets(data: Mapping[str, Any], *, source: str, lines: Mapping[str, int]) -> None:
    """Refuse a secret anywhere in the config (a JSON-string `provider_options` included)."""
    pipeline = data.get("pipeline")
    options = pipeline.get("provider_options") if isinstance(pipeline, dict) else None
    if isinstance(pipeline, dict) and isinstance(options, str):
        with contextlib.suppress(json.JSONDecodeError):
            data = {**data, "pipeline": {**pipeline, "provider_options": json.loads(options)}}
    try:
        refuse_secrets(data, field="")
    except InputError as exc:
        field = exc.field or ""
        raise ConfigError(
            exc.message, source=source, line=line_of(lines, field), field=field
        ) from None


def parse_override(text: str) -> tuple[str, Any]:
    """Parse `section.key=value` (value as a YAML scalar or list)."""
    key, sep, raw = text.partition("=")
    if not sep or "." not in key:
        raise ConfigError(f"override must look like section.key=value, got {text!r}", field=key)
    return key.strip(), yaml.safe_load(raw) if raw.strip() else ""


def check_trainable(
    pipeline: PipelineParams,
    *,
    target: str,
    source: str | None = None,
    lines: Mapping[str, int] | None = None,
) -> None:
    """Refuse a task type `target`'s pipeline cannot train (`labelloop.training.targets`).

    Raises:
        ConfigError: Naming `pipeline.task_type`, what the target trains and where this task
            type trains, if anywhere.
    """
    from labelloop.training.targets import untrainable_reason

    reason = untrainable_reason(TaskType.parse(pipeline.task_type), target=target)
    if reason:
        raise ConfigError(
            reason,
            source=source,
            line=(lines or {}).get("pipeline.task_type"),
            field="pipeline.task_type",
        )


def load_config(
    path: str,
    *,
    overrides: Sequence[str] = (),
    text: str | None = None,
    target: str | None = None,
) -> Config:
    """Load and validate a config file.

    Args:
        path: The YAML file (used in error messages when `text` is given).
        overrides: `section.key=value` strings applied on top, e.g. `pipeline.seed=3`.
        text: The YAML text, if already read.
        target: The pipeline the config will run (`portable` or `vertex`): a task type that
            target cannot train is refused here, before anything runs. None skips the check.

    Raises:
        ConfigError: Unparsable YAML, an unknown or mistyped field, a value out of range, or a
            task type `target` cannot train.
    """
    if text is None:
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            raise ConfigError("config file does not exist", source=path) from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            source=path,
            line=mark.line + 1 if mark is not None else None,
        ) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with a 'pipeline:' section", source=path)
    lines = line_map(text)
    _refuse_secrets(data, source=path, lines=lines)
    for override in overrides:
        key, value = parse_override(override)
        section, _, name = key.partition(".")
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise ConfigError("expected a mapping", source=path, field=section)
        data[section][name] = value
        lines.setdefault(key, 0)
        # Set on the command line: no line of the file to point at (0 stops `line_of`).
        for stale in [k for k in lines if k == key or k.startswith(key + ".")]:
            lines[stale] = 0
    _refuse_secrets(data, source=path, lines=lines)
    unknown = set(data) - {"pipeline", "local", "vertex"}
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(
            "unknown section; expected pipeline, local or vertex",
            source=path,
            line=lines.get(key),
            field=key,
        )
    pipeline = build_section(
        PipelineParams, data.get("pipeline"), section="pipeline", source=path, lines=lines
    )
    local = build_section(
        LocalSettings, data.get("local"), section="local", source=path, lines=lines
    )
    if local.rounds < 1:
        raise ConfigError(
            "must be at least 1", source=path, line=lines.get("local.rounds"), field="local.rounds"
        )
    pipeline.validate(source=path, lines=lines)
    if target is not None:
        check_trainable(pipeline, target=target, source=path, lines=lines)
    vertex = data.get("vertex") or {}
    if not isinstance(vertex, dict):
        raise ConfigError(
            "expected a mapping", source=path, line=lines.get("vertex"), field="vertex"
        )
    return Config(pipeline=pipeline, local=local, vertex=vertex, source=path, lines=lines)
