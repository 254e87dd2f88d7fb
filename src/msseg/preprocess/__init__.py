"""Preprocessing stages: orientation, resampling (each invertible)."""
