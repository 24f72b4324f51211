"""The provider registry: providers register themselves; config validation and `get_provider`
read it; every option is checked against the provider's schema at config load."""

from __future__ import annotations

import pytest

from labelloop.config import load_config
from labelloop.errors import ConfigError, InputError
from labelloop.providers import get_provider, provider_names, register
from labelloop.providers.registry import check_options


def test_every_bundled_provider_is_registered() -> None:
    assert set(provider_names()) == {
        "simulated",
        "import",
        "label_studio",
        "gemini",
        "gemini_then_human",
    }


def _load(options: str, *, provider: str = "simulated", extra: str = "") -> ConfigError:
    text = (
        "pipeline:\n"
        "  source_uri: /data\n"
        f"  provider: {provider}\n"
        "  provider_options:\n"
        f"{options}"
        f"{extra}"
    )
    with pytest.raises(ConfigError) as info:
        load_config("c.yaml", text=text)
    return info.value


def test_typo_in_provider_options_names_line_and_suggests() -> None:
    err = _load("    truth_uri: /t.csv\n    workforse: expert\n")
    assert err.line == 6
    assert err.field == "pipeline.provider_options.workforse"
    assert "did you mean 'workforce'" in str(err)
    assert str(err).startswith("c.yaml:6: field 'pipeline.provider_options.workforse'")


def test_required_option_is_named_with_its_meaning() -> None:
    err = _load("    workforce: expert\n")
    assert err.field == "pipeline.provider_options.truth_uri"
    assert "required option 'truth_uri' is missing" in str(err)
    assert "ground truth" in str(err)
    err = _load("    format: csv\n", provider="import")
    assert "required option 'uri' is missing: a string, the annotations file" in str(err)


def test_sample_source_supplies_the_truth() -> None:
    config = load_config(
        "c.yaml", text="pipeline:\n  source_uri: sample://digits\n  provider: simulated\n"
    )
    assert config.pipeline.provider == "simulated"


def test_option_types_and_values_are_checked() -> None:
    err = _load("    truth_uri: /t.csv\n    completion: lots\n")
    assert (err.line, err.field) == (6, "pipeline.provider_options.completion")
    assert "expected a number, got 'lots'" in str(err)
    err = _load("    truth_uri: /t.csv\n    completion: 1.5\n")
    assert "must lie in [0, 1]" in str(err)
    err = _load("    confidence: logprob\n", provider="gemini")
    assert "did you mean 'logprobs'" in str(err)
    err = _load("    url: localhost:8080\n", provider="label_studio")
    assert "expected an http:// or https:// URL" in str(err)


def test_nested_human_options_are_checked() -> None:
    err = _load(
        "    human:\n      provider: simulated\n      options:\n        truth_ur: /t.csv\n",
        provider="gemini_then_human",
    )
    assert err.field == "pipeline.provider_options.human.options.truth_ur"
    assert err.line == 8
    assert "did you mean 'truth_uri'" in str(err)


def test_step_options_are_accepted_beside_the_providers() -> None:
    config = load_config(
        "c.yaml",
        text=(
            "pipeline:\n  source_uri: /data\n  provider: import\n  provider_options:\n"
            "    uri: /a.csv\n    wait_seconds: 60\n    instructions: Pick one\n"
        ),
    )
    assert '"wait_seconds": 60' in config.pipeline.provider_options
    err = _load("    uri: /a.csv\n    wait_seconds: -1\n", provider="import")
    assert err.field == "pipeline.provider_options.wait_seconds"


def test_registering_a_provider_makes_config_accept_it() -> None:
    import dataclasses
    from typing import Any

    from labelloop.providers import registry

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class EchoOptions:
        """Args:
        answer: The label every item gets.
        """

        answer: str

    @register("echo_test", options=EchoOptions)
    class Echo:
        name = "echo_test"

        def __init__(self, answer: str) -> None:
            self.answer = answer

        @classmethod
        def from_options(cls, options: EchoOptions) -> Any:
            return cls(options.answer)

    try:
        config = load_config(
            "c.yaml",
            text="pipeline:\n  source_uri: /d\n  provider: echo_test\n"
            "  provider_options: {answer: cat}\n",
        )
        assert config.pipeline.provider == "echo_test"
        assert get_provider("echo_test", {"answer": "cat"}).answer == "cat"  # type: ignore[attr-defined]
        with pytest.raises(InputError, match="answer"):
            check_options("echo_test", {})
    finally:
        registry._REGISTRY.pop("echo_test")


def test_unknown_provider_suggests() -> None:
    with pytest.raises(InputError, match="did you mean 'label_studio'"):
        get_provider("label_studo", {})


def test_lifecycle_doc_says_which_providers_top_up_in_place() -> None:
    """docs/lifecycle.md's table names every provider, and "in place" exactly for those whose
    class has `top_up` (what the labeling step asks)."""
    import re
    from pathlib import Path

    from labelloop.providers.registry import get_spec

    doc = (Path(__file__).resolve().parents[1] / "docs" / "lifecycle.md").read_text()
    section = doc.split("## Which providers top up in place", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|", section, re.M))
    assert set(rows) == set(provider_names())
    for name, says in rows.items():
        in_place = callable(getattr(get_spec(name).cls, "top_up", None))
        assert ("in place" in says) is in_place, name
