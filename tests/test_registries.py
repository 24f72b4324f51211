"""The extension registries: config validation and the stages read them, so one module adds one."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.active_learning import strategies as al
from labelloop.config import PipelineParams
from labelloop.errors import ConfigError
from labelloop.quality import metrics as registry
from labelloop.quality.registry import register_metric


def test_config_accepts_every_registered_metric_including_span_f1_overlap() -> None:
    # span_f1_overlap was supported by the quality step but refused by the config (drift).
    for name in registry.metric_names():
        PipelineParams(source_uri="sample://digits", agreement_metric=name).validate()
    assert "span_f1_overlap" in registry.metric_names()
    with pytest.raises(ConfigError, match="agreement_metric"):
        PipelineParams(source_uri="sample://digits", agreement_metric="nope").validate()


def test_each_family_falls_back_to_its_first_metric() -> None:
    assert registry.metrics_for("single")[0] == "krippendorff_alpha"
    assert registry.metrics_for("boxes")[0] == "f1"
    assert registry.metrics_for("spans")[0] == "span_f1"
    assert "span_f1_overlap" not in registry.metrics_for("boxes")


def test_a_registered_strategy_is_selectable_and_accepted_by_the_config() -> None:
    @al.register_strategy("test_lowest_index")
    def pick(batch: al.Batch) -> tuple[np.ndarray, np.ndarray]:
        n = batch.proba.shape[0]
        allowed = np.arange(n) if batch.exclude is None else np.flatnonzero(~batch.exclude)
        return allowed[: batch.k], np.zeros(n)

    try:
        PipelineParams(
            source_uri="sample://digits", selection_strategy="test_lowest_index"
        ).validate()
        proba = np.full((5, 2), 0.5)
        exclude = np.array([True, False, False, False, False])
        got = al.select("test_lowest_index", 2, seed=0, proba=proba, exclude=exclude)
        assert got.indices.tolist() == [1, 2]
        assert got.strategy == "test_lowest_index"
    finally:
        del al.STRATEGIES["test_lowest_index"]
    with pytest.raises(ConfigError, match="selection_strategy"):
        PipelineParams(
            source_uri="sample://digits", selection_strategy="test_lowest_index"
        ).validate()


def test_registering_a_name_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        al.register_strategy("margin")(lambda batch: (np.zeros(0), np.zeros(0)))
    with pytest.raises(ValueError, match="twice"):
        register_metric("f1", families=("boxes",))(lambda s: s)
