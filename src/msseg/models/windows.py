"""Sliding-window prediction of a network over a preprocessed volume."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from monai.inferers import sliding_window_inference

from msseg.preprocess.plan import Plan


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



# --- nnU-Net's sliding window, with a region of interest --------------------------------------
#
# nnU-Net v2 (``nnUNetPredictor``) spreads its windows evenly over each axis: with n =
# ceil((size − patch) / (patch · step)) + 1 windows, the k-th starts at round(k · (size − patch)
# / (n − 1)) — a 382-voxel axis with a 320 patch gets windows at 0 and 62. Each window's output
# is weighted by a Gaussian (σ = patch / 8, centred at patch // 2) and the weighted sum divided
# by the summed weights; images smaller than the patch are padded with zeros, centred. The
# functions below do the same in float32 (nnU-Net accumulates in float16), optionally only for
# the windows that touch a region of interest: every voxel of that region receives exactly the
# windows of the whole-image pass, so its value is unchanged by skipping the others.


def window_starts(size: int, patch: int, step: float = 0.5) -> list[int]:
    """nnU-Net's window starts along one axis of ``size`` voxels (``size >= patch``)."""
    n = int(np.ceil((size - patch) / (patch * step))) + 1
    if n == 1:
        return [0]
    spacing = (size - patch) / (n - 1)
    return [int(np.round(spacing * k)) for k in range(n)]


def gaussian_weights(patch: tuple[int, ...], sigma_scale: float = 1 / 8) -> np.ndarray:
    """nnU-Net's importance map: a unit impulse at ``patch // 2`` blurred by σ = patch · 1/8
    (zero outside), scaled to a maximum of 1, zeros replaced by the smallest positive value."""
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros(patch)
    impulse[tuple(p // 2 for p in patch)] = 1
    weights = gaussian_filter(impulse, [p * sigma_scale for p in patch], 0, mode="constant",
                              cval=0)
    weights /= weights.max()
    weights[weights == 0] = weights[weights > 0].min()
    return weights.astype(np.float32)


def pad_box(shape: tuple[int, ...], patch: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Padding (below, above) of the trailing axes up to the patch, content centred."""
    lead = len(shape) - len(patch)
    pads = [(0, 0)] * lead
    for n, p in zip(shape[lead:], patch, strict=True):
        extra = max(p - n, 0)
        pads.append((extra // 2, extra - extra // 2))
    return tuple(pads)


def windows(shape: tuple[int, ...], patch: tuple[int, ...], step: float = 0.5,
            roi: tuple[slice, ...] | None = None) -> list[tuple[slice, ...]]:
    """Windows over ``shape`` (leading axes not covered by the patch are taken one index at a
    time, as nnU-Net's 2D configurations take slices), keeping those that touch ``roi``."""
    lead = len(shape) - len(patch)
    roi = roi or tuple(slice(0, n) for n in shape)
    per_axis = []
    for axis, n in enumerate(shape):
        r = roi[axis]
        if axis < lead:
            per_axis.append([slice(k, k + 1) for k in range(r.start, r.stop)])
            continue
        p = patch[axis - lead]
        per_axis.append([slice(s, s + p) for s in window_starts(n, p, step)
                         if s < r.stop and s + p > r.start])
    return [tuple(combo) for combo in itertools.product(*per_axis)]


class WindowRunner:
    """Runs networks (fold ensemble: logits averaged) over windows in batches, optionally
    averaging mirrored copies (nnU-Net's test-time mirroring over ``mirror_axes``)."""

    def __init__(self, networks: list[torch.nn.Module], patch: tuple[int, ...],
                 batch_size: int = 4, mirror_axes: tuple[int, ...] = (),
                 device: str | torch.device = "cpu"):
        self.networks, self.patch = networks, tuple(patch)
        self.batch_size, self.device = max(1, batch_size), torch.device(device)
        self.mirrors = [c for i in range(len(mirror_axes))
                        for c in itertools.combinations(mirror_axes, i + 1)]

    @torch.inference_mode()
    def forward(self, batch: np.ndarray) -> np.ndarray:
        """(B, C, *patch) -> (B, heads, *patch) logits averaged over folds and mirrors."""
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
        total = None
        for net in self.networks:
            out = net(x)
            for axes in self.mirrors:
                dims = [a + 2 for a in axes]
                out = out + torch.flip(net(torch.flip(x, dims)), dims)
            out = out / (len(self.mirrors) + 1)
            total = out if total is None else total + out
        return (total / len(self.networks)).float().cpu().numpy()

    def predict(self, data: np.ndarray, heads: int, step: float = 0.5,
                roi: tuple[slice, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Blended logits (heads, *spatial) of ``data`` (C, *spatial), and the mask of voxels
        some window covered (the others are 0). With ``roi`` (slices of the spatial axes) only
        the windows touching it are run."""
        spatial = data.shape[1:]
        pads = pad_box(spatial, self.patch)
        padded = np.pad(data, ((0, 0), *pads)) if any(sum(p) for p in pads) else data
        if roi is not None:
            roi = tuple(slice(r.start + lo, r.stop + lo) for r, (lo, _) in zip(roi, pads,
                                                                                strict=True))
        lead = len(spatial) - len(self.patch)
        boxes = windows(padded.shape[1:], self.patch, step, roi)
        gauss = gaussian_weights(self.patch)
        out = np.zeros((heads, *padded.shape[1:]), np.float32)
        weight = np.zeros(padded.shape[1:], np.float32)
        for i in range(0, len(boxes), self.batch_size):
            chunk = boxes[i:i + self.batch_size]
            inputs = np.stack([padded[(slice(None), *b)].reshape(data.shape[0], *self.patch)
                               for b in chunk])
            for b, logits in zip(chunk, self.forward(inputs), strict=True):
                out[(slice(None), *b)] += (logits * gauss).reshape(heads, *(
                    [1] * lead), *self.patch)
                weight[b] += gauss.reshape(*([1] * lead), *self.patch)
        covered = weight > 0
        np.divide(out, weight, out=out, where=covered)
        unpad = tuple(slice(lo, lo + n) for (lo, _), n in zip(pads, spatial, strict=True))
        return out[(slice(None), *unpad)], covered[unpad]
