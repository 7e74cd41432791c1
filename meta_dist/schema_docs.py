"""The reference part of docs/configuration.md, rendered from the config schema (meta_dist/schema.py):
one table per section with each key's type, default and docstring, and the value checks.

Regenerate the page in place with `python -m meta_dist.schema_docs docs/configuration.md`; a test keeps
it equal to the schema.
"""
from __future__ import annotations

import sys
from dataclasses import MISSING, fields
from pathlib import Path

from meta_dist.schema import CHOICES, NON_NEGATIVE, POSITIVE, Config

SECTIONS = {"": Config, **{f.name: f.default_factory for f in fields(Config) if f.default_factory is not MISSING}}


def field_docs(cls) -> dict[str, str]:
    """Each field's docstring (the string literal under it), whitespace folded, read from the schema's source."""
    import ast
    import inspect

    node = ast.parse(inspect.getsource(cls)).body[0]
    docs, body = {}, node.body
    for stmt, after in zip(body, body[1:]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant):
            docs[stmt.target.id] = " ".join(after.value.value.split())
    return docs


def _default(f) -> str:
    value = f.default_factory() if f.default_factory is not MISSING else f.default
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, str):
        return f"`{value}`" if value else '`""`'
    if isinstance(value, tuple):
        return f"`{list(value)}`"
    return f"`{value}`"


def key_tables() -> str:
    """One table per section: key, type, default, meaning."""
    out = []
    for section, cls in SECTIONS.items():
        docs = field_docs(cls)
        out += [f"## `{section}`" if section else "## top level", "", "| key | type | default | meaning |",
                "|---|---|---|---|"]
        for f in fields(cls):
            if f.name in SECTIONS:
                continue  # a section: its own table
            key = f"{section}.{f.name}" if section else f.name
            meaning = docs.get(f.name, "").replace("|", "\\|")
            out.append(f"| `{key}` | {f.type} | {_default(f)} | {meaning} |")
        out.append("")
    return "\n".join(out)


def value_checks() -> str:
    """The fixed value sets and the sign checks that `config.validate` applies."""
    out = ["Keys with a fixed set of values:", "", "| key | values |", "|---|---|"]
    out += [f"| `{key}` | {' / '.join(values)} |" for key, values in CHOICES.items()]
    out += ["", "Must be positive: " + ", ".join(f"`{k}`" for k in POSITIVE) + ".", "",
            "Must be >= 0: " + ", ".join(f"`{k}`" for k in NON_NEGATIVE) + "."]
    return "\n".join(out)


def render_reference(doc: str) -> str:
    """`doc` (docs/configuration.md) with its generated parts replaced by the current ones."""
    start, checks = doc.index("## top level"), doc.index("## Checks")
    doc = doc[:start] + key_tables() + "\n" + doc[checks:]
    first, last = doc.index("Keys with a fixed set of values:"), doc.index("\n\nConsistency checks:")
    return doc[:first] + value_checks() + doc[last:]


if __name__ == "__main__":  # python -m meta_dist.schema_docs docs/configuration.md: regenerate in place
    target = Path(sys.argv[1])
    target.write_text(render_reference(target.read_text()))
