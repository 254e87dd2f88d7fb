"""SCT's preprocessing for its released two-stage lesion models (``sct_deepseg_lesion``).

Design notes: docs/explanation/design-notes.md#mssegpreprocesssct.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: SCT's target in-plane spacing (mm) and crop size (voxels) of the lesion pipeline.
INPLANE_MM = 0.5
CROP = 48
CHUNK = 48
THRESHOLD = 0.1          # CNN2's output, then again on the native grid
PERCENTILES = (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99)


@dataclass(frozen=True)
class Contrast:
    """A released lesion model's constants (SCT ``deepseg_lesion``; FACTS.md §4)."""
    name: str
    landmarks: tuple[float, ...]     # Nyúl standard scale
    mean: float                      # CNN2 input normalisation
    std: float
    centerline: str                  # its CNN1 contrast (``t2_ax`` -> ``t2``)


CONTRASTS = {
    "t2": Contrast("t2", (0.0, 136.832187, 312.158435, 448.968030, 568.657779, 696.671586,
                          859.221138, 1074.463414, 1373.289174, 1811.522669, 2611.0),
                   871.309, 557.916, "t2"),
    "t2_ax": Contrast("t2_ax", (0.0, 112.195357, 291.611185, 446.727066, 581.103970,
                                702.979079, 833.318257, 1011.856313, 1268.801813, 1687.137075,
                                2611.0), 835.592, 528.386, "t2"),
    "t2s": Contrast("t2s", (0.0, 123.246969, 226.422561, 338.361023, 532.341924, 788.693675,
                            1096.975553, 1407.979466, 1716.524530, 2079.788451, 2611.0),
                    1011.31, 678.985, "t2s"),
}
#: CNN1 (``*_ctr``) per-patch normalisation after p2–p98 → [0, 255] (FACTS.md §3).
CNN1_NORMALISATION = {"t2": (51.1417, 57.4408), "t2s": (68.8591, 71.4659),
                      "t1": (55.7359, 64.3149), "dwi": (55.744, 45.003)}
CNN1_PATCH = 80


def grid_shape(shape: tuple[int, ...], zooms: tuple[float, ...],
               target: tuple[float | None, ...]) -> tuple[int, ...]:
    """SCT's resampled shape: ``round(n · p / t)`` per axis (``t`` None: the axis is kept)."""
    return tuple(int(n) if t is None else int(np.round(n * float(p) / float(t)))
                 for n, p, t in zip(shape, zooms, target, strict=True))


def header_zooms(affine: np.ndarray) -> tuple[float, ...]:
    """Voxel sizes as a NIfTI header stores them (float32 column norms of the affine)."""
    return tuple(float(np.float32(s)) for s in np.sqrt((affine[:3, :3] ** 2).sum(axis=0)))


def sample(data: np.ndarray, factors, out_shape: tuple[int, ...],
           box: tuple[slice, ...] | None = None, dtype=np.float64) -> np.ndarray:
    """SCT's resampling (``nibabel.processing.resample_from_to``, linear, ``mode='nearest'``)
    between two grids whose voxel 0 coincide: output voxel ``i`` takes the linear
    interpolation of ``data`` at ``i · factor`` per axis. Computed in float64 (float32 data
    stays float32, as nibabel keeps a float input's type) on ``box`` of the output grid only
    (None: all of it)."""
    box = box or tuple(slice(0, n) for n in out_shape)
    axes = [np.arange(b.start, b.stop) * float(f) for b, f in zip(box, factors, strict=True)]
    source = data if data.dtype == np.float32 else np.asarray(data, np.float64)
    return linear_at(source, axes).astype(dtype, copy=False)


def linear_at(data: np.ndarray, axes: list[np.ndarray]) -> np.ndarray:
    """Trilinear interpolation on a separable grid of positions (edges clamped), one axis at
    a time — the same values as ``scipy.ndimage.map_coordinates(order=1, mode='nearest')``
    at those positions. Only the input voxels the positions reach are read."""
    corners = []
    for pos, n in zip(axes, data.shape, strict=True):
        pos = np.clip(pos, 0, n - 1)
        lo = np.minimum(np.floor(pos).astype(int), max(n - 2, 0))
        corners.append((lo, np.minimum(lo + 1, n - 1), pos - lo))
    window = tuple(slice(int(lo.min()), int(hi.max()) + 1) if len(lo) else slice(0, 0)
                   for lo, hi, _ in corners)
    out = data[window]
    for axis, ((lo, hi, w), part) in enumerate(zip(corners, window, strict=True)):
        shape = [1] * out.ndim
        shape[axis] = len(lo)
        w = w.reshape(shape)
        a = np.take(out, lo - part.start, axis=axis)
        b = np.take(out, hi - part.start, axis=axis)
        out = a * (1 - w) + b * w
    return out


