"""`meta-dist bench`: the JSON report, bad worker counts, and an apples-to-apples reference loop."""
from __future__ import annotations

import json

import pytest
import torch

from meta_dist import algorithms, cli as cli_mod, config as config_mod, tasks
from meta_dist.bench_loops import PerTaskLoop, VmapLoop
from meta_dist.tasks.spec import derive_seed
from meta_dist.tasks.synthetic import write_synthetic_store
from tests.conftest import cli

pytestmark = pytest.mark.integration

SPLIT_KEYS = {"compute_s", "wait_s", "communication_s", "aggregation_s"}


def check_report(report: dict, workers: list[int]) -> None:
    assert {"workload", "reference_tasks_per_s", "results"} <= set(report)
    w = report["workload"]
    assert {"config", "algorithm", "ways", "shots", "meta_batch_size", "model", "hardware"} <= set(w)
    assert {"cpu", "cores", "torch", "ray"} <= set(w["hardware"])
    assert report["reference_tasks_per_s"] == report["references"]["loop"]["tasks_per_s"] > 0
    assert all(v["tasks_per_s"] > 0 for v in report["references"]["vmap"])
    assert [r["workers"] for r in report["results"]] == workers
    for r in report["results"]:
        for key in ("tasks_per_s", "speedup_vs_reference", "scaling_efficiency", "step_ms", "overhead_ms_per_step"):
            assert isinstance(r[key], float) and r[key] > 0, (key, r)
        assert r["speedup_vs_reference"] == pytest.approx(r["tasks_per_s"] / report["reference_tasks_per_s"])
        vmap = {v["threads"]: v["tasks_per_s"] for v in report["references"]["vmap"]}
        assert r["speedup_vs_vmap"] == pytest.approx(r["tasks_per_s"] / vmap[r["workers"]])  # 1 thread per worker
        assert SPLIT_KEYS <= set(r["time_split"])
        assert r["time_split"]["compute_s"] > 0 and r["time_split"]["aggregation_s"] > 0
        assert r["time_split"]["wait_s"] >= 0
        assert r["overhead_ms_per_step"] == pytest.approx(r["step_ms"] - 1000 * r["time_split"]["compute_s"])
        assert r["step_ms_median"] > 0 and r["compiled_channels"] in range(r["workers"])
        assert 0 <= r["channels_open_at_end"] <= r["compiled_channels"]  # long steps close them
        chunks = -(-w["meta_batch_size"] // w["chunk_size"])
        assert 0 <= r["driver_chunks_per_step"] <= (chunks if w["driver_worker"] else 0)
        # Every chunk an actor computed reaches the driver as one update of the model's size.
        ingress = r["driver_ingress"]
        assert ingress["updates_per_step"] == pytest.approx(chunks - r["driver_chunks_per_step"]) and r["nodes"] == 1
        assert ingress["bytes_per_step"] == pytest.approx(ingress["updates_per_step"] * 4 * w["num_params"])
    assert report["results"][0]["scaling_efficiency"] == pytest.approx(1.0)


def test_sinusoid_bench_prints_exactly_one_json_object():
    proc = cli("bench", "--config", "sinusoid_maml", "--workers", "1,2", "--duration-s", "1", "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)  # json.loads rejects anything after the one object
    check_report(report, [1, 2])
    assert report["workload"]["config"] == "sinusoid_maml" and report["workload"]["algorithm"] == "maml"
    # On this machine's own Ray: the driver is worker 0 and reaches its one actor through a compiled channel.
    assert report["workload"]["driver_worker"] and report["workload"]["compiled_graph"]
    assert [r["compiled_channels"] for r in report["results"]] == [0, 1]


def test_omniglot_bench_runs_on_the_synthetic_store_with_overrides():
    # A meta-batch of 8 (two chunks) keeps the warm-up steps short; it also shows --set reaching the workload.
    proc = cli("bench", "--config", "omniglot_maml", "--workers", "1", "--duration-s", "1", "--json",
               "--set", "algorithm.meta_batch_size=8", timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    check_report(report, [1])
    w = report["workload"]
    assert (w["data"], w["ways"], w["shots"], w["meta_batch_size"], w["model"], w["first_order"]) == \
        ("synthetic", 5, 1, 8, "conv4_strided", False)


def test_a_meta_rl_bench_reports_environment_steps_per_second(tmp_path):
    sets = ["rl.horizon=20", "rl.num_episodes=2", "algorithm.meta_batch_size=4", "runtime.chunk_size=2"]
    proc = cli("bench", "--config", "metaworld_ml1_reach_rl2", "--workers", "1,2", "--duration-s", "1", "--json",
               *[x for s in sets for x in ("--set", s)], timeout=300,
               env={"META_DIST_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["references"] is None and report["workload"]["env_steps_per_task"] == 2 * 20
    for r in report["results"]:
        assert r["env_steps_per_s"] == pytest.approx(r["tasks_per_s"] * 40) and r["env_steps_per_s"] > 0
        assert r["speedup_vs_reference"] is None and r["speedup_vs_vmap"] is None
    assert [r["workers"] for r in report["results"]] == [1, 2]


def test_a_gpu_worker_override_without_device_cuda_is_a_user_error(capsys):
    code = cli_mod.main(["bench", "--config", "sinusoid_maml", "--set", "runtime.num_gpu_workers=1",
                         "--set", "runtime.num_gpus_per_worker=0.5"])
    _, err = capsys.readouterr()
    assert code == 2 and err.startswith("meta-dist: error: bench chooses the GPU workers itself"), err


@pytest.mark.parametrize("value", ["0", "a", "99", "1,,2"])
def test_bad_worker_counts_are_one_line_user_errors(value, capsys):
    code = cli_mod.main(["bench", "--config", "sinusoid_maml", "--workers", value, "--duration-s", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("meta-dist: error: --workers"), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error of a machine without a GPU")
def test_a_gpu_bench_without_a_gpu_is_a_one_line_user_error(capsys):
    code = cli_mod.main(["bench", "--config", "omniglot_maml", "--device", "cuda", "--duration-s", "1"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("meta-dist: error: --device cuda needs a CUDA GPU"), err


@pytest.mark.parametrize("name", ["sinusoid_maml", "omniglot_maml"])
@pytest.mark.parametrize("first_order", [False, True])
def test_reference_meta_gradient_equals_the_runtime_chunk_update(name, first_order, tmp_path):
    overrides = [f"algorithm.first_order={str(first_order).lower()}"]
    config = config_mod.validate(config_mod.load(name, overrides))
    data_dir = None
    if config.task.name == "omniglot":
        data_dir = str(write_synthetic_store(tmp_path / "store", "omniglot", split_name=config.task.split))
    family = tasks.build(config, data_dir)
    algorithm = algorithms.build(config, family)
    init = algorithm.init_params(derive_seed("init", config.seed))
    specs = family.specs(config.seed, "train", 3, 4)

    runtime = algorithm.chunk_update(init, specs).grads
    reference = PerTaskLoop(config, family, algorithm.model, init).meta_gradient(family.materialize(specs))
    assert set(reference) == set(runtime)
    for k in runtime:
        torch.testing.assert_close(reference[k], runtime[k], rtol=1e-4, atol=1e-6, msg=k)
    vmapped = VmapLoop(config, family, algorithm.model, init).meta_gradient(family.materialize(specs))
    # torch.func.grad nested in vmap differentiates F.batch_norm twice slightly differently from
    # autograd (0.1-0.2% of the gradient, in float64 too): a rate reference, not an exact one there.
    # First order and batch-norm-free networks agree.
    tolerance = 5e-3 if config.task.name == "omniglot" and not first_order else 1e-5
    error = torch.cat([(vmapped[k] - runtime[k]).flatten() for k in runtime]).norm()
    assert error <= tolerance * torch.cat([g.flatten() for g in runtime.values()]).norm()
