"""The chunk-order sum and its node-by-node form (runtime/node_fold.py): continuing a fold over any
cut of the chunks gives the bits of the whole fold; the chunk order of a step follows the nodes."""
import numpy as np
import pytest

from meta_dist.runtime.backend import RayBackend
from meta_dist.runtime.node_fold import finish, fold, node_order
from meta_dist.runtime.wire import Chunk, ChunkResult


def results(n: int, seed: int = 0) -> list[ChunkResult]:
    rng = np.random.default_rng(seed)
    # Magnitudes spread over many binades, where float32 sums depend on their order.
    updates = [(rng.standard_normal(257) * 10.0 ** rng.integers(-6, 6, 257)).astype(np.float32) for _ in range(n)]
    return [ChunkResult(1, i, 0, u, 5, {"loss": float(i) / 3}, worker_id=i % 3) for i, u in enumerate(updates)]


@pytest.mark.parametrize("cuts", [(3,), (1, 4), (2, 5, 6), (7,)])
def test_a_fold_continued_across_nodes_has_the_bits_of_the_whole_fold(cuts):
    rs = results(8)
    whole = finish(fold(None, rs))
    partial, start = None, 0
    for end in (*cuts, len(rs)):
        partial = fold(partial, list(reversed(rs[start:end])))  # within a node, any arrival order
        start = end
    total, num_tasks, metrics, bad = finish(partial)
    assert total.tobytes() == whole[0].tobytes() and (num_tasks, metrics, bad) == whole[1:]
    # A different grouping of the same sums is not bitwise the same: why the fold is continued.
    split = finish(fold(None, rs[:4]))[0] + finish(fold(None, rs[4:]))[0]
    assert split.tobytes() != whole[0].tobytes()


def test_nonfinite_chunks_are_dropped_and_counted_and_updates_are_not_carried():
    rs = results(4)
    rs[2] = ChunkResult(1, 2, 0, np.full(257, np.nan, np.float32), 5, {"loss": 1.0}, "nonfinite")
    partial = fold(fold(None, rs[:2]), rs[2:])
    total, num_tasks, metrics, bad = finish(partial)
    assert np.isfinite(total).all() and num_tasks == 15 and bad == 1
    assert all(r.update.size == 0 for r in partial.results) and [r.chunk_id for r in partial.results] == [0, 1, 2, 3]


def test_a_sum_that_overflows_is_not_applied():
    big = [ChunkResult(1, i, 0, np.full(3, 3e38, np.float32), 1) for i in range(2)]
    with np.errstate(over="ignore"):
        assert finish(fold(None, big))[0] is None


def test_folding_out_of_chunk_order_is_refused():
    rs = results(3)
    with pytest.raises(ValueError, match="folded after"):
        fold(fold(None, rs[1:]), rs[:1])


def test_workers_are_grouped_by_node_with_the_drivers_node_first():
    assert node_order(["b", "a", "c", "a", "b"], driver_node="a") == [1, 3, 0, 4, 2]
    assert node_order(["a", "a"], driver_node="a") == [0, 1]


def test_each_node_gets_one_contiguous_range_of_chunks():
    backend = RayBackend.__new__(RayBackend)  # the dispatch policy only, no cluster
    backend.local, backend._revival = None, {}
    backend.workers, backend.weights, backend.alive = [object()] * 4, [1.0] * 4, [True] * 4
    backend.order = node_order(["n1", "n2", "n1", "n2"], driver_node="n1")
    groups = backend._partition([Chunk(1, i, ()) for i in range(8)])
    assert [(i, [c.chunk_id for c in g]) for i, g in groups] == [(0, [0, 1]), (2, [2, 3]), (1, [4, 5]), (3, [6, 7])]
