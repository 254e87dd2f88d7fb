"""New and enlarging lesions between a baseline and a follow-up scan.

Design notes: docs/explanation/design-notes.md#msseglongitudinal.
"""

from __future__ import annotations

from dataclasses import dataclass

import cc3d
import numpy as np
import pandas as pd

from msseg.errors import MssegError
from msseg.image import Image, same_grid
from msseg.preprocess.registration import register, resample_through
from msseg.preprocess.resample import resample_to_grid

STATUS_CODES = {"new": 1, "enlarging": 2, "stable": 3, "shrinking": 4, "resolved": 5,
                "below-size": 6}


@dataclass(frozen=True)
class Rules:
    min_new_voxels: int = 3
    enlarge: float = 0.5
    shrink: float = 0.5


CHANGE_CODES = {"gained": 1, "lost": 2}   # the change mask: voxels gained / lost


@dataclass(frozen=True)
class Comparison:
    lesions: pd.DataFrame        # one row per lesion (both time points)
    summary: dict                # counts per status, total volumes
    status: Image                # status codes on the baseline grid
    followup: Image              # the follow-up mask on the baseline grid
    transform: object = None     # SimpleITK transform (baseline -> follow-up points) or None
    change: Image | None = None  # change_mask on the baseline grid (1 gained, 2 lost)


def register_rigid(fixed: Image, moving: Image, threads: int = 0):
    """The rigid transform mapping baseline (fixed) points to follow-up (moving) points
    (:func:`msseg.preprocess.registration.register`, reproducible)."""
    return register(fixed, moving, "rigid", threads)


def mask_on_baseline(followup: Image, baseline: Image, transform=None) -> Image:
    """The follow-up mask on the baseline grid: through ``transform`` (SimpleITK, baseline
    points -> follow-up points), else by world coordinates; linear, ≥ 0.5."""
    moved = image_on_baseline(followup.with_data(followup.data > 0), baseline, transform).data
    return baseline.with_data((moved >= 0.5).astype(np.uint8))


def image_on_baseline(image: Image, baseline: Image, transform=None) -> Image:
    """A follow-up image on the baseline image's grid: through ``transform`` (SimpleITK,
    baseline points -> follow-up points; linear), else by world coordinates."""
    values = image.with_data(np.asarray(image.data, np.float32))
    if transform is None:
        return baseline.with_data(resample_to_grid(values, baseline.shape[:3], baseline.affine,
                                                   order=1).data)
    return resample_through(values, baseline, transform)


def classify(baseline: np.ndarray, followup: np.ndarray, voxel_mm3: float,
             rules: Rules = Rules()) -> tuple[pd.DataFrame, np.ndarray]:
    """Per-lesion status of two masks on one grid (module rules): (table, status map)."""
    b_labels, nb = cc3d.connected_components(baseline > 0, connectivity=26, return_N=True)
    f_labels, nf = cc3d.connected_components(followup > 0, connectivity=26, return_N=True)
    b_sizes = np.bincount(b_labels.ravel(), minlength=nb + 1)
    f_sizes = np.bincount(f_labels.ravel(), minlength=nf + 1)
    both = (b_labels > 0) & (f_labels > 0)
    pairs = set(zip(f_labels[both].tolist(), b_labels[both].tolist(), strict=True))
    touched: dict[int, set[int]] = {}
    for f, b in pairs:
        touched.setdefault(f, set()).add(b)
    status = np.zeros(baseline.shape, np.uint8)
    rows = []
    for f in range(1, nf + 1):
        volume_f = f_sizes[f] * voxel_mm3
        linked = sorted(touched.get(f, ()))
        volume_b = float(sum(b_sizes[b] for b in linked)) * voxel_mm3
        if not linked:
            kind = "new" if f_sizes[f] >= rules.min_new_voxels else "below-size"
        elif volume_f >= (1 + rules.enlarge) * volume_b:
            kind = "enlarging"
        elif volume_f <= (1 - rules.shrink) * volume_b:
            kind = "shrinking"
        else:
            kind = "stable"
        status[f_labels == f] = STATUS_CODES[kind]
        rows.append({"timepoint": "followup", "lesion_id": f, "status": kind,
                     "baseline_lesions": ";".join(map(str, linked)),
                     "volume_baseline_mm3": volume_b, "volume_followup_mm3": volume_f,
                     **_centroid(f_labels == f)})
    linked_b = {b for _, b in pairs}
    for b in range(1, nb + 1):
        if b not in linked_b:
            status[(b_labels == b) & (status == 0)] = STATUS_CODES["resolved"]
            rows.append({"timepoint": "baseline", "lesion_id": b, "status": "resolved",
                         "baseline_lesions": str(b),
                         "volume_baseline_mm3": b_sizes[b] * voxel_mm3,
                         "volume_followup_mm3": 0.0, **_centroid(b_labels == b)})
    return pd.DataFrame(rows, columns=["timepoint", "lesion_id", "status", "baseline_lesions",
                                       "volume_baseline_mm3", "volume_followup_mm3",
                                       "centroid_i", "centroid_j", "centroid_k"]), status


