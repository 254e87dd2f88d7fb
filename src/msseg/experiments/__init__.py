"""Experiments that train and test many models: cross-dataset generalisation matrices."""
