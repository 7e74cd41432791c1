"""Dependencies point one way: tasks/, models/ and algorithms/ never import ray, and outside runtime/ nothing
does (docs/architecture.md); the step recovery policy imports nothing of Ray or the runtime."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "meta_dist"
PURE = ("tasks", "models", "algorithms")


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_pure_layers_do_not_import_ray_or_runtime():
    offenders = []
    for layer in PURE:
        for path in (PACKAGE / layer).rglob("*.py"):
            for name in imported_modules(path):
                if name == "ray" or name.startswith("ray.") or name.startswith("meta_dist.runtime") \
                        or name.startswith("meta_dist.cli"):
                    offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not offenders, offenders


def test_importing_the_pure_layers_loads_no_ray():
    code = ("import sys, meta_dist.tasks, meta_dist.models, meta_dist.algorithms, meta_dist.evaluation, "
            "meta_dist.checkpoint; from meta_dist import config, tasks, algorithms; "
            "cfg = config.load(); algorithms.build(cfg, tasks.build(cfg)); "
            "assert 'ray' not in sys.modules, 'ray was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_only_runtime_imports_ray():
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "runtime":
            continue
        assert not any(n == "ray" or n.startswith("ray.") for n in imported_modules(path)), rel


def test_the_step_recovery_policy_imports_no_ray():
    names = imported_modules(PACKAGE / "runtime" / "ledger.py")
    assert not any(n == "ray" or n.startswith("ray.") or n.startswith("meta_dist") for n in names), names
