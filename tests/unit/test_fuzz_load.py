"""Property-based fuzzing of loading and the checks every command runs right after it.

Random valid NIfTI files (shapes, data types, affines, scaling, NIfTI-1/2, .nii/.nii.gz) and
corrupted ones (header fields set to random values, bytes flipped, files cut short): the only
exception allowed out of :func:`msseg.io.load` + :func:`check_image` is :class:`MssegError`, and
what loads has finite float32-safe voxels and an invertible affine. Bounded in examples so that
the suite stays fast.
"""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from msseg import io
from msseg.errors import MssegError
from msseg.inference.options import check_image

DTYPES = ("uint8", "int16", "int32", "float32", "float64", "uint16", "int8")
FIELDS = ("dim", "pixdim", "datatype", "bitpix", "vox_offset", "scl_slope", "scl_inter",
          "qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d", "qoffset_x",
          "srow_x", "srow_y", "srow_z", "sizeof_hdr", "intent_code")
ODD_NUMBERS = st.sampled_from([0.0, -1.0, 1e-30, 1e38, -1e38, np.nan, np.inf, 2**31, 7, 0.5])


@st.composite
def nifti_bytes(draw) -> tuple[bytes, str]:
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=2, max_size=4)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    data = (rng.random(shape) * 100).astype(dtype)
    zooms = draw(st.lists(st.floats(0.1, 5), min_size=3, max_size=3))
    affine = np.diag([*zooms, 1.0])
    affine[:3, 3] = draw(st.lists(st.floats(-100, 100), min_size=3, max_size=3))
    klass = draw(st.sampled_from((nib.Nifti1Image, nib.Nifti2Image)))
    img = klass(data, affine)
    if draw(st.booleans()):
        img.header.set_slope_inter(draw(st.floats(0.01, 100)), draw(st.floats(-10, 10)))
    blob = bytearray(img.to_bytes())
    corruption = draw(st.sampled_from(("none", "field", "flip", "cut")))
    if corruption == "field" and klass is nib.Nifti1Image:
        header = nib.Nifti1Header.from_fileobj(_Reader(bytes(blob)), check=False)
        field = draw(st.sampled_from(FIELDS))
        value = draw(ODD_NUMBERS)
        with np.errstate(all="ignore"):
            _set_field(header, field, value, draw(st.integers(0, 7)))
        blob[:348] = header.binaryblock
    elif corruption == "flip":
        for _ in range(draw(st.integers(1, 8))):
            blob[draw(st.integers(0, len(blob) - 1))] = draw(st.integers(0, 255))
    elif corruption == "cut":
        blob = blob[: draw(st.integers(0, len(blob) - 1))]
    suffix = draw(st.sampled_from((".nii", ".nii.gz")))
    return (gzip.compress(bytes(blob)) if suffix == ".nii.gz" else bytes(blob)), suffix


def _set_field(header, field: str, value: float, index: int) -> None:
    try:
        if field in ("dim", "pixdim", "srow_x", "srow_y", "srow_z"):
            current = np.array(header[field], dtype=np.float64)
            current[index % current.size] = value
            header[field] = current
        else:
            header[field] = value
    except (ValueError, OverflowError, TypeError):
        pass


class _Reader:
    def __init__(self, blob: bytes):
        self.blob, self.pos = blob, 0

    def read(self, n: int = -1) -> bytes:
        out = self.blob[self.pos:] if n < 0 else self.blob[self.pos:self.pos + n]
        self.pos += len(out)
        return out

    def seek(self, pos: int, whence: int = 0) -> int:
        self.pos = pos
        return pos

    def tell(self) -> int:
        return self.pos


@settings(max_examples=600, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(nifti_bytes())
def test_only_msseg_errors_come_out_of_loading(case):
    blob, suffix = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"fuzz{suffix}"
        path.write_bytes(blob)
        try:
            image = io.load(path)
            check_image(image, str(path))
        except MssegError as exc:
            message = str(exc)
            assert "\n" not in message and str(path) in message
            return
        assert np.isfinite(image.affine).all() and abs(np.linalg.det(image.affine)) > 0
        assert np.isfinite(np.asarray(image.data, dtype=np.float32)).all()
