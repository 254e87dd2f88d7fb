"""Synthetic MS lesions inserted into real spinal cord scans.

Design notes: docs/explanation/design-notes.md#mssegdatalesion_synthesis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from msseg.image import Image
from msseg.preprocess.orient import reorient_like, to_rpi


@dataclass(frozen=True)
class LesionPrior:
    p_lesion_free: float = 0.18
    extra_lesions_mean: float = 2.66
    max_lesions: int = 17
    median_volume_mm3: float = 35.0
    volume_sigma: float = 0.8
    volume_range_mm3: tuple[float, float] = (3.0, 400.0)
    elongation_range: tuple[float, float] = (1.5, 3.0)
    contrast_range: tuple[float, float] = (1.4, 2.2)
    supersampling: int = 3
    placement: str = "uniform"              # uniform | white-matter
    white_matter_share: float = 0.8
    column_weights: tuple[float, float, float] = (0.35, 0.5, 0.15)  # dorsal, lateral, ventral
    contrast_reference: str = "cord"        # cord | white-matter
    profile_edge: float = 0.0

    def draw_count(self, rng: np.random.Generator) -> int:
        if rng.random() < self.p_lesion_free:
            return 0
        return int(min(1 + rng.poisson(self.extra_lesions_mean), self.max_lesions))

    def draw_volume(self, rng: np.random.Generator) -> float:
        v = np.exp(rng.normal(np.log(self.median_volume_mm3), self.volume_sigma))
        return float(np.clip(v, *self.volume_range_mm3))


#: How MS lesions of the spinal cord look on each contrast: the range of the lesion / cord
#: intensity ratio ``c`` (> 1 hyperintense, < 1 hypointense relative to the surrounding cord).
#: Signs from the literature: hyperintense on T2w and T2*w (Kearney et al., Nat Rev Neurol
#: 2015) and on STIR, where they are more conspicuous than on T2w (Philpott & Brotchie, Eur J
#: Radiol 2011; Alcaide-Leon et al., AJNR 2016); hypointense, dark within bright white matter,
#: on PSIR (Poonawalla et al., Radiology 2008; Alcaide-Leon et al. 2016) and on MP2RAGE UNIT1
#: (Demortière et al., Front Neurol 2020); hypo- to isointense and faint on T1w (Kearney 2015);
#: brighter than the cord on MT-weighted images, whose signal lesions saturate less
#: (reduced MT ratio). The ranges are this project's choice (subtle to conspicuous lesions),
#: not published values.
LESION_APPEARANCE: dict[str, tuple[float, float]] = {
    "T2w": (1.4, 2.2),
    "T2starw": (1.4, 2.2),
    "STIR": (1.6, 2.6),
    "MTS": (1.2, 1.6),
    "PSIR": (0.35, 0.75),
    "UNIT1": (0.55, 0.85),
    "T1w": (0.7, 0.9),
}


#: The calibrated appearance (``recipes/lesion_calibration``): the *peak* lesion / white-matter
#: ratio of a lesion whose rim is fainter (``profile_edge`` 0.6), faint lesions included. On
#: the real MS patient ``t2_ms`` the lesions of SCT's real-data model peak at 1.4–1.95 × the
#: white matter and average 1.0–1.5 over their voxels (that recipe's table); the range reaches
#: down to where lesions are about as bright as grey matter.
CALIBRATED_CONTRAST: dict[str, tuple[float, float]] = {
    "T2w": (1.2, 2.0),
    "T2starw": (1.2, 2.0),
    "MTS": (1.15, 1.6),
}

#: The calibrated prior (T2w): white-matter columns, white-matter reference, fainter rims.
CALIBRATED = LesionPrior(contrast_range=CALIBRATED_CONTRAST["T2w"], placement="white-matter",
                         contrast_reference="white-matter", profile_edge=0.6)


def calibrated_prior(contrast: str, base: LesionPrior = CALIBRATED) -> LesionPrior:
    """``base`` with the contrast's calibrated appearance (:data:`CALIBRATED_CONTRAST`)."""
    if contrast not in CALIBRATED_CONTRAST:
        known = ", ".join(sorted(CALIBRATED_CONTRAST))
        raise ValueError(f"no calibrated lesion appearance for {contrast!r} (known: {known})")
    return replace(base, contrast_range=CALIBRATED_CONTRAST[contrast])


