"""The floors of docs/architecture.md, checked on the source: no import runs back up a floor, none hides in a function.

Every `import` / `from ... import` of an attrlib module, at module level or inside a function, is read with `ast`
(nothing is imported), and the importing part of the package must sit on a higher floor than the part it imports.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "attrlib"

# bottom to top; a part imports only parts on lower floors (none on its own floor but itself)
FLOORS = (
    ("errors",),
    ("io", "progress", "rotation", "selection", "notebook"),
    ("config",),
    ("hparams", "data"),
    ("models", "simulator", "provenance"),
    ("techniques",),
    ("runfolder",),
    ("training", "records"),
    ("evaluation", "inspection"),  # run folders read as records; never training, the sweep or the launcher
    ("sweep",),                    # imports evaluation.metrics for metrics.json (`run_metrics`), nothing else above
    ("launch", "reporting"),
    ("study",),
    ("cli",),
    ("__main__",),
)
FLOOR = {part: i for i, parts in enumerate(FLOORS) for part in parts}
# the in-function imports architecture.md allows: the CLI imports each command's module when the command runs, a
# package's lazy attribute (study/__init__'s `run_study`) imports its module when first asked for
LAZY = {"attrlib.cli", "attrlib.study"}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        package = parts[:-1]  # what a relative import starts from (a package's __init__: the package itself)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, package, ast.parse(path.read_text(encoding="utf-8"))


def _imports(tree: ast.AST, package: tuple[str, ...]):
    """(attrlib module imported, line, inside a function) for every import of the package in `tree`."""
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name == "attrlib" or name.startswith("attrlib."):
                yield name, node.lineno, id(node) in inside


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "attrlib"


def test_every_part_of_the_package_has_a_floor():
    parts = {_part(name) for name, _, _ in _modules()} - {"attrlib"}
    assert parts <= set(FLOOR), f"parts without a floor in FLOORS: {sorted(parts - set(FLOOR))}"


def test_no_import_runs_back_up_a_floor():
    upward = []
    for name, package, tree in _modules():
        source = _part(name)
        if source == "attrlib":  # the package's own __init__: lazy attributes only (attrlib stays light)
            continue
        for target, line, _ in _imports(tree, package):
            part = _part(target)
            if part == source or part == "attrlib":
                continue
            metrics = source == "sweep" and target == "attrlib.evaluation.metrics"
            if FLOOR[part] >= FLOOR[source] and not metrics:
                upward.append(f"{name}:{line} imports {target} (floor {FLOOR[part]} >= {FLOOR[source]})")
    assert not upward, "imports that run up a floor:\n" + "\n".join(upward)


def test_evaluation_inspection_and_reporting_read_files_not_the_training_code():
    found = [f"{name}:{line} imports {target}" for name, package, tree in _modules()
             if _part(name) in ("evaluation", "inspection", "reporting")
             for target, line, _ in _imports(tree, package)
             if _part(target) in ("training", "sweep", "launch")]
    assert not found, "\n".join(found)


def test_no_attrlib_import_hides_inside_a_function():
    hidden = [f"{name}:{line} imports {target}" for name, package, tree in _modules() if name not in LAZY
              for target, line, inner in _imports(tree, package) if inner]
    assert not hidden, "imports inside functions (a wall in the wrong place?):\n" + "\n".join(hidden)


def test_the_check_sees_an_upward_import():
    """The checker itself: a data module importing the sweep, inside a function or not, is caught."""
    tree = ast.parse("from .. import sweep\ndef f():\n    from ..training import engine\n")
    found = list(_imports(tree, ("attrlib", "data")))
    assert [(t, inner) for t, _, inner in found] == [("attrlib.sweep", False), ("attrlib.training", True)]
    assert all(FLOOR[_part(t)] > FLOOR["data"] for t, _, _ in found)
