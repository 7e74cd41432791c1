#!/usr/bin/env python
"""MAML on Omniglot, written the learn2learn way, then trained again by meta-dist's distributed trainer.

The first part is learn2learn's classic Omniglot MAML script (5-way 1-shot, MAML's strided convnet,
second-order MAML with inner step 0.4, Adam on the meta-parameters): every character of the release
is a class, 1100 shuffled characters train and the rest test, each task holds 2 * shots drawings
of each of `ways` characters (each character's drawings rotated together by a random quarter
turn), half of them to adapt on and half to measure the adapted learner. Its only meta-dist line is the import.

The second part hands the same initial network and the same task pipeline (without the rotation,
which the bridge cannot carry) to `meta_dist.train` through `l2l.bridge`, for the same number of
meta-steps and tasks per step, on `--meta-dist-workers` Ray workers, and prints its meta-test
accuracy next to the classic loop's.

    META_DIST_OMNIGLOT=/path/to/omniglot python examples/l2l_omniglot_maml.py --iterations 100

`--data` (or $META_DIST_OMNIGLOT) is a folder holding images_background.zip and
images_evaluation.zip (or their extracted folders, or a torchvision omniglot-py root).
"""
import argparse
import os
import random
import tempfile
import time

import numpy as np
import torch
from PIL.Image import LANCZOS
from torch import nn, optim
from torchvision import transforms

# the only change from learn2learn's script is this import (it was `import learn2learn as l2l`)
from meta_dist.compat import l2l


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.environ.get("META_DIST_OMNIGLOT"),
                        help="the Omniglot release folder (default: $META_DIST_OMNIGLOT)")
    parser.add_argument("--iterations", type=int, default=1000, help="meta-steps of each trainer")
    parser.add_argument("--meta-batch-size", type=int, default=32, help="tasks per meta-step")
    parser.add_argument("--ways", type=int, default=5)
    parser.add_argument("--shots", type=int, default=1, help="adaptation (and evaluation) drawings per class")
    parser.add_argument("--adaptation-steps", type=int, default=1, help="inner SGD steps, in training and test")
    parser.add_argument("--fast-lr", type=float, default=0.4, help="inner SGD step size")
    parser.add_argument("--meta-lr", type=float, default=0.003, help="Adam step size on the meta-parameters")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--test-tasks", type=int, default=600, help="held-out tasks for the meta-test")
    parser.add_argument("--num-tasks", type=int, default=20000, help="fixed tasks of the training TaskDataset")
    parser.add_argument("--meta-dist-workers", type=int, default=2,
                        help="Ray workers of the meta-dist run (0: skip it)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads of the classic loop")
    parser.add_argument("--run-dir", default=None, help="meta-dist run directory (default: a new temporary one)")
    args = parser.parse_args()
    if not args.data:
        parser.error("pass --data PATH (the Omniglot release folder) or set META_DIST_OMNIGLOT")
    return args


def accuracy(predictions, targets):
    return (predictions.argmax(dim=1) == targets).float().mean()


def fast_adapt(batch, learner, loss, adaptation_steps, device):
    """Adapt `learner` on one half of a task and return its loss and accuracy on the other half.

    ConsecutiveLabels keeps each class's 2 * shots drawings together, so taking every other item
    gives each half `shots` drawings of every class.
    """
    data, labels = batch
    data, labels = data.to(device), labels.to(device)
    adapt = torch.arange(data.size(0), device=device) % 2 == 0
    for _ in range(adaptation_steps):
        learner.adapt(loss(learner(data[adapt]), labels[adapt]))
    predictions = learner(data[~adapt])
    return loss(predictions, labels[~adapt]), accuracy(predictions, labels[~adapt])


def task_pipeline(dataset, ways, shots, rotate=True):
    pipeline = [
        l2l.data.transforms.FusedNWaysKShots(dataset, n=ways, k=2 * shots),
        l2l.data.transforms.LoadData(dataset),
        l2l.data.transforms.RemapLabels(dataset),
        l2l.data.transforms.ConsecutiveLabels(dataset),
    ]
    if rotate:
        pipeline.append(l2l.vision.transforms.RandomClassRotation(dataset, [0.0, 90.0, 180.0, 270.0]))
    return pipeline


def meta_test(maml, tasks, count, loss, adaptation_steps, device):
    total = 0.0
    for _ in range(count):
        learner = maml.clone()
        _, task_accuracy = fast_adapt(tasks.sample(), learner, loss, adaptation_steps, device)
        total += task_accuracy.item()
    return total / count


