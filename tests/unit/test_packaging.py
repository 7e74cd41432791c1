"""Packaging: the wheel carries the named configs and py.typed, installs without the source tree, and a
config that needs an extra that is missing says which one."""
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from meta_dist import config as C
from meta_dist.errors import UserError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, cwd=out)
    (path,) = out.glob("meta_dist-*.whl")
    return path


def test_wheel_holds_configs_and_marker(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.rsplit("/", 1)[1][:-5] for n in names if n.startswith("meta_dist/configs/") and n.endswith(".yaml")}
    assert shipped == set(C.available_configs()) and "omniglot_protonet" in shipped
    assert "meta_dist/py.typed" in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    assert "Requires-Python: >=3.11" in metadata
    assert {"Provides-Extra: rl", "Provides-Extra: tracking", "Provides-Extra: tune"} <= set(metadata.splitlines())
    for optional in ("gymnasium", "mlflow", "tensorboard"):
        assert not any(line.startswith(f"Requires-Dist: {optional}") and "extra" not in line
                       for line in metadata.splitlines())


def test_installed_wheel_trains_a_named_config_from_another_directory(wheel, tmp_path):
    """The wheel unpacked on its own (no source checkout on the path) resolves a NAME from package data."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    code = ("import meta_dist, sys; from meta_dist import cli; assert meta_dist.__file__.startswith(sys.argv[1]), "
            "meta_dist.__file__; sys.exit(cli.main(['train', '--config', 'sinusoid_maml', '--steps', '3', "
            "'--backend', 'local', '--set', 'eval.num_tasks=5', '--run-dir', 'run']))")
    done = subprocess.run([sys.executable, "-c", code, str(target)], cwd=work, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (work / "run" / "eval.json").is_file()


def test_missing_rl_extra_is_a_one_line_error_naming_it(monkeypatch):
    import importlib.util

    from meta_dist import tasks

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mujoco" else real(name, *a))
    config = C.validate(C.load("cheetah_vel_maml"))
    with pytest.raises(UserError, match=r"needs mujoco.*pip install 'meta-dist\[rl\]'"):
        tasks.build(config)
