"""Evaluation: voxel and lesion-wise metrics, chunk stacking, centerline, rater agreement."""