def prior_for_contrast(contrast: str, base: LesionPrior | None = None) -> LesionPrior:
    """``base`` (default :class:`LesionPrior`) with the contrast's lesion appearance."""
    base = base or LesionPrior()
    if contrast not in LESION_APPEARANCE:
        known = ", ".join(sorted(LESION_APPEARANCE))
        raise ValueError(f"no lesion appearance for contrast {contrast!r} (known: {known})")
    return replace(base, contrast_range=LESION_APPEARANCE[contrast])


@dataclass(frozen=True)
class SynthesisResult:
    image: Image
    lesion: Image
    fraction: Image           # lesion fraction per voxel (0 where the image is unchanged)
    volumes_mm3: list[float]  # drawn (ellipsoid) volumes of the painted lesions


def synthesize_lesions(image: Image, cord: Image, seed: int = 0,
                       prior: LesionPrior = LesionPrior(),
                       n_lesions: int | None = None) -> SynthesisResult:
    """Insert lesions into a real scan; returns the new image and lesion mask, native space."""
    if prior.placement not in PLACEMENTS or prior.contrast_reference not in REFERENCES:
        raise ValueError(f"placement must be one of {PLACEMENTS}, contrast_reference cord or "
                         "white-matter")
    rng = np.random.default_rng(seed)
    img_rpi, cord_rpi = to_rpi(image), to_rpi(cord)
    data = img_rpi.data.astype(np.float32)
    cord_mask = cord_rpi.data > 0.5
    n = prior.draw_count(rng) if n_lesions is None else n_lesions
    fraction = np.zeros(data.shape, np.float32)
    profile = np.zeros(data.shape, np.float32)
    volumes = []
    if cord_mask.any():
        spacing = np.asarray(img_rpi.spacing)
        centre_of = _centerline(cord_mask)
        voxels = np.argwhere(cord_mask)
        sections = CrossSections(cord_mask, spacing) if _needs_sections(prior) else None
        for _ in range(n):
            volume = prior.draw_volume(rng)
            centre = voxels[rng.integers(len(voxels))] if sections is None else \
                sections.draw_centre(rng, prior)
            if _add_ellipsoid(fraction, profile, cord_mask, centre, centre_of, spacing, volume,
                              rng.uniform(*prior.elongation_range), prior.supersampling,
                              prior.profile_edge):
                volumes.append(volume)
        white = prior.contrast_reference == "white-matter" and sections.outer.any()
        reference = sections.outer if white else cord_mask
    else:
        reference = cord_mask
    lesion = (fraction >= 0.5) & cord_mask
    new = data + profile * _lesion_delta(data, reference, rng, prior)
    out_image = reorient_like(img_rpi.with_data(new.astype(np.float32)), image)
    out_lesion = reorient_like(img_rpi.with_data(lesion.astype(np.uint8)), image)
    out_fraction = reorient_like(img_rpi.with_data(fraction), image)
    return SynthesisResult(out_image, out_lesion, out_fraction, volumes)


PLACEMENTS = ("uniform", "white-matter")
REFERENCES = ("cord", "white-matter")
OUTER_R = (0.45, 0.9)     # the cord's outer part: white matter, without the edge's partial volume
COLUMN_HALF_ANGLE_DEG = 35.0


def _needs_sections(prior: LesionPrior) -> bool:
    return prior.placement == "white-matter" or prior.contrast_reference == "white-matter"


