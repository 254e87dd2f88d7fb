"""Semi-synthetic brain FLAIR: real lesion masks inserted into a real FLAIR background, and
scanner-like intensity transforms that make datasets differ the way sites do.

Lesion intensities are modelled on the background's own real lesions: for each real lesion the
ratio of its mean FLAIR intensity to the median of the surrounding normal-appearing tissue (a
3-voxel shell outside it) is measured; an inserted lesion draws a ratio from those (with 10%
jitter), multiplies the local level of lesion-free tissue (Gaussian-weighted, σ = 2 voxels) by
it, and is blended in with a partial-volume edge (Gaussian-smoothed mask, σ = 0.7 voxel) plus
the image's own noise level. Inserted lesions are kept inside the brain (non-zero voxels); the
label is the union of the background's real lesions and the inserted ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
from scipy import ndimage

from msseg.image import Image


@dataclass(frozen=True)
class LesionIntensity:
    ratios: np.ndarray     # lesion mean / surrounding tissue median, one per real lesion
    noise_std: float       # relative noise (std / median) of the brain's intensity


def measure_lesion_intensity(flair: np.ndarray, lesion: np.ndarray) -> LesionIntensity:
    brain = flair > 0
    labels, n = cc3d.connected_components(lesion > 0, connectivity=26, return_N=True)
    ratios = []
    for i, box in enumerate(ndimage.find_objects(labels), start=1):
        grown = tuple(slice(max(s.start - 4, 0), s.stop + 4) for s in box)
        own = labels[grown] == i
        shell = ndimage.binary_dilation(own, iterations=3) & ~(lesion[grown] > 0) & brain[grown]
        if own.sum() >= 3 and shell.sum() >= 10:
            ratios.append(float(flair[grown][own].mean() / np.median(flair[grown][shell])))
    if not ratios:
        raise ValueError("no lesion with enough surrounding tissue to measure its intensity")
    values = flair[brain]
    smooth = ndimage.median_filter(flair, size=3)[brain]
    noise = float(np.median(np.abs(values - smooth)) * 1.4826 / np.median(values))
    return LesionIntensity(np.asarray(ratios), noise)


def insert_lesions(flair: np.ndarray, own_lesion: np.ndarray, new_lesion: np.ndarray,
                   model: LesionIntensity, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(image, label): ``new_lesion``'s lesions painted into ``flair`` with modelled
    intensities; label = own ∪ inserted (inside the brain)."""
    rng = np.random.default_rng(seed)
    brain = flair > 0
    new = (new_lesion > 0) & brain
    labels = cc3d.connected_components(new, connectivity=26)
    ratio_map = np.zeros(flair.shape, np.float32)
    for i in range(1, int(labels.max()) + 1):
        ratio_map[labels == i] = rng.choice(model.ratios) * rng.uniform(0.9, 1.1)
    alpha = ndimage.gaussian_filter(new.astype(np.float32), 0.7)
    ratio = ndimage.grey_dilation(ratio_map, size=3)   # carries each lesion's ratio to its edge
    tissue = (brain & ~(own_lesion > 0)).astype(np.float32)   # normalised convolution:
    background = (ndimage.gaussian_filter(flair * tissue, 2.0) /  # local tissue level
                  np.maximum(ndimage.gaussian_filter(tissue, 2.0), 1e-3)).astype(np.float32)
    target = background * np.where(ratio > 0, ratio, 1.0)
    target += rng.normal(0, model.noise_std, flair.shape).astype(np.float32) * background
    out = (1 - alpha) * flair + alpha * target
    out = np.where(brain, out, 0).astype(np.float32)
    return out, ((own_lesion > 0) | new).astype(np.uint8)


