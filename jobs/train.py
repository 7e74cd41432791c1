"""Ray job entry point for a training run, for jobs submitted with this repository as their working_dir:

    python jobs/train.py [meta-dist train options...] [--storage PATH_OR_URI]

The same as `python -m meta_dist.job` (see meta_dist/job.py), except that the `meta_dist/` source next
to this file is imported first, never a different installed copy.
"""
from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def use_shipped_source() -> None:
    """Put the repository holding this file first on sys.path, so its meta_dist is imported."""
    if (REPO_ROOT / "meta_dist").is_dir() and str(REPO_ROOT) not in sys.path[:1]:
        sys.path.insert(0, str(REPO_ROOT))


if __name__ == "__main__":
    use_shipped_source()
    from meta_dist.job import run

    sys.exit(run(sys.argv[1:]))
