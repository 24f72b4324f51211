"""The typed config: valid files load; every mistake names file, line, field and value."""

from __future__ import annotations

import pytest

from labelloop.config import load_config
from labelloop.errors import ConfigError


def test_bundled_local_config_loads() -> None:
    config = load_config("configs/local.yaml")
    assert config.pipeline.source_uri == "sample://digits"
    assert config.pipeline.labels == "0,1,2,3,4,5,6,7,8,9"
    assert '"workforce": "mixed"' in config.pipeline.provider_options
    assert config.local.rounds == 1


def test_overrides_apply_and_are_typed() -> None:
    config = load_config(
        "configs/local.yaml",
        overrides=["pipeline.min_agreement=0.7", "pipeline.selection_size=50", "local.rounds=3"],
    )
    assert config.pipeline.min_agreement == 0.7
    assert config.pipeline.selection_size == 50
    assert config.local.rounds == 3


def test_unknown_field_names_line_and_suggests() -> None:
    text = "pipeline:\n  source_uri: /data\n  min_agreemnt: 0.5\n"
    with pytest.raises(ConfigError) as info:
        load_config("cfg.yaml", text=text)
    message = str(info.value)
    assert message.startswith("cfg.yaml:3: field 'pipeline.min_agreemnt'")
    assert "did you mean 'min_agreement'" in message


@pytest.mark.parametrize(
    ("line", "field", "fragment"),
    [
        ("labelers_per_item: three", "pipeline.labelers_per_item", "expected a whole number"),
        ("min_agreement: 2.0", "pipeline.min_agreement", "must lie in [-1, 1]"),
        ("task_type: video", "pipeline.task_type", "unknown task type 'video'"),
        ("provider: mturk", "pipeline.provider", "must be one of"),
        ("labels: ['a', 'a']", "pipeline.labels", "listed twice"),
        ("holdout_fraction: 1", "pipeline.holdout_fraction", "strictly between 0 and 1"),
        ("class_balance: 1", "pipeline.class_balance", "expected true or false"),
        ("selection_strategy: smart", "pipeline.selection_strategy", "must be one of"),
        ("provider_options: '[1]'", "pipeline.provider_options", "must be a JSON object"),
    ],
)
def test_bad_values_name_file_line_field(line: str, field: str, fragment: str) -> None:
    text = f"pipeline:\n  source_uri: /data\n  {line}\n"
    with pytest.raises(ConfigError) as info:
        load_config("c.yaml", text=text)
    assert info.value.source == "c.yaml"
    assert info.value.line == 3
    assert info.value.field == field
    assert fragment in str(info.value)


def test_malformed_yaml_reports_line() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("bad.yaml", text="pipeline:\n  source_uri: [unclosed\n  seed: 1\n")
    assert info.value.source == "bad.yaml"
    assert info.value.line is not None
    assert "not valid YAML" in str(info.value)


def test_missing_required_source_and_unknown_section() -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.source_uri"):
        load_config("c.yaml", text="pipeline:\n  seed: 1\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config("c.yaml", text="pipeline:\n  source_uri: x\npipelin:\n  seed: 1\n")


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("no/such/config.yaml")


@pytest.mark.parametrize(
    ("line", "field", "fragment"),
    [
        ("state_uri: gs:/bad", "pipeline.state_uri", "malformed URI 'gs:/bad'"),
        ("state_uri: 'gs:bucket/x'", "pipeline.state_uri", "expected gs://bucket/path"),
        ("gold_uri: gs://B/x.csv", "pipeline.gold_uri", "is not a bucket name"),
        ("predictions_uri: s3://b/p.jsonl", "pipeline.predictions_uri", "unsupported URI"),
    ],
)
def test_malformed_uris_are_refused_at_load(line: str, field: str, fragment: str) -> None:
    text = f"pipeline:\n  source_uri: sample://digits\n  {line}\n"
    with pytest.raises(ConfigError) as info:
        load_config("c.yaml", text=text)
    assert (info.value.line, info.value.field) == (3, field)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        (
            "pipeline:\n  source_uri: /d\n  provider: label_studio\n"
            "  provider_options:\n    url: http://ls\n    api_key: abc\n",
            6,
            "pipeline.provider_options.api_key",
        ),
        (
            'pipeline:\n  source_uri: /d\n  provider: label_studio\n  provider_options: \'{"url":'
            ' "http://ls", "api_key_secret": "abc123"}\'\n',
            4,
            "pipeline.provider_options.api_key_secret",
        ),
        (
            "pipeline:\n  source_uri: /d\nvertex:\n  project: p\n  labels:\n"
            "    note: AIzaSyA1234567890abcdefghijklmnopqrstuv\n",
            6,
            "vertex.labels.note",
        ),
        (
            "pipeline:\n  source_uri: /d\nvertex:\n  github_token: ghp_x\n",
            4,
            "vertex.github_token",
        ),
    ],
)
def test_secrets_are_refused_wherever_they_appear(text: str, line: int, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("c.yaml", text=text)
    assert (info.value.line, info.value.field) == (line, field)
    assert "secrets never travel" in str(info.value)


def test_secret_given_as_an_override_is_refused() -> None:
    with pytest.raises(ConfigError, match="secrets never travel") as info:
        load_config("configs/local.yaml", overrides=["vertex.password=hunter2"])
    assert info.value.field == "vertex.password"


def test_a_simulated_workforce_without_truth_is_refused_before_submit_naming_the_field() -> None:
    """It would fail every run at the labeling step (the shipped config names its truth file)."""
    from labelloop.errors import ConfigError
    from pipelines.vertex_runs import load_target

    assert load_target("configs/vertex.yaml").config.pipeline.queue_size == 600
    with pytest.raises(ConfigError, match=r"pipeline\.provider_options\.truth_uri"):
        load_target("configs/vertex.yaml", overrides=("pipeline.provider_options={}",))
