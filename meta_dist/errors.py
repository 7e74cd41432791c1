"""Error types that cross layers.

`UserError` is the one exception the CLI turns into a one-line message and exit code 2: raise it
for anything the user can fix (a config, a path, a data store, a checkpoint, an address, a resource
request). Everything else is an internal failure (exit code 1) and keeps its traceback.
"""


class UserError(ValueError):
    """A problem with the user's input; the message says what is wrong and how to fix it."""


class NonFiniteError(RuntimeError):
    """Too many consecutive meta-steps produced NaN/Inf updates; the run stops before corrupting parameters."""
