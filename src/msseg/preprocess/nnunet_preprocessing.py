"""nnU-Net v2's preprocessing of one image, and its inverse, as pure functions on arrays.

Design notes: docs/explanation/design-notes.md#mssegpreprocessnnunet_preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from msseg.errors import MssegError
from msseg.image import Image
from msseg.preprocess.orient import reorient

ANISO_THRESHOLD = 3.0
NORMALIZATIONS = ("ZScoreNormalization", "CTNormalization", "NoNormalization",
                  "RescaleTo01Normalization", "RGBTo01Normalization")
READERS = ("SimpleITKIO", "NibabelIO", "NibabelIOWithReorient")


@dataclass(frozen=True)
class NnunetPlan:
    """What msseg needs of one configuration of an nnU-Net ``plans.json`` (single channel)."""
    configuration: str
    spacing: tuple[float, ...]          # network spacing, transposed order; 2 values for 2D
    patch_size: tuple[int, ...]
    transpose_forward: tuple[int, int, int]
    normalization: str
    use_mask_for_norm: bool
    intensity: dict                     # foreground intensity properties of the channel
    data_order: int = 3
    data_order_z: int = 0
    probabilities_order: int = 1
    probabilities_order_z: int = 0
    force_separate_z: bool | None = None
    reader: str = "SimpleITKIO"
    orientation: str | None = None      # nibabel axis code to reorient to first (None: keep)

    @property
    def dims(self) -> int:
        return len(self.patch_size)

    @property
    def transpose_backward(self) -> tuple[int, int, int]:
        return tuple(int(np.argsort(self.transpose_forward)[i]) for i in range(3))


@dataclass(frozen=True)
class Grid:
    """A voxel grid: shape and the affine from its indices to world mm."""
    shape: tuple[int, ...]
    affine: np.ndarray


@dataclass(frozen=True)
class Prepared:
    """A preprocessed image and what is needed to bring the network's output back."""
    data: np.ndarray                   # (1, *network shape) float32, nnU-Net axis order
    grid: Grid                         # the network grid (world affine of its indices)
    oriented: Image                    # the input in the voxel order nnU-Net read it
    bbox: tuple[slice, slice, slice]   # non-zero crop, transposed axis order
    transposed_shape: tuple[int, ...]  # before the crop, transposed axis order
    cropped_spacing: tuple[float, ...]
    network_spacing: tuple[float, ...]


def sct_to_nibabel(code: str) -> str:
    """SCT names an axis by where it comes from (RPI), nibabel by where it goes (LAS)."""
    flip = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}
    code = code.upper()
    if len(code) != 3 or any(c not in flip for c in code) or len(
            {flip[c] for c in code} | {c for c in code}) != 6:
        raise MssegError(f"image_orientation {code!r}: not an orientation code such as RPI")
    return "".join(flip[c] for c in code)


def _permuted(grid: Grid, axes: tuple[int, ...]) -> Grid:
    """The grid of ``array.transpose(axes)``: new axis i is old axis axes[i]."""
    perm = np.zeros((4, 4))
    for new, old in enumerate(axes):
        perm[old, new] = 1
    perm[3, 3] = 1
    return Grid(tuple(grid.shape[a] for a in axes), grid.affine @ perm)


def _shifted(grid: Grid, box: tuple[slice, ...]) -> Grid:
    shift = np.eye(4)
    shift[:3, 3] = [b.start for b in box]
    return Grid(tuple(b.stop - b.start for b in box), grid.affine @ shift)


def _resized(grid: Grid, shape: tuple[int, ...]) -> Grid:
    """Grid of a corner-aligned resize: new voxel i sits at old (i + 0.5) · n_old / n_new − 0.5."""
    ratio = np.asarray(grid.shape, float) / np.asarray(shape, float)
    index_map = np.eye(4)
    index_map[:3, :3] = np.diag(ratio)
    index_map[:3, 3] = 0.5 * ratio - 0.5
    return Grid(tuple(int(s) for s in shape), grid.affine @ index_map)


