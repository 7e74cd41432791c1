"""One registry for the names a config may give a task family, a model or an algorithm.

A name is one of three things: a built-in (`omniglot`, `conv4`, `maml`, ...), a name that an installed
plug-in package adds through a Python entry point (groups `meta_dist.tasks`, `meta_dist.models`,
`meta_dist.algorithms`), or an import path `"module.path:attr"`. Import paths are imported with the
current working directory first on `sys.path`, so a user runs `meta-dist train --config my.yaml` from
the folder holding `my_nets.py` and nothing needs installing; `code_dir` then tells the runtime which
folder to ship to the Ray workers. Every failure to resolve a name is a one-line `UserError` naming
the config key, what was wrong and the fix.
"""
from __future__ import annotations

import importlib
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from meta_dist.errors import UserError
from meta_dist.tasks.names import TASKS

BUILTIN = {
    "task": TASKS,
    "model": ("mlp", "conv4", "conv4_strided", "resnet12", "policy_mlp", "policy_gru"),
    "algorithm": ("maml", "fomaml", "reptile", "metasgd", "anil", "protonet", "matchingnet", "siamese",
                  "proto_maml", "maml_rl", "rl2"),
}
GROUPS = {"task": "meta_dist.tasks", "model": "meta_dist.models", "algorithm": "meta_dist.algorithms"}
KEYS = {"task": "task.name", "model": "model.name", "algorithm": "algorithm.name"}
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def is_import_path(name: str) -> bool:
    return ":" in name


def plugin_names(kind: str) -> dict:
    """Entry points of installed plug-ins for `kind`, by name."""
    return {ep.name: ep for ep in entry_points(group=GROUPS[kind])}


def is_builtin(kind: str, name: str) -> bool:
    return name in BUILTIN[kind]


def check_name(kind: str, name: str) -> None:
    """A built-in, a plug-in's name or a well-formed import path; otherwise a UserError listing them."""
    if is_builtin(kind, name) or name in plugin_names(kind):
        return
    if is_import_path(name):
        if not _IMPORT_PATH.fullmatch(name):
            raise UserError(f"config key '{KEYS[kind]}' is {name!r}, not an import path of the form "
                            f"'module.path:attr' (e.g. 'my_nets:make_net')")
        return
    names = sorted(BUILTIN[kind]) + sorted(plugin_names(kind))
    raise UserError(f"config key '{KEYS[kind]}' is {name!r}; choose one of: {', '.join(names)}, "
                    f"or give an import path 'module.path:attr'")


def check_names(config) -> None:
    check_name("task", config.task.name)
    check_name("model", config.model.name)
    check_name("algorithm", config.algorithm.name)


def _import_module(module_name: str, key: str, name: str) -> ModuleType:
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # a user's module beside their config, nothing installed
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name.split(".")[0]):
            raise UserError(f"config key '{key}' names {name!r}, but module '{e.name}' was not found from "
                            f"{cwd}; run from the folder that holds {e.name.split('.')[0]}.py, or install "
                            f"the package that provides it") from None
        raise


def load(kind: str, name: str) -> object:
    """The object a plug-in name or an import path names. Exceptions raised while importing the
    user's module are theirs and propagate with their traceback."""
    key = KEYS[kind]
    plugins = plugin_names(kind)
    if name in plugins:
        return plugins[name].load()
    check_name(kind, name)
    module_name, _, attr = name.partition(":")
    if module_name == "__main__":
        raise UserError(f"config key '{key}' names {name!r}, an object defined in a Python script, which cannot "
                        f"be imported by name; pass the same object again from Python ({kind}=...)")
    obj: object = _import_module(module_name, key, name)
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UserError(f"config key '{key}' names {name!r}, but module '{module_name}' "
                            f"({getattr(sys.modules.get(module_name), '__file__', '?')}) has no attribute "
                            f"'{attr}'; check the spelling after the ':'")
        obj = getattr(obj, part)
    return obj


def _definition(obj: object) -> object:
    """The class or function that defines `obj`: itself, or an instance's class."""
    return obj if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__") else type(obj)


def import_path_of(obj: object) -> str:
    """`module:qualname` of a class or function (how a config records an object given in Python)."""
    target = _definition(obj)
    return f"{target.__module__}:{target.__qualname__}"


def code_dir(objects: list[object]) -> Path | None:
    """The folder the Ray workers need in order to import (or unpickle) `objects` (classes, functions or
    instances): the working directory when their modules live under it, else the folder their top-level
    package or module imports from. None when everything comes from installed packages."""
    cwd = Path.cwd().resolve()
    roots = [_import_root(obj) for obj in objects]
    roots = [r for r in roots if r is not None]
    if any(cwd == r or cwd in r.parents for r in roots):
        return cwd
    return roots[0] if roots else None


def _import_root(obj: object) -> Path | None:
    """Where the module defining `obj` is imported from (the folder on sys.path), unless installed."""
    module_name = getattr(_definition(obj), "__module__", "") or ""
    path = getattr(sys.modules.get(module_name), "__file__", None)
    if path is None:
        return None
    resolved = Path(path).resolve()
    if "site-packages" in resolved.parts or "dist-packages" in resolved.parts:
        return None
    depth = 1 if module_name == "__main__" else module_name.count(".") + 1 + (resolved.name == "__init__.py")
    return resolved.parents[depth - 1]
