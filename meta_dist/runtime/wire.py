"""Wire types: the only things that cross process boundaries (frozen dataclasses, no tensors
except the flat update). Results are idempotent by (step, chunk_id): a chunk computed twice
(a backup task, a retry after a lost worker) is the same result, and the driver keeps the first.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import numpy as np

from meta_dist.tasks.spec import TaskSpec


@dataclass(frozen=True)
class Chunk:
    step: int
    chunk_id: int
    specs: tuple[TaskSpec, ...]

    @property
    def key(self) -> tuple[int, int]:
        return (self.step, self.chunk_id)

    def __reduce__(self):
        return _unpack, (Chunk, _pack(self))


@dataclass(frozen=True)
class ChunkResult:
    step: int
    chunk_id: int
    version: int
    """Parameter version the update was computed on (async mode compares it with the server's)."""
    update: np.ndarray
    """Flat float32 update summed over the chunk's tasks (meta-gradient or Reptile delta)."""
    num_tasks: int
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = "ok"
    """ok | nonfinite (the update holds NaN/Inf and must never reach the parameters)."""
    worker_id: int = -1
    compute_s: float = 0.0

    @property
    def key(self) -> tuple[int, int]:
        return (self.step, self.chunk_id)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def __reduce__(self):
        return _unpack, (ChunkResult, _pack(self))


# Ray's serializer inspects every object of a payload for object refs and custom reducers; on a
# chunk of 25 small dataclasses that took 12 ms per call (measured), against 0.06 ms for plain
# pickle. Wire objects therefore travel as one opaque pickle (they never contain object refs).
def _pack(obj) -> bytes:
    fields = tuple(getattr(obj, name) for name in obj.__dataclass_fields__)
    return pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(cls, payload: bytes):
    return cls(*pickle.loads(payload))
