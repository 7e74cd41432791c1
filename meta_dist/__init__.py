"""meta-dist: a distributed, task-parallel meta-learning trainer on Ray and PyTorch.

The library surface:

    import meta_dist
    result = meta_dist.train("omniglot_protonet", data="store", steps=1000)   # or model=..., task=...
    net = meta_dist.load(result.run_dir)
    predictor = meta_dist.adapt(result.run_dir, support_x, support_y)
    labels = predictor.predict(query_x)

`TaskFamily`, `TaskSpec` and `TaskBatch` are the task contract (see docs/tasks.md). Names resolve on
first use, so `import meta_dist` stays cheap.
"""

__version__ = "0.1.0"

_EXPORTS = {
    "train": "meta_dist.api", "evaluate": "meta_dist.api", "load": "meta_dist.api", "adapt": "meta_dist.api",
    "open_run": "meta_dist.api", "Predictor": "meta_dist.api", "RunResult": "meta_dist.api",
    "tune": "meta_dist.runtime.sweep", "predict_files": "meta_dist.predict", "image_inputs": "meta_dist.predict",
    "TaskFamily": "meta_dist.tasks.spec", "TaskSpec": "meta_dist.tasks.spec", "TaskBatch": "meta_dist.tasks.spec",
    "spec_rng": "meta_dist.tasks.spec", "derive_seed": "meta_dist.tasks.spec",
    "Config": "meta_dist.config", "ModelFactory": "meta_dist.models", "UserError": "meta_dist.errors",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'meta_dist' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_EXPORTS])


__all__ = ["__version__", *_EXPORTS]