@dataclass(frozen=True)
class ScannerLike:
    """x -> scale · (x / m)^gamma · m · bias(x) + noise, on brain voxels (m = brain median);
    bias is a smooth multiplicative field of relative amplitude ``bias``."""
    gamma: float = 1.0
    scale: float = 1.0
    bias: float = 0.0
    noise: float = 0.0

    def apply(self, flair: np.ndarray, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        brain = flair > 0
        m = float(np.median(flair[brain]))
        out = (np.clip(flair, 0, None) / m) ** self.gamma * m * self.scale
        if self.bias:
            coarse = rng.normal(0, 1, (4, 4, 4))
            field = ndimage.zoom(coarse, np.asarray(flair.shape) / 4, order=3)[
                tuple(slice(0, n) for n in flair.shape)]
            out *= 1 + self.bias * field / max(np.abs(field).max(), 1e-6)
        if self.noise:
            out += rng.normal(0, self.noise * m * self.scale, flair.shape)
        return np.where(brain, np.clip(out, 1e-3, None), 0).astype(np.float32)


#: layers of a synthetic head outside the brain: (outer edge, mm from the brain; intensity as a
#: share of the brain's median FLAIR intensity) — CSF, skull's outer table, diploë (marrow),
#: inner table, scalp (FLAIR: CSF and cortical bone dark, marrow and fat bright)
HEAD_LAYERS = ((2.5, 0.15), (4.0, 0.05), (6.0, 0.7), (7.5, 0.05), (13.0, 1.1))


def with_skull(flair: np.ndarray, spacing=(1.0, 1.0, 1.0), pad_mm: float = 20.0,
               noise: float = 0.03, air: float = 0.02,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """A skull-stripped FLAIR given back a synthetic head: the brain (positive voxels, holes
    filled) is padded by ``pad_mm`` and wrapped in the :data:`HEAD_LAYERS` shells (smoothed,
    σ = 0.7 voxel), with Gaussian noise (``noise`` × the brain's median) inside the head and
    Rayleigh-like air noise (``air`` × median) outside, as a raw magnitude image has.

    Returns:
        (head image, brain mask, padding in voxels on each side).
    """
    rng = np.random.default_rng(seed)
    spacing = np.asarray(spacing, float)
    pad = int(np.ceil(pad_mm / spacing.min()))
    brain = np.pad(ndimage.binary_fill_holes(flair > 0), pad)
    level = float(np.median(flair[flair > 0]))
    distance = ndimage.distance_transform_edt(~brain, sampling=spacing)
    shells = np.zeros(brain.shape, np.float32)
    inner = 0.0
    for outer, share in HEAD_LAYERS:
        shells[(distance > inner) & (distance <= outer)] = share * level
        inner = outer
    shells = ndimage.gaussian_filter(shells, 0.7)
    head = np.where(brain, np.pad(flair.astype(np.float32), pad), shells)
    inside = distance <= HEAD_LAYERS[-1][0]
    head += (rng.normal(0.0, noise * level, head.shape) * inside).astype(np.float32)
    head = np.where(inside, np.abs(head),
                    np.hypot(*rng.normal(0.0, air * level, (2, *head.shape))))
    return head.astype(np.float32), brain, pad


def synthetic_head(flair: Image, seed: int = 0) -> tuple[Image, np.ndarray]:
    """:func:`with_skull` of a skull-stripped scan, as an image on the padded grid (the scan's
    affine shifted by the padding), and the brain mask on that grid."""
    head, brain, pad = with_skull(np.asarray(flair.data), flair.spacing, seed=seed)
    affine = np.array(flair.affine, float)
    affine[:3, 3] -= affine[:3, :3] @ np.full(3, float(pad))
    return Image(head, affine), brain


def scanner_grid(shape, affine: np.ndarray, spacing=(0.7, 0.7, 3.0), angle_deg: float = 8.0,
                 shift_mm=(5.0, -4.0, 6.0)) -> tuple[tuple[int, ...], np.ndarray, np.ndarray]:
    """A scanner-like native grid for a scan of ``shape`` / ``affine`` (e.g. in MNI space):
    voxels of ``spacing`` mm, axes along RAS, the same extent, centred on the scan's centre;
    the head moved by ``angle_deg`` about the L–R axis through that centre, then by
    ``shift_mm``.

    Returns:
        (native shape, native affine: where the native image says its voxels are, and
        ``sampled_at``: where in the scan's world each native voxel takes its value — resample
        the scan onto ``(shape, sampled_at)`` and give the result the native affine).
    """
    spacing = np.asarray(spacing, float)
    old = np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0)
    native = tuple(int(n) for n in np.ceil(np.asarray(shape[:3]) * old / spacing))
    centre = (affine @ np.array([*(np.asarray(shape[:3]) - 1) / 2, 1.0]))[:3]
    grid = np.diag([*spacing, 1.0])
    grid[:3, 3] = centre - spacing * (np.asarray(native) - 1) / 2
    t = np.radians(angle_deg)
    motion = np.eye(4)
    motion[1:3, 1:3] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
    to, back = np.eye(4), np.eye(4)
    to[:3, 3], back[:3, 3] = -centre, centre + np.asarray(shift_mm, float)
    return native, grid, np.linalg.inv(back @ motion @ to) @ grid
