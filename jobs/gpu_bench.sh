#!/usr/bin/env bash
# The GPU benchmark: meta-dist's GPU worker actors (1, 2 and 4 sharing one GPU: 1, 0.5 and 0.25 GPU
# each) against the per-task loop and the vmapped single process on the same GPU, for omniglot_maml
# (second-order MAML, Conv-4, meta-batch 32; synthetic Omniglot-shaped inputs unless --data STORE is
# given), then the same with one 32-task chunk per worker. Run it on the GPU machine from the repository
# root, after `pip install -e .`:
#
#     bash jobs/gpu_bench.sh OUT_DIR [meta-dist bench options, e.g. --data STORE]
#
# OUT_DIR receives gpu.csv (the GPU), one JSON report and one table per run.
set -euo pipefail
out=${1:?usage: jobs/gpu_bench.sh OUT_DIR [bench options]}
shift
mkdir -p "$out"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.csv"
python -c 'import torch; assert torch.cuda.is_available(), "this torch build sees no GPU"; print("torch", torch.__version__)'

run() {  # NAME, then bench options
  local name=$1
  shift
  meta-dist bench --config omniglot_maml --device cuda --json "$@" > "$out/$name.json"
  python -c 'import json, sys; from meta_dist.bench_report import format_table; print(format_table(json.load(open(sys.argv[1]))))' \
    "$out/$name.json" | tee "$out/$name.txt"
}

run chunks16 --workers 1,2,4 --duration-s 20 "$@"
run chunks32 --workers 1 --duration-s 20 --set runtime.chunk_size=32 "$@"
