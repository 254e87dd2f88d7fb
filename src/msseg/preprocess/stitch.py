"""Stitching of chunk acquisitions (cervical / thoracic / lumbar) into one image, no registration.

Design notes: docs/explanation/design-notes.md#mssegpreprocessstitch.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from msseg.errors import MssegError
from msseg.image import Image, spacing_from_affine

SLAB = 16    # output slices resampled at a time


@dataclass(frozen=True)
class Grid:
    shape: tuple[int, int, int]
    affine: np.ndarray


@dataclass
class StitchReport:
    kept: list[int]                       # indices of the chunks used
    dropped: list[int] = field(default_factory=list)   # inside another chunk
    gaps_mm: list[float] = field(default_factory=list)  # uncovered stretches between chunks
    rotation_from: int = 0                # the chunk whose axes the output grid follows


def corners(image: Image) -> np.ndarray:
    """(8, 3) world coordinates of the outer corners of the image's field of view."""
    ijk = np.array(list(itertools.product(*[(-0.5, n - 0.5) for n in image.shape[:3]])))
    return ijk @ image.affine[:3, :3].T + image.affine[:3, 3]


def _rotation(affine: np.ndarray) -> np.ndarray:
    return affine[:3, :3] / spacing_from_affine(affine)


def output_grid(images: list[Image], min_spacing: float | None = None) -> tuple[Grid, int]:
    """The smallest-volume box holding every corner, over the inputs' rotations; and the index
    of the input whose rotation it uses."""
    points = np.concatenate([corners(im) for im in images])
    best = None
    for i, image in enumerate(images):
        rotation = _rotation(image.affine)
        local = points @ rotation          # coordinates along the rotation's axes
        lo, hi = local.min(0), local.max(0)
        volume = float(np.prod(hi - lo))
        if best is None or volume < best[0] - 1e-6:
            best = (volume, i, rotation, lo, hi)
    _, index, rotation, lo, hi = best
    spacing = np.array([min(_spacing_along(im, rotation[:, a]) for im in images)
                        for a in range(3)])
    if min_spacing:
        spacing = np.maximum(spacing, min_spacing)
    lo = _snapped(lo, spacing, images[index], rotation)
    shape = tuple(int(np.ceil((h - low) / s - 1e-6)) for h, low, s in zip(hi, lo, spacing,
                                                                         strict=True))
    affine = np.eye(4)
    affine[:3, :3] = rotation * spacing
    affine[:3, 3] = rotation @ (lo + spacing / 2)
    return Grid(shape, affine), index


def _snapped(lo: np.ndarray, spacing: np.ndarray, reference: Image,
             rotation: np.ndarray) -> np.ndarray:
    """Move the box's low corner down (by less than a voxel) so that, along every axis where
    the output has the reference chunk's spacing, output voxel centres fall on the chunk's:
    that chunk (and any on its lattice) is then copied, not interpolated."""
    centre0 = rotation.T @ reference.affine[:3, 3]     # its voxel (0, 0, 0) in box coordinates
    ref_spacing = np.asarray(reference.spacing)
    lo = lo.copy()
    for a in range(3):
        if abs(ref_spacing[a] - spacing[a]) < 1e-6 * spacing[a]:
            edge0 = centre0[a] - spacing[a] / 2
            lo[a] = edge0 + np.floor((lo[a] - edge0) / spacing[a] + 1e-6) * spacing[a]
    return lo


def _spacing_along(image: Image, direction: np.ndarray) -> float:
    """The image's voxel size along its axis closest to ``direction``."""
    axis = int(np.argmax(np.abs(_rotation(image.affine).T @ direction)))
    return float(image.spacing[axis])


def contains(outer: Image, inner: Image, tolerance_mm: float = 0.5) -> bool:
    """Whether ``inner``'s field of view lies entirely inside ``outer``'s."""
    ijk = _to_voxels(outer, corners(inner))
    margin = tolerance_mm / np.asarray(outer.spacing)
    n = np.asarray(outer.shape[:3])
    return bool(np.all((ijk >= -0.5 - margin) & (ijk <= n - 0.5 + margin)))


