"""The house's floors (docs/architecture.md): imports run one way, no circles, no lazy import
that dodges one, no module over the size one job needs.

Read from the source with ``ast``, so the test sees every import a module can run: top-level
ones and those inside functions. Imports under ``if TYPE_CHECKING:`` are annotations, never
executed, and are not dependencies.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recordings", "stimuli", "insilico", "perturb", "rigs")

#: floors from the bottom up; a module may import its own floor or a lower one
FLOORS = (
    ("recordings",),
    ("stimuli",),
    ("insilico.brain",),
    ("perturb",),
    ("rigs",),
    ("insilico.analysis", "insilico.experiments", "insilico.animals"),
    ("insilico.viewer", "insilico.demo", "insilico.cli"),
    ("insilico",),  # the facade: `import insilico as lab`
)
#: floors whose functions may import the lab lazily: the entry points, so that
#: `insilico --help` and napari's plugin discovery start fast (never to dodge a circle)
LAZY_ALLOWED = ("insilico.viewer", "insilico.demo", "insilico.cli", "insilico")
#: most lines a module may have (issue 13: "no file over ~400 lines")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _floor(module: str) -> int:
    best, rank = -1, None
    for k, names in enumerate(FLOORS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, rank = len(name), k
    assert rank is not None, f"module {module} lies on no floor of FLOORS"
    return rank


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def _imports(module: str, path: Path) -> list[tuple[str, bool, int]]:
    """(imported project module, lazy?, line) for every runtime import of ``module``."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    top = {id(n) for n in tree.body}
    is_pkg = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if id(node) in skip or not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        lazy = id(node) not in top
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub, not only pkg's __init__
            targets = [
                f"{source}.{a.name}" if f"{source}.{a.name}" in MODULES else source
                for a in node.names
            ]
        out += [(t, lazy, node.lineno) for t in targets if t.split(".")[0] in PACKAGES]
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_imports_run_downward():
    upward = [
        f"{MODULES[m].relative_to(ROOT)}:{line} imports {t} (floor {_floor(t)} > {_floor(m)})"
        for m, edges in GRAPH.items()
        for t, _, line in edges
        if _floor(t) > _floor(m)
    ]
    assert not upward, "imports that go up a floor:\n" + "\n".join(upward)


def test_no_import_circles():
    edges = {m: sorted({t for t, _, _ in GRAPH[m] if t in MODULES and t != m}) for m in GRAPH}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for t in edges[m]:
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t, [*stack, t])
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _lazy_allowed(module: str) -> bool:
    return module in LAZY_ALLOWED or any(
        module.startswith(p + ".") for p in LAZY_ALLOWED if p != "insilico"
    )


def test_no_lazy_project_imports_below_the_entry_points():
    lazy = [
        f"{MODULES[m].relative_to(ROOT)}:{line} imports {t} inside a function"
        for m, edges in GRAPH.items()
        for t, is_lazy, line in edges
        if is_lazy and not _lazy_allowed(m)
    ]
    assert not lazy, "lazy imports of the lab:\n" + "\n".join(lazy)


def test_every_module_is_one_job_long():
    long = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in MODULES.values()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not long, f"modules over {MAX_LINES} lines:\n" + "\n".join(long)


def test_the_checker_sees_what_it_must(tmp_path):
    """The rules can fail: a planted module with an upward, a lazy and a type-only import."""
    planted = tmp_path / "units.py"
    planted.write_text(
        "from typing import TYPE_CHECKING\n"
        "from rigs import mapping\n"
        "if TYPE_CHECKING:\n    from rigs.rig import Rig\n"
        "def f():\n    from insilico.experiments import spec\n"
    )
    edges = _imports("insilico.brain.units", planted)
    assert edges == [("rigs.mapping", False, 2), ("insilico.experiments.spec", True, 6)]
    assert all(_floor(t) > _floor("insilico.brain.units") for t, _, _ in edges)
    assert not _lazy_allowed("insilico.brain.units") and _lazy_allowed("insilico.cli")
    assert _floor("insilico") > _floor("insilico.cli") > _floor("insilico.analysis")
