"""Training: frozen config, self-configuration, data sampling, augmentation, the loop (DDP-ready)."""
