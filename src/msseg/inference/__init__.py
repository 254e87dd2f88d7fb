"""Inference: a model run on a scan, head to tail: stage 1 through CNN1 (centerline.py), the
segmenters (segment.py: msseg's models; nnunet_segmenter.py, sct_lesion.py, straight.py,
ensemble.py) behind one protocol (options.py), the crop around the cord (crop.py), the finishing
stage (finish.py: threshold, post-processing, lesion table), and cohorts (batch.py,
records.py)."""
