"""Label image files of a brand-new task with a meta-trained run: `meta-dist predict`, from Python.

The support folder holds one sub-folder per new class with a few images each (the shots); the query
folder holds the files to label. Every file goes through the run's task store preprocessing (colour
mode, resize, inversion, channel normalization), `meta_dist.adapt` fits the network to the support set
(gradient steps for MAML, prototypes for ProtoNet) and each query file gets a class name.

    python examples/predict_new_task.py --run-dir runs/own_data/run --support SUPPORT --query QUERY
    # no trained run yet: train a tiny ProtoNet on any image store first (about 20 s)
    python examples/predict_new_task.py --run-dir runs/tiny --data STORE --steps 50 --support S --query Q

The same in one call: `meta-dist predict --run-dir R --support S --query Q [--json]`.
"""
import argparse
from pathlib import Path

import numpy as np
import torch

import meta_dist
from meta_dist.tasks.folder import IMAGE_EXTENSIONS, load_image_file, preprocess_spec


def image_files(folder):
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", required=True, help="a run trained on an image store (trained here if absent)")
    parser.add_argument("--support", required=True, help="folder with one sub-folder of images per new class")
    parser.add_argument("--query", required=True, help="folder of image files to label")
    parser.add_argument("--data", help="image task store to train a tiny run on when --run-dir does not exist")
    parser.add_argument("--steps", type=int, default=50, help="meta-steps of that tiny run")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers of that tiny run")
    parser.add_argument("--adapt-steps", type=int, help="gradient steps on the support set (MAML-like runs; "
                                                         "default: the run's eval.inner_steps)")
    args = parser.parse_args()

    if not (Path(args.run_dir) / "config.yaml").exists():
        if not args.data:
            parser.error(f"{args.run_dir} holds no run; pass --data STORE to train a tiny one there first")
        meta_dist.train("omniglot_protonet", data=args.data, steps=args.steps, workers=args.workers,
                        run_dir=args.run_dir, overrides={"task.name": "images", "task.ways": 5,
                                                         "eval.num_tasks": 20})

    run = meta_dist.open_run(args.run_dir)
    family = run.components.family  # the run's image task family: its store and normalization
    preprocess = preprocess_spec(family.store.manifest)

    def inputs(files):
        pixels = np.stack([load_image_file(f, preprocess, family.store.image_shape) for f in files])
        return family.normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2))  # [N, C, H, W]

    classes = sorted(d for d in Path(args.support).iterdir() if d.is_dir() and not d.name.startswith("."))
    shots = [image_files(d) for d in classes]
    support_x = inputs([f for files in shots for f in files])
    support_y = torch.tensor([k for k, files in enumerate(shots) for _ in files])
    predictor = meta_dist.adapt(run, support_x, support_y, steps=args.adapt_steps)

    queries = image_files(args.query)
    labels = predictor.predict(inputs(queries)).tolist()
    print(f"{run.config.algorithm.name} run at step {run.checkpoint.step}, adapted to {len(classes)} classes "
          f"({', '.join(f'{d.name}: {len(f)}' for d, f in zip(classes, shots))} shots)")
    for file, k in zip(queries, labels):
        print(f"{Path(file).relative_to(args.query)} -> {classes[k].name}")


if __name__ == "__main__":
    main()
