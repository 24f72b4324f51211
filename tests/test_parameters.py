"""The pipeline parameters are declared once (`labelloop.config.PipelineParams`): both pipeline
functions, the compiled templates, the config and the README agree with that declaration."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from labelloop.config import PipelineParams, load_config, pipeline_parameters
from pipelines.parameters import Params, pipeline_function, portable_parameters
from pipelines.vertex_pipeline import VERTEX_PARAMETER_SPECS, vertex_parameters

ROOT = Path(__file__).resolve().parents[1]
# KFP's parameter types for the Python types a parameter may have.
IR_TYPES = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", bool: "BOOLEAN"}


def _root_inputs(stem: str) -> dict[str, Any]:
    spec = json.loads((ROOT / "compiled" / f"{stem}.json").read_text(encoding="utf-8"))
    return spec["root"]["inputDefinitions"]["parameters"]


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("labeling_pipeline", portable_parameters()),
        ("vertex_labeling_pipeline", vertex_parameters()),
    ],
)
def test_compiled_templates_take_exactly_the_declared_parameters(stem, expected) -> None:
    compiled = _root_inputs(stem)
    assert set(compiled) == {p.name for p in expected}
    for p in expected:
        got = compiled[p.name]
        assert got["description"] == p.doc, p.name
        assert got["parameterType"] == IR_TYPES.get(p.kind, "STRUCT"), p.name
        if p.required:
            assert "defaultValue" not in got, p.name
            assert not got.get("isOptional"), p.name
        else:
            # KFP stores every number as a double.
            assert got["defaultValue"] == p.default, p.name


def test_the_pipeline_functions_signatures_come_from_the_one_declaration() -> None:
    from pipelines.labeling_pipeline import labeling_pipeline
    from pipelines.vertex_pipeline import vertex_labeling_pipeline

    for component, expected in (
        (labeling_pipeline, portable_parameters()),
        (vertex_labeling_pipeline, vertex_parameters()),
    ):
        inputs = component.component_spec.inputs
        assert list(inputs) == [p.name for p in expected if p.required] + [
            p.name for p in expected if not p.required
        ]
        for p in expected:
            assert inputs[p.name].description == p.doc


def test_config_fields_are_the_portable_parameters_with_their_defaults() -> None:
    fields = {f.name: f for f in dataclasses.fields(PipelineParams)}
    assert [p.name for p in pipeline_parameters()] == list(fields)
    for p in pipeline_parameters():
        assert p.doc, p.name
        assert "\n" not in p.doc, p.name
        if not p.required:
            assert fields[p.name].default == p.default, p.name
    # The one the entry points fill in: optional in the config, required by the pipeline.
    state = next(p for p in pipeline_parameters() if p.name == "state_uri")
    assert state.required
    assert fields["state_uri"].default == ""


def test_vertex_section_supplies_exactly_the_vertex_parameters() -> None:
    from labelloop.vertex_config import parse_vertex_settings

    settings = parse_vertex_settings({"project": "p", "pipeline_root": "gs://b/root"})
    assert set(settings.pipeline_parameters()) == {p.name for p in VERTEX_PARAMETER_SPECS}


def test_every_parameter_is_in_the_readme_table_and_in_the_example_configs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)`(?: / `(\w+)`)?", section, flags=re.M))
    names = {n for pair in documented for n in pair if n}
    assert names == {p.name for p in pipeline_parameters()}
    for config in ("configs/local.yaml", "configs/vertex.yaml"):
        load_config(str(ROOT / config))  # every key there is a parameter


def test_a_pipeline_function_reads_its_parameters_by_name() -> None:
    seen: dict[str, Any] = {}

    def body(params: Params) -> None:
        seen.update({name: getattr(params, name) for name in params.names()})
        with pytest.raises(AttributeError, match="no parameter 'nope'"):
            _ = params.nope

    func = pipeline_function(
        body, name="demo", summary="Demo.", parameters=portable_parameters(exclude=["seed"])
    )
    func("gs://b/items", "gs://b/state", selection_size=5)
    assert seen["selection_size"] == 5
    assert seen["task_type"] == "image_classification"
    assert "seed" not in seen
    assert "    gold_uri: Optional `item,label`" in (func.__doc__ or "")
    with pytest.raises(ValueError, match="not pipeline parameters"):
        portable_parameters(exclude=["no_such_parameter"])
