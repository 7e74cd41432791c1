"""Same seed, bitwise-identical parameters: in one process, on Ray with 1 worker and with 2 workers."""
import pyarrow.parquet as pq
import pytest

from tests.helpers.runs import final_digest, train

pytestmark = pytest.mark.integration


def test_local_ray1_ray2_bitwise_identical(tmp_path, ray_local):
    local = train(tmp_path / "local", "runtime.backend=local")
    ray1 = train(tmp_path / "ray1", "runtime.backend=ray", "runtime.num_workers=1")
    ray2 = train(tmp_path / "ray2", "runtime.backend=ray", "runtime.num_workers=2")
    digests = {final_digest(tmp_path / d) for d in ("local", "ray1", "ray2")}
    assert len(digests) == 1
    assert local["params_sha256"] == ray1["params_sha256"] == ray2["params_sha256"]
    assert local["mean"] == ray2["mean"]
    steps = pq.read_table(tmp_path / "ray2" / "metrics.parquet").column("step").to_pylist()
    assert steps == list(range(1, 13))


def test_a_different_seed_gives_different_parameters(tmp_path):
    a = train(tmp_path / "a", "runtime.backend=local", "seed=1")
    b = train(tmp_path / "b", "runtime.backend=local", "seed=2")
    assert a["params_sha256"] != b["params_sha256"]


@pytest.mark.parametrize("algorithm", ["fomaml", "reptile"])
def test_other_algorithms_are_deterministic_across_workers(tmp_path, ray_local, algorithm):
    extra = ["algorithm.name=" + algorithm]
    if algorithm == "reptile":
        extra += ["algorithm.meta_optimizer=sgd", "algorithm.meta_lr=0.1", "algorithm.inner_steps=3",
                  "algorithm.inner_optimizer=adam", "algorithm.carry_inner_state=true"]
    local = train(tmp_path / "l", "runtime.backend=local", *extra)
    ray2 = train(tmp_path / "r", "runtime.backend=ray", "runtime.num_workers=2", *extra)
    assert local["params_sha256"] == ray2["params_sha256"]


def test_meta_dataset_episodes_are_deterministic_across_workers(tmp_path, ray_local):
    """Variable-shape episodes from two weighted sources, fo-Proto-MAML: the same bits in one process and on
    2 Ray workers, and the evaluation reports each source."""
    from tests.helpers.stores import make_store

    a, b = make_store(tmp_path / "a", "a", [6, 9, 12, 7, 8, 10]), make_store(tmp_path / "b", "b", [8] * 7)
    extra = ["task.name=images", "task.episodes=meta_dataset", "runtime.chunk_size=1", "model.name=conv4",
             "model.channels=8", "algorithm.name=proto_maml", "algorithm.inner_lr=0.1", "algorithm.meta_batch_size=4",
             f"task.sources={{a: {a}, b: {{path: {b}, weight: 2}}}}", "eval.num_tasks=8", "eval.inner_steps=1"]
    local = train(tmp_path / "l", "runtime.backend=local", *extra)
    ray2 = train(tmp_path / "r", "runtime.backend=ray", "runtime.num_workers=2", *extra)
    assert local["params_sha256"] == ray2["params_sha256"] and local["curve"] == ray2["curve"]
    assert set(local["per_task"]) == {"a", "b"} and local["per_task"] == ray2["per_task"]
