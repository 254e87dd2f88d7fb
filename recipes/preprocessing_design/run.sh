#!/usr/bin/env bash
# The axial-T2w paper's preprocessing design at a CPU demonstration budget (from the repository
# root): a semi-synthetic chunked cohort (every lesion synthetic), then the 8-model design
# (4 data variants × 2D/3D, 2 patient-level folds). Resumable: rerun after a kill.
set -euo pipefail
MSSEG=${MSSEG:-.venv/bin/msseg}
BUDGET=${BUDGET:-10x20}
OUT=work/preproc
[ -f $OUT/cohort/participants.tsv ] || "$MSSEG" dataset synth-chunks $OUT/cohort \
  --pam50 ../shared/data/spine/PAM50 --subjects A=4,B=4,C=2 --seed 0
[ -f $OUT/chunks.json ] || "$MSSEG" dataset scan $OUT/cohort -o $OUT/chunks.json --folds 2
"$MSSEG" experiment preprocessing --dataset $OUT/chunks.json -o $OUT/design \
  --config recipes/preprocessing_design/config.yaml --dims 2,3 --folds 2 \
  --budget "$BUDGET" --threads 2
