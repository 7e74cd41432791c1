#!/usr/bin/env bash
# The README's results table from real runs: each row's training command in turn (one at a time, so no
# two runs share the cores), then `meta-dist report` over their run directories. Run it from anywhere
# after `pip install -e ".[rl,metaworld]"`:
#
#     bash jobs/results.sh OUT_DIR PATH/TO/omniglot [ROW...]
#
# PATH/TO/omniglot holds Omniglot's images_background.zip, images_evaluation.zip and splits/vinyals/.
# OUT_DIR receives the task stores, one run directory per row (named after the row), results.md and
# curves.png. Rows whose run directory already holds an eval.json are kept, so an interrupted batch
# continues where it stopped; name ROWs to run only those. Commands run inside OUT_DIR with relative
# paths, so the table's command column reads as a user would type it.
set -euo pipefail
out=${1:?usage: jobs/results.sh OUT_DIR PATH/TO/omniglot [ROW...]}
omniglot=$(cd "${2:?usage: jobs/results.sh OUT_DIR PATH/TO/omniglot [ROW...]}" && pwd)
shift 2
mkdir -p "$out"
cd "$out"
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0

[ -d omniglot ] || meta-dist data prepare omniglot --source "$omniglot" --out omniglot
[ -d omniglot-lake ] || meta-dist data prepare omniglot --source "$omniglot" --out omniglot-lake --split background

declare -A rows=(
  [sinusoid_maml]="--config sinusoid_maml"
  [sinusoid_fomaml]="--config sinusoid_fomaml --backend local"
  [sinusoid_reptile]="--config sinusoid_reptile --backend local"
  [omniglot_protonet]="--config omniglot_protonet --data omniglot --time-budget-s 600"
  [omniglot_maml]="--config omniglot_maml --data omniglot --time-budget-s 1800"
  [omniglot_fomaml]="--config omniglot_fomaml --data omniglot --time-budget-s 600 --workers 2"
  [omniglot_reptile]="--config omniglot_reptile --data omniglot --steps 10200 --time-budget-s 900 --workers 2"
  [omniglot_metasgd]="--config omniglot_metasgd --data omniglot --time-budget-s 600 --workers 2"
  [omniglot_anil]="--config omniglot_anil --data omniglot --time-budget-s 600 --workers 2"
  [omniglot_matchingnet]="--config omniglot_matchingnet --data omniglot --time-budget-s 600 --workers 2"
  [omniglot_siamese]="--config omniglot_siamese --data omniglot --time-budget-s 180 --backend local"
  [omniglot_lake_protonet]="--config omniglot_lake_protonet --data omniglot-lake --time-budget-s 300 --workers 2"
  [navigation2d_maml]="--config navigation2d_maml --backend local"
  [bandits_rl2]="--config bandits_rl2 --backend local"
  [metaworld_ml1_reach_rl2]="--config metaworld_ml1_reach_rl2 --workers 2 --time-budget-s 1800 --set rl.num_episodes=2 --set eval.inner_steps=1 --set eval.max_inner_steps=1"
  [metaworld_ml10_rl2]="--config metaworld_ml10_rl2 --workers 2 --time-budget-s 3600 --set checkpoint.every=1 --set checkpoint.keep=1000 --set eval.num_tasks=50 --set eval.train_tasks=20"
  [metaworld_ml10_maml]="--config metaworld_ml10_maml --workers 2 --time-budget-s 3600 --set eval.num_tasks=50 --set eval.train_tasks=20"
)
order=(sinusoid_maml sinusoid_fomaml sinusoid_reptile omniglot_protonet omniglot_maml omniglot_fomaml omniglot_reptile
       omniglot_metasgd omniglot_anil omniglot_matchingnet omniglot_siamese omniglot_lake_protonet navigation2d_maml
       bandits_rl2 metaworld_ml1_reach_rl2 metaworld_ml10_rl2 metaworld_ml10_maml)
selected=("${@:-${order[@]}}")
for name in "${selected[@]}"; do
  [ -n "${rows[$name]:-}" ] || { echo "results.sh: no row named $name (rows: ${order[*]})" >&2; exit 2; }
  if [ -f "$name/eval.json" ]; then echo "results.sh: $name done, kept" >&2; continue; fi
  rm -rf "$name"
  # shellcheck disable=SC2086  # the row's options are words
  meta-dist train ${rows[$name]} --run-dir "$name" 2>&1 | tail -n 12
done
done_rows=()
for name in "${order[@]}"; do [ -f "$name/eval.json" ] && done_rows+=("$name"); done
meta-dist report "${done_rows[@]}" --out results.md --figure curves.png
cat results.md