def read_order(image: Image, plan: NnunetPlan) -> tuple[Image, np.ndarray, Grid, tuple]:
    """The image as nnU-Net's reader sees it: (oriented image, array in reversed axis order,
    its grid, its spacing)."""
    if plan.reader not in READERS:
        raise MssegError(f"image reader {plan.reader!r} is not supported "
                         f"(supported: {', '.join(READERS)})")
    code = "RAS" if plan.reader == "NibabelIOWithReorient" else plan.orientation
    oriented = reorient(image, code) if code else Image(image.data, image.affine)
    grid = _permuted(Grid(oriented.shape, oriented.affine), (2, 1, 0))
    return oriented, oriented.data.transpose(2, 1, 0), grid, tuple(oriented.spacing[::-1])


def nonzero_box(data: np.ndarray) -> tuple[slice, slice, slice]:
    """Bounding box of the non-zero voxels with holes filled (the whole array if none)."""
    mask = ndimage.binary_fill_holes(data != 0)
    if not mask.any():
        return tuple(slice(0, n) for n in data.shape)
    box = []
    for axis in range(data.ndim):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(data.ndim) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def normalize_scheme(data: np.ndarray, plan: NnunetPlan, inside: np.ndarray | None) -> np.ndarray:
    """The plan's normalisation scheme on a float32 array (in place where possible)."""
    scheme = plan.normalization
    if scheme == "ZScoreNormalization":
        if plan.use_mask_for_norm:
            values = data[inside]
            mean, std = values.mean(), values.std()
            data[inside] = (values - mean) / max(std, 1e-8)
            return data
        mean, std = data.mean(), data.std()
        data -= mean
        data /= max(std, 1e-8)
        return data
    if scheme == "CTNormalization":
        p = plan.intensity
        np.clip(data, p["percentile_00_5"], p["percentile_99_5"], out=data)
        data -= p["mean"]
        data /= max(p["std"], 1e-8)
        return data
    if scheme == "NoNormalization":
        return data
    if scheme == "RescaleTo01Normalization":
        data -= data.min()
        data /= np.clip(data.max(), 1e-8, None)
        return data
    if scheme == "RGBTo01Normalization":
        if data.min() < 0 or data.max() > 255:
            raise MssegError("RGBTo01Normalization expects values in [0, 255]")
        data /= 255.0
        return data
    raise MssegError(f"normalisation scheme {scheme!r} is not supported "
                     f"(supported: {', '.join(NORMALIZATIONS)})")


def separate_axis(old_spacing, new_spacing, force: bool | None) -> int | None:
    """nnU-Net's rule: resample a low-resolution axis separately when the spacing (current,
    else target) is anisotropic beyond 3×; None when resampling is joint."""
    def lowres(spacing):
        spacing = np.asarray(spacing, float)
        axes = np.flatnonzero(spacing.max() / spacing == 1)
        return int(axes[0]) if len(axes) == 1 else None

    if force is not None:
        return lowres(old_spacing) if force else None
    for spacing in (old_spacing, new_spacing):
        spacing = np.asarray(spacing, float)
        if spacing.max() / spacing.min() > ANISO_THRESHOLD:
            return lowres(spacing)
    return None


def new_shape(shape, old_spacing, new_spacing) -> tuple[int, ...]:
    return tuple(int(round(o / n * s)) for o, n, s in zip(old_spacing, new_spacing, shape,
                                                           strict=True))


def resample(data: np.ndarray, shape: tuple[int, ...], axis: int | None, order: int,
             order_z: int) -> np.ndarray:
    """Resize (C, X, Y, Z) float32 to ``shape`` as nnU-Net's ``resample_data_or_seg`` does
    (scikit-image's ``resize``: edge mode, no anti-aliasing, clipped to the input range),
    slice by slice along ``axis`` with ``order_z`` interpolation across slices."""
    from skimage.transform import resize

    shape = tuple(int(s) for s in shape)
    if tuple(data.shape[1:]) == shape:
        return data
    out = np.empty((data.shape[0], *shape), np.float32)
    options = {"mode": "edge", "anti_aliasing": False}
    for c in range(data.shape[0]):
        if axis is None:
            out[c] = resize(data[c], shape, order, **options)
            continue
        plane = tuple(s for a, s in enumerate(shape) if a != axis)
        n_old = data.shape[1 + axis]
        inplane = np.empty(tuple(n_old if a == axis else s for a, s in enumerate(shape)),
                           np.float32)
        for k in range(n_old):
            index = [slice(None)] * 3
            index[axis] = k
            inplane[tuple(index)] = resize(data[c][tuple(index)], plane, order, **options)
        out[c] = _along_axis(inplane, shape[axis], axis, order_z)
    return out


