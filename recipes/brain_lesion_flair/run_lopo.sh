#!/usr/bin/env bash
# Issue 16's brain FLAIR model end to end (from the repository root): leave-one-patient-out
# data, the two LOPO runs and the run on both backgrounds, tuning on validation, the test on
# the unseen real patient, and (BUNDLE=1) the bundled model. Resumable: a killed run continues,
# a finished one is not retrained. THREADS: PyTorch threads (default 2).
set -euo pipefail
PY=${PY:-.venv/bin/python}
MSSEG=${MSSEG:-.venv/bin/msseg}
ROOT=work/brain_lesion_flair/lopo
[ -f $ROOT/both/dataset.json ] || "$PY" recipes/brain_lesion_flair/build_lopo.py --out $ROOT
for run in ${RUNS:-train_on_07 train_on_19 both}; do
  resume=""; [ -f "$ROOT/runs/$run/checkpoint_last.pt" ] && resume=--resume
  "$MSSEG" train recipes/brain_lesion_flair/config_lopo.yaml \
    --dataset "$ROOT/$run/dataset.json" -o "$ROOT/runs/$run" --threads "${THREADS:-2}" $resume
done
"$PY" recipes/brain_lesion_flair/lopo.py --root $ROOT ${BUNDLE:+--bundle}
