"""Semi-synthetic whole-spine sessions acquired in chunks, with lesions, from the PAM50 maps.

Design notes: docs/explanation/design-notes.md#mssegdatawhole_spine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.interpolate import PchipInterpolator

from msseg.data.lesion_synthesis import LesionPrior, synthesize_lesions
from msseg.data.synthetic_spine import SpineConfig, _bend, _compose, _load_maps
from msseg.image import Image
from msseg.preprocess.resample import resample_to_grid

#: Regions by PAM50 vertebral level (PAM50_levels: 1 = C1 … 7 = C7, 8 = T1 … 19 = T12, 20 = L1);
#: the chunk of each region, cranial first.
REGIONS = {"cervical": (1, 7), "thoracic": (8, 19), "lumbar": (20, 30)}
CHUNK_REGION = {1: "cervical", 2: "thoracic", 3: "lumbar"}


@dataclass(frozen=True)
class Site:
    """An acquisition site: tissue intensities (white matter, grey matter, CSF, vertebrae,
    discs added to the vertebrae, everything else), voxel sizes, noise (fraction of the
    brightest tissue), in-plane field of view and the lesion / cord intensity ratio."""
    name: str
    tissues: tuple[float, ...]
    in_plane_mm: tuple[float, float]
    slice_mm: tuple[float, float]
    noise: tuple[float, float]
    fov_mm: float
    lesion_contrast: tuple[float, float]
    scale: float = 1000.0


#: Three T2w-like sites (CSF bright, cord intermediate, vertebrae dark), differing in contrast,
#: noise, resolution and field of view — this project's choice, spanning the published protocols
#: (0.3–0.8 mm in-plane, 3–7 mm slices).
SITES: dict[str, Site] = {
    "A": Site("A", (0.35, 0.42, 1.0, 0.25, 0.55, 0.40), (0.3, 0.45), (3.0, 4.0),
              (0.01, 0.025), 64.0, (1.5, 2.2)),
    "B": Site("B", (0.45, 0.50, 0.9, 0.35, 0.45, 0.55), (0.5, 0.8), (4.5, 7.0),
              (0.03, 0.06), 56.0, (1.3, 1.9)),
    "C": Site("C", (0.30, 0.38, 1.0, 0.15, 0.65, 0.30), (0.4, 0.6), (3.0, 5.0),
              (0.02, 0.04), 68.0, (1.4, 2.4)),
}


@dataclass(frozen=True)
class WholeSpineConfig:
    lesions: dict[str, int] = field(default_factory=lambda: {"cervical": 3, "thoracic": 2,
                                                             "lumbar": 0})
    lordosis_mm: float = 6.0          # cervical: anterior displacement at C4-C5
    kyphosis_mm: float = 9.0          # thoracic: posterior displacement at T6-T7
    lumbar_mm: float = 3.0            # anterior again at the conus
    random_bend_mm: float = 1.5       # plus a smooth random bend, in both in-plane axes
    overlap_mm: tuple[float, float] = (15.0, 30.0)  # between consecutive chunks
    motion_mm: float = 1.0            # patient motion between chunks: translation (each axis)
    motion_deg: float = 1.5           # and rotation (about each axis), at most
    bias: float = 0.2


@dataclass(frozen=True)
class WholeSpine:
    image: Image            # noise-free, 0.5 mm, RPI (z: inferior -> superior)
    cord: Image
    lesion: Image           # lesion labels 1..n (uint16)
    fraction: Image         # lesion fraction per voxel (for partial volume in the chunks)
    lesions: pd.DataFrame   # lesion_id, region, volume_mm3, centroid_{x,y,z}_mm
    site: Site
    regions: dict[str, tuple[int, int]]   # slice range [start, stop) of every region


@dataclass(frozen=True)
class Chunk:
    number: int             # 1 cervical, 2 thoracic, 3 lumbar
    image: Image
    cord: Image
    lesion: Image


def region_slices(levels: np.ndarray) -> dict[str, tuple[int, int]]:
    """Slice range [start, stop) of every region on the PAM50 grid from its level map
    (the lumbar region reaches down to the lowest cord slice)."""
    out = {}
    for name, (lo, hi) in REGIONS.items():
        z = np.flatnonzero(((levels >= lo) & (levels <= hi)).any(axis=(0, 1)))
        if z.size:
            out[name] = (int(z.min()), int(z.max()) + 1)
    return out


def sagittal_profile(levels: np.ndarray, config: WholeSpineConfig) -> np.ndarray:
    """Anterior displacement (mm) of every slice: 0 at C1, +lordosis at C4–C5, 0 at C7–T1,
    −kyphosis at T6–T7, 0 at T12, +lumbar at the conus; smooth (monotone cubic) between."""
    centre = {}
    for level in np.unique(levels[levels > 0]).astype(int):
        centre[level] = float(np.flatnonzero((levels == level).any(axis=(0, 1))).mean())
    knots = [(centre.get(1), 0.0), (centre.get(5), config.lordosis_mm),
             (centre.get(8), 0.0), (centre.get(14), -config.kyphosis_mm),
             (centre.get(19), 0.0), (centre.get(20), config.lumbar_mm)]
    knots = sorted((z, d) for z, d in knots if z is not None)
    z = np.arange(levels.shape[2], dtype=float)
    zk, dk = np.array(knots).T
    return np.interp(z, zk, dk) if len(zk) < 3 else PchipInterpolator(zk, dk,
                                                                      extrapolate=False)(
        np.clip(z, zk[0], zk[-1]))


def whole_spine(pam50_dir: str | Path, seed: int = 0, site: Site = SITES["A"],
                config: WholeSpineConfig = WholeSpineConfig()) -> WholeSpine:
    """One whole spine of ``site`` with ``config.lesions`` lesions per region (see module)."""
    rng = np.random.default_rng(seed)
    maps, affine = _load_maps(str(pam50_dir))
    levels = _levels(str(pam50_dir))
    shifts = np.zeros((levels.shape[2], 2))
    shifts[:, 1] = sagittal_profile(levels, config)
    shifts += _random_bend(levels.shape[2], rng, config.random_bend_mm)
    shifts /= 0.5                                              # mm -> voxels of 0.5 mm
    tissue = {k: _bend(v, shifts) for k, v in maps.items()}
    cord = np.clip(tissue["PAM50_wm"] + tissue["PAM50_gm"], 0, 1)
    spine_config = SpineConfig(noise=(0.0, 0.0), bias=config.bias, tissues=site.tissues)
    data = _compose(tissue, cord, rng, spine_config) * site.scale
    del tissue
    image = Image(data, affine)
    cord_mask = Image((cord >= 0.5).astype(np.uint8), affine)
    bent_levels = _bend(levels, shifts, order=0)
    image, fraction, labels = _place_lesions(image, cord_mask, bent_levels, rng, site, config)
    table = lesion_table(labels, bent_levels, affine)
    return WholeSpine(image, cord_mask, Image(labels, affine), Image(fraction, affine), table,
                      site, region_slices(bent_levels))


def lesion_table(labels: np.ndarray, levels: np.ndarray, affine: np.ndarray) -> pd.DataFrame:
    """One row per lesion label: its region (from the slice of its centroid), volume and
    centroid in world mm."""
    ranges = region_slices(levels)
    rows = []
    voxel_mm3 = abs(np.linalg.det(affine[:3, :3]))
    for lesion_id in range(1, int(labels.max()) + 1):
        voxels = np.argwhere(labels == lesion_id)
        if not len(voxels):
            continue
        centroid = voxels.mean(0)
        world = affine[:3, :3] @ centroid + affine[:3, 3]
        z = int(round(centroid[2]))
        region = next((name for name, (a, b) in ranges.items() if a <= z < b), "lumbar")
        rows.append({"lesion_id": lesion_id, "region": region,
                     "volume_mm3": round(len(voxels) * voxel_mm3, 3),
                     "centroid_x_mm": world[0], "centroid_y_mm": world[1],
                     "centroid_z_mm": world[2]})
    return pd.DataFrame(rows, columns=["lesion_id", "region", "volume_mm3", "centroid_x_mm",
                                       "centroid_y_mm", "centroid_z_mm"])


def cut_chunks(spine: WholeSpine, seed: int = 0,
               config: WholeSpineConfig = WholeSpineConfig()) -> list[Chunk]:
    """Three overlapping axial chunk acquisitions of ``spine`` (see module), cranial first."""
    rng = np.random.default_rng(seed)
    site = spine.site
    cord = spine.cord.data > 0
    z_cord = np.flatnonzero(cord.any(axis=(0, 1)))
    bounds = np.linspace(z_cord.min(), z_cord.max() + 1, 4)   # three equal parts, I -> S
    in_plane = rng.uniform(*site.in_plane_mm)
    thickness = rng.uniform(*site.slice_mm)
    sigma = thickness / 0.5 / 2.355                     # slice profile: FWHM = thickness
    blurred = (ndimage.gaussian_filter1d(spine.image.data, sigma, axis=2),
               ndimage.gaussian_filter1d(spine.fraction.data, sigma, axis=2))
    chunks = []
    for number in (1, 2, 3):
        part = 3 - number                      # chunk 1 is the most superior third
        lo, hi = bounds[part], bounds[part + 1]
        half_overlap = rng.uniform(*config.overlap_mm) / 2 / 0.5
        lo = max(lo - (half_overlap if part > 0 else 0), 0)
        hi = min(hi + (half_overlap if part < 2 else 0), cord.shape[2])
        chunks.append(_acquire(spine, blurred, number, (lo, hi), in_plane, thickness, rng,
                               config))
    return chunks


def write_session(spine: WholeSpine, chunks: list[Chunk], root: str | Path, subject: str,
                  session: str = "01") -> list[Path]:
    """Write the chunks in BIDS under ``root`` (see module); returns the chunk image paths."""
    from msseg import io

    root = Path(root)
    stem = f"sub-{subject}_ses-{session}"
    anat = root / f"sub-{subject}" / f"ses-{session}" / "anat"
    labels = root / "derivatives" / "labels" / f"sub-{subject}" / f"ses-{session}" / "anat"
    paths = []
    for chunk in chunks:
        name = f"{stem}_chunk-{chunk.number}_T2w"
        paths.append(io.save(chunk.image, anat / f"{name}.nii.gz"))
        io.save(chunk.cord, labels / f"{name}_label-SC_seg.nii.gz")
        io.save(chunk.lesion, labels / f"{name}_label-lesion_seg.nii.gz")
    labels.mkdir(parents=True, exist_ok=True)
    spine.lesions.to_csv(labels / f"{stem}_lesions.tsv", sep="\t", index=False)
    return paths


#: Mean lesion count per region of a session (:func:`write_cohort`, Poisson): most lesions in
#: the cervical cord, as in the axial-T2w paper's cohort; this project's choice of numbers.
LESION_MEANS = {"cervical": 2.0, "thoracic": 1.2, "lumbar": 0.2}


def write_cohort(pam50_dir: str | Path, root: str | Path, subjects: dict[str, int],
                 seed: int = 0, lesion_means: dict[str, float] | None = None,
                 config: WholeSpineConfig = WholeSpineConfig(), wrap=None) -> pd.DataFrame:
    """A chunked cohort in BIDS under ``root``: ``subjects[site]`` sessions per site
    (:data:`SITES`), subject ``<site><nn>``, lesion counts per region drawn from
    Poisson(``lesion_means``); ``participants.tsv`` gives each subject's site. Returns the
    lesion table of the cohort (one row per lesion, with its subject and site)."""
    unknown = sorted(set(subjects) - set(SITES))
    if unknown:
        raise ValueError(f"unknown site(s) {', '.join(unknown)} (known: {', '.join(SITES)})")
    means = lesion_means or LESION_MEANS
    rng = np.random.default_rng(seed)
    jobs = [(site, n) for site, count in subjects.items() for n in range(1, count + 1)]
    root = Path(root)
    tables, participants = [], []
    for site, n in (wrap(jobs) if wrap else jobs):
        subject = f"{site}{n:02d}"
        counts = {region: int(rng.poisson(mean)) for region, mean in means.items()}
        session_seed = int(rng.integers(2**31))
        spine = whole_spine(pam50_dir, session_seed, SITES[site], replace(config, lesions=counts))
        write_session(spine, cut_chunks(spine, session_seed, config), root, subject)
        tables.append(spine.lesions.assign(subject=f"sub-{subject}", site=site))
        participants.append({"participant_id": f"sub-{subject}", "site": site})
    pd.DataFrame(participants).to_csv(root / "participants.tsv", sep="\t", index=False)
    (root / "dataset_description.json").write_text(
        '{"Name": "msseg semi-synthetic chunked whole spines (PAM50)", "BIDSVersion": '
        '"1.9.0", "DatasetType": "raw", "GeneratedBy": [{"Name": "msseg.data.whole_spine"}]}\n')
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


# ------------------------------------------------------------------------------- internals

def _levels(pam50_dir: str) -> np.ndarray:
    from msseg import io
    from msseg.preprocess.orient import to_rpi

    return to_rpi(io.load(Path(pam50_dir) / "PAM50_levels.nii.gz")).data.astype(np.int16)


def _random_bend(nz: int, rng: np.random.Generator, amplitude_mm: float) -> np.ndarray:
    z = np.arange(nz)[:, None]
    periods = rng.uniform(0.3, 0.8, (1, 2)) * nz
    phases = rng.uniform(0, 2 * np.pi, (1, 2))
    return rng.uniform(-1, 1, (1, 2)) * amplitude_mm * np.sin(2 * np.pi * z / periods + phases)


def _place_lesions(image: Image, cord: Image, levels: np.ndarray, rng: np.random.Generator,
                   site: Site, config: WholeSpineConfig, tries: int = 20
                   ) -> tuple[Image, np.ndarray, np.ndarray]:
    """Exactly ``config.lesions[region]`` separate lesions per region (a draw whose lesions
    touch each other or leave the region is drawn again)."""
    prior = replace(LesionPrior(), contrast_range=site.lesion_contrast)
    ranges = region_slices(levels)
    fraction = np.zeros(image.shape, np.float32)
    labels = np.zeros(image.shape, np.uint16)
    for name, count in config.lesions.items():
        if count <= 0 or name not in ranges:
            continue
        a, b = ranges[name]
        region_cord = np.zeros(image.shape, np.uint8)
        region_cord[:, :, a:b] = cord.data[:, :, a:b]
        for _ in range(tries):
            result = synthesize_lesions(image, cord.with_data(region_cord),
                                        seed=int(rng.integers(2**31)), prior=prior,
                                        n_lesions=count)
            new = result.lesion.data > 0
            found, n = ndimage.label(ndimage.binary_dilation(new) | (labels > 0),
                                     np.ones((3, 3, 3)))
            n_new, _ = _components(new)
            if n_new == count and n == labels.max() + count:
                break
        else:
            raise RuntimeError(f"could not place {count} separate lesions in the {name} cord")
        _, components = _components(new)
        labels[components > 0] = components[components > 0] + labels.max()
        np.maximum(fraction, result.fraction.data, out=fraction)
        image = result.image
    return image, fraction, labels


def _components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    components, n = ndimage.label(mask, np.ones((3, 3, 3)))
    return n, components.astype(np.uint16)


def _acquire(spine: WholeSpine, blurred: tuple[np.ndarray, np.ndarray], number: int,
             z_range: tuple[float, float], in_plane: float, thickness: float,
             rng: np.random.Generator, config: WholeSpineConfig) -> Chunk:
    """One axial chunk over slices ``z_range`` of the whole spine (see module); ``blurred``:
    its image and lesion fraction with the slice profile of ``thickness`` along S–I."""
    affine = spine.image.affine
    unit = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    spacing = np.array([in_plane, in_plane, thickness])
    lo, hi = z_range
    cord = spine.cord.data[:, :, int(lo):int(np.ceil(hi))]
    centre_xy = np.argwhere(cord > 0)[:, :2].mean(0) if cord.any() else \
        (np.asarray(cord.shape[:2]) - 1) / 2
    n_xy = int(round(spine.site.fov_mm / in_plane))
    n_z = max(int(np.floor((hi - lo) * 0.5 / thickness)), 1)
    shape = (n_xy, n_xy, n_z)
    header = np.eye(4)
    header[:3, :3] = unit * spacing
    centre_vox = np.array([*centre_xy, (lo + hi - 1) / 2])
    centre_world = affine[:3, :3] @ centre_vox + affine[:3, 3]
    header[:3, 3] = centre_world - header[:3, :3] @ ((np.asarray(shape) - 1) / 2)
    true = _motion(centre_world, rng, config) @ header   # where the chunk really samples
    image = resample_to_grid(Image(blurred[0], affine), shape, true, order=1).data
    noise = rng.uniform(*spine.site.noise) * float(image.max())
    image = np.sqrt((image + rng.normal(0, noise, shape)) ** 2
                    + rng.normal(0, noise, shape) ** 2).astype(np.float32)
    cord_f = resample_to_grid(Image(spine.cord.data.astype(np.float32), affine), shape, true,
                              order=1).data
    lesion_f = resample_to_grid(Image(blurred[1], affine), shape, true, order=1).data
    cord_mask = (cord_f >= 0.5).astype(np.uint8)
    lesion_mask = ((lesion_f >= 0.5) & (cord_f > 0)).astype(np.uint8)
    return Chunk(number, Image(image, header), Image(cord_mask, header),
                 Image(lesion_mask, header))


def _motion(centre: np.ndarray, rng: np.random.Generator, config: WholeSpineConfig
            ) -> np.ndarray:
    """A small rigid transform about ``centre`` (world mm)."""
    angles = np.deg2rad(rng.uniform(-1, 1, 3) * config.motion_deg)
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    rotation = rz @ ry @ rx
    out = np.eye(4)
    out[:3, :3] = rotation
    out[:3, 3] = centre - rotation @ centre + rng.uniform(-1, 1, 3) * config.motion_mm
    return out
