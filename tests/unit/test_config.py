"""Config: strict loading, overrides, validation messages."""
from pathlib import Path

import pytest

from meta_dist import config as C
from meta_dist.errors import UserError


def test_default_is_the_paper_sinusoid_maml():
    cfg = C.validate(C.load())
    assert (cfg.task.name, cfg.algorithm.name, cfg.model.hidden_sizes) == ("sinusoid", "maml", (40, 40))
    assert (cfg.algorithm.inner_lr, cfg.algorithm.meta_batch_size, cfg.algorithm.meta_lr) == (0.01, 25, 0.001)
    assert cfg.task.shots == 10


def test_named_configs_all_load_and_validate():
    names = C.available_configs()
    assert {"sinusoid_maml", "sinusoid_fomaml", "sinusoid_reptile"} <= set(names)
    for name in names:
        C.validate(C.load(name))


def test_builtin_default_matches_named_default():
    assert C.to_dict(C.load()) == C.to_dict(C.load("sinusoid_maml"))


def test_unknown_key_is_named_with_valid_keys():
    with pytest.raises(UserError, match=r"unknown config key 'algorithm.inner_lrr'.*valid keys: .*inner_lr"):
        C.from_dict({"algorithm": {"inner_lrr": 0.1}})
    with pytest.raises(UserError, match="unknown config key 'nonsense'"):
        C.apply_overrides(C.Config(), ["nonsense=1"])


@pytest.mark.parametrize("override, message", [
    ("steps=abc", "must be an integer"),
    ("steps=-5", "'steps' must be positive"),
    ("task.ways=0", "'task.ways' must be positive"),
    ("algorithm.name=magic", "choose one of"),
    ("algorithm.first_order=maybe", "true or false"),
    ("model.hidden_sizes=7", "list of integers"),
])
def test_bad_values_raise_user_errors(override, message):
    with pytest.raises(UserError, match=message):
        C.validate(C.apply_overrides(C.Config(), [override]))


def test_overrides_coerce_types_and_keep_strings():
    cfg = C.apply_overrides(C.Config(), ["algorithm.inner_lr=1", "runtime.address=127.0.0.1:6379",
                                         "model.hidden_sizes=[64, 64]", "name=123"])
    assert cfg.algorithm.inner_lr == 1.0 and isinstance(cfg.algorithm.inner_lr, float)
    assert cfg.runtime.address == "127.0.0.1:6379"
    assert cfg.model.hidden_sizes == (64, 64)
    assert cfg.name == "123"


def test_missing_config_file_and_name():
    with pytest.raises(UserError, match="does not exist"):
        C.load("/nonexistent/x.yaml")
    with pytest.raises(UserError, match="no config named 'nope'; available:"):
        C.load("nope")


def test_yaml_roundtrip(tmp_path):
    cfg = C.validate(C.load("sinusoid_reptile"))
    path = tmp_path / "c.yaml"
    path.write_text(C.dump(cfg))
    assert C.load(str(path)) == cfg


def test_invalid_yaml_is_a_user_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        C.load(str(path))


def test_the_config_reference_is_generated_from_the_schema():
    """docs/configuration.md holds every key with its type, default and docstring, and every value check;
    regenerate it with `python -m meta_dist.schema_docs docs/configuration.md`."""
    from meta_dist import schema_docs

    doc = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    assert schema_docs.render_reference(doc) == doc
    assert "| `logging.mlflow` | bool | `false` |" in doc


def test_a_key_of_earlier_versions_is_ignored_with_a_warning(caplog):
    config = C.from_dict({"log_every": 50, "steps": 3})
    assert config.steps == 3
    assert "config key 'log_every' is no longer used" in caplog.text
