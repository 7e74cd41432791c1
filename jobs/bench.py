"""Ray job entry point for a throughput benchmark.

    python jobs/bench.py [meta-dist bench options...]

Runs `meta-dist bench` on the cluster the job was submitted to and exits with its code. Like
jobs/train.py it imports the submitted repository's meta_dist (the repository root goes first on
sys.path) rather than any installed copy, so a benchmark measures the code that was shipped.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str]) -> int:
    if (REPO_ROOT / "meta_dist").is_dir() and str(REPO_ROOT) not in sys.path[:1]:
        sys.path.insert(0, str(REPO_ROOT))
    from meta_dist import cli

    return cli.main(["bench", *args])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
