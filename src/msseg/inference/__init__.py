"""Inference: sliding-window prediction on preprocessed arrays."""
