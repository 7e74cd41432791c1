"""The `meta-dist` command line (see README and docs/cli.md).

This module holds its argparse parser: every subcommand with its options and help texts (the first
line above is the program's description in `meta-dist --help`). meta_dist/cli.py runs the parsed
commands.
"""
from __future__ import annotations

import argparse
import os


def _add_config_options(p: argparse.ArgumentParser) -> None:
    """The options that make a run's config, shared by `train`, `submit` and `tune`."""
    p.add_argument("--config", help="config NAME (jobs/configs/NAME.yaml) or PATH; default: MAML on sinusoid")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set algorithm.inner_lr=0.4 (repeatable)")
    p.add_argument("--steps", type=int, help="meta-steps to train (overrides the config)")
    p.add_argument("--seed", type=int, help="run seed")
    p.add_argument("--data", help="task store: a directory, or s3://BUCKET/PREFIX / gs://BUCKET/PREFIX (image tasks)")


def _add_train_options(p: argparse.ArgumentParser, with_address: bool = True) -> None:
    _add_config_options(p)
    p.add_argument("--workers", type=int, help="worker actors (0 = one per CPU)")
    p.add_argument("--run-dir", help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its newest valid checkpoint")
    if with_address:  # `submit` uses --address for the Jobs API URL instead
        p.add_argument("--address", help="Ray cluster address to join (host:port or auto); default: a local Ray on 127.0.0.1")
    p.add_argument("--time-budget-s", type=float, help="stop meta-training after S seconds, then checkpoint and evaluate")
    p.add_argument("--backend", choices=("ray", "local"), help="ray (default) or local (one process, no Ray)")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="TensorBoard event files in the run directory (logging.tensorboard)")
    p.add_argument("--mlflow", action="store_true", default=None,
                   help="log to an MLflow run in MLFLOW_TRACKING_URI (logging.mlflow)")


def _add_eval_parser(sub) -> None:
    """`meta-dist eval`: a run's newest checkpoint on held-out tasks."""
    ev = sub.add_parser("eval", help="evaluate a run's newest checkpoint on held-out tasks")
    ev.add_argument("--run-dir", required=True, help="run directory to evaluate")
    ev.add_argument("--data", help="task store: a directory, or s3://BUCKET/PREFIX / gs://BUCKET/PREFIX (image tasks)")
    ev.add_argument("--tasks", type=int, help="number of test tasks (episodes)")
    ev.add_argument("--ways", type=int, help="N-way of the test episodes")
    ev.add_argument("--shots", type=int, help="K-shot of the test episodes (support points for regression)")
    ev.add_argument("--inner-steps", type=int, help="adaptation steps for the headline figure")
    ev.add_argument("--transductive-bn", action="store_true", help="batch norm with support+query statistics")
    ev.add_argument("--split", choices=("test", "val"), help="split to evaluate on (default test)")
    ev.add_argument("--within-alphabet", action="store_true",
                    help="image tasks: draw every test episode's classes from one alphabet (eval.within_alphabet)")
    ev.add_argument("--workers", type=int, help="spread the episodes over N workers (implies --backend ray)")
    ev.add_argument("--backend", choices=("local", "ray"),
                    help="local: this process (the default); ray: worker actors on a local Ray or the run's cluster")
    ev.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")


def _add_predict_parser(sub) -> None:
    """`meta-dist predict`: label the image files of a new task."""
    pred = sub.add_parser("predict", help="classify the image files of a new task with a meta-trained run")
    pred.add_argument("--run-dir", required=True, help="the meta-trained run")
    pred.add_argument("--support", required=True, help="support folder: one sub-folder of images per new class")
    pred.add_argument("--query", required=True, help="folder of image files to classify")
    pred.add_argument("--data", help="the run's task store, if it moved (its preprocessing is applied)")
    pred.add_argument("--steps", type=int, help="adaptation steps (default: the run's eval.inner_steps)")
    pred.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def _add_data_parser(sub) -> None:
    """`meta-dist data prepare`: build a task store."""
    from meta_dist.tasks.names import IMAGE_DATASETS

    data = sub.add_parser("data", help="prepare task stores and upload them to cloud storage")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prep = data_sub.add_parser("prepare", help="build an Arrow task store from a dataset release")
    prep.add_argument("dataset", choices=(*IMAGE_DATASETS, "folder"))
    prep.add_argument("--source", help="the dataset release (zips, extracted folders, or a torchvision root); "
                                        "folder: an image folder (one sub-folder per class) or a .csv/.json file list")
    prep.add_argument("--out", required=True, help="output store directory")
    prep.add_argument("--split", choices=("vinyals", "random", "background"), default="vinyals",
                      help="Omniglot class split: vinyals (ProtoNets/Matching Nets), random 1200/423 (MAML/Reptile) "
                           "or background (Lake et al.: background alphabets train, evaluation alphabets test)")
    prep.add_argument("--download", action="store_true", help="download with torchvision (needs internet)")
    prep.add_argument("--seed", type=int, default=1, help="seed of the class split (omniglot --split random|background, folder)")
    prep.add_argument("--image-size", type=int, metavar="N",
                      help="folder: resize every image to NxN (LANCZOS); default: keep the size all images share")
    prep.add_argument("--grayscale", action="store_true", help="folder: store 1-channel grayscale instead of RGB")
    folder_split = prep.add_mutually_exclusive_group()
    folder_split.add_argument("--split-ratios", metavar="TRAIN,VAL,TEST",
                              help="folder: seeded class split ratios (default 0.64,0.16,0.2)")
    folder_split.add_argument("--split-file", metavar="FILE",
                              help='folder: class split as JSON {"train": [classes], "val": [...], "test": [...]} '
                                   "or lines class,split")
    push = data_sub.add_parser("push", help="upload a task store to s3:// or gs:// (then train with --data URI)")
    push.add_argument("store", help="a local task store directory")
    push.add_argument("uri", help="s3://BUCKET/PREFIX or gs://BUCKET/PREFIX")


