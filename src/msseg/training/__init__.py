"""Training: frozen config, self-configuration, sampling, augmentation, the loop (DDP)."""
