"""Sliding-window prediction on NumPy arrays, with two window placements and a region of interest.

Design notes: docs/explanation/design-notes.md#mssegmodelswindows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

from msseg.image import bounding_box

RULES = ("monai", "nnunet")
Network = Callable[[np.ndarray], np.ndarray]


def window_starts(size: int, patch: int, step: float = 0.5, rule: str = "nnunet") -> list[int]:
    """Window starts along one axis of ``size`` voxels (``size >= patch``)."""
    if rule == "monai":
        interval = patch if patch == size else max(int(patch * (1 - step)), 1)
        n = next((d for d in range(int(np.ceil(size / interval)))
                  if d * interval + patch >= size), 0) + 1
        return [i * interval - max(i * interval + patch - size, 0) for i in range(n)]
    n = int(np.ceil((size - patch) / (patch * step))) + 1
    if n == 1:
        return [0]
    spacing = (size - patch) / (n - 1)
    return [int(np.round(spacing * k)) for k in range(n)]


def gaussian_weights(patch: tuple[int, ...], rule: str = "nnunet", half: bool = True
                     ) -> np.ndarray:
    """The importance map of a window (float32; see the module docstring). ``half`` (nnU-Net
    only): rounded to float16 after scaling to a maximum of 10, as nnU-Net keeps it."""
    if rule == "monai":
        weights = np.ones((), np.float32)
        for n in patch:
            x = np.arange(n, dtype=np.float32) - (n - 1) / 2
            weights = weights[..., None] * np.exp(x ** 2 / (-2 * (0.125 * n) ** 2))
        return np.maximum(weights, max(float(weights.min()), 1e-3)).astype(np.float32)
    from scipy.ndimage import gaussian_filter

    impulse = np.zeros(patch)
    impulse[tuple(p // 2 for p in patch)] = 1
    weights = gaussian_filter(impulse, [p / 8 for p in patch], 0, mode="constant", cval=0)
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
            box: tuple[slice, ...] | None = None, rule: str = "nnunet"
            ) -> list[tuple[slice, ...]]:
    """Windows over ``shape`` (leading axes not covered by the patch are taken one index at a
    time, as 2D models take slices), keeping those that touch ``box``."""
    lead = len(shape) - len(patch)
    box = box or tuple(slice(0, n) for n in shape)
    per_axis = []
    for axis, n in enumerate(shape):
        r = box[axis]
        if axis < lead:
            per_axis.append([slice(k, k + 1) for k in range(r.start, r.stop)])
            continue
        p = patch[axis - lead]
        per_axis.append([slice(s, s + p) for s in window_starts(n, p, step, rule)
                         if s < r.stop and s + p > r.start])
    return [tuple(combo) for combo in itertools.product(*per_axis)]


def windows_box(shape: tuple[int, ...], patch: tuple[int, ...], box: tuple[slice, ...],
                step: float = 0.5, rule: str = "monai", central: bool = False
                ) -> tuple[slice, ...]:
    """The part of an image of ``shape`` read by the windows that touch ``box`` (leading axes
    not covered by the patch: ``box``'s own extent), as :meth:`WindowRunner.predict_extent`
    places them — the input a prediction restricted to ``box`` needs, and no more.
    ``central``: the windows whose centre part meets ``box`` (:class:`WindowRunner`'s), those
    touching ``box`` shrunk by the trim of each side."""
    pads = pad_box(shape, patch)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(shape, pads, strict=True))
    lead = len(shape) - len(patch)
    trim = (0,) * lead + (tuple(p // 8 for p in patch) if central else (0,) * len(patch))
    shifted = tuple(slice(b.start + lo + t, b.stop + lo - t) for b, (lo, _), t in
                    zip(box, pads, trim, strict=True))
    sources = [_clip(w, pads, shape)[0] for w in windows(padded, patch, step, shifted, rule)]
    if not sources:
        return tuple(slice(0, 0) for _ in shape)
    return tuple(slice(min(s[a].start for s in sources), max(s[a].stop for s in sources))
                 for a in range(len(shape)))


class WindowRunner:
    """Runs networks (a fold ensemble: logits averaged) over windows in batches, optionally
    averaging mirrored copies over ``mirror_axes`` (all their combinations, as nnU-Net does).

    ``half``: accumulate as nnU-Net does — each fold's weighted window outputs summed, and
    divided by the summed weights, in float16, then the folds averaged in float16 — so that
    ``--nnunet-exact`` reproduces nnU-Net's numbers rather than more precise float32 ones."""

    def __init__(self, networks: Sequence[Network], patch: tuple[int, ...],
                 batch_size: int = 4, mirror_axes: tuple[int, ...] = (), rule: str = "nnunet",
                 half: bool = False, step: float = 0.5, central: bool = False):
        if rule not in RULES:
            raise ValueError(f"window rule {rule!r}: one of {', '.join(RULES)}")
        self.networks, self.patch = list(networks), tuple(patch)
        self.batch_size, self.rule, self.half, self.step = max(1, batch_size), rule, half, step
        # central: a window runs only when ``roi`` reaches its centre part, all but σ = patch/8
        # (MONAI's Gaussian) of each side, where its weight is over e^(-4.5) = 1.1% of the peak
        self.trim = tuple(p // 8 for p in self.patch) if central else (0,) * len(self.patch)
        self.mirrors = [c for i in range(len(mirror_axes))
                        for c in itertools.combinations(mirror_axes, i + 1)]

    def _centre(self, src: tuple[slice, ...], dst: tuple[slice, ...]) -> tuple[slice, ...]:
        """The part of a window's ``src`` at least ``self.trim`` voxels inside its patch."""
        lead = len(src) - len(self.patch)
        out = list(src[:lead])
        for s, d, p, t in zip(src[lead:], dst[lead:], self.patch, self.trim, strict=True):
            out.append(slice(s.start + max(0, t - d.start), s.stop - max(0, d.stop - (p - t))))
        return tuple(out)

    def forward(self, batch: np.ndarray) -> list[np.ndarray]:
        """(B, C, *patch) -> per fold (B, heads, *patch) logits, averaged over mirrors."""
        batch = np.ascontiguousarray(batch, np.float32)
        folds = []
        for net in self.networks:
            out = np.asarray(net(batch), np.float32)
            for axes in self.mirrors:
                dims = tuple(a + 2 for a in axes)
                out = out + np.flip(net(np.ascontiguousarray(np.flip(batch, dims))), dims)
            folds.append(out / (len(self.mirrors) + 1) if self.mirrors else out)
        return folds

    def predict(self, data: np.ndarray, heads: int,
                roi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Blended logits (heads, *spatial) of ``data`` (C, *spatial), and the mask of voxels
        some window covered (the others are 0). With ``roi`` (a boolean mask of the spatial
        grid) only the windows touching it are run."""
        logits, covered, extent = self.predict_extent(data, heads, roi)
        spatial = data.shape[1:]
        if all(e == slice(0, n) for e, n in zip(extent, spatial, strict=True)):
            return logits, covered
        full = np.zeros((heads, *spatial), logits.dtype)
        full[(slice(None), *extent)] = logits
        mask = np.zeros(spatial, bool)
        mask[extent] = covered
        return full, mask

    def predict_extent(self, data: np.ndarray, heads: int, roi: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, tuple[slice, ...]]:
        """As :meth:`predict`, but only over ``extent``, the bounding box of the windows run
        (returned third): memory scales with the cord's neighbourhood, not the scan."""
        spatial = data.shape[1:]
        pads = pad_box(spatial, self.patch)
        padded_shape = tuple(n + lo + hi for n, (lo, hi) in zip(spatial, pads, strict=True))
        box = None
        if roi is not None:
            found = bounding_box(roi)
            if found is None:
                empty = tuple(slice(0, 0) for _ in spatial)
                return (np.zeros((heads, *(0,) * len(spatial)), np.float32),
                        np.zeros((0,) * len(spatial), bool), empty)
            box = tuple(slice(b.start + lo, b.stop + lo) for b, (lo, _) in
                        zip(found, pads, strict=True))
        boxes = [_clip(b, pads, spatial)
                 for b in windows(padded_shape, self.patch, self.step, box, self.rule)]
        if roi is not None:
            boxes = [(src, dst) for src, dst in boxes if roi[self._centre(src, dst)].any()]
        extent = tuple(slice(min(b[0][a].start for b in boxes), max(b[0][a].stop for b in boxes))
                       if boxes else slice(0, 0) for a in range(len(spatial)))
        origin = [e.start for e in extent]
        boxes = [(tuple(slice(s.start - o, s.stop - o) for s, o in zip(src, origin,
                                                                        strict=True)), dst)
                 for src, dst in boxes]
        data = data[(slice(None), *extent)]
        blend = _Blend(heads, tuple(e.stop - e.start for e in extent), self.patch,
                       len(self.networks) if self.half else 1, self.half,
                       gaussian_weights(self.patch, self.rule))
        lead = len(spatial) - len(self.patch)
        for i in range(0, len(boxes), self.batch_size):
            chunk = boxes[i:i + self.batch_size]
            inputs = np.zeros((len(chunk), data.shape[0], *([1] * lead), *self.patch),
                              np.float32)
            for j, (src, dst) in enumerate(chunk):
                inputs[(j, slice(None), *dst)] = data[(slice(None), *src)]
            folds = self.forward(inputs.reshape(len(chunk), data.shape[0], *self.patch))
            if not self.half:
                folds = [sum(folds) / len(folds)] if len(folds) > 1 else folds
            for j, (src, dst) in enumerate(chunk):
                blend.add(src, dst, [f[j] for f in folds])
        return (*blend.result(), extent)


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
                 folds: int, half: bool, gauss: np.ndarray):
        dtype = np.float16 if half else np.float32
        self.sums = [np.zeros((heads, *shape), dtype) for _ in range(folds)]
        self.weight = np.zeros(shape, dtype)
        self.lead = len(shape) - len(patch)
        self.gauss = gauss.reshape(*([1] * self.lead), *patch)
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


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """1 / (1 + e^−x) in place on float32 logits (no overflow warning for large |x|)."""
    with np.errstate(over="ignore"):
        np.negative(logits, out=logits)
        np.exp(logits, out=logits)
    logits += 1
    return np.reciprocal(logits, out=logits)


def predict_regions(networks: Sequence[Network], volume: np.ndarray, patch: tuple[int, ...],
                    dims: int, heads: int, batch_size: int = 4, overlap: float = 0.5,
                    roi: np.ndarray | None = None, mirror_axes: tuple[int, ...] = (),
                    touch: np.ndarray | None = None, central: bool = False) -> np.ndarray:
    """msseg models: sigmoid probabilities (heads, X, Y, Z) of a preprocessed RPI volume
    (X, Y, Z), MONAI's window placement and Gaussian blending. 2D models run on the axial
    slices (axis 2) one at a time; ``roi`` (X, Y, Z) restricts the windows run (0 outside
    the windows that ran); ``touch`` (a part of ``roi``; default ``roi`` itself): only the
    windows touching it run — inside it the values are those of the whole-image pass, in the
    rest of ``roi`` they blend the windows that reach it from ``touch``. ``central``: only the
    windows whose central part touches ``touch`` (see :class:`WindowRunner`): inside
    ``touch`` the windows left out weigh under 2% of those run along each axis."""
    probs, extent = predict_regions_extent(networks, volume, patch, dims, heads, batch_size,
                                           overlap, roi, mirror_axes, touch, central)
    if probs.shape[1:] == volume.shape:
        return probs
    full = np.zeros((heads, *volume.shape), np.float32)
    full[(slice(None), *extent)] = probs
    return full


def predict_regions_extent(networks: Sequence[Network], volume: np.ndarray,
                           patch: tuple[int, ...], dims: int, heads: int, batch_size: int = 4,
                           overlap: float = 0.5, roi: np.ndarray | None = None,
                           mirror_axes: tuple[int, ...] = (), touch: np.ndarray | None = None,
                           central: bool = False) -> tuple[np.ndarray, tuple[slice, ...]]:
    """As :func:`predict_regions`, over a box only: (heads, *box shape) probabilities and the
    box (slices of X, Y, Z) — for 2D models the bounding box of ``roi``, for 3D models that
    of the windows run."""
    runner = WindowRunner(networks, patch, batch_size, mirror_axes, "monai", step=overlap,
                          central=central)
    touch = roi if touch is None else touch
    if dims == 2:
        return _slabs_2d(runner, volume, heads, roi, touch)
    logits, _, extent = runner.predict_extent(volume[None], heads, touch)
    return sigmoid(np.ascontiguousarray(logits)), extent


def _slabs_2d(runner: WindowRunner, volume: np.ndarray, heads: int, roi: np.ndarray | None,
              touch: np.ndarray | None, slab: int = 16
              ) -> tuple[np.ndarray, tuple[slice, ...]]:
    """2D models, a slab of axial slices at a time (slices are independent, so the result
    is that of the whole volume at once): only the bounding box of ``roi`` (or the whole
    volume) is kept, so the blending buffers never span the whole scan; the windows run are
    those touching ``touch``."""
    box = tuple(slice(0, n) for n in volume.shape)
    if roi is not None:
        box = bounding_box(roi) or tuple(slice(0, 0) for _ in volume.shape)
    out = np.zeros((heads, *(b.stop - b.start for b in box)), np.float32)
    for z0 in range(box[2].start, box[2].stop, slab):
        z1 = min(z0 + slab, box[2].stop)
        data = np.moveaxis(volume[:, :, z0:z1], 2, 0)[None]   # slices first: leading axis
        part = None if touch is None else np.moveaxis(touch[:, :, z0:z1], 2, 0)
        logits, _, (z, x, y) = runner.predict_extent(data, heads, part)
        if logits.size == 0:
            continue
        # the part of the windows' extent inside the roi box (voxels of the box outside it
        # belong to no window of this slab, hence to no roi voxel: they stay 0)
        lo = [max(b.start, e.start) for b, e in zip(box[:2], (x, y), strict=True)]
        hi = [min(b.stop, e.stop) for b, e in zip(box[:2], (x, y), strict=True)]
        if any(h <= low for low, h in zip(lo, hi, strict=True)):
            continue
        src = (slice(None), slice(lo[0] - x.start, hi[0] - x.start),
               slice(lo[1] - y.start, hi[1] - y.start))
        probs = sigmoid(np.ascontiguousarray(np.moveaxis(logits, 1, 3)[src]))
        out[:, lo[0] - box[0].start:hi[0] - box[0].start,
            lo[1] - box[1].start:hi[1] - box[1].start,
            z0 - box[2].start + z.start:z0 - box[2].start + z.stop] = probs
    return out, box

