"""`Image`: a voxel array that carries its geometry.

Orientation and spacing are derived from the affine, never stored beside it. Orientation codes
follow nibabel: each letter names the direction in which the voxel index *increases* (``LAS``:
i runs to the Left, j to Anterior, k to Superior). Spinal Cord Toolbox names axes by where they
come *from*, so SCT's ``RPI`` is nibabel's ``LAS`` (see :data:`SCT_RPI`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import nibabel as nib

#: SCT's "RPI" orientation expressed as a nibabel axis code.
SCT_RPI = "LAS"


@dataclass(frozen=True, eq=False)
class Image:
    """A 3D array with its 4x4 voxel-to-world (RAS+ mm) affine and the NIfTI header it came with.

    Attributes:
        data: the voxels.
        affine: voxel indices to world (RAS+, mm).
        header: the NIfTI header it was read with, kept so that masks derived from it are
            written with its exact qform/sform, codes and zooms (:func:`msseg.io.save_like`);
            ``None`` for images built in memory.
    """

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis: the norms of the affine's columns."""
        return tuple(float(s) for s in spacing_from_affine(self.affine))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def orientation(self) -> str:
        """nibabel axis code such as ``'LAS'`` (SCT's ``'RPI'``)."""
        import nibabel as nib

        return "".join(nib.aff2axcodes(self.affine))

    def with_data(self, data: np.ndarray) -> Image:
        """Same geometry and header, new voxels (shape must match)."""
        if data.shape[:3] != self.data.shape[:3]:
            raise ValueError(f"shape {data.shape} does not match image shape {self.data.shape}")
        return Image(data, self.affine, self.header)

    def crop(self, box: tuple[slice, ...]) -> Image:
        """The sub-image ``data[box]`` (slices with non-negative starts, step 1) with its
        affine moved so that every voxel keeps its world position."""
        starts = [0 if b.start is None else int(b.start) for b in box[:3]]
        shift = np.eye(4)
        shift[:3, 3] = starts + [0] * (3 - len(starts))
        return Image(self.data[box], self.affine @ shift, None)

    def world_coordinates(self, indices: np.ndarray) -> np.ndarray:
        """World (RAS+ mm) coordinates of voxel indices given as an (N, 3) array."""
        idx = np.asarray(indices, dtype=np.float64).reshape(-1, 3)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]


def spacing_from_affine(affine: np.ndarray) -> np.ndarray:
    """Voxel sizes (mm) as the Euclidean norms of the affine's first three columns."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding ``mask`` grown by ``margin``; None when empty."""
    return union_bounding_box([mask], margin)


def union_bounding_box(masks: list[np.ndarray], margin: int = 0) -> tuple[slice, ...] | None:
    """Bounding box of the union of same-shape masks (any non-zero voxel), without forming
    the union; None when all are empty.

    Two passes over each mask whatever its dimension: a projection along the last axis
    (giving the other axes' extents from a small array) and one onto the last axis.
    """
    ndim = np.ndim(masks[0])
    lo = np.full(ndim, np.iinfo(np.int64).max)
    hi = np.full(ndim, -1)
    for mask in masks:
        hits = _axis_hits(np.asarray(mask))
        if hits[0].size == 0:
            continue
        lo = np.minimum(lo, [h[0] for h in hits])
        hi = np.maximum(hi, [h[-1] for h in hits])
    if hi[0] < 0:
        return None
    shape = np.shape(masks[0])
    return tuple(slice(max(int(lo[a]) - margin, 0), min(int(hi[a]) + 1 + margin, shape[a]))
                 for a in range(ndim))


def _axis_hits(mask: np.ndarray) -> list[np.ndarray]:
    """Indices along each axis where ``mask`` has a non-zero voxel."""
    if mask.ndim == 1:
        return [np.flatnonzero(mask)]
    return [*_axis_hits(mask.any(axis=-1)),
            np.flatnonzero(mask.any(axis=tuple(range(mask.ndim - 1))))]


def same_grid(a: Image, b: Image) -> bool:
    """Whether two images share a voxel grid: the same 3D shape and affine (to 1e-3)."""
    return a.shape[:3] == b.shape[:3] and bool(np.allclose(a.affine, b.affine, atol=1e-3))


def closest_axis(image: Image, world: int) -> int:
    """Index of the voxel axis closest to world axis ``world`` (0 R–L, 1 A–P, 2 S–I)."""
    return int(np.argmax(np.abs(image.affine[world, :3]) / np.asarray(image.spacing)))


def si_axis(image: Image) -> int:
    """Index of the voxel axis closest to superior-inferior."""
    return closest_axis(image, 2)
