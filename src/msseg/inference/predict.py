"""Sliding-window prediction with MONAI's inferer (Gaussian blending)."""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from msseg.training.planning import Plan


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, image: np.ndarray, plan: Plan,
                          overlap: float = 0.5, batch_size: int = 4,
                          device: str | torch.device = "cpu") -> np.ndarray:
    """Sigmoid probabilities (channels, X, Y, Z) for a preprocessed RPI volume (X, Y, Z).

    2D models see the axial slices as a batch; 3D models the whole volume. Windows of the
    plan's patch size overlap by ``overlap`` and are blended with Gaussian weights.
    """
    model.eval()
    volume = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).to(device)
    roi = tuple(plan.patch_size)  # MONAI pads images smaller than the window
    if plan.dims == 2:
        inputs = volume.permute(2, 0, 1)[:, None]            # (Z, 1, X, Y)
        chunks = [sliding_window_inference(inputs[i:i + 16], roi, batch_size, model,
                                           overlap=overlap, mode="gaussian")
                  for i in range(0, inputs.shape[0], 16)]
        logits = torch.cat(chunks).permute(1, 2, 3, 0)        # (C, X, Y, Z)
    else:
        logits = sliding_window_inference(volume[None, None], roi, batch_size, model,
                                          overlap=overlap, mode="gaussian")[0]
    return torch.sigmoid(logits).cpu().numpy()

