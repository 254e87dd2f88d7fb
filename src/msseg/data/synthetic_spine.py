"""Domain-randomised synthetic spines from the PAM50 template label maps.

Design notes: docs/explanation/design-notes.md#mssegdatasynthetic_spine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from msseg import io
from msseg.data.lesion_synthesis import LesionPrior, prior_for_contrast, synthesize_lesions
from msseg.image import Image
from msseg.preprocess.orient import to_rpi
from msseg.preprocess.resample import resample_to_spacing

TISSUES = ("PAM50_wm", "PAM50_gm", "PAM50_csf", "PAM50_spine", "PAM50_label_disc")


#: Mean intensity of each tissue (white matter, grey matter, CSF, vertebrae, discs — added to the
#: vertebrae's —, everything else: muscle and fat) on the contrasts the shared data lacks, each
#: drawn within ±15%.
#: PSIR: white matter brightest, grey matter darker, CSF darkest (Poonawalla et al. 2008);
#: STIR: CSF and hydrated discs bright, fat (marrow, subcutaneous) suppressed, cord grey;
#: MP2RAGE UNIT1 (a T1 map-like image): short T1 bright (white matter, fat, marrow), CSF dark.
CONTRAST_TISSUES: dict[str, tuple[float, ...]] = {
    "PSIR": (1.0, 0.55, 0.05, 0.6, 0.35, 0.5),
    "STIR": (0.35, 0.45, 1.0, 0.15, 0.65, 0.12),
    "UNIT1": (0.8, 0.62, 0.1, 0.7, 0.45, 0.75),
}
#: Typical voxel sizes (mm): in-plane range, thickness range, thick axis (0 = L-R: sagittal).
CONTRAST_GRIDS: dict[str, tuple[tuple[float, float], tuple[float, float], int]] = {
    "PSIR": ((0.6, 0.8), (2.5, 3.5), 0),
    "STIR": ((0.6, 0.8), (2.5, 3.5), 0),
    "UNIT1": ((0.9, 1.1), (0.9, 1.1), 2),
}


@dataclass(frozen=True)
class SpineConfig:
    length_mm: tuple[float, float] = (50.0, 120.0)
    in_plane_mm: tuple[float, float] = (0.3, 0.9)
    slice_mm: tuple[float, float] = (2.0, 7.0)
    curvature_mm: float = 6.0
    noise: tuple[float, float] = (0.01, 0.05)
    bias: float = 0.3
    fov_mm: float = 60.0
    tissues: tuple[float, ...] | None = None   # mean intensities (±15%); None: random
    thick_axis: int = 2                        # RPI axis of the slice thickness (2: axial)


def contrast_config(contrast: str, base: SpineConfig | None = None) -> SpineConfig:
    """``base`` with the tissue ordering and voxel size of ``contrast`` (PSIR, STIR, UNIT1)."""
    if contrast not in CONTRAST_TISSUES:
        raise ValueError(f"no synthetic contrast {contrast!r} (one of "
                         f"{', '.join(CONTRAST_TISSUES)})")
    in_plane, thick, axis = CONTRAST_GRIDS[contrast]
    return replace(base or SpineConfig(), tissues=CONTRAST_TISSUES[contrast],
                   in_plane_mm=in_plane, slice_mm=thick, thick_axis=axis)


def synthetic_contrast_spine(pam50_dir: str | Path, contrast: str, seed: int = 0,
                             prior: LesionPrior | None = None) -> tuple[Image, Image, Image]:
    """A synthetic spine of a contrast the shared data lacks (PSIR, STIR, UNIT1), with that
    contrast's lesion appearance: (image, cord mask, lesion mask), RPI."""
    return synthetic_spine(pam50_dir, seed, contrast_config(contrast),
                           prior_for_contrast(contrast, prior))


