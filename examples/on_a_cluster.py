"""own_tasks.py on a Ray cluster: the same task family and run, with its workers on the cluster's nodes.

Run it from the folder that holds own_tasks.py (here, examples/): that folder is what Ray ships to
every node as the workers' working directory, so the module needs no installing there. Two ways:

  --address HOST:PORT (or auto)  this process is the driver and joins the cluster at its GCS address;
                                 the run directory is written here
  --submit http://HEAD:8265      `meta-dist submit`: the folder goes to the head as a Ray job, whose
                                 driver runs there; the run directory is a path on the head (use
                                 shared storage, or --storage s3://..., on a real cluster)

    cd examples && python on_a_cluster.py --address auto
    cd examples && python on_a_cluster.py --submit http://127.0.0.1:8265 --steps 200

The parameters are bitwise those of `python own_tasks.py` with the same --steps and --seed: the
result does not depend on where or on how many workers the tasks ran.
"""
import argparse
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import meta_dist
from own_tasks import add_arguments, print_curve, train_kwargs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--address", help="the cluster's GCS address: HOST:PORT of the head, or auto")
    where.add_argument("--submit", metavar="URL", help="the head's Jobs API (dashboard) URL")
    parser.add_argument("--run-dir", default="runs/on_a_cluster", help="run directory")
    args = parser.parse_args()
    if not (Path.cwd() / "own_tasks.py").is_file():
        parser.error("run from the folder that holds own_tasks.py: it is the folder shipped to the nodes")

    if args.address:
        result = meta_dist.train(**train_kwargs(args), workers=args.workers, address=args.address,
                                 run_dir=args.run_dir)
        print(f"params_sha256 on the cluster: {result.params_sha256}")
        print_curve(result, args)
        return

    # the same run as a Ray job: its config names the family by import path, own_tasks:Quadratics
    run_dir = str(Path(args.run_dir).resolve())
    sets = {"task.name": "own_tasks:Quadratics", "task.kwargs": json.dumps({"shots": args.shots}),
            **train_kwargs(args)["overrides"]}
    command = [shutil.which("meta-dist", path=str(Path(sys.executable).parent)) or "meta-dist", "submit",
               "--address", args.submit, "--follow", "--config", "sinusoid_maml", "--steps", str(args.steps),
               "--seed", str(args.seed), "--workers", str(args.workers), "--run-dir", run_dir]
    for key, value in sets.items():
        command += ["--set", f"{key}={value}"]
    print("$", shlex.join(command), flush=True)
    done = subprocess.run(command)
    eval_json = Path(run_dir) / "eval.json"
    if done.returncode == 0 and eval_json.is_file():  # a filesystem shared with the head
        print(f"params_sha256 of the job: {json.loads(eval_json.read_text())['params_sha256']}")
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
