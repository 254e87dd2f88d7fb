"""Evaluation: voxel metrics, lesion-wise metrics, chunk stacking, centerline and rater agreement."""
