"""`meta-dist report` over real (tiny, in-process) run directories: the table's figures are the runs'
own, with the paper's beside them, the command, commit and machine each run recorded; a figure; and the
one-line error for a directory that is not a finished run."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from meta_dist import cli, provenance
from meta_dist.references import reference_for
from meta_dist.report import markdown, summarize
from tests.helpers.runs import train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    for name, algorithm in (("maml_run", "maml"), ("reptile_run", "reptile")):
        train(root / name, "runtime.backend=local", "steps=4", f"algorithm.name={algorithm}")
    return root


def test_commands_read_as_typed():
    assert provenance.as_typed("/venv/bin/meta-dist train --config a --set 'x=[1, 2]'") == \
        "meta-dist train --config a --set 'x=[1, 2]'"
    assert provenance.as_typed("/src/meta_dist/cli.py eval --run-dir r") == "meta-dist eval --run-dir r"
    assert provenance.as_typed("python examples/own_tasks.py") == "python examples/own_tasks.py"


def test_the_table_holds_each_runs_own_figures(runs, tmp_path, capsys):
    out = tmp_path / "results.md"
    assert cli.main(["report", str(runs / "maml_run"), str(runs / "reptile_run"), "--out", str(out),
                     "--figure", str(tmp_path / "curves.png")]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 6 and lines[0].startswith("| run | training |") and lines[4] == ""
    for line, name in zip(lines[2:4], ("maml_run", "reptile_run")):
        result = json.loads((runs / name / "eval.json").read_text())
        summary = summarize(runs / name)
        assert line.startswith(f"| `{name}` | ")
        assert f"**{result['mean']:.4g} ± {result['ci95']:.2g}**" in line
        assert "4 steps" in line and reference_for(summary.config) in line and summary.steps == [1, 2, 3, 4]
        assert f"`{summary.origin['command']}`" in line
    origin = summarize(runs / "maml_run").origin
    assert origin["commit"] == provenance.source_commit() and origin["hardware"]["cores"] >= 1
    assert origin["command"] and origin["meta_dist"]
    # both runs share a commit and a machine: one line says so; with several origins, one paragraph per
    # machine names each commit's runs, the largest group last as "every other run"
    machine = f"{origin['hardware']['cpu']}, {origin['hardware']['cores']} cores"
    assert lines[5].startswith(machine) and lines[5].endswith(f": commit `{origin['commit']}` for every run.")
    mixed = markdown([summarize(runs / "maml_run"), replace(summarize(runs / "reptile_run"), origin={}),
                      summarize(runs / "reptile_run")]).splitlines()
    assert mixed[-3:] == ["machine not recorded: commit not recorded for `reptile_run`.", "",
                          lines[5].replace("every run", "every other run")]
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_a_directory_that_is_not_a_finished_run_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.yaml").write_text("steps: 3\n")
    assert cli.main(["report", str(tmp_path / "half")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a finished run directory (no eval.json, metrics.parquet)" in err[0]


def test_the_result_cell_names_the_adaptation_steps_and_the_curves_ends():
    from meta_dist.report import measured

    curve = [{"inner_steps": i, "mean": m} for i, m in enumerate([2.9, 0.359, 0.2, 0.1])]
    mse = {"metric": "mse", "mean": 0.359, "ci95": 0.033, "inner_steps": 1, "curve": curve, "tasks": 600,
           "split": "test", "shots": 10}
    assert measured(mse) == "**0.359 ± 0.033** after 1 step (2.9 after 0 steps, 0.1 after 3 steps); 600 test tasks"
    protonet = {"metric": "accuracy", "unit": "%", "mean": 97.42, "ci95": 0.29, "inner_steps": 0,
                "curve": curve[:1], "tasks": 600, "split": "test", "ways": 20, "shots": 1, "within_alphabet": True}
    assert measured(protonet) == "**97.42% ± 0.29**; 20-way 1-shot, within one alphabet, 600 test tasks"
    rl2 = {"metric": "return", "mean": 6.2, "ci95": 0.1, "inner_steps": 1, "curve": curve[:2], "tasks": 9,
           "split": "test", "curve_axis": "episodes"}
    assert measured(rl2) == "**6.2 ± 0.1** at episode 2 (2.9 at episode 1); 9 test tasks"
    success = {"metric": "success", "unit": "%", "mean": 36.0, "ci95": 13.4, "inner_steps": 1, "curve": curve[:2],
               "tasks": 50, "split": "test", "curve_axis": "episodes",
               "train_split": {"metric": "success", "mean": 24.0, "ci95": 12.0, "tasks": 50}}
    assert measured(success) == ("**36.00% ± 13.40** at episode 2 (2.90% at episode 1); 50 test tasks, "
                                 "24.00% on 50 train tasks")
