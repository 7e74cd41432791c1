"""Task specs are pure functions of (seed, split, step, index); parameters flatten losslessly."""
import pickle

import torch

from meta_dist import config as C, tasks
from meta_dist.params import ParamLayout, params_sha256
from meta_dist.runtime.wire import Chunk, ChunkResult
from meta_dist.tasks.spec import derive_seed


def test_specs_are_deterministic_and_split_dependent():
    family = tasks.build(C.Config())
    a = family.specs(3, "train", 10, 5)
    assert a == family.specs(3, "train", 10, 5)
    assert a != family.specs(3, "train", 11, 5)
    assert a[0] != family.spec(3, "test", 10, 0)
    batch_1, batch_2 = family.materialize(a), family.materialize(a)
    assert torch.equal(batch_1.support_x, batch_2.support_x)
    part = family.materialize(a[1:3])  # a task's data does not depend on the chunk it is in
    assert torch.equal(part.query_x, batch_1.query_x[1:3])


def test_uniform_streams_are_uniform_and_seed_local():
    from meta_dist.tasks.spec import uniform_streams

    u = uniform_streams(list(range(200)), 500)
    assert u.shape == (200, 500) and 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.005 and abs(u.var() - 1 / 12) < 0.002
    assert (uniform_streams([7], 500) == u[7]).all()


def test_sinusoid_ranges_match_the_paper():
    family = tasks.build(C.Config())
    specs = family.specs(0, "train", 1, 500)
    amplitudes = [s.params[0] for s in specs]
    phases = [s.params[1] for s in specs]
    assert 0.1 <= min(amplitudes) and max(amplitudes) <= 5.0
    assert 0.0 <= min(phases) and max(phases) <= 3.1416
    batch = family.materialize(specs[:4])
    assert batch.support_x.shape == (4, 10, 1) and batch.query_x.shape == (4, 10, 1)
    assert batch.support_x.min() >= -5 and batch.support_x.max() <= 5
    amplitude, phase = specs[0].params[:2]
    torch.testing.assert_close(batch.support_y[0], amplitude * torch.sin(batch.support_x[0] + phase))


def test_derive_seed_is_stable():
    assert derive_seed("task", 0, "train", 1, 2) == derive_seed("task", 0, "train", 1, 2)
    assert derive_seed("task", 0, "train", 1, 2) != derive_seed("task", 0, "train", 1, 3)
    assert 0 <= derive_seed("x") < 2 ** 63


def test_layout_roundtrip_and_digest():
    params = {"b": torch.randn(3), "a": torch.randn(2, 2)}
    layout = ParamLayout.of(params)
    assert layout.names == ("a", "b") and layout.size == 7
    flat = layout.flatten(params)
    back = layout.unflatten(flat)
    assert all(torch.equal(back[k], params[k]) for k in params)
    digest = params_sha256(params)
    assert digest == params_sha256({"a": params["a"].clone(), "b": params["b"].clone()})
    params["a"][0, 0] += 1e-7
    assert digest != params_sha256(params)


def test_wire_types_roundtrip_through_pickle():
    family = tasks.build(C.Config())
    chunk = Chunk(4, 1, tuple(family.specs(0, "train", 4, 3)))
    assert pickle.loads(pickle.dumps(chunk)) == chunk
    result = ChunkResult(4, 1, 7, torch.ones(5).numpy(), 3, {"meta_loss": 1.5})
    back = pickle.loads(pickle.dumps(result))
    assert (back.step, back.chunk_id, back.version, back.num_tasks, back.metrics) == (4, 1, 7, 3, {"meta_loss": 1.5})
    assert back.update.tolist() == [1.0] * 5 and back.ok