@lru_cache(maxsize=2)
def _load_maps(pam50_dir: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    maps, affine = {}, None
    for name in TISSUES:
        image = to_rpi(io.load(Path(pam50_dir) / f"{name}.nii.gz"))
        maps[name] = image.data.astype(np.float32)
        affine = image.affine
    maps["PAM50_label_disc"] = ndimage.binary_dilation(maps["PAM50_label_disc"] > 0,
                                                       iterations=2).astype(np.float32)
    return maps, affine


def synthetic_spine(pam50_dir: str | Path, seed: int = 0, config: SpineConfig | None = None,
                    prior: LesionPrior | None = None) -> tuple[Image, Image, Image]:
    """One random synthetic axial spine chunk: (image, cord mask, lesion mask), RPI."""
    config, prior = config or SpineConfig(), prior or LesionPrior()
    rng = np.random.default_rng(seed)
    maps, affine = _load_maps(str(pam50_dir))
    box = _window(maps["PAM50_wm"] + maps["PAM50_gm"], rng, config)
    tissue = {k: v[box] for k, v in maps.items()}
    shifts = _curvature(tissue["PAM50_wm"].shape[2], rng, config.curvature_mm / 0.5)
    tissue = {k: _bend(v, shifts) for k, v in tissue.items()}
    cord = np.clip(tissue["PAM50_wm"] + tissue["PAM50_gm"], 0, 1)
    image = _compose(tissue, cord, rng, config)
    crop_affine = affine.copy()
    crop_affine[:3, 3] = affine[:3, :3] @ [b.start for b in box] + affine[:3, 3]
    spacing = [rng.uniform(*config.in_plane_mm)] * 3
    spacing[config.thick_axis] = rng.uniform(*config.slice_mm)
    spacing = tuple(spacing)
    blurred = ndimage.gaussian_filter1d(image, spacing[config.thick_axis] / 0.5 / 2.355,
                                        axis=config.thick_axis)
    low = resample_to_spacing(Image(blurred, crop_affine), spacing, order=1)
    cord_low = resample_to_spacing(Image(cord, crop_affine), spacing, order=1)
    cord_mask = low.with_data((cord_low.data >= 0.5).astype(np.uint8))
    result = synthesize_lesions(low, cord_mask, seed=seed, prior=prior)
    return result.image, cord_mask, result.lesion


def _window(cord: np.ndarray, rng: np.random.Generator, config: SpineConfig):
    slices = np.flatnonzero(cord.any(axis=(0, 1)))
    length = int(rng.uniform(*config.length_mm) / 0.5)
    start = int(rng.integers(slices[0], max(slices[-1] - length, slices[0] + 1)))
    k = min(start + length // 2, slices[-1])
    cx, cy = np.argwhere(cord[:, :, k] > 0.5).mean(0).astype(int)
    half = int(config.fov_mm / 0.5 / 2)
    return (slice(max(cx - half, 0), cx + half), slice(max(cy - half, 0), cy + half),
            slice(start, start + length))


def _curvature(nz: int, rng: np.random.Generator, amplitude_vox: float) -> np.ndarray:
    z = np.arange(nz)[:, None]
    periods = rng.uniform(1.0, 3.0, (1, 2)) * nz
    phases = rng.uniform(0, 2 * np.pi, (1, 2))
    amp = rng.uniform(-1, 1, (1, 2)) * amplitude_vox
    return amp * np.sin(2 * np.pi * z / periods + phases)  # (nz, 2) in-plane shifts


def _bend(volume: np.ndarray, shifts: np.ndarray, order: int = 1) -> np.ndarray:
    """Each slice shifted in-plane by its row of ``shifts`` (order 0 for label maps)."""
    out = np.empty_like(volume)
    for k in range(volume.shape[2]):
        out[:, :, k] = ndimage.shift(volume[:, :, k], shifts[k], order=order, mode="nearest")
    return out


def _compose(tissue: dict[str, np.ndarray], cord: np.ndarray, rng: np.random.Generator,
             config: SpineConfig) -> np.ndarray:
    other = np.clip(1 - cord - tissue["PAM50_csf"] - tissue["PAM50_spine"], 0, 1)
    if config.tissues is None:
        values = rng.uniform(0.05, 1.0, 6)
    else:
        values = np.asarray(config.tissues) * rng.uniform(0.85, 1.15, 6)
    image = (values[0] * tissue["PAM50_wm"] + values[1] * tissue["PAM50_gm"]
             + values[2] * tissue["PAM50_csf"] + values[3] * tissue["PAM50_spine"]
             + values[4] * tissue["PAM50_label_disc"] * tissue["PAM50_spine"]
             + values[5] * other * (1 + 0.3 * _smooth_noise(other.shape, rng)))
    x, y, z = (np.linspace(-1, 1, n, dtype=np.float32) for n in image.shape)
    c = rng.uniform(-1, 1, 3) * config.bias
    image = image * np.exp(c[0] * x[:, None, None] + c[1] * y[None, :, None]
                           + c[2] * z[None, None, :])
    sigma = rng.uniform(*config.noise) * max(float(image.max()), 1e-3)
    n1 = rng.normal(0, sigma, image.shape)
    n2 = rng.normal(0, sigma, image.shape)
    return np.sqrt((image + n1) ** 2 + n2**2).astype(np.float32)


def _smooth_noise(shape, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.normal(0, 1, tuple(max(n // 16, 2) for n in shape))
    zoom = [n / c for n, c in zip(shape, coarse.shape, strict=True)]
    out = ndimage.zoom(coarse, zoom, order=1)
    return out[: shape[0], : shape[1], : shape[2]]
