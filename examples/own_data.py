"""Your own images: an ImageFolder tree -> a task store -> ProtoNet -> labels for classes it never saw.

`prepare_folder` turns a folder with one sub-folder of images per class into a task store and splits
its classes into train / val / test (64/16/20 by default). `task.name=images` trains on any such store.
The test classes are never seen in training: the run's own evaluation draws 5-way episodes from them,
and the last part classifies their raw image files from Python exactly as `meta-dist predict` would
(the store's preprocessing, then `meta_dist.adapt` on a support set of a few files per class).

Without --folder, a synthetic ImageFolder of drawn shapes in colours (30 classes) is written to a
temporary directory, so the example runs anywhere (about 1.5 minutes on 2 cores):

    python examples/own_data.py
    python examples/own_data.py --folder ~/my_images --image-size 64 --steps 1000
"""
import argparse
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

import meta_dist
from meta_dist.tasks.folder import IMAGE_EXTENSIONS, load_image_file, prepare_folder, preprocess_spec

SHAPES = ["circle", "square", "triangle", "diamond", "cross", "ring"]
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230), "yellow": (230, 220, 40),
           "magenta": (210, 50, 210)}


def draw(shape, rgb, rng, size=32):
    """One shape, jittered in place, size, angle and colour, on a noisy dark background."""
    im = Image.new("RGB", (size, size), tuple(rng.randint(0, 60) for _ in range(3)))
    cx, cy, r = size / 2 + rng.uniform(-4, 4), size / 2 + rng.uniform(-4, 4), rng.uniform(7, 11)
    turn = rng.uniform(0, 2 * np.pi)
    colour = tuple(min(255, max(0, c + rng.randint(-30, 30))) for c in rgb)
    corners = {"square": 4, "triangle": 3, "diamond": 4}
    d = ImageDraw.Draw(im)
    if shape in corners:
        n, start = corners[shape], turn + (np.pi / 4 if shape == "diamond" else 0)
        scale = (0.6, 1.0) if shape == "diamond" else (1.0, 1.0)
        d.polygon([(cx + scale[i % 2] * r * np.cos(start + 2 * np.pi * i / n),
                    cy + scale[i % 2] * r * np.sin(start + 2 * np.pi * i / n)) for i in range(n)], fill=colour)
    elif shape == "cross":
        for a in (turn, turn + np.pi / 2):
            d.line([(cx - r * np.cos(a), cy - r * np.sin(a)), (cx + r * np.cos(a), cy + r * np.sin(a))],
                   fill=colour, width=4)
    else:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=None if shape == "ring" else colour, outline=colour,
                  width=3)
    return im


def synthetic_folder(root, per_class=20, seed=0):
    """root/<colour>_<shape>/<i>.png for every colour and shape."""
    rng = random.Random(seed)
    for colour, rgb in COLOURS.items():
        for shape in SHAPES:
            folder = Path(root) / f"{colour}_{shape}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                draw(shape, rgb, rng).save(folder / f"{i:03d}.png")
    return Path(root)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", help="ImageFolder tree: one sub-folder of images per class "
                                         "(default: write a synthetic one of drawn shapes)")
    parser.add_argument("--image-size", type=int, default=32, help="images are resized to NxN in the store")
    parser.add_argument("--steps", type=int, default=300, help="meta-steps (2 episodes each)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers")
    parser.add_argument("--shots", type=int, default=1, help="support images per class at test time")
    parser.add_argument("--eval-tasks", type=int, default=200, help="held-out 5-way test episodes")
    parser.add_argument("--out", default="runs/own_data", help="where the store and the run go")
    args = parser.parse_args()

    source = Path(args.folder) if args.folder else synthetic_folder(Path(tempfile.mkdtemp()) / "shapes")
    store = prepare_folder(source, Path(args.out) / "store", image_size=args.image_size)
    result = meta_dist.train("omniglot_protonet", data=str(store), steps=args.steps, workers=args.workers,
                             run_dir=Path(args.out) / "run",
                             overrides={"task.name": "images", "task.ways": 5, "task.num_query": 5,
                                        "eval.shots": args.shots, "eval.num_tasks": args.eval_tasks})
    print(f"5-way {args.shots}-shot accuracy on held-out classes: {result.eval['mean']:.1f}% "
          f"+- {result.eval['ci95']:.1f} (chance 20%)")

    # `meta-dist predict` from Python: raw files of the test classes, preprocessed as the store was
    run = meta_dist.open_run(result.run_dir)
    family = run.components.family
    preprocess = preprocess_spec(family.store.manifest)

    def inputs(files):
        pixels = np.stack([load_image_file(f, preprocess, family.store.image_shape) for f in files])
        return family.normalize(torch.from_numpy(pixels).permute(0, 3, 1, 2))  # [N, C, H, W]

    new = [family.store.class_keys[i] for i in family.classes_of("test")]
    files = {c: sorted(p for p in (source / c).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS) for c in new}
    support = [f for c in new for f in files[c][:args.shots]]
    query = [f for c in new for f in files[c][args.shots:]]
    support_y = torch.tensor([k for k, c in enumerate(new) for _ in files[c][:args.shots]])
    query_y = torch.tensor([k for k, c in enumerate(new) for _ in files[c][args.shots:]])
    predictor = meta_dist.adapt(run, inputs(support), support_y)
    accuracy = (predictor.predict(inputs(query)) == query_y).float().mean().item() * 100
    print(f"new classes: {', '.join(new)}")
    print(f"{len(new)}-way {args.shots}-shot on {len(query)} raw query files: {accuracy:.1f}% "
          f"(chance {100 / len(new):.1f}%)")


if __name__ == "__main__":
    main()
