#!/usr/bin/env bash
# The lesion_ms experiment end to end (from the repository root): data, the pretrained starting
# point, the three regimes with the same budget and seed, the comparison on held-out data, then
# the best regime bundled as the task lesion_ms, its post-processing tuned on images of their own.
set -euo pipefail
PY=${PY:-.venv/bin/python}
MSSEG=${MSSEG:-.venv/bin/msseg}
[ -f work/lesion_ms/dataset.json ] || "$PY" recipes/lesion_ms/build_data.py
for run in pretrain baseline sampling finetune; do
  [ -f "work/lesion_ms/$run/checkpoint_best.pt" ] || "$MSSEG" train "recipes/lesion_ms/config_$run.yaml"
done
"$PY" recipes/lesion_ms/compare.py
"$PY" recipes/lesion_ms/package.py --bundle src/msseg/models/bundled/lesion_ms
"$PY" recipes/lesion_ms/tune.py   # threshold + minimum lesion volume, on images of its own
