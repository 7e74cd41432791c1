"""The registry (built-ins, plug-ins' entry points, import paths), the component checks, and what any
nn.Module needs to train: running statistics dropped, frozen parameters kept fixed, unused parameters,
seeded dropout, the ANIL head, the Siamese embedding width."""
from __future__ import annotations

import random
import sys
import textwrap

import pytest
import torch
from torch import nn

from meta_dist import algorithms, components, config as C, models, registry
from meta_dist.errors import UserError
from meta_dist.runtime.wire import Chunk
from meta_dist.runtime.worker import ChunkWorker
from tests.helpers.byo.my_tasks import Blobs, bn_net

BLOBS = ["task.name=tests.helpers.byo.my_tasks:Blobs", "model.name=tests.helpers.byo.my_tasks:bn_net",
         "algorithm.meta_batch_size=4", "runtime.chunk_size=2"]


def cfg(*overrides: str) -> C.Config:
    return C.validate(C.load(None, [*BLOBS, *overrides]))


def test_names_are_built_ins_plugins_or_import_paths():
    registry.check_name("model", "resnet12")
    registry.check_name("task", "images")
    registry.check_name("task", "pkg.mod:Attr.inner")
    with pytest.raises(UserError, match="choose one of: .*conv4.*or give an import path"):
        registry.check_name("model", "convv4")
    with pytest.raises(UserError, match="not an import path"):
        registry.check_name("task", "a b:c")


