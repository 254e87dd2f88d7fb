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


def gaussian_weights(patch: tuple[int, ...], sigma_scale: float = 1 / 8,
                     half: bool = False) -> np.ndarray:
    """nnU-Net's importance map: a unit impulse at ``patch // 2`` blurred by σ = patch · 1/8
    (zero outside), scaled to a maximum of 1, zeros replaced by the smallest positive value.

    ``half``: the weights nnU-Net actually uses — scaled to a maximum of 10 and rounded to
    float16 (the far corners of a 3D window underflow to float16's smallest value). The
    weights only matter relative to one another, so either scale blends the same."""
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros(patch)
    impulse[tuple(p // 2 for p in patch)] = 1
    weights = gaussian_filter(impulse, [p * sigma_scale for p in patch], 0, mode="constant",
                              cval=0)
    weights /= weights.max() / (10 if half else 1)
    if half:
        weights = weights.astype(np.float16)
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
    averaging mirrored copies (nnU-Net's test-time mirroring over ``mirror_axes``).

    ``half``: accumulate as nnU-Net does — each fold's weighted window outputs summed, and
    divided by the summed weights, in float16, then the folds averaged in float16 — so that
    ``--nnunet-exact`` reproduces nnU-Net's numbers rather than more precise float32 ones
    (3D windows' far corners carry weights near float16's smallest value, where nnU-Net's sums
    lose several percent)."""

    def __init__(self, networks: list[torch.nn.Module], patch: tuple[int, ...],
                 batch_size: int = 4, mirror_axes: tuple[int, ...] = (),
                 device: str | torch.device = "cpu", half: bool = False):
        self.networks, self.patch = networks, tuple(patch)
        self.batch_size, self.device = max(1, batch_size), torch.device(device)
        self.mirrors = [c for i in range(len(mirror_axes))
                        for c in itertools.combinations(mirror_axes, i + 1)]
        self.half = half

    @torch.inference_mode()
    def forward(self, batch: np.ndarray) -> list[np.ndarray]:
        """(B, C, *patch) -> per fold (B, heads, *patch) logits, averaged over mirrors."""
        x = torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self.device)
        folds = []
        for net in self.networks:
            out = net(x)
            for axes in self.mirrors:
                dims = [a + 2 for a in axes]
                out = out + torch.flip(net(torch.flip(x, dims)), dims)
            folds.append((out / (len(self.mirrors) + 1)).float().cpu().numpy())
        return folds

    def predict(self, data: np.ndarray, heads: int, step: float = 0.5,
                roi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Blended logits (heads, *spatial) of ``data`` (C, *spatial), and the mask of voxels
        some window covered (the others are 0). With ``roi`` (a boolean mask of the spatial
        grid) only the windows touching it are run: every voxel of the roi still receives all
        the windows of the whole-image pass. Images smaller than the patch are padded (zeros,
        centred) window by window, never as a whole."""
        spatial = data.shape[1:]
        pads = pad_box(spatial, self.patch)
        padded_shape = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pads, strict=True))
        box = None
        if roi is not None:
            hits = np.argwhere(roi)
            if hits.size == 0:
                return (np.zeros((heads, *spatial), np.float32), np.zeros(spatial, bool))
            box = tuple(slice(int(a) + lo, int(b) + 1 + lo) for a, b, (lo, _) in
                        zip(hits.min(0), hits.max(0), pads, strict=True))
        boxes = [_clip(b, pads, spatial) for b in windows(padded_shape, self.patch, step, box)]
        if roi is not None:
            boxes = [(src, dst) for src, dst in boxes if roi[src].any()]
        blend = _Blend(heads, spatial, self.patch, len(self.networks) if self.half else 1,
                       self.half)
        lead = len(spatial) - len(self.patch)
        for i in range(0, len(boxes), self.batch_size):
            chunk = boxes[i:i + self.batch_size]
            inputs = np.zeros((len(chunk), data.shape[0], *([1] * lead), *self.patch),
                              np.float32)
            for j, (src, dst) in enumerate(chunk):
                inputs[(j, slice(None), *dst)] = data[(slice(None), *src)]
            folds = self.forward(inputs.reshape(len(chunk), data.shape[0], *self.patch))
            if not self.half:
                folds = [sum(folds) / len(folds)]
            for j, (src, dst) in enumerate(chunk):
                blend.add(src, dst, [f[j] for f in folds])
        return blend.result()


def _clip(box: tuple[slice, ...], pads, spatial) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """A window in padded coordinates -> (its part inside the image, the same part in the
    window's own coordinates)."""
    src, dst = [], []
    for b, (lo, _), n in zip(box, pads, spatial, strict=True):
        start, stop = max(b.start - lo, 0), min(b.stop - lo, n)
        src.append(slice(start, stop))
        dst.append(slice(start - (b.start - lo), stop - (b.start - lo)))
    return tuple(src), tuple(dst)


class _Blend:
    """Gaussian-weighted sums of window outputs, one accumulator per fold."""

    def __init__(self, heads: int, shape: tuple[int, ...], patch: tuple[int, ...],
                 folds: int, half: bool):
        dtype = np.float16 if half else np.float32
        self.sums = [np.zeros((heads, *shape), dtype) for _ in range(folds)]
        self.weight = np.zeros(shape, dtype)
        self.lead = len(shape) - len(patch)
        self.gauss = gaussian_weights(patch, half=True).reshape(*([1] * self.lead), *patch)
        self.heads = heads

    def add(self, src: tuple[slice, ...], dst: tuple[slice, ...],
            fold_logits: list[np.ndarray]) -> None:
        gauss = self.gauss[dst]
        for total, logits in zip(self.sums, fold_logits, strict=True):
            weighted = logits.reshape(self.heads, *self.gauss.shape)[(slice(None), *dst)] * gauss
            region = (slice(None), *src)
            if total.dtype == np.float32:
                total[region] += weighted
            else:  # float16: each addition rounded, as nnU-Net's in-place half sums are
                total[region] = (total[region].astype(np.float32) + weighted).astype(
                    total.dtype)
        if self.weight.dtype == np.float32:
            self.weight[src] += gauss
        else:
            self.weight[src] = (self.weight[src].astype(np.float32) + gauss).astype(
                self.weight.dtype)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        covered = self.weight > 0
        if self.weight.dtype == np.float32:  # in place: no full-size temporaries
            total = self.sums[0]
            np.divide(total, self.weight, out=total, where=covered)
            return total, covered
        safe = np.where(covered, self.weight, 1).astype(self.weight.dtype)
        total = None
        for fold_sum in self.sums:   # nnU-Net: each fold divided, then folds summed, / n
            fold = np.where(covered, (fold_sum / safe).astype(np.float16), 0).astype(np.float16)
            total = fold if total is None else (total + fold).astype(np.float16)
        total = (total / np.float16(len(self.sums))).astype(np.float16)
        return total.astype(np.float32), covered
