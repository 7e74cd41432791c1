"""`meta-dist report`: a results table (markdown) and a learning-curve figure from run directories.

Every number comes from files a run wrote: config.yaml (what was trained), metrics.parquet (meta-steps
and training time), eval.json (the evaluation) and run.json (the command, meta-dist's commit and the
machine). The published figure for the same algorithm and task stands beside each measured one, so a
results table is regenerated from runs instead of typed by hand.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from meta_dist import config as config_mod
from meta_dist.errors import UserError
from meta_dist.metrics import FILE as METRICS
from meta_dist.provenance import as_typed
from meta_dist.references import reference_for

NEEDED = ("config.yaml", "eval.json", METRICS)


@dataclass(frozen=True)
class RunSummary:
    run_dir: Path
    config: config_mod.Config
    eval: dict
    steps: list[int]
    train_s: list[float]
    """Seconds of meta-training at each row of metrics.parquet (the sum of step times)."""
    losses: list[float]
    origin: dict
    """run.json's command, commit and hardware ({} for a run that recorded none)."""


def summarize(run_dir: str | Path) -> RunSummary:
    run_dir = Path(run_dir)
    missing = [name for name in NEEDED if not (run_dir / name).is_file()]
    if missing:
        raise UserError(f"'{run_dir}' is not a finished run directory (no {', '.join(missing)}); pass directories "
                        f"that `meta-dist train` completed")
    try:
        result = json.loads((run_dir / "eval.json").read_text())
        table = pq.read_table(run_dir / METRICS, columns=["step", "step_time_s", "meta_loss"]).to_pydict()
    except (ValueError, OSError) as e:
        raise UserError(f"'{run_dir}': cannot read its eval.json or {METRICS} ({str(e).splitlines()[0]})") from None
    run_json = run_dir / "run.json"
    origin = json.loads(run_json.read_text()) if run_json.is_file() else {}
    return RunSummary(run_dir, config_mod.load(str(run_dir / "config.yaml")), result, table["step"],
                      list(itertools.accumulate(table["step_time_s"])), table["meta_loss"], origin)


def measured(result: dict) -> str:
    """The headline with its CI at its adaptation step, the curve's ends beside it, the episode shape."""
    unit = result.get("unit", "")
    episodes = result.get("curve_axis") == "episodes"
    where = lambda n: f"at episode {n + 1}" if episodes else f"after {n} step{'' if n == 1 else 's'}"  # noqa: E731
    value = (lambda v: f"{v:.2f}%") if unit == "%" else (lambda v: f"{v:.4g}{unit}")  # noqa: E731
    ci = f"{result['ci95']:.2f}" if unit == "%" else f"{result['ci95']:.2g}"
    text = f"**{value(result['mean'])} ± {ci}**"
    curve = result.get("curve", [])
    if len(curve) > 1:
        text += f" {where(result['inner_steps'])}"
        ends = [p for p in (curve[0], curve[-1]) if p["inner_steps"] != result["inner_steps"]]
        if ends:
            text += " (" + ", ".join(f"{value(p['mean'])} {where(p['inner_steps'])}" for p in ends) + ")"
    shape = [f"{result['ways']}-way" + (f" {result['shots']}-shot" if result.get("shots") else "")] \
        if "ways" in result else []
    if result.get("episodes") == "meta_dataset":
        shape.append("Meta-Dataset episodes")
    if result.get("within_alphabet"):
        shape.append("within one alphabet")
    shape.append(f"{result['tasks']} {result['split']} tasks")
    train = result.get("train_split")
    if train:  # the meta-train figure, which papers report beside the meta-test one (Meta-World)
        shape.append(f"{value(train['mean'])} on {train['tasks']} train tasks")
    return f"{text}; {', '.join(shape)}"


def markdown(runs: list[RunSummary]) -> str:
    """The table, then one paragraph per machine naming the commit of each of its runs."""
    lines = ["| run | training | result | paper | command |", "|---|---|---|---|---|"]
    for r in runs:
        training = f"{r.steps[-1]:,} steps, {r.train_s[-1]:.0f} s" if r.steps else "no steps"
        command = as_typed(r.origin["command"]) if r.origin.get("command") else ""
        cells = [f"`{r.run_dir.name}`", training, measured(r.eval), reference_for(r.config),
                 f"`{command}`" if command else "not recorded"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n\n" + "\n\n".join(provenance(runs)) + "\n"


def provenance(runs: list[RunSummary]) -> list[str]:
    """'MACHINE: commit C for `run`, ...; commit D for every other run.', one line per machine; the
    largest (machine, commit) group is named last, as the rest."""
    groups: dict[tuple[str, str], list[str]] = {}
    for r in runs:
        groups.setdefault((machine_text(r.origin), commit_text(r.origin)), []).append(f"`{r.run_dir.name}`")
    largest = max(groups, key=lambda g: len(groups[g]))
    machines = sorted({machine for machine, _ in groups}, key=lambda m: m == largest[0])
    lines = []
    for machine in machines:
        parts = [f"{commit} for {', '.join(names)}" for (m, commit), names in groups.items()
                 if m == machine and (m, commit) != largest]
        if machine == largest[0]:
            parts.append(f"{largest[1]} for {'every run' if len(groups) == 1 else 'every other run'}")
        lines.append(f"{machine}: {'; '.join(parts)}.")
    return lines


def commit_text(origin: dict) -> str:
    return f"commit `{origin['commit']}`" if origin.get("commit") else "commit not recorded"


def machine_text(origin: dict) -> str:
    """'CPU, N cores (torch T, ray R)' from run.json's hardware."""
    hw = origin.get("hardware")
    if not hw:
        return "machine not recorded"
    gpu = f", {hw['gpu']}" if hw.get("gpu") else ""
    return f"{hw['cpu']}, {hw['cores']} cores{gpu} (torch {hw['torch']}, ray {hw['ray']})"


def figure(runs: list[RunSummary], out: Path) -> Path:
    """Each run's meta-training loss (moving mean over a fiftieth of its steps) against training time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in runs:
        window = max(1, len(r.losses) // 50)
        smooth = [sum(r.losses[max(0, i - window + 1): i + 1]) / min(window, i + 1) for i in range(len(r.losses))]
        ax.plot(r.train_s, smooth, label=f"{r.run_dir.name} ({r.config.algorithm.name})")
    ax.set_xlabel("meta-training time (s)")
    ax.set_ylabel("meta-training loss (moving mean)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(args: argparse.Namespace) -> int:
    runs = [summarize(d) for d in args.run_dirs]
    table = markdown(runs)
    if args.out:
        Path(args.out).write_text(table)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(table, end="")
    if args.figure:
        print(f"wrote {figure(runs, Path(args.figure))}", file=sys.stderr)
    return 0