def test_import_paths_resolve_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "local_nets.py").write_text("def net(input_shape, output_dim):\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert registry.load("model", "local_nets:net").__name__ == "net"
    with pytest.raises(UserError, match="module 'nowhere' was not found from .* run from the folder"):
        registry.load("model", "nowhere:net")
    with pytest.raises(UserError, match="has no attribute 'nett'"):
        registry.load("model", "local_nets:nett")
    assert registry.code_dir([sys.modules["local_nets"].net]) == tmp_path.resolve()
    assert registry.code_dir([nn.Linear]) is None


def test_a_plugin_package_adds_names_through_entry_points(tmp_path, monkeypatch):
    """A real installed distribution's entry points (a .dist-info on sys.path), as pip leaves them."""
    (tmp_path / "fancy_nets.py").write_text(textwrap.dedent("""
        from torch import nn
        def wide(input_shape, output_dim, width=16):
            return nn.Sequential(nn.Linear(input_shape[0], width), nn.ReLU(), nn.Linear(width, output_dim))
    """))
    info = tmp_path / "fancy_nets-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fancy-nets\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[meta_dist.models]\nwide_mlp = fancy_nets:wide\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    config = cfg("model.name=wide_mlp", "model.kwargs={width: 8}")
    family = Blobs()
    net = models.factory(config, family)(family.input_shape, family.output_dim)
    assert net[0].out_features == 8


def test_factory_builds_seeded_without_touching_the_global_random_state():
    factory = models.ModelFactory(bn_net, {"hidden": 8}, "bn_net")
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, b = factory((2,), 3, seed=5), factory((2,), 3, seed=5)
    assert torch.rand(1) == expected
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    bn = a[1]
    assert not bn.track_running_stats and bn.running_mean is None  # batch statistics in every mode


def test_check_components_names_the_problem():
    with pytest.raises(UserError, match="gave different tasks"):
        components.build(cfg("task.name=tests.helpers.byo.my_tasks:Unseeded"))
    with pytest.raises(UserError, match=r"returned shape \(15, 4\).*needs \[N, 3\]"):
        components.build(cfg("model.name=tests.helpers.byo.my_tasks:wrong_width", "model.kwargs={}"))
    with pytest.raises(UserError, match="not a meta_dist.TaskFamily"):
        components.build(cfg("task.name=tests.helpers.byo.my_tasks:NOT_A_FAMILY", "task.kwargs={}"))
    with pytest.raises(TypeError, match="unexpected keyword argument 'depth'"):  # the user's own error
        components.build(cfg("model.kwargs={depth: 3}"))
    assert components.build(cfg()).user == ("task", "model")


def test_buffers_written_in_forward_are_refused():
    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(2, 3)
            self.register_buffer("calls", torch.zeros(()))

        def forward(self, x):
            self.calls += 1
            return self.fc(x)
    config = cfg()
    with pytest.raises(UserError, match="changes its buffer 'calls'"):
        components.build(config, task=Blobs(), model=lambda shape, out: Counting())


class PartlyFrozen(nn.Module):
    """A frozen embedding, a head, and a layer the forward never uses."""

    def __init__(self, input_shape, output_dim):
        super().__init__()
        self.body = nn.Linear(input_shape[0], 16).requires_grad_(False)
        self.head = nn.Linear(16, output_dim)
        self.unused = nn.Linear(4, 4)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


@pytest.mark.parametrize("name", ["maml", "fomaml", "reptile", "metasgd", "anil"])
def test_frozen_and_unused_parameters_under_every_gradient_algorithm(name):
    config = cfg(f"algorithm.name={name}", "model.kwargs={}")
    built = components.build(config, task=Blobs(), model=PartlyFrozen)
    worker = ChunkWorker(config, built)
    assert "body.weight" not in worker.layout.names and "unused.weight" in worker.layout.names
    init = worker.algorithm.init_params(0)
    flat = worker.layout.flatten(init).numpy()
    specs = tuple(built.family.specs(0, "train", 1, 2))
    result = worker.run_chunks((0, flat), [Chunk(1, 0, specs)])[0]
    update = worker.layout.unflatten(torch.from_numpy(result.update))
    assert result.ok and update["head.weight"].abs().sum() > 0
    assert update["unused.weight"].abs().sum() == 0


def test_dropout_masks_depend_on_the_chunk_not_the_worker():
    config = cfg()
    built = components.build(config)
    a, b = ChunkWorker(config, built), ChunkWorker(config, built)
    flat = a.layout.flatten(a.algorithm.init_params(0)).numpy()
    chunk = Chunk(1, 0, tuple(built.family.specs(0, "train", 1, 2)))
    other = Chunk(1, 1, tuple(built.family.specs(0, "train", 1, 2)))
    random.seed(1), torch.manual_seed(1)
    first = a.run_chunks((0, flat), [chunk])[0].update
    state = torch.get_rng_state()
    assert (first == b.run_chunks((0, flat), [chunk])[0].update).all()
    assert torch.equal(torch.get_rng_state(), state)  # the process's own random state is left alone
    assert not (first == a.run_chunks((0, flat), [other])[0].update).all()


def test_anil_adapts_the_last_linear_or_the_named_head():
    config = cfg("algorithm.name=anil", "model.kwargs={}")
    family = Blobs()
    last = algorithms.build(config, family, model=models.ModelFactory(PartlyFrozen, {}, "frozen"))
    params = last.init_params(0)
    assert sorted(last.adapted_names(params)) == ["unused.bias", "unused.weight"]  # the last nn.Linear
    named = algorithms.build(C.apply_overrides(config, ["algorithm.head=head"]), family,
                             model=models.ModelFactory(PartlyFrozen, {}, "frozen"))
    assert sorted(named.adapted_names(params)) == ["head.bias", "head.weight"]
    wrong = algorithms.build(C.apply_overrides(config, ["algorithm.head=nothing"]), family,
                             model=models.ModelFactory(PartlyFrozen, {}, "frozen"))
    with pytest.raises(UserError, match="names no trainable parameters"):
        wrong.adapted_names(params)


def embedder(input_shape, output_dim):
    """Features when output_dim is 0 (what metric methods ask for), class scores otherwise."""
    head = [nn.Linear(12, output_dim)] if output_dim else []
    return nn.Sequential(nn.Linear(input_shape[0], 12), nn.ReLU(), *head)


def test_siamese_measures_the_embedding_width():
    config = cfg("algorithm.name=siamese", "model.kwargs={}")
    siamese = algorithms.build(config, Blobs(), model=models.ModelFactory(embedder, {}, "embedder"))
    assert siamese.init_params(0)["meta.siamese.weight"].shape == (1, 12)
    with pytest.raises(UserError, match="needs an embedding network: return \\[N, features\\] when output_dim is 0"):
        components.build(config, task=Blobs(), model=lambda shape, out: nn.Linear(shape[0], out))  # width 0


def test_code_outside_the_working_directory_ships_its_own_folder(tmp_path, monkeypatch):
    code = tmp_path / "code"
    code.mkdir()
    (code / "far_nets.py").write_text("def net(input_shape, output_dim):\n    return None\n")
    monkeypatch.syspath_prepend(str(code))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    import far_nets

    assert registry.code_dir([far_nets.net]) == code.resolve()


def test_script_objects_are_not_importable_by_name_later():
    with pytest.raises(UserError, match="defined in a Python script.*pass the same object again"):
        registry.load("model", "__main__:make_net")
    config = cfg()
    built = components.build(C.apply_overrides(config, ["model.name=__main__:embedder"]), model=embedder)
    assert built.given == ("model",)


def test_data_paths_are_recorded_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert C.run_overrides(data="store", steps=3) == [f"task.data_dir={tmp_path / 'store'}", "steps=3"]
    assert C.run_overrides(data="s3://bucket/store") == ["task.data_dir=s3://bucket/store"]
