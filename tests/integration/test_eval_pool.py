"""Evaluation on workers (`meta-dist eval --workers`, the end of a Ray run): the one-process curves bit for
bit, whichever worker computed which episodes, and when a worker is lost on the way."""
import pytest

from meta_dist import api
from meta_dist.evaluation import evaluate
from meta_dist.runtime.backend import RayBackend
from meta_dist.runtime.eval_pool import EvalPool, eval_config
from tests.helpers.runs import train

pytestmark = pytest.mark.integration
TASKS = 160  # 32 chunks of episodes


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("eval-pool") / "run"
    train(path, "runtime.backend=local")
    return path


@pytest.fixture(scope="module")
def one_process(run_dir):
    return api.evaluate(run_dir, tasks=TASKS)


def test_two_workers_give_the_one_process_result_bitwise(run_dir, one_process, ray_local):
    two = api.evaluate(run_dir, tasks=TASKS, workers=2)
    assert two["tasks"] == TASKS
    assert two["curve"] == one_process["curve"]
    assert two["params_sha256"] == one_process["params_sha256"]


@pytest.mark.parametrize("killed", ["one", "all"])
def test_a_worker_lost_during_evaluation_changes_nothing(run_dir, one_process, ray_local, killed):
    """Here every worker is an actor (the test's Ray holds no CPU for the driver): a lost one's episodes
    go to the other, and with none left the driver computes them."""
    run = api.open_run(run_dir)
    backend = RayBackend(eval_config(run.config, 2), run.checkpoint.params, run.components)
    try:
        pool = EvalPool(backend)
        assert backend.local is None and pool.actors == [0, 1]
        for actor in backend.workers[-1:] if killed == "one" else backend.workers:
            ray_local.kill(actor, no_restart=True)
        result = evaluate(run.config, run.checkpoint.params, step=run.checkpoint.step, num_tasks=TASKS,
                          components=run.components, pool=pool)
    finally:
        backend.shutdown()
    assert pool.actors == ([0] if killed == "one" else [])
    assert result["curve"] == one_process["curve"]


def test_a_ray_run_evaluates_on_its_workers_as_one_process_does(tmp_path, ray_local):
    local = train(tmp_path / "local", "runtime.backend=local", f"eval.num_tasks={TASKS}")
    ray2 = train(tmp_path / "ray2", "runtime.backend=ray", "runtime.num_workers=2", f"eval.num_tasks={TASKS}")
    assert ray2["curve"] == local["curve"]