def _add_tune_parser(sub) -> None:
    """`meta-dist tune`: a hyperparameter sweep on Ray Tune."""
    tune = sub.add_parser("tune", help="hyperparameter sweep on Ray Tune: each trial a full run with its own workers")
    _add_config_options(tune)  # of every trial; --seed also samples the trials
    tune.add_argument("--search", action="append", default=[], metavar="KEY=DIST", required=True,
                      help="a searched key, DIST one of loguniform(a,b), uniform(a,b), randint(a,b), choice(v,...), "
                           "grid(v,...); e.g. --search 'algorithm.inner_lr=loguniform(1e-3,1e-1)' (repeatable)")
    tune.add_argument("--trials", type=int, default=4, help="trials (samples of the search space; default 4)")
    tune.add_argument("--scheduler", choices=("asha", "fifo"), default="asha",
                      help="asha: stop poor trials early by the validation metric (default); fifo: run all to the end")
    tune.add_argument("--workers", type=int, default=1, help="workers of each trial, reserved together (default 1)")
    tune.add_argument("--time-budget-s", type=float, help="end the sweep after S seconds")
    tune.add_argument("--run-dir", help="sweep directory (default: runs/tune_<config name>)")
    tune.add_argument("--report-every", type=int, help="steps between validation scores (default: a tenth of the steps)")
    tune.add_argument("--val-tasks", type=int, default=100, help="validation tasks per score (default 100)")
    tune.add_argument("--address", help="Ray cluster address to join; default: a local Ray on 127.0.0.1")
    tune.add_argument("--resume", action="store_true", help="continue the sweep in --run-dir")


def _add_report_parser(sub) -> None:
    """`meta-dist report`: a results table from finished runs."""
    report = sub.add_parser("report", help="a results table (markdown) and learning curves from run directories")
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished run directories")
    report.add_argument("--out", help="write the markdown table here (default: stdout)")
    report.add_argument("--figure", help="also draw every run's meta-training loss against time into this PNG")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meta-dist", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="meta-train (default: MAML on sinusoid regression, paper settings)")
    _add_train_options(train)

    _add_eval_parser(sub)
    _add_predict_parser(sub)
    _add_data_parser(sub)
    _add_tune_parser(sub)

    _add_report_parser(sub)

    bench = sub.add_parser("bench", help="tasks/s at each worker count against the single-process reference loop")
    bench.add_argument("--config", default="omniglot_maml", help="workload config NAME or PATH")
    bench.add_argument("--workers", default="1,2", help="comma-separated worker counts, e.g. 1,2")
    bench.add_argument("--duration-s", type=float, default=20.0, help="measured seconds per configuration")
    bench.add_argument("--data", help="task store directory (image workloads); default: synthetic inputs")
    bench.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    bench.add_argument("--address", help="Ray cluster address to join")
    bench.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                       help="cuda: GPU worker actors sharing the GPUs evenly, against both loops on one GPU")
    bench.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    submit = sub.add_parser("submit", help="submit a training run as a Ray job")
    submit.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8265"),
                        help="Ray Jobs API URL (default http://127.0.0.1:8265)")
    submit.add_argument("--follow", action="store_true", help="stream the job's logs; exit 0 only if it SUCCEEDED")
    submit.add_argument("--storage", help="where the run directory goes: a path or a pyarrow URI (s3://bucket/prefix)")
    submit.add_argument("--install-deps", action="store_true", help="have Ray install the package's dependencies for the job")
    _add_train_options(submit, with_address=False)

    jobs = sub.add_parser("jobs", help="list, inspect, follow or stop submitted jobs")
    jobs.add_argument("action", choices=("list", "status", "logs", "stop"))
    jobs.add_argument("job_id", nargs="?", help="job (submission) id")
    jobs.add_argument("--address", default=os.environ.get("RAY_API_SERVER_ADDRESS", "http://127.0.0.1:8265"))
    jobs.add_argument("--follow", action="store_true", help="with logs: stream until the job ends")
    return parser
