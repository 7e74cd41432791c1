"""Every script in examples/ runs as a user runs it: `python examples/NAME.py ...` as a subprocess, from a
temporary working directory, with budgets of a few meta-steps; each exits 0 and prints what its
docstring promises (equal digests, accuracies, file -> class lines). on_a_cluster.py joins a real
`ray start --head` on 127.0.0.1 (the `ray_head` fixture of tests/conftest.py)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration
EXAMPLES = REPO / "examples"
DIGEST = re.compile(r"params_sha256 [^:]*:\s+([0-9a-f]{64})")


def example(name: str, *args: str, cwd: Path, timeout: float = 150) -> str:
    """Run examples/NAME with args; assert exit code 0 and return its stdout."""
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    script = name if Path(name).is_absolute() else str(EXAMPLES / name)
    done = subprocess.run([sys.executable, script, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


# -- own_tasks.py and on_a_cluster.py: one run, three places ---------------------------------------
TINY_QUADRATICS = ("--steps", "8", "--eval-tasks", "20", "--workers", "2")


@pytest.fixture(scope="module")
def own_tasks_digest(tmp_path_factory) -> str:
    out = example("own_tasks.py", *TINY_QUADRATICS, cwd=tmp_path_factory.mktemp("own_tasks"))
    digests = DIGEST.findall(out)
    assert len(digests) == 2 and digests[0] == digests[1], out
    assert "equal: True" in out
    assert re.search(r"after 0 steps: [\d.]+ \+- [\d.]+\n(.*\n){4}  after 5 steps: ", out), out
    return digests[0]


def test_own_tasks_trains_the_same_on_two_workers_and_in_one_process(own_tasks_digest):
    assert len(own_tasks_digest) == 64


def test_on_a_cluster_joins_a_head_and_submits_a_job_to_the_same_parameters(tmp_path, ray_head,
                                                                             own_tasks_digest):
    address, url = ray_head
    project = tmp_path / "project"  # the user's folder: the two scripts, nothing else
    project.mkdir()
    for name in ("own_tasks.py", "on_a_cluster.py"):
        shutil.copy(EXAMPLES / name, project / name)
    joined = example(str(project / "on_a_cluster.py"), *TINY_QUADRATICS, "--address", address,
                     "--run-dir", str(tmp_path / "joined"), cwd=project)
    assert DIGEST.findall(joined) == [own_tasks_digest], joined
    assert "after 5 steps:" in joined
    submitted = example(str(project / "on_a_cluster.py"), *TINY_QUADRATICS, "--submit", url,
                        "--run-dir", str(tmp_path / "job"), cwd=project, timeout=240)
    assert "SUCCEEDED" in submitted and DIGEST.findall(submitted) == [own_tasks_digest], submitted[-3000:]


# -- images: own_model.py, own_data.py, predict_new_task.py --------------------------------------
@pytest.mark.parametrize("model, config, workers", [("mine", "omniglot_protonet", 2),
                                                    ("resnet12", "omniglot_protonet", 1),
                                                    ("resnet18", "omniglot_maml", 1)])
def test_own_model(tmp_path, omniglot_store, model, config, workers):
    out = example("own_model.py", "--data", str(omniglot_store), "--model", model, "--config", config,
                  "--steps", "2", "--eval-tasks", "8", "--workers", str(workers), "--out", "run", cwd=tmp_path)
    assert re.search(rf"^{model}: [\d,]+ parameters, \w+ after 2 meta-steps of {config}$", out, re.M), out
    assert re.search(r"^5-way 1-shot test accuracy: [\d.]+% \+- [\d.]+ \(chance 20%\)$", out, re.M), out
    assert ("20-way 1-shot test accuracy" in out) == (config == "omniglot_protonet")


@pytest.fixture(scope="module")
def own_data_run(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("own_data")
    out = example("own_data.py", "--steps", "15", "--eval-tasks", "20", cwd=cwd)
    assert re.search(r"^5-way 1-shot accuracy on held-out classes: [\d.]+% \+- [\d.]+ \(chance 20%\)$", out, re.M)
    accuracy, chance = re.search(r"-way 1-shot on \d+ raw query files: ([\d.]+)% \(chance ([\d.]+)%\)", out).groups()
    assert float(accuracy) > float(chance), out
    return cwd  # the run is cwd/runs/own_data/run


def new_task_folders(root: Path) -> tuple[Path, Path]:
    """support/<class>/ with 2 drawings each and query/ with 3 per class, of colours own_data never drew."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from own_data import draw
    finally:
        sys.path.remove(str(EXAMPLES))
    import random

    rng = random.Random(0)
    for name, shape, rgb in (("orange_square", "square", (255, 140, 0)), ("cyan_circle", "circle", (0, 210, 210))):
        (root / "support" / name).mkdir(parents=True)
        (root / "query").mkdir(exist_ok=True)
        for i in range(2):
            draw(shape, rgb, rng).save(root / "support" / name / f"{i}.png")
        for i in range(3):
            draw(shape, rgb, rng).resize((48, 48)).save(root / "query" / f"{name}_{i}.jpg")  # any size, any format
    return root / "support", root / "query"


def test_predict_new_task_labels_query_files(tmp_path, own_data_run):
    support, query = new_task_folders(tmp_path)
    # from own_data.py's folder, as examples/README.md runs it: the run records its store as given
    # (runs/own_data/store, relative to that folder)
    out = example("predict_new_task.py", "--run-dir", "runs/own_data/run", "--support", str(support),
                  "--query", str(query), cwd=own_data_run)
    assert "protonet run at step 15, adapted to 2 classes (cyan_circle: 2, orange_square: 2 shots)" in out, out
    labels = dict(re.findall(r"^(\S+) -> (\S+)$", out, re.M))
    assert sorted(labels) == sorted(p.name for p in query.iterdir()), out
    assert sum(file.startswith(label) for file, label in labels.items()) >= 5, out


def test_predict_new_task_trains_a_tiny_run_when_there_is_none(tmp_path, omniglot_store):
    support, query = new_task_folders(tmp_path)
    out = example("predict_new_task.py", "--run-dir", "tiny", "--data", str(omniglot_store), "--steps", "3",
                  "--support", str(support), "--query", str(query), cwd=tmp_path)
    assert "protonet run at step 3, adapted to 2 classes" in out, out
    assert len(re.findall(r"^\S+ -> (cyan_circle|orange_square)$", out, re.M)) == 6, out
    assert (tmp_path / "tiny" / "eval.json").is_file()
