"""Stage 1 of the two-stage framework, model-free: heatmap -> candidates -> optimal smooth
centerline, and SCT's CNN1 procedure (running CNN1 itself is :mod:`msseg.inference.centerline`)."""