def _to_voxels(image: Image, world: np.ndarray) -> np.ndarray:
    inverse = np.linalg.inv(image.affine)
    return world @ inverse[:3, :3].T + inverse[:3, 3]


def interior_faces(images: list[Image], i: int, sliver_voxels: float) -> list[tuple[int, int]]:
    """Faces (axis, 0 low / 1 high) of chunk ``i`` behind which another chunk continues for at
    least ``sliver_voxels`` of its own voxels: the faces the blending ramp runs from."""
    image = images[i]
    n = np.asarray(image.shape[:3], float)
    centre = (n - 1) / 2
    faces = []
    for axis, side in itertools.product(range(3), (0, 1)):
        for j, other in enumerate(images):
            if j == i:
                continue
            beyond = sliver_voxels * min(other.spacing) / image.spacing[axis]
            point = centre.copy()
            point[axis] = -0.5 - beyond if side == 0 else n[axis] - 0.5 + beyond
            world = image.affine[:3, :3] @ point + image.affine[:3, 3]
            ijk = _to_voxels(other, world[None])[0]
            if np.all((ijk >= -0.5) & (ijk <= np.asarray(other.shape[:3]) - 0.5)):
                faces.append((axis, side))
                break
    return faces


def check_chunks(images: list[Image], names: list[str], force: bool,
                 far_mm: float = 30.0) -> tuple[list[int], list[int]]:
    """(kept, dropped) chunk indices; refuse chunks that neither overlap nor lie near any
    other (different subjects?) unless ``force``."""
    dropped: list[int] = []
    for i in range(len(images)):   # of two identical fields of view, the first stays
        if any(j != i and j not in dropped and contains(images[j], images[i])
               and (j < i or not contains(images[i], images[j])) for j in range(len(images))):
            dropped.append(i)
    kept = [i for i in range(len(images)) if i not in dropped]
    if len(kept) < 2:
        return kept, dropped
    for i in kept:
        distance = min(_box_distance(images[i], images[j]) for j in kept if j != i)
        if distance > far_mm and not force:
            raise MssegError(f"{names[i]}: {distance:.0f} mm from every other chunk, no overlap "
                             "— chunks of different subjects? (--force stitches anyway)")
    return kept, dropped


def _box_distance(a: Image, b: Image) -> float:
    """Distance (mm) between two fields of view, measured in a's voxel frame (0: overlap)."""
    ijk = _to_voxels(a, corners(b))
    lo, hi = ijk.min(0), ijk.max(0)
    n = np.asarray(a.shape[:3])
    gap = np.maximum(np.maximum(-0.5 - hi, lo - (n - 0.5)), 0) * np.asarray(a.spacing)
    return float(np.linalg.norm(gap))


