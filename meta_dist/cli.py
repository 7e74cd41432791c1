"""The `meta-dist` command line (see README and docs/cli.md).

Every subcommand parses, validates, and hands over to one library function. A `UserError` anywhere
below becomes one line on stderr and exit code 2; any other exception is an internal failure
(exit code 1, with its traceback).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from meta_dist.cli_parser import build_parser
from meta_dist.errors import ChunkError, NonFiniteError, UserError


def train_config(args: argparse.Namespace):
    from meta_dist import config as config_mod

    options = {name: getattr(args, name, None) for name in config_mod.RUN_OPTIONS}
    overrides = list(args.set) + config_mod.run_overrides(**options)
    return config_mod.validate(config_mod.load(args.config, overrides))


def cmd_train(args: argparse.Namespace) -> int:
    from meta_dist.runtime.driver import Trainer, load_run_config

    if args.resume:
        if not args.run_dir:
            raise UserError("--resume needs --run-dir DIR (the run to continue)")
        from meta_dist import config as config_mod

        from meta_dist.api import check_objects

        base = load_run_config(Path(args.run_dir))
        check_objects(Path(args.run_dir))
        options = {name: getattr(args, name) for name in config_mod.RESUME_OPTIONS}
        config = config_mod.validate(config_mod.apply_overrides(base, config_mod.run_overrides(**options)
                                                                + list(args.set)))
    else:
        config = train_config(args)
    run_dir = Path(args.run_dir or Path("runs") / config.name)
    Trainer(config, run_dir, data_dir=args.data, resume=args.resume).run()
    print(f"run directory: {run_dir}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from meta_dist import api, config as config_mod
    from meta_dist.evaluation import evaluate, format_result
    from meta_dist.references import reference_for
    from meta_dist.runtime.eval_pool import check_eval_workers, eval_workers

    check_eval_workers(args.workers, args.backend)
    run = api.open_run(args.run_dir, data=args.data)
    config = run.config
    extra = [f"eval.inner_steps={args.inner_steps}"] if args.inner_steps is not None else []
    if args.inner_steps is not None and args.inner_steps > config.eval.max_inner_steps:
        extra.append(f"eval.max_inner_steps={args.inner_steps}")
    extra += ["eval.transductive_bn=true"] if args.transductive_bn else []
    extra += ["eval.within_alphabet=true"] if args.within_alphabet else []
    config = config_mod.validate(config_mod.apply_overrides(config, extra))
    for name, value in (("--tasks", args.tasks), ("--ways", args.ways), ("--shots", args.shots)):
        if value is not None and value <= 0:
            raise UserError(f"{name} must be positive, got {value}")
    ckpt = run.checkpoint
    with eval_workers(config, ckpt.params, run.components, args.workers, args.backend) as pool:
        result = evaluate(config, ckpt.params, step=ckpt.step, num_tasks=args.tasks, ways=args.ways,
                          shots=args.shots, split=args.split, components=run.components, pool=pool)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_result(result, reference_for(config)))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from meta_dist.predict import predict_files

    if args.steps is not None and args.steps < 0:
        raise UserError(f"--steps must be >= 0, got {args.steps}")
    result = predict_files(args.run_dir, args.support, args.query, data=args.data, steps=args.steps)
    if args.json:
        print(json.dumps(result))
    else:
        for row in result["predictions"]:
            print(f"{row['file']}\t{row['class']}")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from meta_dist.runtime.sweep import tune
    from meta_dist.runtime.sweep_trials import format_markdown

    sweep = tune(args.config, search=args.search, trials=args.trials, scheduler=args.scheduler, workers=args.workers,
                 time_budget_s=args.time_budget_s, run_dir=args.run_dir, overrides=args.set, steps=args.steps,
                 seed=args.seed, report_every=args.report_every, val_tasks=args.val_tasks, data=args.data,
                 address=args.address, resume=args.resume)
    print(format_markdown(sweep.rows, sweep.best, sweep.metric, sweep.mode), end="")
    print(f"results: {sweep.run_dir / 'results.csv'}, {sweep.run_dir / 'results.md'}", file=sys.stderr)
    if sweep.unfinished:
        print(f"{sweep.unfinished} trial(s) did not finish; continue them with the same command and --resume "
              f"--run-dir {sweep.run_dir}", file=sys.stderr)
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from meta_dist.tasks import prepare, store

    if args.data_command == "push":
        store.push_store(args.store, args.uri)
        print(f"uploaded task store {args.store} to {args.uri}", file=sys.stderr)
        return 0
    prepare.main(args)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from meta_dist import bench

    return bench.main(args)


def cmd_report(args: argparse.Namespace) -> int:
    from meta_dist import report

    return report.main(args)


def cmd_submit(args: argparse.Namespace, train_argv: list[str]) -> int:
    from meta_dist.runtime import jobs_client

    return jobs_client.submit(train_argv, address=args.address, follow=args.follow, storage=args.storage,
                              working_dir=str(Path.cwd()),
                              install_deps=args.install_deps)


def cmd_jobs(args: argparse.Namespace) -> int:
    from meta_dist.runtime import jobs_client

    if args.action != "list" and not args.job_id:
        raise UserError(f"`meta-dist jobs {args.action}` needs a JOB_ID (see `meta-dist jobs list`)")
    if args.action == "list":
        return jobs_client.list_jobs(args.address)
    if args.action == "status":
        return jobs_client.status(args.address, args.job_id)
    if args.action == "logs":
        return jobs_client.logs(args.address, args.job_id, args.follow)
    return jobs_client.stop(args.address, args.job_id)


def _submit_train_argv(argv: list[str]) -> list[str]:
    """The `meta-dist train` options of a `submit` command line (submit's own flags removed)."""
    out, skip = [], False
    own_with_value, own_flags = {"--address", "--storage"}, {"--follow", "--install-deps"}
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        name = a.split("=", 1)[0]
        if name in own_flags:
            continue
        if name in own_with_value:
            skip = "=" not in a
            continue
        out.append(a)
    return out[1:]  # drop the "submit" word


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "submit":
            return cmd_submit(args, _submit_train_argv(argv))
        commands = {"train": cmd_train, "eval": cmd_eval, "predict": cmd_predict, "data": cmd_data,
                    "tune": cmd_tune, "bench": cmd_bench, "report": cmd_report, "jobs": cmd_jobs}
        return commands[args.command](args)
    except UserError as e:
        print(f"meta-dist: error: {e}", file=sys.stderr)
        return 2
    except NonFiniteError as e:
        print(f"meta-dist: error: {e}", file=sys.stderr)
        return 1
    except ChunkError as e:
        print(f"meta-dist: error: {e.where} raised an exception; the run stops (a chunk fails the same way on "
              f"any worker, so it is not retried):\n{e.traceback_text.rstrip()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
