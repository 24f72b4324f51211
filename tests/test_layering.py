"""The architecture's rules, checked on the source: one direction of imports, thin components,
no environment lookups at import time, no asserts or prints in library code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LIBRARY = sorted((ROOT / "src" / "labelloop").rglob("*.py"))
COMPONENTS = sorted((ROOT / "components").glob("*.py"))


def _imports(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_does_not_import_kfp_or_upper_layers(path: Path) -> None:
    imported = _imports(ast.parse(path.read_text()))
    assert not imported & {"kfp", "components", "pipelines", "google_cloud_pipeline_components"}


def _module_level_nodes(tree: ast.Module):
    """Nodes executed at import time: everything outside function bodies."""
    stack: list[ast.AST] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


@pytest.mark.parametrize(
    "path",
    [*LIBRARY, *COMPONENTS, *sorted((ROOT / "pipelines").glob("*.py"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_environment_lookup_at_import_time(path: Path) -> None:
    for node in _module_level_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and node.attr in {"environ", "getenv"}:
            pytest.fail(f"{path.name}:{node.lineno} reads the environment at import time")


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_has_no_assert_or_print(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        assert not isinstance(node, ast.Assert), (
            f"{path.name}:{node.lineno}: assert in library code"
        )
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
            # Command output is the CLI modules' job; everything else logs.
            assert path.name.startswith("cli"), f"{path.name}:{node.lineno}: print in library code"


@pytest.mark.parametrize("path", COMPONENTS, ids=lambda p: p.name)
def test_components_are_thin_and_use_the_project_image(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for deco in node.decorator_list:
                if not isinstance(deco, ast.Call):
                    continue
                keywords = {k.arg: k.value for k in deco.keywords}
                assert "packages_to_install" not in keywords, node.name
                assert "target_image" not in keywords, node.name
                base_image = keywords.get("base_image")
                assert isinstance(base_image, ast.Name), node.name
                assert base_image.id == "IMAGE", node.name
                install = keywords.get("install_kfp_package")
                assert isinstance(install, ast.Constant), node.name
                assert install.value is False, node.name
