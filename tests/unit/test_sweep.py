"""Sweep arguments, checked before any trial starts: distributions in Tune's vocabulary, keys of the config,
trial placement groups that the cluster can hold."""
from __future__ import annotations

import pytest
from ray import tune

from meta_dist import config as C
from meta_dist.errors import UserError
from meta_dist.runtime.sweep import check_fits, parse_search, trial_bundles
from meta_dist.runtime.sweep_trials import format_markdown

BASE = C.validate(C.load(None, []))


def test_distributions_parse_to_tune_domains():
    space = parse_search(["algorithm.inner_lr=loguniform(1e-3, 1e-1)", "algorithm.meta_lr=uniform(0.0001,0.01)",
                          "algorithm.inner_steps=randint(1,4)", "algorithm.inner_optimizer=choice(sgd, adam)",
                          "model.hidden_sizes=grid([40, 40], [64, 64])"], BASE)
    assert isinstance(space["algorithm.inner_lr"], tune.search.sample.Float)
    assert (space["algorithm.inner_lr"].lower, space["algorithm.inner_lr"].upper) == (1e-3, 1e-1)
    assert isinstance(space["algorithm.inner_steps"], tune.search.sample.Integer)
    assert space["algorithm.inner_optimizer"].categories == ["sgd", "adam"]
    assert space["model.hidden_sizes"] == {"grid_search": [[40, 40], [64, 64]]}


def test_a_mapping_may_hold_tune_domains_as_they_are():
    domain = tune.uniform(0.1, 0.5)
    assert parse_search({"algorithm.inner_lr": domain}, BASE)["algorithm.inner_lr"] is domain


@pytest.mark.parametrize("item, message", [
    ("algorithm.inner_lr", "expects KEY=DIST"),
    ("algorithm.inner_lr=normal(0,1)", "choose a distribution loguniform"),
    ("algorithm.inner_lr=loguniform(0, 1)", "0 < low < high"),
    ("algorithm.inner_lr=uniform(1, 0.5)", "low < high"),
    ("algorithm.inner_steps=randint(1, 2.5)", "randint takes two integers"),
    ("algorithm.inner_lr=choice()", "at least one value"),
    ("algorithm.inner_lr=choice(0.1,,0.2)", "cannot read the values"),
    ("algorithm.inner_rate=uniform(0.1, 0.5)", "unknown config key 'algorithm.inner_rate'"),
    ("algorithm.inner_steps=choice(fast, slow)", "must be an integer"),
    ("algorithm.meta_optimizer=choice(lion)", "choose one of: adam, sgd"),
])
def test_bad_search_items_are_one_line_user_errors(item, message):
    with pytest.raises(UserError, match=message):
        parse_search([item], BASE)


def test_a_sweep_needs_a_searched_key():
    with pytest.raises(UserError, match="at least one --search"):
        parse_search([], BASE)


def test_a_trial_reserves_its_process_and_its_actors_together():
    two = C.with_overrides(BASE, runtime={"num_workers": 2})
    assert trial_bundles(two, 2) == [{"CPU": 1.0}, {"CPU": 1.0}]  # the trial's process is worker 0
    ordinary = C.with_overrides(two, runtime={"driver_worker": False})
    assert trial_bundles(ordinary, 2) == [{"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0}]
    threads = C.with_overrides(two, runtime={"threads_per_worker": 2})
    assert trial_bundles(threads, 2) == [{"CPU": 2.0}, {"CPU": 2.0}]


def test_a_trial_larger_than_the_cluster_is_a_user_error():
    check_fits([{"CPU": 1.0}, {"CPU": 1.0}], {"CPU": 2.0})
    with pytest.raises(UserError, match="one trial needs 3 CPUs .* the Ray cluster has 2; lower --workers"):
        check_fits([{"CPU": 1.0}] * 3, {"CPU": 2.0})


def test_the_markdown_table_names_the_best_trial_and_its_values():
    rows = [{"trial": "a", "status": "completed", "algorithm.inner_lr": 0.01, "step": 40, "val_mse": 0.5,
             "test_mse": 0.6, "run_dir": "/r/trials/a"},
            {"trial": "b", "status": "stopped early", "algorithm.inner_lr": 0.2, "step": 10, "val_mse": 2.0,
             "test_mse": None, "run_dir": "/r/trials/b"}]
    text = format_markdown(rows, rows[0], "val_mse", "min")
    assert text.splitlines()[0] == "| trial | status | algorithm.inner_lr | step | val_mse | test_mse | run_dir |"
    assert "| b | stopped early | 0.2 | 10 | 2 |  | /r/trials/b |" in text
    assert "Best trial by val_mse (min): a (val_mse 0.5), config: algorithm.inner_lr=0.01" in text


def test_the_sweep_is_part_of_the_library_surface():
    import meta_dist
    from meta_dist.runtime import sweep

    assert meta_dist.tune is sweep.tune


def test_resuming_where_no_sweep_ran_is_a_user_error_and_creates_nothing(tmp_path):
    import meta_dist

    with pytest.raises(UserError, match="nothing to resume in .*: it holds no sweep"):
        meta_dist.tune(search={"algorithm.inner_lr": "uniform(0.01,0.1)"}, run_dir=tmp_path / "s", resume=True)
    assert not (tmp_path / "s").exists()
