"""NIfTI reading and writing: the only module that touches nibabel's file API.

Writing is atomic (temporary file in the destination folder, then rename) so a killed run never
leaves half a file. Masks derived from an input are written with that input's header: same
qform/sform matrices and codes, same zooms and units; only the data type and scaling change.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from msseg.errors import MssegError
from msseg.image import Image

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
        nib.save(nii, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


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