class CrossSections:
    """Per axial slice (RPI: x R→L, y P→A) of a cord mask: each cord voxel's normalised depth
    ``r`` and white-matter column (see module)."""

    def __init__(self, cord: np.ndarray, spacing: np.ndarray):
        from scipy import ndimage

        self.r = np.ones(cord.shape, np.float32)
        self.column = np.zeros(cord.shape, np.int8)     # 0 dorsal, 1 lateral, 2 ventral
        for k in np.flatnonzero(cord.any(axis=(0, 1))):
            section = cord[:, :, k]
            depth = ndimage.distance_transform_edt(section, sampling=spacing[:2])
            self.r[:, :, k] = np.where(section, 1 - depth / depth.max(), 1)
            xy = np.argwhere(section)
            dx, dy = ((xy - xy.mean(0)) * spacing[:2]).T
            angle = np.degrees(np.arctan2(np.abs(dx), dy))   # 0 anterior, 180 posterior
            kind = np.where(angle >= 180 - COLUMN_HALF_ANGLE_DEG, 0,
                            np.where(angle <= COLUMN_HALF_ANGLE_DEG, 2, 1))
            self.column[xy[:, 0], xy[:, 1], k] = kind
        self.cord = cord
        self.outer = cord & (self.r >= OUTER_R[0]) & (self.r <= OUTER_R[1])

    def draw_centre(self, rng: np.random.Generator, prior: LesionPrior) -> np.ndarray:
        """A lesion centre by the prior's placement (the whole cord where a column is empty)."""
        candidates = self.cord
        if prior.placement == "white-matter" and rng.random() < prior.white_matter_share:
            weights = np.asarray(prior.column_weights, float)
            column = rng.choice(3, p=weights / weights.sum())
            chosen = self.outer & (self.column == column)
            if chosen.any():
                candidates = chosen
        voxels = np.argwhere(candidates)
        return voxels[rng.integers(len(voxels))]


def average_slices(image: Image, n: int) -> Image:
    """``image`` in RPI with groups of ``n`` consecutive axial slices averaged (float32): a
    thick-slice acquisition. Slices left over at the top that do not fill a group are dropped;
    each new slice is centred on its group."""
    rpi = to_rpi(image)
    groups = rpi.shape[2] // n if n >= 1 else 0
    if groups < 2:
        raise ValueError(f"{n}-slice groups of a {rpi.shape[2]}-slice scan: need at least 2")
    data = np.asarray(rpi.data[:, :, : groups * n], np.float32)
    affine = rpi.affine @ np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, n, (n - 1) / 2],
                                    [0, 0, 0, 1]], float)
    return Image(data.reshape(*data.shape[:2], groups, n).mean(axis=3), affine)


def thick_slices(result: SynthesisResult, cord: Image, thickness_mm: float
                 ) -> tuple[Image, Image, Image]:
    """The synthesised scan as a thick-slice axial acquisition: (image, cord, lesion).

    :func:`average_slices` with ``n = round(thickness_mm / slice spacing)`` of the image, the
    lesion fraction and the cord mask. The lesion mask is the averaged fraction ≥ 0.5 inside
    the averaged cord ≥ 0.5, the cord mask the averaged cord ≥ 0.5: partial volume as on
    5–7.5 mm axial scans. Returned in RPI (an axial acquisition's own orientation).
    """
    image = to_rpi(result.image)
    n = int(round(thickness_mm / image.spacing[2]))
    if n < 1 or image.shape[2] // max(n, 1) < 2:
        raise ValueError(f"{thickness_mm} mm slices of a {image.shape[2]}-slice scan at "
                         f"{image.spacing[2]:.3g} mm: need at least 2 thick slices")
    cord_avg = average_slices(cord.with_data(np.asarray(cord.data) > 0.5), n)
    fraction = average_slices(result.fraction, n)
    lesion = (fraction.data >= 0.5) & (cord_avg.data >= 0.5)
    return (average_slices(image, n), cord_avg.with_data((cord_avg.data >= 0.5).astype(np.uint8)),
            cord_avg.with_data(lesion.astype(np.uint8)))