class _Chunk:
    """One chunk's resampling onto the output grid: coordinates, occupancy, ramp weights."""

    def __init__(self, image: Image, grid: Grid, faces: list[tuple[int, int]], order: int):
        self.image, self.faces, self.order = image, faces, order
        self.to_chunk = np.linalg.inv(image.affine) @ grid.affine   # output index -> chunk
        self.spacing = np.asarray(image.spacing, float)
        self.n = np.asarray(image.shape[:3], float)
        inverse = np.linalg.inv(grid.affine)
        reach = corners(image) @ inverse[:3, :3].T + inverse[:3, 3]
        self.lo = np.maximum(np.floor(reach.min(0)).astype(int), 0)
        self.hi = np.minimum(np.ceil(reach.max(0)).astype(int) + 1, grid.shape)
        self._filtered = None
        self._members: dict = {}
        shift = self.to_chunk[:3, 3]
        self.shift = (np.round(shift).astype(int) if np.allclose(self.to_chunk[:3, :3], np.eye(3),
                                                                atol=1e-6)
                      and np.allclose(shift, np.round(shift), atol=1e-4) else None)

    def membership(self, label: np.ndarray, key: str, value: int) -> np.ndarray:
        """The chunk's indicator of one label value (float32, cached)."""
        if (key, value) not in self._members:
            self._members[(key, value)] = (label == value).astype(np.float32)
        return self._members[(key, value)]

    def slab_box(self, k0: int, k1: int) -> tuple[slice, slice, slice] | None:
        lo2, hi2 = max(self.lo[2], k0), min(self.hi[2], k1)
        if hi2 <= lo2 or (self.hi[:2] <= self.lo[:2]).any():
            return None
        return (slice(self.lo[0], self.hi[0]), slice(self.lo[1], self.hi[1]),
                slice(lo2, hi2))

    def coordinates(self, box) -> np.ndarray:
        """(3, *box shape) continuous chunk voxel coordinates of the box's output voxels."""
        axes = [np.arange(b.start, b.stop, dtype=np.float32) for b in box]
        m, t = self.to_chunk[:3, :3].astype(np.float32), self.to_chunk[:3, 3].astype(np.float32)
        return sum(m[:, a, None, None, None] * axes[a].reshape([-1 if d == a else 1
                                                                 for d in range(3)])
                   for a in range(3)) + t[:, None, None, None]

    def weight(self, coords: np.ndarray) -> np.ndarray:
        """Occupancy × ramp: 0 outside the field of view, else the depth (mm) behind the
        nearest interior face (large without one)."""
        inside = np.all((coords >= -0.5) & (coords <= self.n[:, None, None, None] - 0.5), 0)
        depth = np.full(coords.shape[1:], 1e6, np.float32)
        for axis, side in self.faces:
            d = (coords[axis] + 0.5) if side == 0 else (self.n[axis] - 0.5 - coords[axis])
            np.minimum(depth, d * self.spacing[axis], out=depth)
        depth = np.maximum(depth, 1e-3)
        return np.where(inside, depth, 0).astype(np.float32)

    def sample(self, values: np.ndarray, coords: np.ndarray, order: int, box) -> np.ndarray:
        if self.shift is not None:   # the chunk lies on the output grid: copy, no interpolation
            index = [np.clip(np.arange(b.start, b.stop) + t, 0, n - 1)
                     for b, t, n in zip(box, self.shift, values.shape, strict=True)]
            return values[np.ix_(*index)].astype(np.float32, copy=False)
        return ndimage.map_coordinates(values, coords, order=order, mode="nearest",
                                       output=np.float32, prefilter=False)

    def image_values(self, coords: np.ndarray, box) -> np.ndarray:
        if self.shift is not None:
            return self.sample(self.image.data, coords, 0, box)
        if self.order > 1 and self._filtered is None:
            self._filtered = ndimage.spline_filter(self.image.data.astype(np.float32),
                                                   self.order, output=np.float32,
                                                   mode="nearest")
        source = self._filtered if self.order > 1 else self.image.data.astype(np.float32,
                                                                                copy=False)
        return self.sample(source, coords, self.order, box)