def crop_start(centre: float, size: int, dim: int) -> int:
    """SCT's crop window start around a centre (``int(c) − size//2 + 1``, clamped)."""
    start = int(centre) - size // 2 + 1
    end = int(centre) + size // 2 + 1
    if end > dim:
        start = dim - size if dim >= size else 0
    elif start < 0:
        start = 0
    return start


def centres_of_mass(centerline: np.ndarray) -> dict[int, tuple[float, float]]:
    """Per axial slice holding a non-zero value: the value-weighted centre of mass (x, y)."""
    out = {}
    for z in np.flatnonzero(centerline.any(axis=(0, 1))):
        out[int(z)] = tuple(float(c) for c in ndimage.center_of_mass(centerline[:, :, z]))
    return out


def nyul(data: np.ndarray, landmarks) -> np.ndarray:
    """SCT's intensity standardisation of a crop stack (float32 in and out): percentiles
    1…99 of every voxel mapped piecewise linearly onto ``landmarks``, exponential tails
    below p1 and above p99. Where percentiles repeat (a dark crop), SCT's interpolation
    divides by zero and gives NaN; here the repeated knot is taken once (np.interp)."""
    data = np.asarray(data, np.float32)
    current = np.percentile(data, PERCENTILES)
    landmarks = np.asarray(landmarks, np.float64)
    out = np.interp(data, current, landmarks)
    below, above = data < current[0], data > current[-1]
    out[below] = _exp_tail(current[:2], landmarks[:2], landmarks[0])(data[below])
    out[above] = _exp_tail(current[-3:-1], landmarks[-3:-1], landmarks[-1])(data[above])
    return out.astype(np.float32)


def _exp_tail(xs, ys, asymptote: float):
    """f(x) = α + β exp(γ x) with α = ``asymptote``, through (x2, y2) with the slope of the
    segment (x1, y1)–(x2, y2) there (SCT's ``exp_model``)."""
    (x1, x2), (y1, y2) = xs, ys
    slope = (y2 - y1) / (x2 - x1)
    omega = slope * x2 - asymptote + (y1 - slope * x1)
    beta = omega * np.exp(-slope * x2 / omega)
    gamma = slope / omega
    return lambda x: asymptote + beta * np.exp(gamma * x)


def chunks(volume: np.ndarray, mean: float, std: float) -> tuple[np.ndarray, list[int]]:
    """The 48-slice chunks of CNN2's input (``(n, 1, 48, 48, 48)`` float32, normalised) and
    their z starts; all-zero chunks (slices without a centerline) are left out."""
    starts, batch = [], []
    for z in range(0, volume.shape[2], CHUNK):
        patch = np.zeros((*volume.shape[:2], CHUNK), np.float32)
        part = volume[:, :, z:z + CHUNK]
        patch[:, :, :part.shape[2]] = part
        if patch.any():
            starts.append(z)
            batch.append((patch - np.float32(mean)) / np.float32(std))
    if not batch:
        return np.zeros((0, 1, *volume.shape[:2], CHUNK), np.float32), []
    return np.stack(batch)[:, None].astype(np.float32), starts


def unchunk(probabilities: np.ndarray, starts: list[int], nz: int) -> np.ndarray:
    """CNN2's chunk outputs placed back along z (no overlap), thresholded > 0.1 (0/1)."""
    out = np.zeros((*probabilities.shape[2:4], nz), np.float64)
    for p, z in zip(probabilities[:, 0], starts, strict=True):
        n = min(CHUNK, nz - z)
        out[:, :, z:z + n] = p[:, :, :n] > THRESHOLD
    return out


def zooms_string(value: float) -> float:
    """A zoom as SCT passes it to its resampling: the float32 header value printed and read
    back (``str(np.float32)``)."""
    return float(str(np.float32(value)))
