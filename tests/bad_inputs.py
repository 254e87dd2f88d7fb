"""The bad-input catalogue: one file per kind of bad or odd input a user has fed msseg.

Each entry builds its file in a folder and states which commands must refuse it (``all``: every
command that reads an image; ``scan``: only those that segment or find a centerline, since an
empty or oblique mask is a valid input to ``evaluate``) and a word the one-line error must hold.
"""

from __future__ import annotations

import gzip
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

EYE = np.diag([0.5, 0.5, 5.0, 1.0])
SHAPE = (16, 16, 6)


def _data() -> np.ndarray:
    return np.random.default_rng(0).random(SHAPE).astype(np.float32)


def _save(img, path: Path) -> Path:
    nib.save(img, str(path))
    return path


def _set(path: Path, field: str, value, data=None, affine=EYE, codes=(1, 1)) -> Path:
    """A file whose raw header field ``field`` holds ``value`` (written without nibabel's
    fixing, which would undo it)."""
    img = nib.Nifti1Image(_data() if data is None else data, affine)
    img.header.set_qform(affine, code=codes[0])
    img.header.set_sform(affine, code=codes[1])
    raw = path.with_suffix("").with_suffix(".raw.nii")
    img.to_filename(str(raw))
    header = nib.Nifti1Header.from_fileobj(open(raw, "rb"), check=False)
    header[field] = value
    blob = bytearray(raw.read_bytes())
    blob[:348] = header.binaryblock
    raw.unlink()
    with gzip.open(path, "wb") as f:
        f.write(bytes(blob))
    return path


def zero_pixdim(p: Path) -> Path:
    return _set(p, "pixdim", [1, 0, 0, 0, 1, 1, 1, 1], codes=(1, 0))


def nan_sform(p: Path) -> Path:
    return _set(p, "srow_x", [np.nan, 0, 0, 0])


def singular_sform(p: Path) -> Path:
    return _set(p, "srow_y", [0, 0, 0, 0])


def nan_qform(p: Path) -> Path:
    return _set(p, "quatern_b", np.nan, codes=(1, 0))


def huge_header(p: Path) -> Path:
    return _set(p, "dim", [3, 2048, 2048, 800, 1, 1, 1, 1])


def zero_size(p: Path) -> Path:
    return _set(p, "dim", [3, 16, 0, 6, 1, 1, 1, 1])


def slope_overflow(p: Path) -> Path:
    data = (_data() * 30000).astype(np.int16)
    img = nib.Nifti1Image(data, EYE)
    img.header.set_data_dtype(np.int16)
    _save(img, p)
    return _set(p, "scl_slope", 1e38, data=data)


def complex_data(p: Path) -> Path:
    return _save(nib.Nifti1Image(_data().astype(np.complex64), EYE), p)


def rgb_data(p: Path) -> Path:
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    return _save(nib.Nifti1Image(rgb, EYE), p)


def truncated_gzip(p: Path) -> Path:
    _save(nib.Nifti1Image(_data(), EYE), p)
    blob = p.read_bytes()
    p.write_bytes(blob[: len(blob) // 2])
    return p


def truncated_nii(p: Path) -> Path:
    p = p.with_name(p.name.replace(".nii.gz", ".nii"))
    _save(nib.Nifti1Image(_data(), EYE), p)
    blob = p.read_bytes()
    p.write_bytes(blob[: 352 + 100])
    return p


def empty_file(p: Path) -> Path:
    p.write_bytes(b"")
    return p


def garbage(p: Path) -> Path:
    with gzip.open(p, "wb") as f:
        f.write(struct.pack("<i", 348) + np.random.default_rng(1).bytes(600))
    return p


def not_gzip(p: Path) -> Path:
    p.write_bytes(b"this is not gzip data at all" * 20)
    return p


def text_file(p: Path) -> Path:
    p = p.with_name("notes.txt")
    p.write_text("not an image")
    return p


def four_d(p: Path) -> Path:
    return _save(nib.Nifti1Image(np.stack([_data()] * 2, -1), EYE), p)


def nan_values(p: Path) -> Path:
    data = _data()
    data[1, 1, 1] = np.nan
    return _save(nib.Nifti1Image(data, EYE), p)


def single_slice(p: Path) -> Path:
    return _save(nib.Nifti1Image(_data()[:, :, :1], EYE), p)


def constant(p: Path) -> Path:
    return _save(nib.Nifti1Image(np.full(SHAPE, 7, np.float32), EYE), p)


def oblique(p: Path) -> Path:
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    affine = np.array([[0.5 * c, -0.5 * s, 0, 0], [0.5 * s, 0.5 * c, 0, 0], [0, 0, 5, 0],
                       [0, 0, 0, 1]])
    return _save(nib.Nifti1Image(_data(), affine), p)


def micro_voxels(p: Path) -> Path:
    return _save(nib.Nifti1Image(_data(), np.diag([1e-3, 1e-3, 1e-2, 1])), p)


def missing(p: Path) -> Path:
    return p.with_name("does_not_exist.nii.gz")


def broken_link(p: Path) -> Path:
    p.symlink_to(p.parent / ".git" / "annex" / "objects" / "MD5E-s1--0.nii.gz")
    return p


def a_folder(p: Path) -> Path:
    p = p.with_name("folder.nii.gz")
    p.mkdir()
    return p


@dataclass(frozen=True)
class Kind:
    name: str
    make: Callable[[Path], Path]
    words: str            # the error line must contain this (case-insensitive)
    scope: str = "all"    # "all" commands, or "scan": segment / centerline only


CATALOGUE = (
    Kind("zero pixdim", zero_pixdim, "voxel size"),
    Kind("NaN sform", nan_sform, "NaN"),
    Kind("singular sform", singular_sform, "singular"),
    Kind("NaN qform", nan_qform, "qform"),
    Kind("header claims 13 GB", huge_header, "claims"),
    Kind("zero-size dimension", zero_size, "zero-size"),
    Kind("scl_slope overflow", slope_overflow, "scl_slope"),
    Kind("complex", complex_data, "complex"),
    Kind("RGB", rgb_data, "RGB"),
    Kind("truncated .nii.gz", truncated_gzip, "truncated"),
    Kind("truncated .nii", truncated_nii, "truncated"),
    Kind("empty file", empty_file, "empty"),
    Kind("garbage header", garbage, "nifti"),
    Kind("not gzip", not_gzip, "nifti"),
    Kind("text file", text_file, "not a NIfTI"),
    Kind("4D", four_d, "3D"),
    Kind("NaN values", nan_values, "NaN"),
    Kind("single slice", single_slice, "single slice", "scan"),
    Kind("missing", missing, "no such file"),
    Kind("broken link", broken_link, "broken link"),
    Kind("folder", a_folder, "folder"),
    Kind("constant", constant, "empty", "scan"),
    Kind("oblique", oblique, "oblique", "scan"),
    Kind("1e-3 mm voxels", micro_voxels, "voxel size", "scan"),
)


def good_image(path: Path) -> Path:
    return _save(nib.Nifti1Image(_data(), EYE), path)


def good_mask(path: Path) -> Path:
    mask = np.zeros(SHAPE, np.uint8)
    mask[4:8, 4:8, 2:4] = 1
    return _save(nib.Nifti1Image(mask, EYE), path)