def _along_axis(volume: np.ndarray, n_new: int, axis: int, order: int) -> np.ndarray:
    """Corner-aligned interpolation along one axis (scipy, nearest mode at the ends: the same
    sampling as nnU-Net's ``map_coordinates`` call, without its full-size coordinate grid)."""
    n_old = volume.shape[axis]
    if n_old == n_new:
        return volume
    ratio = n_old / n_new
    matrix = np.ones(volume.ndim)
    matrix[axis] = ratio
    offset = np.zeros(volume.ndim)
    offset[axis] = 0.5 * ratio - 0.5
    shape = tuple(n_new if a == axis else n for a, n in enumerate(volume.shape))
    return ndimage.affine_transform(volume, matrix, offset, output_shape=shape, order=order,
                                    mode="nearest", output=np.float32)


def full_spacing(plan: NnunetPlan, cropped_spacing) -> tuple[float, ...]:
    """The network spacing for all three axes (2D plans keep the slice spacing, axis 0)."""
    if len(plan.spacing) < 3:
        return (cropped_spacing[0], *plan.spacing)
    return tuple(plan.spacing)


def preprocess(image: Image, plan: NnunetPlan) -> Prepared:
    oriented, array, grid, spacing = read_order(image, plan)
    axes = tuple(plan.transpose_forward)
    data = np.ascontiguousarray(array.transpose(axes), dtype=np.float32)
    grid = _permuted(grid, axes)
    spacing = tuple(spacing[a] for a in axes)
    transposed_shape = data.shape
    box = nonzero_box(data)
    data = data[box].copy()  # float32 copy of the crop: normalised in place
    grid = _shifted(grid, box)
    inside = ndimage.binary_fill_holes(data != 0) if plan.use_mask_for_norm else None
    data = normalize_scheme(data, plan, inside)
    target = full_spacing(plan, spacing)
    shape = new_shape(data.shape, spacing, target)
    axis = separate_axis(spacing, target, plan.force_separate_z)
    data = resample(data[None], shape, axis, plan.data_order, plan.data_order_z)
    return Prepared(data, _resized(grid, shape), oriented, box, transposed_shape, spacing,
                    target)


def logits_to_cropped(logits: np.ndarray, prepared: Prepared, plan: NnunetPlan,
                      half: bool = False) -> np.ndarray:
    """Network-grid logits (C, …) -> the cropped grid before resampling, float32 (``half``:
    rounded to float16 as nnU-Net stores them)."""
    shape = tuple(b.stop - b.start for b in prepared.bbox)
    axis = separate_axis(prepared.network_spacing, prepared.cropped_spacing,
                         plan.force_separate_z)
    out = resample(logits.astype(np.float32, copy=False), shape, axis,
                   plan.probabilities_order, plan.probabilities_order_z)
    return out.astype(np.float16).astype(np.float32) if half else out


def uncrop_to_input_order(probabilities: np.ndarray, prepared: Prepared, plan: NnunetPlan,
              background: np.ndarray) -> np.ndarray:
    """Cropped-grid probabilities (C, …) -> the input's voxel order (C, X, Y, Z): put back
    into the full transposed grid (``background`` per channel outside the crop), transposed
    back, axes reversed back, and reoriented back to the input's voxel order."""
    channels = probabilities.shape[0]
    full = np.empty((channels, *prepared.transposed_shape), np.float32)
    full[:] = np.asarray(background, np.float32).reshape(-1, 1, 1, 1)
    full[(slice(None), *prepared.bbox)] = probabilities
    back = (0, *(1 + a for a in plan.transpose_backward))
    return full.transpose(back).transpose(0, 3, 2, 1)  # undo the reader's axis reversal
