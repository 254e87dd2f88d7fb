"""NIfTI reading and writing: the only module that touches nibabel's file API.

Writing is atomic (temporary file in the destination folder, then rename) so a killed run never
leaves half a file. Masks derived from an input are written with that input's header: same
qform/sform matrices and codes, same zooms and units; only the data type and scaling change.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from msseg.errors import MssegError
from msseg.image import Image

if TYPE_CHECKING:  # nibabel is imported where files are read or written (fast start-up)
    import nibabel as nib

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Header fields that define where voxels are: copied verbatim onto every derived mask.
GEOMETRY_FIELDS = ("quatern_b", "quatern_c", "quatern_d", "qoffset_x", "qoffset_y", "qoffset_z",
                   "srow_x", "srow_y", "srow_z", "pixdim", "qform_code", "sform_code",
                   "xyzt_units", "dim_info")


def is_nifti(path: str | os.PathLike) -> bool:
    return str(path).endswith(NIFTI_SUFFIXES)


def strip_nifti_suffix(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def load(path: str | os.PathLike, *, allow_nan: bool = False) -> Image:
    """Read a 3D NIfTI image. Raises :class:`MssegError` naming the file on any problem.

    Trailing singleton dimensions (``X×Y×Z×1``) are squeezed; real 4D data, non-finite values
    (unless ``allow_nan``) and unreadable files are refused.
    """
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise MssegError(f"{path}: no such file")
    if not is_nifti(path):
        raise MssegError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)")
    try:
        nii = nib.load(str(path))
        data = np.asanyarray(nii.dataobj)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise MssegError(f"{path}: cannot read NIfTI ({exc})") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise MssegError(f"{path}: expected a 3D image, got shape {tuple(data.shape)}")
    if not allow_nan and np.issubdtype(data.dtype, np.floating) and not np.isfinite(data).all():
        raise MssegError(f"{path}: contains NaN or infinite values")
    header = nii.header.copy()
    return Image(data, nii.affine, header)


def save(image: Image, path: str | os.PathLike, dtype: np.dtype | type | None = None) -> Path:
    """Write ``image`` atomically. With a header, its qform/sform and codes are kept exactly."""
    import nibabel as nib

    data = np.asarray(image.data)
    if dtype is not None:
        data = data.astype(dtype)
    if image.header is not None:
        header = image.header.copy()
        header.set_data_dtype(data.dtype)
        nii = nib.Nifti1Image(data, None, header=header)
        _restore_geometry(nii, image.header)
    else:
        nii = nib.Nifti1Image(data, image.affine)
        nii.header.set_data_dtype(data.dtype)
    nii.header.set_slope_inter(1.0, 0.0)
    return _atomic_write(nii, Path(path))


def save_like(data: np.ndarray, reference: Image, path: str | os.PathLike,
              dtype: np.dtype | type = np.uint8) -> Path:
    """Write ``data`` (same shape as ``reference``) with the reference's exact geometry."""
    return save(reference.with_data(np.asarray(data).astype(dtype)), path)


def _restore_geometry(nii: nib.Nifti1Image, source: nib.Nifti1Header) -> None:
    """Copy qform/sform with their codes and the zooms/units verbatim from ``source``."""
    for key in GEOMETRY_FIELDS:
        nii.header[key] = source[key]


def _atomic_write(nii: nib.Nifti1Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if str(path).endswith(".gz") else ".nii"
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        nii.to_filename(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def save_on_grid(data: np.ndarray, affine: np.ndarray, path: str | os.PathLike,
                 like: Image | None = None, dtype: np.dtype | type | None = None) -> Path:
    """Write an array on a new grid (stitched, straightened): qform and sform both set to the
    affine with the scanner code, units mm (and seconds), other fields from ``like``."""
    import nibabel as nib

    data = np.asarray(data if dtype is None else np.asarray(data).astype(dtype))
    header = like.header.copy() if like is not None and like.header is not None else None
    nii = nib.Nifti1Image(data, affine, header=header)
    nii.header.set_data_dtype(data.dtype)
    nii.header.set_qform(affine, code=1)
    nii.header.set_sform(affine, code=1)
    nii.header.set_xyzt_units("mm", "sec")
    nii.header.set_slope_inter(1.0, 0.0)
    return _atomic_write(nii, Path(path))


def save_displacement(field: np.ndarray, affine: np.ndarray, path: str | os.PathLike) -> Path:
    """An ITK / ANTs displacement field: 5D (X, Y, Z, 1, 3) float32, vector intent, vectors
    in mm in ITK's LPS frame (as SCT writes its warping fields)."""
    import nibabel as nib

    if field.ndim != 5 or field.shape[3:] != (1, 3):
        raise ValueError(f"displacement field must be (X, Y, Z, 1, 3), got {field.shape}")
    nii = nib.Nifti1Image(np.asarray(field, np.float32), affine)
    nii.header.set_intent("vector", (), name="displacement (LPS mm)")
    nii.header.set_qform(affine, code=1)
    nii.header.set_sform(affine, code=1)
    nii.header.set_xyzt_units("mm", "sec")
    return _atomic_write(nii, Path(path))


def load_displacement(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(field (X, Y, Z, 1, 3) float32, affine) of a displacement field file."""
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise MssegError(f"{path}: no such file")
    try:
        nii = nib.load(str(path))
        field = np.asarray(nii.dataobj, dtype=np.float32)
    except Exception as exc:  # nibabel raises many types for corrupt files
        raise MssegError(f"{path}: cannot read NIfTI ({exc})") from exc
    if field.ndim == 4 and field.shape[3] == 3:
        field = field[:, :, :, None, :]
    if field.ndim != 5 or field.shape[3:] != (1, 3):
        raise MssegError(f"{path}: not a displacement field (expected X×Y×Z×1×3, got "
                         f"{'×'.join(map(str, field.shape))})")
    if not np.isfinite(field).all():
        raise MssegError(f"{path}: displacement field contains NaN or infinite values")
    return field, nii.affine


def write_csv(table, path: str | os.PathLike) -> Path:
    """Write a pandas DataFrame to CSV atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".csv", dir=path.parent)
    os.close(fd)
    try:
        table.to_csv(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
