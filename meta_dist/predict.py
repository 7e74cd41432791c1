"""`meta-dist predict`: classify raw image files of a new task with a meta-trained run.

The support folder holds one sub-folder per new class (any number of shots each), the query folder
the files to label. Every file goes through the run's task store's own preprocessing (colour mode,
resize, inversion, then the store's channel normalization), the network adapts to the support set
(gradient steps for MAML-like methods, prototypes / support memory for metric methods), and each query
file gets the name of its predicted class. Only runs on an image task store can read files; other runs
adapt from Python (`meta_dist.adapt`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from meta_dist.errors import UserError
from meta_dist.tasks.folder import IMAGE_EXTENSIONS, load_image_file, preprocess_spec


def image_files(folder: Path) -> list[Path]:
    """Image files anywhere under `folder`, in name order; hidden files skipped."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def support_classes(support: Path) -> list[tuple[str, list[Path]]]:
    if not support.is_dir():
        raise UserError(f"--support '{support}' is not a folder; give one sub-folder of images per new class")
    classes = [(d.name, image_files(d)) for d in sorted(support.iterdir())
               if d.is_dir() and not d.name.startswith(".")]
    empty = [name for name, files in classes if not files]
    if empty:
        raise UserError(f"support class folder '{support / empty[0]}' holds no image files "
                        f"({', '.join(sorted(IMAGE_EXTENSIONS))})")
    if len(classes) < 2:
        raise UserError(f"--support '{support}' has {len(classes)} class folder(s); a task needs at least 2, "
                        f"one sub-folder of images per class")
    return classes


def image_inputs(family, files: list[Path]) -> torch.Tensor:
    """Image files -> the network's inputs [N, C, H, W], exactly as an image family's episodes make them
    from its store (`meta_dist.open_run(run_dir).components.family` is the run's family)."""
    store = family.store
    preprocess = preprocess_spec(store.manifest)
    pixels = np.stack([load_image_file(f, preprocess, store.image_shape) for f in files])
    return family.normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2))


def predict_files(run_dir: str | Path, support: str | Path, query: str | Path, *, data: str | None = None,
                  steps: int | None = None) -> dict:
    """{"predictions": [{"file", "class"}], "classes", "run_dir", "algorithm", "shots"} for the query files."""
    from meta_dist import api

    run = api.open_run(run_dir, data=data)
    family = run.components.family
    if not hasattr(family, "store"):
        raise UserError(f"{run_dir} trained on task '{run.config.task.name}', which has no image store to take "
                        f"the preprocessing from; adapt it from Python with meta_dist.adapt")
    classes = support_classes(Path(support))
    query_dir = Path(query)
    if not query_dir.is_dir():
        raise UserError(f"--query '{query}' is not a folder of image files")
    queries = image_files(query_dir)
    if not queries:
        raise UserError(f"--query '{query}' holds no image files ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    support_x = image_inputs(family, [f for _, files in classes for f in files])
    support_y = torch.cat([torch.full((len(files),), i, dtype=torch.long) for i, (_, files) in enumerate(classes)])
    predictor = api.adapt(run, support_x, support_y, steps=steps)
    labels = predictor.predict(image_inputs(family, queries)).tolist()
    names = [name for name, _ in classes]
    return {"predictions": [{"file": str(f), "class": names[k]} for f, k in zip(queries, labels)],
            "classes": names, "shots": {name: len(files) for name, files in classes},
            "run_dir": str(run.run_dir), "algorithm": run.config.algorithm.name, "step": run.checkpoint.step}
