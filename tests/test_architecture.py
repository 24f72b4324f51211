"""The shape of the house, checked on the source (imports read with `ast`, nothing imported):

- no import circle between modules, lazy (in-function) imports included, nor between the
  library's packages taken whole (a reader importing a type from `quality` while `quality`
  imports the reader is such a circle, though no single module imports itself back);
- no import running back up: library -> components -> pipelines, and inside the library the
  floors below (`FLOORS`): the step functions and CLIs above the readers, quality, providers,
  active learning, training and report code, which sit above the schemas, storage and errors;
- no library, component or pipeline module over `MAX_LINES` lines;
- a task type's annotation shape is dispatched on (`task.shape`), never its name.

Known exceptions are listed with the issue that removes them; an entry that no longer applies
fails too, so the lists only shrink.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

MAX_LINES = 600
# Modules over MAX_LINES today, each being split by the issue named.
TOO_LONG: dict[str, str] = {}
# Import circles today (as sorted module lists), each with the issue that breaks it.
KNOWN_CIRCLES: dict[tuple[str, ...], str] = {}
# Imports that run back up a floor today: (importer, imported) -> the issue that removes it.
KNOWN_UPWARD: dict[tuple[str, str], str] = {}

# Library floors, lowest first; a module may import its own floor or lower ones (the most
# specific prefix decides a module's floor; a module not listed is on floor 2).
FLOORS: tuple[tuple[str, ...], ...] = (
    ("labelloop.errors",),
    ("labelloop.schemas", "labelloop.storage", "labelloop"),
    (
        "labelloop.annotations",
        "labelloop.config",
        "labelloop.gates",
        "labelloop.state",
        "labelloop.sample_data",
        "labelloop.vertex_config",
        "labelloop.quality",
        "labelloop.providers",
        "labelloop.active_learning",
        "labelloop.training",
        "labelloop.report",
    ),
    ("labelloop.stages", "labelloop.vertex_labels"),
    ("labelloop.cli", "labelloop.cli_label", "labelloop.cli_quality", "labelloop.cli_select"),
)
# The three layers; a module may import its own layer or lower ones.
LAYERS = ("labelloop", "components", "pipelines")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT / "src") if "src" in path.parts else path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


SOURCES = sorted(
    [
        *(ROOT / "src" / "labelloop").rglob("*.py"),
        *(ROOT / "components").glob("*.py"),
        *(ROOT / "pipelines").glob("*.py"),
    ]
)
MODULES = {_module_name(p): p for p in SOURCES}


def _resolve(name: str) -> str | None:
    """The project module `name` refers to (a module, or a name inside one), or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> set[str]:
    """Project modules `module` imports anywhere, TYPE_CHECKING blocks included: a circle
    that exists only for the type checker still ties two modules together."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            resolved = _resolve(target)
            if resolved and resolved != module:
                found.add(resolved)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _circles() -> set[tuple[str, ...]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle() -> None:
    circles = _circles()
    new = sorted(c for c in circles if c not in KNOWN_CIRCLES)
    assert not new, f"import circles: {new}"
    gone = sorted(c for c in KNOWN_CIRCLES if c not in circles)
    assert not gone, f"no longer a circle, remove from KNOWN_CIRCLES: {gone}"


def _package(module: str) -> str:
    """The library package a module belongs to (`labelloop.quality.api` -> `labelloop.quality`);
    a top-level module stands for itself."""
    parts = module.split(".")
    if parts[0] == "labelloop" and len(parts) > 2:
        return ".".join(parts[:2])
    return module


def test_no_import_circle_between_packages() -> None:
    edges: dict[str, set[str]] = {}
    for module, imported in GRAPH.items():
        edges.setdefault(_package(module), set()).update(
            _package(t) for t in imported if _package(t) != _package(module)
        )
    # A package that reaches back to itself through another one.
    circles = []
    for start in sorted(edges):
        seen, todo = set(), list(edges[start])
        while todo:
            node = todo.pop()
            if node == start:
                circles.append(start)
                break
            if node not in seen:
                seen.add(node)
                todo.extend(edges.get(node, ()))
    assert not circles, f"packages importing themselves back through others: {circles}"


def _layer(module: str) -> int:
    return LAYERS.index(module.split(".", maxsplit=1)[0])


def _floor(module: str) -> int:
    best, floor = -1, -1
    for number, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            # The package itself (`labelloop`, its __init__) matches only exactly.
            nested = prefix != "labelloop" and module.startswith(prefix + ".")
            matches = module == prefix or nested
            if matches and len(prefix) > best:
                best, floor = len(prefix), number
    # A module not listed yet sits with the readers, quality and providers (floor 2).
    return floor if floor >= 0 else 2


def _upward() -> set[tuple[str, str]]:
    found = set()
    for module, imported in GRAPH.items():
        for target in imported:
            up_a_layer = _layer(target) > _layer(module)
            library = _layer(module) == _layer(target) == 0
            if up_a_layer or (library and _floor(target) > _floor(module)):
                found.add((module, target))
    return found


def test_no_import_runs_back_up() -> None:
    upward = _upward()
    new = sorted(pair for pair in upward if pair not in KNOWN_UPWARD)
    assert not new, "imports running back up (importer, imported): " + str(new)
    gone = sorted(pair for pair in KNOWN_UPWARD if pair not in upward)
    assert not gone, f"no longer running up, remove from KNOWN_UPWARD: {gone}"


def test_no_module_over_the_line_limit() -> None:
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines()) for p in SOURCES
    }
    too_long = {path for path, n in sizes.items() if n > MAX_LINES}
    new = sorted(f"{path} ({sizes[path]} lines)" for path in too_long - set(TOO_LONG))
    assert not new, f"over {MAX_LINES} lines: {new}"
    done = sorted(path for path in TOO_LONG if path not in too_long)
    assert not done, f"now within {MAX_LINES} lines (or gone), remove from TOO_LONG: {done}"


# Dispatch on a task type's identity: `is TaskType.X`, `== TaskType.X`, `in (TaskType.X, ...)`,
# or a mapping keyed by members. The shape and modality say how to treat a task type.
_MEMBER_DISPATCH = re.compile(
    r"(\bis\s+(not\s+)?|[=!]=\s*|\bin\s*[(\[{]\s*)TaskType\.[A-Z_]+|TaskType\.[A-Z_]+\s*:"
)


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if p.name != "schemas.py"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_code_dispatches_on_the_shape_not_the_task_type(path: Path) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        assert not _MEMBER_DISPATCH.search(line), (
            f"{path.relative_to(ROOT)}:{number}: dispatch on `task.shape` / `task.modality` "
            f"instead of a task type's name: {line.strip()}"
        )


# A JSONL file is read by `storage.read_jsonl_objects` / `parse_jsonl_objects` (small files) or
# the columnar engine (`tables`, `lines`; `predictions.parse_line` is the exact reader behind
# the engine): a `json.loads` of a line anywhere else is a second reader.
_LINE_LOOP = re.compile(r"json\.loads\((line|raw|x|text_line)\b")
_JSONL_READERS = {"storage.py", "tables.py", "lines.py"}


@pytest.mark.parametrize(
    "path",
    [p for p in SOURCES if p.name not in _JSONL_READERS and "labelloop" in p.parts],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_jsonl_is_read_by_one_reader(path: Path) -> None:
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        assert not _LINE_LOOP.search(line), (
            f"{path.relative_to(ROOT)}:{number}: read JSONL with storage.read_jsonl_objects "
            f"(or the engine) instead of json.loads per line: {line.strip()}"
        )
