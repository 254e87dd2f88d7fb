"""Networks (MONAI) and the registry of bundled models with their cards."""
