"""Preprocessing stages: orientation, resampling, intensity normalisation, the plan (the model
contract), Image <-> network grid (each invertible), nnU-Net's and SCT's own preprocessing,
stitching and straightening."""
