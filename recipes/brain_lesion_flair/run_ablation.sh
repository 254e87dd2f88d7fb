#!/usr/bin/env bash
# Issue 16's ablations (from the repository root; data from build_lopo.py): quantile vs min-max
# normalisation and UNet++ vs U-Net (same ResNet-18-style encoder), each trained with
# config_lopo.yaml's budget on patient 07's background (real + inserted lesions), tested on
# real patient 19 and on 8 intensity-shifted versions of it; paired Wilcoxon in ablations.csv.
# Resumable (msseg experiment reuses trained models and scored cases).
set -euo pipefail
MSSEG=${MSSEG:-.venv/bin/msseg}
ROOT=work/brain_lesion_flair/lopo
"$MSSEG" experiment cross-dataset recipes/brain_lesion_flair/config_lopo.yaml \
  -o $ROOT/ablation --dataset bg07=$ROOT/train_on_07/dataset.json \
  --test real19=$ROOT/train_on_07/test.json --test real19_shifted=$ROOT/train_on_07/test_shifted.json \
  --ablation normalization=quantile,minmax --ablation architecture=unetpp_resnet,unet_resnet
