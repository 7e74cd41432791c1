"""Your own task family in plain Python: few-shot regression of random quadratics, meta-trained with MAML.

Each task is a random polynomial y = a*x^2 + b*x + c (a, b, c uniform in [-1, 1]) seen through K points
on [-2, 2]. A TaskFamily has two halves: `spec` draws a task's small description from (seed, split,
step, index) alone, on the driver; `materialize` turns a chunk of specs into tensors, on a worker. That
split is what makes a run reproducible: the same config trains to the same parameters, bit for bit,
on 2 Ray workers and in one process, and this script prints both digests to show it.

    python examples/own_tasks.py                 # 2000 meta-steps, about a minute on 2 cores
    python examples/own_tasks.py --steps 20      # a few seconds
"""
import argparse

import torch

import meta_dist


class Quadratics(meta_dist.TaskFamily):
    """K-shot regression of y = a*x^2 + b*x + c; `metric = "mse"`, one input and one output."""
    name = "quadratics"
    metric = "mse"

    def __init__(self, shots=10, num_query=10, x_range=2.0):
        self.shots, self.num_query, self.x_range = shots, num_query, x_range

    def spec(self, seed, split, step, index, *, ways=None, shots=None, num_query=None):
        rng = meta_dist.spec_rng(seed, split, step, index)  # every random choice comes from the arguments
        coeffs = tuple(rng.uniform(-1, 1) for _ in range(3))
        k, q = shots or self.shots, num_query or self.num_query
        return meta_dist.TaskSpec(self.name, split, step, index, seed=rng.getrandbits(62),
                                  params=(k, q) + coeffs)

    def materialize(self, specs, device="cpu"):
        k, q = int(specs[0].params[0]), int(specs[0].params[1])  # a chunk's specs share their shape
        xs, ys = [], []
        for s in specs:
            g = torch.Generator().manual_seed(s.seed)
            x = (torch.rand(k + q, 1, generator=g) * 2 - 1) * self.x_range
            a, b, c = s.params[2:]
            xs.append(x)
            ys.append(a * x ** 2 + b * x + c)
        x, y = torch.stack(xs), torch.stack(ys)  # [T, K+Q, 1]
        return meta_dist.TaskBatch(x[:, :k], y[:, :k], x[:, k:], y[:, k:]).to(device)

    @property
    def input_shape(self):
        return (1,)

    @property
    def output_dim(self):
        return 1


def add_arguments(parser):
    """The flags of a run (shared with on_a_cluster.py)."""
    parser.add_argument("--steps", type=int, default=2000, help="meta-steps (meta-batch 25 tasks each)")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers of the distributed run")
    parser.add_argument("--shots", type=int, default=10, help="K: support points per task")
    parser.add_argument("--inner-lr", type=float, default=0.02, help="MAML's inner SGD step size")
    parser.add_argument("--eval-tasks", type=int, default=200, help="held-out tasks for the final evaluation")
    parser.add_argument("--seed", type=int, default=0)


def train_kwargs(args):
    """meta_dist.train's arguments: sinusoid_maml's recipe (a 1-40-40-1 MLP, MAML with one inner step,
    meta-batch 25, Adam 1e-3) on quadratics. (task.shots only labels eval.json: a TaskFamily instance
    decides its own shots.)"""
    overrides = {"algorithm.inner_lr": args.inner_lr, "eval.num_tasks": args.eval_tasks,
                 "eval.max_inner_steps": 5, "checkpoint.every": args.steps, "task.shots": args.shots}
    return dict(config="sinusoid_maml", task=Quadratics(shots=args.shots), steps=args.steps, seed=args.seed,
                overrides=overrides)


def print_curve(result, args):
    print(f"adaptation curve on {args.eval_tasks} held-out quadratics ({args.shots}-shot MSE):")
    for point in result.eval["curve"]:
        print(f"  after {point['inner_steps']} steps: {point['mean']:.4f} +- {point['ci95']:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--out", default="runs/own_tasks", help="where the two run directories go")
    args = parser.parse_args()

    common = train_kwargs(args)
    on_ray = meta_dist.train(**common, workers=args.workers, run_dir=f"{args.out}/ray{args.workers}")
    in_process = meta_dist.train(**common, backend="local", run_dir=f"{args.out}/local")

    print(f"params_sha256 on {args.workers} Ray workers: {on_ray.params_sha256}")
    print(f"params_sha256 in one process:    {in_process.params_sha256}")
    print("equal:", on_ray.params_sha256 == in_process.params_sha256)
    print_curve(on_ray, args)


if __name__ == "__main__":
    main()