def main():
    args = parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    # One thread, as each meta-dist worker has (runtime.threads_per_worker): on a network this small,
    # more threads mostly wait on each other, and on a busy machine they slow the loop down many times.
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")

    # -- data: every character is a class; a shuffled split of the characters --------------------
    omniglot = l2l.vision.datasets.FullOmniglot(root=args.data, transform=transforms.Compose([
        transforms.Resize(28, interpolation=LANCZOS),
        transforms.ToTensor(),
        lambda x: 1.0 - x,
    ]), download=False)
    dataset = l2l.data.MetaDataset(omniglot)
    classes = list(range(1623))
    random.shuffle(classes)
    train_dataset = l2l.data.FilteredMetaDataset(dataset, labels=classes[:1100])
    test_dataset = l2l.data.FilteredMetaDataset(dataset, labels=classes[1100:])
    train_transforms = task_pipeline(train_dataset, args.ways, args.shots)
    train_tasks = l2l.data.TaskDataset(train_dataset, task_transforms=train_transforms, num_tasks=args.num_tasks)
    test_transforms = task_pipeline(test_dataset, args.ways, args.shots)
    test_tasks = l2l.data.TaskDataset(test_dataset, task_transforms=test_transforms, num_tasks=args.test_tasks)

    # -- model and meta-learner ------------------------------------------------------------------------
    model = l2l.vision.models.OmniglotCNN(args.ways).to(device)
    maml = l2l.algorithms.MAML(model, lr=args.fast_lr, first_order=False)
    # A copy of the initial network now, so that meta-dist below starts where this loop starts.
    factory = l2l.bridge.model_factory(maml)
    opt = optim.Adam(maml.parameters(), args.meta_lr)
    loss = nn.CrossEntropyLoss(reduction="mean")

    # -- the classic loop: one meta-batch of tasks per iteration ------------------------------------
    start = time.perf_counter()
    for iteration in range(args.iterations):
        opt.zero_grad()
        train_error = train_accuracy = 0.0
        for _ in range(args.meta_batch_size):
            learner = maml.clone()
            error, task_accuracy = fast_adapt(train_tasks.sample(), learner, loss, args.adaptation_steps, device)
            error.backward()
            train_error += error.item()
            train_accuracy += task_accuracy.item()
        for p in maml.parameters():  # the mean, not the sum, of the tasks' meta-gradients
            p.grad.data.mul_(1.0 / args.meta_batch_size)
        opt.step()
        if iteration % 50 == 0 or iteration == args.iterations - 1:
            print(f"iteration {iteration:5d}  meta-train error {train_error / args.meta_batch_size:.4f}  "
                  f"accuracy {train_accuracy / args.meta_batch_size:.4f}", flush=True)
    classic_accuracy = meta_test(maml, test_tasks, args.test_tasks, loss, args.adaptation_steps, device)
    classic_time = time.perf_counter() - start
    print(f"classic loop: meta-test accuracy {100 * classic_accuracy:.2f}% on {args.test_tasks} tasks "
          f"({classic_time:.1f} s)", flush=True)

    if args.meta_dist_workers > 0:
        run_meta_dist(args, factory, train_dataset, test_dataset, classic_accuracy)


def run_meta_dist(args, factory, train_dataset, test_dataset, classic_accuracy):
    """The same network and task pipeline, meta-trained by meta-dist on `--meta-dist-workers` workers."""
    import meta_dist

    train_tasks = l2l.data.TaskDataset(train_dataset, task_pipeline(train_dataset, args.ways, args.shots, rotate=False),
                                       num_tasks=args.num_tasks)
    test_tasks = l2l.data.TaskDataset(test_dataset, task_pipeline(test_dataset, args.ways, args.shots, rotate=False),
                                      num_tasks=args.test_tasks)
    family = l2l.bridge.TasksetFamily(train_tasks, splits={"test": test_tasks})
    overrides = factory.overrides() + [
        f"algorithm.meta_batch_size={args.meta_batch_size}",
        f"algorithm.meta_lr={args.meta_lr}",
        f"algorithm.inner_steps={args.adaptation_steps}",
        f"eval.num_tasks={args.test_tasks}",
        f"eval.inner_steps={args.adaptation_steps}",
        f"eval.max_inner_steps={args.adaptation_steps}",
        "eval.transductive_bn=true",  # as fast_adapt: the evaluation half normalizes with its own statistics
        f"checkpoint.every={args.iterations}",
    ]
    run_dir = args.run_dir or tempfile.mkdtemp(prefix="l2l_omniglot_maml-")
    start = time.perf_counter()
    result = meta_dist.train("omniglot_maml", task=family, model=factory, workers=args.meta_dist_workers,
                             steps=args.iterations, seed=args.seed, run_dir=run_dir, overrides=overrides)
    elapsed = time.perf_counter() - start
    print(f"meta-dist ({args.meta_dist_workers} workers): meta-test accuracy {result.eval['mean']:.2f}% "
          f"+- {result.eval['ci95']:.2f} on {result.eval['tasks']} tasks ({elapsed:.1f} s, run in {result.run_dir})")
    print(f"classic loop: {100 * classic_accuracy:.2f}%   meta-dist: {result.eval['mean']:.2f}%")


if __name__ == "__main__":
    main()
