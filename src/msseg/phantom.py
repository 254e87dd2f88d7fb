"""Synthetic axial spine chunks with known cord and lesion masks (seeded, < 1 s).

Design notes: docs/explanation/design-notes.md#mssegphantom.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cc3d
import numpy as np
from scipy import ndimage

from msseg.image import Image

# T2w-like tissue intensities (arbitrary units, CSF brightest).
INTENSITY = {"air": 0.02, "tissue": 0.35, "csf": 1.0, "cord": 0.45}


@dataclass(frozen=True)
class PhantomConfig:
    shape: tuple[int, int, int] = (192, 192, 15)
    spacing: tuple[float, float, float] = (0.35, 0.35, 5.0)
    cord_diameters_mm: tuple[float, float] = (12.0, 8.0)
    csf_thickness_mm: float = 2.5
    body_radius_mm: float = 30.0
    n_lesions: int | None = None  # None: drawn uniformly in 0..17
    lesion_volume_range_mm3: tuple[float, float] = (3.0, 500.0)
    lesion_elongation_range: tuple[float, float] = (1.5, 3.0)
    lesion_contrast_range: tuple[float, float] = (1.5, 2.2)  # lesion / cord intensity
    noise_sigma: float = 0.03
    bias_strength: float = 0.2
    supersampling: tuple[int, int] = (2, 5)  # in-plane, through-plane
    centerline_amplitude_mm: tuple[float, float] = (4.0, 2.5)


@dataclass(frozen=True)
class Lesion:
    center_mm: tuple[float, float, float]  # offset from the cord centre (x, y) and z
    radius_mm: float
    half_length_mm: float


@dataclass(frozen=True)
class Phantom:
    image: Image
    cord: Image
    lesion: Image
    centerline_mm: np.ndarray  # (nz, 3) world coordinates of the cord centre per slice
    lesions: list[Lesion] = field(default_factory=list)


def make_phantom(seed: int = 0, config: PhantomConfig | None = None, **overrides) -> Phantom:
    """Generate one axial spine chunk; ``overrides`` replace fields of ``config``."""
    cfg = config or PhantomConfig()
    if overrides:
        cfg = PhantomConfig(**{**cfg.__dict__, **overrides})
    rng = np.random.default_rng(seed)
    centre = _centerline_fn(cfg, rng)
    lesions = _draw_lesions(cfg, rng)
    fractions = _fractions(cfg, centre, lesions)
    cord_mask = fractions["cord"] >= 0.5
    lesion_mask = fractions["lesion"] >= 0.5
    cord_mask |= lesion_mask
    image = _intensities(cfg, fractions, rng)
    affine = _affine(cfg)
    z_mm = np.arange(cfg.shape[2]) * cfg.spacing[2]
    cx, cy = centre(z_mm)
    idx = np.stack([_mm_to_index(cx, cfg, 0), _mm_to_index(cy, cfg, 1), np.arange(cfg.shape[2])], 1)
    centerline = idx @ affine[:3, :3].T + affine[:3, 3]
    return Phantom(
        image=Image(image.astype(np.float32), affine),
        cord=Image(cord_mask.astype(np.uint8), affine),
        lesion=Image(lesion_mask.astype(np.uint8), affine),
        centerline_mm=centerline,
        lesions=lesions,
    )


def _affine(cfg: PhantomConfig) -> np.ndarray:
    sx, sy, sz = cfg.spacing
    affine = np.diag([-sx, sy, sz, 1.0])  # LAS = SCT's RPI
    nx, ny, _ = cfg.shape
    affine[:3, 3] = [sx * (nx - 1) / 2, -sy * (ny - 1) / 2, 0.0]
    return affine


def _mm_to_index(coord_mm: np.ndarray, cfg: PhantomConfig, axis: int) -> np.ndarray:
    """In-plane phantom coordinates are mm from the image centre along the array axis."""
    return coord_mm / cfg.spacing[axis] + (cfg.shape[axis] - 1) / 2


def _centerline_fn(cfg: PhantomConfig, rng: np.random.Generator):
    """Smooth in-plane cord centre (mm from the image centre) as a function of z (mm)."""
    length = cfg.shape[2] * cfg.spacing[2]
    waves = []
    for amplitude in cfg.centerline_amplitude_mm:
        periods = rng.uniform(1.5, 4.0, size=2) * length
        phases = rng.uniform(0, 2 * np.pi, size=2)
        weights = rng.uniform(0.3, 1.0, size=2) * amplitude / 1.3
        waves.append((periods, phases, weights))

    def centre(z_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = np.asarray(z_mm, dtype=np.float64)[..., None]
        out = [(w * np.sin(2 * np.pi * z / p + ph)).sum(-1) for p, ph, w in waves]
        return out[0], out[1]

    return centre


def _draw_lesions(cfg: PhantomConfig, rng: np.random.Generator) -> list[Lesion]:
    n = int(rng.integers(0, 18)) if cfg.n_lesions is None else cfg.n_lesions
    lo, hi = np.log(cfg.lesion_volume_range_mm3)
    a, b = cfg.cord_diameters_mm[0] / 2, cfg.cord_diameters_mm[1] / 2
    length = cfg.shape[2] * cfg.spacing[2]
    lesions: list[Lesion] = []
    for _ in range(n):
        for _attempt in range(50):  # rejection sampling: lesions do not touch one another
            volume = float(np.exp(rng.uniform(lo, hi)))
            elong = float(rng.uniform(*cfg.lesion_elongation_range))
            radius = (3 * volume / (4 * np.pi * elong)) ** (1 / 3)
            angle, rho = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform(0, 1)) * 0.6
            z0 = rng.uniform(0.1, 0.9) * length
            cand = Lesion((rho * a * np.cos(angle), rho * b * np.sin(angle), z0),
                          radius, radius * elong)
            if all(_apart(cand, other, cfg.spacing) for other in lesions):
                lesions.append(cand)
                break
    return lesions


def _apart(p: Lesion, q: Lesion, spacing: tuple[float, float, float]) -> bool:
    """True when two lesions are separated by at least one voxel in-plane or one slice."""
    (px, py, pz), (qx, qy, qz) = p.center_mm, q.center_mm
    in_plane = np.hypot(px - qx, py - qy) > p.radius_mm + q.radius_mm + 2 * spacing[0]
    along = abs(pz - qz) > p.half_length_mm + q.half_length_mm + 2 * spacing[2]
    return bool(in_plane or along)


def _fractions(cfg: PhantomConfig, centre, lesions: list[Lesion]) -> dict[str, np.ndarray]:
    """Per-voxel fractions of cord, CSF (incl. cord), lesion and body, by supersampling."""
    nx, ny, nz = cfg.shape
    sx, sy, sz = cfg.spacing
    s_xy, s_z = cfg.supersampling
    xs = (np.arange(nx * s_xy) + 0.5) / s_xy - 0.5
    ys = (np.arange(ny * s_xy) + 0.5) / s_xy - 0.5
    x_mm = ((xs - (nx - 1) / 2) * sx)[:, None]
    y_mm = ((ys - (ny - 1) / 2) * sy)[None, :]
    a, b = cfg.cord_diameters_mm[0] / 2, cfg.cord_diameters_mm[1] / 2
    t = cfg.csf_thickness_mm
    out = {k: np.zeros(cfg.shape, np.float32) for k in ("cord", "csf", "lesion")}
    for k in range(nz):
        z_sub = (k + (np.arange(s_z) + 0.5) / s_z - 0.5) * sz
        cx, cy = centre(z_sub)
        dx = x_mm[None] - cx[:, None, None]
        dy = y_mm[None] - cy[:, None, None]
        cord = (dx / a) ** 2 + (dy / b) ** 2 <= 1
        csf = (dx / (a + t)) ** 2 + (dy / (b + t)) ** 2 <= 1
        lesion = np.zeros_like(cord)
        for les in lesions:
            ox, oy, z0 = les.center_mm
            dz2 = ((z_sub - z0) / les.half_length_mm) ** 2
            if dz2.min() > 1:
                continue
            r2 = ((dx - ox) ** 2 + (dy - oy) ** 2) / les.radius_mm**2
            lesion |= (r2 + dz2[:, None, None]) <= 1
        lesion &= cord
        for name, arr in (("cord", cord), ("csf", csf), ("lesion", lesion)):
            out[name][:, :, k] = _downsample(arr, s_xy)
    r = np.sqrt(x_mm**2 + y_mm**2)
    out["body"] = np.repeat(_downsample((r <= cfg.body_radius_mm)[None], s_xy)[..., None], nz, 2)
    return out


def _downsample(stack: np.ndarray, factor: int) -> np.ndarray:
    """Mean over the supersample axis 0 and ``factor`` x ``factor`` in-plane blocks."""
    m = stack.mean(axis=0, dtype=np.float32)
    nx, ny = m.shape[0] // factor, m.shape[1] // factor
    return m.reshape(nx, factor, ny, factor).mean(axis=(1, 3))


def _intensities(cfg: PhantomConfig, f: dict[str, np.ndarray], rng: np.random.Generator):
    contrast = rng.uniform(*cfg.lesion_contrast_range)
    cord_only = f["cord"] - f["lesion"]
    csf_only = f["csf"] - f["cord"]
    tissue = np.clip(f["body"] - f["csf"], 0, None)
    air = 1 - np.maximum(f["body"], f["csf"])
    clean = (air * INTENSITY["air"] + tissue * INTENSITY["tissue"] * _texture(cfg, rng)
             + csf_only * INTENSITY["csf"] + cord_only * INTENSITY["cord"]
             + f["lesion"] * INTENSITY["cord"] * contrast)
    clean *= _bias_field(cfg, rng)
    sigma = cfg.noise_sigma
    n1 = rng.normal(0, sigma, clean.shape).astype(np.float32)
    n2 = rng.normal(0, sigma, clean.shape).astype(np.float32)
    return np.sqrt((clean + n1) ** 2 + n2**2)


def _grid01(shape: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    return tuple(np.linspace(-1, 1, n, dtype=np.float32) for n in shape)


def _bias_field(cfg: PhantomConfig, rng: np.random.Generator) -> np.ndarray:
    """exp of a random quadratic polynomial: a smooth field within about +-bias_strength."""
    x, y, z = np.meshgrid(*_grid01(cfg.shape), indexing="ij", sparse=True)
    c = rng.uniform(-1, 1, 6) * cfg.bias_strength / 2
    return np.exp(c[0] * x + c[1] * y + c[2] * z + c[3] * x * y + c[4] * x**2 + c[5] * y**2)


def _texture(cfg: PhantomConfig, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency variation of the surrounding tissue (muscle/fat-like patches)."""
    x, y, z = np.meshgrid(*_grid01(cfg.shape), indexing="ij", sparse=True)
    freq = rng.uniform(2, 6, size=(3, 2))
    phase = rng.uniform(0, 2 * np.pi, size=3)
    tex = sum(np.sin(fx * np.pi * x + fy * np.pi * y + p) for (fx, fy), p in zip(freq, phase,
                                                                                   strict=True))
    return (1 + 0.25 * tex / 3 + 0 * z).astype(np.float32)


