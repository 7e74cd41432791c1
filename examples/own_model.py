"""Your own network, meta-trained on an image task store: a model factory is all meta-dist needs.

A factory is called as `factory(input_shape, output_dim, **kwargs)` and returns an nn.Module. Its
`output_dim` is the number of ways for MAML-like methods, and 0 for metric methods (ProtoNet): then
the network is an embedding and returns [N, features]. Three factories, picked with --model:

  mine      a small CNN with nn.BatchNorm2d (keeping running statistics, the torch default) and
            nn.Dropout; meta-dist runs batch norm with each task's own batch statistics and seeds
            dropout per chunk, so nothing about the module needs changing
  resnet12  the built-in ResNet-12, chosen by config overrides instead of a factory
  resnet18  torchvision's ResNet-18, first conv adapted to the store's channels, a new head

First build an Omniglot store (about 10 s), then train ProtoNet (about 2.5 minutes on 2 cores):

    meta-dist data prepare omniglot --source PATH/TO/omniglot --out STORE
    python examples/own_model.py --data STORE
    python examples/own_model.py --data STORE --model resnet18 --config omniglot_maml --steps 20
"""
import argparse

from torch import nn

import meta_dist


def small_cnn(input_shape, output_dim, channels=64, p_drop=0.1):
    """Three conv blocks (conv, BatchNorm2d, ReLU, max-pool, dropout), global pooling, maybe a head."""
    layers, c_in = [], input_shape[0]
    for _ in range(3):
        layers += [nn.Conv2d(c_in, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(),
                   nn.MaxPool2d(2), nn.Dropout(p_drop)]
        c_in = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if output_dim > 0:
        layers.append(nn.Linear(channels, output_dim))
    return nn.Sequential(*layers)


def torchvision_resnet18(input_shape, output_dim):
    """torchvision's ResNet-18 from scratch: conv1 takes the store's channels, `fc` gives output_dim
    scores (or is dropped, for an embedding when output_dim is 0)."""
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    net.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Linear(net.fc.in_features, output_dim) if output_dim > 0 else nn.Identity()
    return net


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="task store from `meta-dist data prepare omniglot`")
    parser.add_argument("--model", choices=["mine", "resnet12", "resnet18"], default="mine",
                        help="the network to meta-train")
    parser.add_argument("--config", choices=["omniglot_protonet", "omniglot_maml"], default="omniglot_protonet",
                        help="the algorithm: ProtoNet (embedding, output_dim 0) or MAML (5-way head)")
    parser.add_argument("--steps", type=int, default=500, help="meta-steps")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers")
    parser.add_argument("--eval-tasks", type=int, default=200, help="held-out 5-way 1-shot test tasks")
    parser.add_argument("--out", default="runs/own_model", help="run directory")
    args = parser.parse_args()

    model, overrides = None, {"eval.num_tasks": args.eval_tasks, "checkpoint.every": args.steps}
    if args.model == "mine":
        model = small_cnn
        overrides["model.kwargs"] = {"channels": 64, "p_drop": 0.1}  # passed to the factory
    elif args.model == "resnet18":
        model = torchvision_resnet18
    else:  # a built-in network, named and configured in the config
        overrides.update({"model.name": "resnet12", "model.kwargs": {"widths": [16, 32, 64, 128]}})
    if args.config == "omniglot_maml":
        overrides["algorithm.meta_batch_size"] = 4  # the paper's 32 tasks per step are slow on a laptop

    result = meta_dist.train(args.config, model=model, data=args.data, steps=args.steps, workers=args.workers,
                             run_dir=args.out, overrides=overrides)
    net = meta_dist.load(result.run_dir, model=model)
    print(f"{args.model}: {sum(p.numel() for p in net.parameters()):,} parameters, "
          f"{type(net).__name__} after {result.eval['step']} meta-steps of {args.config}")
    print(f"5-way 1-shot test accuracy: {result.eval['mean']:.1f}% +- {result.eval['ci95']:.1f} (chance 20%)")
    if args.config == "omniglot_protonet":  # a metric method takes any number of ways at test time
        twenty = meta_dist.evaluate(result.run_dir, model=model, ways=20, tasks=max(1, args.eval_tasks // 4))
        print(f"20-way 1-shot test accuracy: {twenty['mean']:.1f}% +- {twenty['ci95']:.1f} (chance 5%)")


if __name__ == "__main__":
    main()
