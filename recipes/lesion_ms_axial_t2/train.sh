#!/usr/bin/env bash
# Train the bundled lesion_ms_axial_t2 network in its five stages (config_stage1.yaml,
# config_stage2.yaml, config.yaml, config_stage4.yaml, config_stage5.yaml), each initialised from
# the previous one.
#
# Usage: recipes/lesion_ms_axial_t2/train.sh [ROOT] [msseg train flags for every stage…]
#   ROOT   run folders ROOT/run_stage1, ROOT/run_stage2, ROOT/run, ROOT/run_stage4,
#          ROOT/run_stage5 (default work/lesion_ms_axial_t2); then package.py --run ROOT/run_stage5
#          --bundle src/msseg/models/bundled/lesion_ms_axial_t2.
#   e.g. `train.sh work/wide --base-filters 16 --max-filters 256`: the width of the model
#   bundled until 2026-12-03 (which was stage 3's best epoch; no stages 4–5).
# Data: recipes/lesion_ms_axial_t2/build_data.py first.
set -euo pipefail
here=$(dirname "$0")
root=${1:-work/lesion_ms_axial_t2}
shift || true
msseg=${MSSEG:-.venv/bin/msseg}
# stage 1 (cord-focused): the recorded runs stopped after 6 of its 16 epochs, when the
# validation cord Dice had plateaued and no lesion was predicted yet
"$msseg" train "$here/config_stage1.yaml" "$@" -o "$root/run_stage1" --max-epochs 6
"$msseg" train "$here/config_stage2.yaml" "$@" -o "$root/run_stage2" \
    --init-from "$root/run_stage1/checkpoint_best.pt"
"$msseg" train "$here/config.yaml" "$@" -o "$root/run" \
    --init-from "$root/run_stage2/checkpoint_last.pt"
"$msseg" train "$here/config_stage4.yaml" "$@" -o "$root/run_stage4" \
    --init-from "$root/run/checkpoint_last.pt"
"$msseg" train "$here/config_stage5.yaml" "$@" -o "$root/run_stage5" \
    --init-from "$root/run_stage4/checkpoint_last.pt"