def perturb_mask(mask: np.ndarray, seed: int = 0, drop: int = 1, add: int = 1,
                 grow_fraction: float = 0.3, shrink_fraction: float = 0.3,
                 allowed: np.ndarray | None = None) -> np.ndarray:
    """A plausible imperfect segmentation of ``mask``: the kind of errors a model makes.

    Of the 26-connected lesions, ``drop`` are removed (misses), a ``grow_fraction`` share is
    dilated and a ``shrink_fraction`` share eroded by one voxel in-plane (boundary errors; thick
    axial slices make through-plane erosion delete whole lesions), and ``add``
    spherical false positives of radius 2 voxels are placed where ``allowed`` (default: the
    whole image) holds and ``mask`` does not; the result is restricted to ``allowed``.
    """
    rng = np.random.default_rng(seed)
    mask = np.asarray(mask, dtype=bool)
    labels, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    out = mask.copy()
    boxes = cc3d.statistics(labels)["bounding_boxes"]
    order = rng.permutation(np.arange(1, n + 1))
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)
    n_grow, n_shrink = int(round(grow_fraction * n)), int(round(shrink_fraction * n))
    for k, lab in enumerate(order):
        box = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in boxes[lab])
        lesion = labels[box] == lab
        if k < drop:
            out[box][lesion] = False
        elif k < drop + n_grow:
            out[box] |= ndimage.binary_dilation(lesion, in_plane)
        elif k < drop + n_grow + n_shrink:
            out[box] &= ~(lesion & ~ndimage.binary_erosion(lesion, in_plane))
    candidates = np.argwhere((allowed if allowed is not None else np.ones_like(mask)) & ~mask)
    for _ in range(add if candidates.size else 0):
        centre = candidates[rng.integers(len(candidates))]
        box = tuple(slice(max(c - 2, 0), c + 3) for c in centre)
        grid = np.indices(out[box].shape) - (centre - [b.start for b in box])[:, None, None, None]
        out[box] |= (grid**2).sum(0) <= 4
    return out if allowed is None else out & np.asarray(allowed, dtype=bool)