def write_lesion_versions(image_path: Path, cord_path: Path, out: Path, stem: str,
                          seeds: Sequence[int], prior: LesionPrior) -> list[list[Path]]:
    """Copies of a real scan with lesions synthesised (one per seed), written as
    ``OUT/{stem}_synth{v}.nii.gz`` with ``…_cord`` and ``…_lesion`` masks on the scan's own
    grid and header: ``[image, cord, lesion]`` paths per copy."""
    from msseg import io

    image, cord = io.load(image_path), io.load(cord_path)
    cord = cord.with_data((cord.data > 0.5).astype(np.uint8))
    written = []
    for v, seed in enumerate(seeds):
        result = synthesize_lesions(image, cord, seed=seed, prior=prior)
        paths = [out / f"{stem}_synth{v}{suffix}.nii.gz" for suffix in ("", "_cord", "_lesion")]
        io.save(result.image, paths[0])
        io.save_like(cord.data, image, paths[1])
        io.save_like(result.lesion.data, image, paths[2])
        written.append(paths)
    return written


def _centerline(cord: np.ndarray):
    """Per-slice cord centre (voxel x, y), interpolated over slices without cord."""
    slices = np.flatnonzero(cord.any(axis=(0, 1)))
    centres = np.array([np.argwhere(cord[:, :, k]).mean(0) for k in slices])
    z = np.arange(cord.shape[2])
    cx = np.interp(z, slices, centres[:, 0])
    cy = np.interp(z, slices, centres[:, 1])
    return np.stack([cx, cy], 1)


def _direction(centres: np.ndarray, k: int, spacing: np.ndarray) -> np.ndarray:
    """Unit tangent of the cord (mm) at slice k, by central differences."""
    lo, hi = max(k - 1, 0), min(k + 1, len(centres) - 1)
    if hi == lo:
        return np.array([0.0, 0.0, 1.0])
    d = np.append((centres[hi] - centres[lo]) * spacing[:2], (hi - lo) * spacing[2])
    return d / np.linalg.norm(d)


def _add_ellipsoid(fraction, profile, cord, centre, centres, spacing, volume, elongation, sub,
                   edge=0.0):
    """Add the supersampled ellipsoid ∩ cord fraction to ``fraction`` and its intensity
    profile (``1 − edge·ρ²`` averaged over the voxel's sub-samples inside) to ``profile``
    (both max-combined).

    Returns False (and paints nothing) when no voxel would reach a fraction of 0.5.
    """
    radius = (3 * volume / (4 * np.pi * elongation)) ** (1 / 3)
    half_length = radius * elongation
    axis = _direction(centres, int(centre[2]), spacing)
    reach = np.ceil(half_length / spacing).astype(int) + 1
    lo = np.maximum(centre - reach, 0)
    hi = np.minimum(centre + reach + 1, fraction.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    shape = tuple(hi - lo)
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1).T + lo - centre
    inside = np.zeros(len(grid), np.float32)
    weight = np.zeros(len(grid), np.float32)
    for ox in offsets:
        for oy in offsets:
            for oz in offsets:
                mm = (grid + [ox, oy, oz]) * spacing
                along = mm @ axis
                across2 = (mm**2).sum(1) - along**2
                rho2 = across2 / radius**2 + (along / half_length) ** 2
                hit = rho2 <= 1
                inside += hit
                weight += hit * (1 - edge * rho2)
    local = (inside / sub**3).reshape(shape) * cord[box]
    if not (local >= 0.5).any():
        return False
    np.maximum(fraction[box], local, out=fraction[box])
    np.maximum(profile[box], (weight / sub**3).reshape(shape) * cord[box], out=profile[box])
    return True


def _lesion_delta(data, cord, rng, prior: LesionPrior) -> np.ndarray:
    """(c − 1) · median intensity of each slice's ``cord`` voxels (the whole cord or its
    outer part; neighbouring slices where empty)."""
    contrast = rng.uniform(*prior.contrast_range)
    slices = np.flatnonzero(cord.any(axis=(0, 1)))
    if slices.size == 0:
        return np.zeros(data.shape[2], np.float32)
    medians = np.array([np.median(data[:, :, k][cord[:, :, k]]) for k in slices])
    per_slice = np.interp(np.arange(data.shape[2]), slices, medians)
    return ((contrast - 1) * per_slice).astype(np.float32)[None, None, :]