def stitch(images: list[Image], names: list[str] | None = None,
           labels: dict[str, list[Image]] | None = None, order: int = 3,
           min_spacing: float | None = None, sliver_voxels: float = 3.0,
           force: bool = False, progress: Callable | None = None
           ) -> tuple[Image, dict[str, Image], StitchReport]:
    """Stitch chunks (and, per name, their label maps on the same grids) into one image.

    Args:
        images: the chunks, any order.
        names: how messages name them.
        labels: per label name, one map per chunk on that chunk's grid.
        order: the interpolation order of the images (labels: nearest).
        min_spacing: the finest spacing allowed per axis (mm).
        sliver_voxels: chunks thinner than this on the stitched grid are dropped.
        force: stitch chunks that do not overlap or touch.
        progress: a callback for long work.

    Returns:
        The stitched image (float32), the stitched label maps (uint8 / uint16), and what was
        done (chunks dropped, gaps).
    """
    names = names or [f"chunk {i + 1}" for i in range(len(images))]
    labels = labels or {}
    for key, maps in labels.items():
        for image, label, name in zip(images, maps, names, strict=True):
            if label.shape[:3] != image.shape[:3] or not np.allclose(label.affine, image.affine,
                                                                     atol=1e-3):
                raise MssegError(f"{name}: its {key} label map is not on the image's grid")
    kept, dropped = check_chunks(images, names, force)
    chunks_in = [images[i] for i in kept]
    grid, rotation_from = output_grid(chunks_in, min_spacing)
    chunks = [_Chunk(image, grid, interior_faces(chunks_in, i, sliver_voxels), order)
              for i, image in enumerate(chunks_in)]
    values = {key: sorted(set().union(*(np.unique(maps[i].data).tolist() for i in kept)) - {0})
              for key, maps in labels.items()}
    out = np.zeros(grid.shape, np.float32)
    covered = np.zeros(grid.shape, bool)
    label_out = {key: np.zeros(grid.shape, np.uint16 if max(v, default=0) > 255 else np.uint8)
                 for key, v in values.items()}
    slabs = range(0, grid.shape[2], SLAB)
    for k0 in (progress(slabs) if progress else slabs):
        k1 = min(k0 + SLAB, grid.shape[2])
        _stitch_slab(chunks, [labels[key] for key in labels], kept, values, k0, k1, out,
                     covered, label_out)
    report = StitchReport(kept, dropped, _gaps(covered, grid), kept[rotation_from])
    stitched = Image(out, grid.affine)
    return stitched, {k: Image(v, grid.affine) for k, v in label_out.items()}, report


def _stitch_slab(chunks, label_sets, kept, values, k0, k1, out, covered_out,
                 label_out) -> None:
    shape = (out.shape[0], out.shape[1], k1 - k0)
    num = np.zeros(shape, np.float32)
    den = np.zeros(shape, np.float32)
    members = {key: np.zeros((len(v) + 1, *shape), np.float32) for key, v in values.items()}
    for c, chunk in enumerate(chunks):
        box = chunk.slab_box(k0, k1)
        if box is None:
            continue
        coords = chunk.coordinates(box)
        w = chunk.weight(coords)
        if not w.any():
            continue
        local = (box[0], box[1], slice(box[2].start - k0, box[2].stop - k0))
        num[local] += w * chunk.image_values(coords, box)
        den[local] += w
        for (key, v), maps in zip(values.items(), label_sets, strict=True):
            label = maps[kept[c]].data
            background = np.ones(w.shape, np.float32)
            for index, value in enumerate(v, start=1):
                p = chunk.sample(chunk.membership(label, key, value), coords, 1, box)
                members[key][(index, *local)] += w * p
                background -= p
            members[key][(0, *local)] += w * background
    covered = den > 0
    covered_out[:, :, k0:k1] = covered
    out[:, :, k0:k1] = np.where(covered, num / np.where(covered, den, 1), 0)
    for key, v in values.items():
        lookup = np.array([0, *v], label_out[key].dtype)
        winner = lookup[members[key].argmax(0)]
        label_out[key][:, :, k0:k1] = np.where(covered, winner, 0)


def _gaps(covered_voxels: np.ndarray, grid: Grid) -> list[float]:
    """Lengths (mm) of uncovered stretches between covered ones along the longest axis."""
    axis = int(np.argmax(np.asarray(grid.shape) * np.linalg.norm(grid.affine[:3, :3], axis=0)))
    covered = covered_voxels.any(axis=tuple(a for a in range(3) if a != axis))
    hits = np.flatnonzero(covered)
    if hits.size == 0:
        return []
    inner = ~covered[hits[0]:hits[-1] + 1]
    labels, n = ndimage.label(inner)
    spacing = float(np.linalg.norm(grid.affine[:3, axis]))
    return [float((labels == i).sum() * spacing) for i in range(1, n + 1)]