def _centroid(mask: np.ndarray) -> dict:
    c = np.argwhere(mask).mean(axis=0)
    return {"centroid_i": float(c[0]), "centroid_j": float(c[1]), "centroid_k": float(c[2])}


def with_world_centroids(table: pd.DataFrame, affine: np.ndarray) -> pd.DataFrame:
    """The table's voxel centroids (baseline grid) as world RAS+ mm, ``centroid_x_mm`` …
    (the columns of ``msseg segment``'s lesion table, so the two join)."""
    voxels = table[["centroid_i", "centroid_j", "centroid_k"]].to_numpy(float)
    world = voxels @ affine[:3, :3].T + affine[:3, 3] if len(table) else np.zeros((0, 3))
    out = table.drop(columns=["centroid_i", "centroid_j", "centroid_k"])
    return out.assign(centroid_x_mm=world[:, 0], centroid_y_mm=world[:, 1],
                      centroid_z_mm=world[:, 2])


def change_mask(baseline: np.ndarray, followup: np.ndarray, table: pd.DataFrame) -> np.ndarray:
    """The voxels that changed with a lesion's status (what change ground truth marks), from
    :func:`classify`'s table of the same masks: 1 where a new or enlarging follow-up lesion
    holds a voxel the baseline does not (gained), 2 where a resolved baseline lesion, or one
    that shrank, held a voxel the follow-up does not (lost); 0 elsewhere, so the boundary
    jitter of stable lesions is not a change."""
    b_labels = cc3d.connected_components(baseline, connectivity=26)
    f_labels = cc3d.connected_components(followup, connectivity=26)
    follow_rows = table[table.timepoint == "followup"]
    gained = follow_rows[follow_rows.status.isin(["new", "enlarging"])].lesion_id.tolist()
    lost = table[(table.timepoint == "baseline") & (table.status == "resolved")].lesion_id
    lost = set(lost.tolist())
    for linked in follow_rows[follow_rows.status == "shrinking"].baseline_lesions:
        lost |= {int(b) for b in str(linked).split(";") if b}
    out = np.zeros(baseline.shape, np.uint8)
    out[np.isin(f_labels, gained) & ~baseline] = CHANGE_CODES["gained"]
    out[np.isin(b_labels, sorted(lost)) & ~followup] = CHANGE_CODES["lost"]
    return out


def world_overlap(a: Image, b: Image) -> float:
    """Intersection over union of two grids' world bounding boxes (0: disjoint fields of
    view; 1: the same box)."""
    boxes = []
    for image in (a, b):
        corners = np.array([[i, j, k] for i in (0, image.shape[0] - 1)
                            for j in (0, image.shape[1] - 1) for k in (0, image.shape[2] - 1)])
        world = corners @ image.affine[:3, :3].T + image.affine[:3, 3]
        boxes.append((world.min(axis=0), world.max(axis=0)))
    (lo_a, hi_a), (lo_b, hi_b) = boxes
    inter = np.prod(np.clip(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), 0, None))
    union = np.prod(hi_a - lo_a) + np.prod(hi_b - lo_b) - inter
    return float(inter / union) if union > 0 else 0.0


def compare(baseline: Image, followup: Image, baseline_image: Image | None = None,
            followup_image: Image | None = None, rules: Rules = Rules(),
            register: bool = True, threads: int = 0) -> Comparison:
    """Align (registration of the images, unless ``register`` is False; else the headers),
    label, classify, summarise; ``lesions`` has world centroids (mm)."""
    if (baseline_image is None) != (followup_image is None):
        raise MssegError("give both --baseline-image and --followup-image, or neither")
    transform = None
    if baseline_image is not None and register:
        for mask, image, name in ((baseline, baseline_image, "baseline"),
                                  (followup, followup_image, "follow-up")):
            if not same_grid(mask, image):
                raise MssegError(f"the {name} lesion mask is not on its image's grid")
        transform = register_rigid(baseline_image, followup_image, threads)
    moved = mask_on_baseline(followup, baseline, transform)
    table, status = classify(baseline.data > 0, moved.data > 0, baseline.voxel_volume_mm3,
                             rules)
    counts = table.status.value_counts()
    summary = {k: int(counts.get(k, 0)) for k in STATUS_CODES}
    summary["volume_baseline_mm3"] = float((baseline.data > 0).sum() * baseline.voxel_volume_mm3)
    summary["volume_followup_mm3"] = float((moved.data > 0).sum() * baseline.voxel_volume_mm3)
    change = change_mask(baseline.data > 0, moved.data > 0, table)
    summary["gained_mm3"] = float((change == 1).sum() * baseline.voxel_volume_mm3)
    summary["lost_mm3"] = float((change == 2).sum() * baseline.voxel_volume_mm3)
    return Comparison(with_world_centroids(table, baseline.affine), summary,
                      baseline.with_data(status), moved, transform, baseline.with_data(change))
