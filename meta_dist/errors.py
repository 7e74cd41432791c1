"""Error types that cross layers.

`UserError` is the one exception the CLI turns into a one-line message and exit code 2: raise it
for anything the user can fix (a config, a path, a data store, a checkpoint, an address, a resource
request). Everything else is an internal failure (exit code 1) and keeps its traceback.
"""


class UserError(ValueError):
    """A problem with the user's input; the message says what is wrong and how to fix it."""


class NonFiniteError(RuntimeError):
    """Too many consecutive meta-steps produced NaN/Inf updates; the run stops before corrupting parameters."""


class ChunkError(RuntimeError):
    """An exception raised in a worker while it built the run's components or computed a chunk: in the
    task family, the network or the algorithm (often the user's own code). That work is deterministic,
    so it would fail the same way on any worker: the run stops and shows the original traceback once,
    rather than retrying."""

    def __init__(self, where: str, traceback_text: str):
        super().__init__(where, traceback_text)

    @property
    def where(self) -> str:
        return self.args[0]

    @property
    def traceback_text(self) -> str:
        return self.args[1]

    def __str__(self) -> str:
        return f"{self.where} raised an exception"
