"""NIfTI reading and writing: the only module that touches nibabel's file API.

Writing is atomic (temporary file in the destination folder, then rename) so a killed run never
leaves half a file. Masks derived from an input are written with that input's header: same
qform/sform matrices and codes, same zooms and units; only the data type and scaling change.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from msseg.errors import MssegError
from msseg.image import Image

if TYPE_CHECKING:  # nibabel is imported where files are read or written (fast start-up)
    import nibabel as nib

NIFTI_SUFFIXES = (".nii.gz", ".nii")
#: Largest image msseg reads (bytes of voxel data as the header declares them).
MAX_IMAGE_BYTES = 16 * 2**30
TMP_PREFIX = ".tmp-"
F32_MAX = float(np.finfo(np.float32).max)
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
    """Read a 3D NIfTI image, checking it before and after.

    Before any voxel is read, the raw header is checked (:func:`check_header`): real numeric
    data type, positive finite voxel sizes, finite invertible qform/sform, and a file that holds
    as many bytes as the header claims. The voxels are then checked for NaN or infinite values.

    Args:
        path: a ``.nii`` or ``.nii.gz`` file.
        allow_nan: accept NaN voxels (probability maps of other tools).

    Returns:
        The image with its affine and its header.

    Raises:
        MssegError: on any problem, in one line naming the file.
    """
    import nibabel as nib

    path = Path(path)
    _check_file(path)
    with _quiet_nibabel():
        try:
            nii = nib.load(str(path))
            data = _voxels(path, nii)
        except MssegError:
            raise
        except MemoryError as exc:
            raise MssegError(f"{path}: not enough memory to read the image") from exc
        except Exception as exc:  # nibabel raises many types for corrupt files
            raise MssegError(f"{path}: cannot read the voxel data, the file is truncated or "
                              f"damaged ({describe(exc)})") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise MssegError(f"{path}: expected a 3D image, got shape {tuple(data.shape)}")
    _check_values(path, data, allow_nan)
    _check_affine(path, nii.affine, "affine")
    return Image(data, nii.affine, nii.header.copy())


#: Bytes decompressed per read of a ``.nii.gz`` (a fixed buffer: no page of the output is
#: touched twice and no temporary grows with the image).
_GZIP_BLOCK = 1 << 22


def _voxels(path: Path, nii) -> np.ndarray:
    """The voxel array of a loaded image, as ``np.asanyarray(nii.dataobj)`` gives it (same
    values, dtype and scaling). ``.nii.gz`` files are decompressed by ISA-L (``isal``) straight
    into the output array, block by block: 1.6–2.6× faster than nibabel's reader on a 337 MB
    whole-spine file here (3.1–3.5 s -> 1.3–1.9 s)."""
    if not str(path).endswith(".gz"):
        return np.asanyarray(nii.dataobj)
    from isal import igzip
    from nibabel.volumeutils import apply_read_scaling

    header = nii.header
    raw = np.empty(header.get_data_shape(), header.get_data_dtype(), order="F")
    view = memoryview(raw.T).cast("B") if raw.size else memoryview(b"")
    with igzip.open(path, "rb") as f:
        f.seek(int(nii.dataobj.offset))
        done = 0
        while done < len(view):
            n = f.readinto(view[done:done + _GZIP_BLOCK])
            if not n:
                raise MssegError(f"{path}: the file is truncated ({done} of {len(view)} bytes "
                                 "of voxel data)")
            done += n
    return apply_read_scaling(raw, np.asanyarray(nii.dataobj.slope),
                              np.asanyarray(nii.dataobj.inter))


def load_header(path: str | os.PathLike):
    """The header of a NIfTI file, checked as :func:`load` checks it, without reading voxels."""
    import nibabel as nib

    path = Path(path)
    _check_file(path)
    with _quiet_nibabel():
        try:
            return nib.load(str(path)).header
        except Exception as exc:
            raise MssegError(f"{path}: not a valid NIfTI header ({describe(exc)})") from exc


def _check_file(path: Path) -> None:
    """An existing NIfTI file whose stored header passes :func:`check_header`."""
    check_exists(path)
    if path.is_dir():
        raise MssegError(f"{path}: is a folder, expected a NIfTI file")
    if not is_nifti(path):
        raise MssegError(f"{path}: not a NIfTI file (expected .nii or .nii.gz)")
    check_header(path, read_raw_header(path))


def find_nifti(folder: Path, broken_links: bool = False) -> list[Path]:
    """NIfTI files under ``folder``, sorted, never inside a hidden folder (``.git``,
    DataLad/git-annex objects, msseg's ``.msseg`` records); links whose target is absent only
    with ``broken_links`` (so that loading them can say so)."""
    return sorted(p for p in folder.rglob("*") if is_nifti(p)
                  and (p.is_file() or (broken_links and p.is_symlink() and not p.exists()))
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def check_exists(path: Path) -> None:
    """Refuse a missing path, saying so when it is a link whose target is absent."""
    if path.is_symlink() and not path.exists():
        raise MssegError(f"{path}: broken link (in a DataLad/git-annex dataset, `datalad get` "
                         "the file first)")
    if not path.exists():
        raise MssegError(f"{path}: no such file or folder")


def describe(exc: BaseException) -> str:
    """An exception in words: its message, or its type when the message is empty."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text or type(exc).__name__


@contextmanager
def _quiet_nibabel():
    """Silence nibabel's header-fixing log lines and warnings (msseg reports problems itself)."""
    logger = logging.getLogger("nibabel.global")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def read_raw_header(path: Path):
    """The header exactly as stored (nibabel's load silently 'fixes' zero voxel sizes)."""
    import nibabel as nib
    from nibabel.openers import ImageOpener

    try:
        with ImageOpener(str(path)) as f:
            head = f.read(4)
            if len(head) < 4:
                raise MssegError(f"{path}: empty or truncated file (no NIfTI header)")
            size_le, size_be = int.from_bytes(head, "little"), int.from_bytes(head, "big")
            klass = nib.Nifti2Header if 540 in (size_le, size_be) else nib.Nifti1Header
            if 348 not in (size_le, size_be) and klass is nib.Nifti1Header:
                raise MssegError(f"{path}: not a NIfTI file (header size {size_le}, "
                                 "expected 348 or 540)")
            f.seek(0)
            with _quiet_nibabel():
                return klass.from_fileobj(f, check=False)
    except MssegError:
        raise
    except Exception as exc:
        raise MssegError(f"{path}: not a valid NIfTI header, the file is damaged or not NIfTI "
                         f"({describe(exc)})") from exc


def check_header(path: Path, header) -> None:
    """Refuse headers that would make every number wrong or exhaust memory (see :func:`load`)."""
    try:
        dtype = header.get_data_dtype()
        shape = header.get_data_shape()
    except Exception as exc:
        raise MssegError(f"{path}: invalid NIfTI header ({describe(exc)})") from exc
    if dtype.kind == "c":
        raise MssegError(f"{path}: complex-valued voxels ({dtype}); msseg needs real "
                         "intensities (take the magnitude first)")
    if dtype.kind not in "iuf" or dtype.fields is not None:
        raise MssegError(f"{path}: voxel type {_dtype_name(dtype)} is not a real number "
                         "(RGB and other structured types are not images msseg can read)")
    if not shape or min(shape) < 1:
        raise MssegError(f"{path}: image has a zero-size dimension (shape {tuple(shape)})")
    pixdim = np.asarray(header["pixdim"][1:1 + min(len(shape), 3)], dtype=np.float64)
    if not np.isfinite(pixdim).all() or (pixdim == 0).any():
        raise MssegError(f"{path}: voxel size (pixdim) {_fmt(pixdim)} mm is zero or not a "
                         "number; the header does not say how large a voxel is")
    for name, code in (("qform", "qform_code"), ("sform", "sform_code")):
        if int(header[code]) > 0:
            try:
                with _quiet_nibabel(), np.errstate(all="ignore"):
                    matrix = header.get_qform() if name == "qform" else header.get_sform()
            except Exception as exc:  # nibabel: ValueError for an impossible quaternion
                raise MssegError(f"{path}: invalid {name} ({describe(exc)})") from exc
            _check_affine(path, matrix, name)
    offset = float(header["vox_offset"]) if "vox_offset" in header else 0.0
    if not np.isfinite(offset) or offset < 0:
        raise MssegError(f"{path}: invalid voxel data offset (vox_offset {offset:g})")
    _check_file_size(path, int(header.get_data_offset()) +
                     int(np.prod(shape, dtype=np.float64)) * dtype.itemsize)


def _dtype_name(dtype: np.dtype) -> str:
    return "RGB" if dtype.fields is not None and len(dtype.fields) == 3 else str(dtype)


def _fmt(values: np.ndarray) -> str:
    return "×".join(f"{v:g}" for v in values)


def _check_affine(path: Path, affine: np.ndarray, name: str) -> None:
    with np.errstate(all="ignore"):
        _check_matrix(path, np.asarray(affine, dtype=np.float64), name)


def _check_matrix(path: Path, matrix: np.ndarray, name: str) -> None:
    if not np.isfinite(matrix).all():
        raise MssegError(f"{path}: the {name} holds NaN or infinite values; the voxels have no "
                         "position in space")
    norms = np.linalg.norm(matrix[:3, :3], axis=0)
    if (norms == 0).any() or abs(np.linalg.det(matrix[:3, :3])) < 1e-6 * np.prod(norms):
        raise MssegError(f"{path}: the {name} is singular (voxel axes are not independent); "
                         "volumes and distances would be meaningless")


def _check_file_size(path: Path, needed: int) -> None:
    """The file (its decompressed stream for .gz) must hold ``needed`` bytes; checked without
    allocating (gzip: the stored length, else a streaming count)."""
    if needed > MAX_IMAGE_BYTES:
        raise MssegError(f"{path}: the header claims {needed / 2**30:.1f} GiB of voxels, more "
                         f"than msseg reads ({MAX_IMAGE_BYTES / 2**30:.0f} GiB)")
    if not str(path).endswith(".gz"):
        have = path.stat().st_size
    else:
        have = _gzip_length(path, needed)
    if have < needed:
        raise MssegError(f"{path}: truncated: the header claims {needed:,} bytes, the file holds "
                         f"{have:,}")


def _gzip_length(path: Path, needed: int) -> int:
    """Decompressed length of a gzip file, at least up to ``needed`` bytes. The stored length
    (ISIZE, modulo 2³²) answers at once when it is large enough; otherwise count by streaming."""
    import zlib

    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() >= 18:
            f.seek(-4, os.SEEK_END)
            if needed < 2**32 and int.from_bytes(f.read(4), "little") >= needed:
                return needed
        f.seek(0)
        have = 0
        decoder = zlib.decompressobj(wbits=31)
        try:
            while have < needed:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                have += len(decoder.decompress(chunk))
                while decoder.eof and decoder.unused_data:  # concatenated gzip members
                    rest = decoder.unused_data
                    decoder = zlib.decompressobj(wbits=31)
                    have += len(decoder.decompress(rest))
        except zlib.error as exc:
            raise MssegError(f"{path}: corrupt gzip stream ({describe(exc)})") from exc
    return have


def _check_values(path: Path, data: np.ndarray, allow_nan: bool) -> None:
    if data.dtype.kind != "f":
        return
    if not allow_nan and not np.isfinite(data).all():
        raise MssegError(f"{path}: contains NaN or infinite values (check scl_slope/scl_inter)")
    if data.size and data.dtype.itemsize > 4:
        finite = data if allow_nan is False else data[np.isfinite(data)]
        if finite.size and max(abs(float(finite.max())), abs(float(finite.min()))) > F32_MAX:
            raise MssegError(f"{path}: intensities reach {float(np.abs(finite).max()):.3g} after "
                             "scaling (scl_slope/scl_inter), beyond 32-bit floats")


def save(image: Image, path: str | os.PathLike, dtype: np.dtype | type | None = None) -> Path:
    """Write an image atomically (a temporary file, then a rename).

    With a header, its qform/sform and codes are kept exactly, as are its NIfTI version (1 or 2)
    and trailing singleton dimensions (``X×Y×Z×1`` stays 4D).

    Args:
        image: what to write.
        path: the file to write (``.nii`` or ``.nii.gz``).
        dtype: the on-disk data type (default: the array's).

    Returns:
        ``path``.
    """
    import nibabel as nib

    data = np.asarray(image.data)
    if dtype is not None:
        data = data.astype(dtype)
    if image.header is not None:
        header = image.header.copy()
        stored = tuple(header.get_data_shape())
        if len(stored) > data.ndim and stored[:data.ndim] == data.shape \
                and all(s == 1 for s in stored[data.ndim:]):
            data = data.reshape(stored)
        header.set_data_dtype(data.dtype)
        klass = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
        nii = klass(data, None, header=header)
        _restore_geometry(nii, image.header)
    else:
        nii = nib.Nifti1Image(data, image.affine)
        nii.header.set_data_dtype(data.dtype)
    nii.header.set_slope_inter(1.0, 0.0)
    return _atomic_write(nii, Path(path))


def save_like(data: np.ndarray, reference: Image, path: str | os.PathLike,
              dtype: np.dtype | type = np.uint8) -> Path:
    """Write an array with a reference image's exact geometry (a mask beside its scan).

    Args:
        data: an array of ``reference``'s shape.
        reference: the image whose header and affine the file gets.
        path: the file to write.
        dtype: the on-disk data type (default uint8, a mask).

    Returns:
        ``path``.
    """
    return save(reference.with_data(np.asarray(data).astype(dtype)), path)


def _restore_geometry(nii: nib.Nifti1Image, source: nib.Nifti1Header) -> None:
    """Copy qform/sform with their codes and the zooms/units verbatim from ``source``."""
    for key in GEOMETRY_FIELDS:
        nii.header[key] = source[key]


def temporary_path(path: Path) -> Path:
    """A unique temporary name beside ``path``: ``.tmp-<host>-<pid>-<random>`` plus its suffix,
    so that :func:`remove_stale_temporaries` can tell a dead writer's leftovers from a live
    one's. The file is created by whoever writes it, so it honours the umask (mkstemp's are
    0600)."""
    suffix = ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix
    return path.parent / f"{TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-" \
                         f"{os.urandom(4).hex()}{suffix}"


def replace_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` then rename ``tmp`` onto ``path``; nothing is left on failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_path(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files that killed msseg runs left in ``folder``: those of a process of
    this host that no longer exists (and legacy ones a day old). Returns what was removed."""
    host = socket.gethostname()
    removed = []
    for tmp in folder.glob(f"{TMP_PREFIX}*") if folder.is_dir() else ():
        parts = tmp.name[len(TMP_PREFIX):].rsplit("-", 2)
        if len(parts) == 3 and parts[1].isdigit():
            stale = parts[0] == host and not _process_alive(int(parts[1]))
        else:
            stale = _age_s(tmp) > 86400
        if stale:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age_s(path: Path) -> float:
    import time

    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _atomic_write(nii: nib.Nifti1Image, path: Path) -> Path:
    return replace_atomically(path, lambda tmp: nii.to_filename(str(tmp)))


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
    return replace_atomically(Path(path), lambda tmp: table.to_csv(tmp, index=False))


def write_csvs_together(tables: list[tuple[object, Path]]) -> None:
    """Write several tables all or none: every one to a temporary file first, then the renames
    (a failure while writing leaves none of them behind)."""
    written: list[tuple[Path, Path]] = []
    try:
        for table, path in tables:
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = temporary_path(path)
            written.append((tmp, path))
            table.to_csv(tmp, index=False)
        for tmp, path in written:
            os.replace(tmp, path)
    finally:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a text file (JSON records) atomically."""
    return replace_atomically(Path(path), lambda tmp: tmp.write_text(text))


def write_png(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Write a matplotlib figure as a PNG atomically, then close it."""
    import matplotlib.pyplot as plt

    try:
        return replace_atomically(Path(path), lambda tmp: fig.savefig(tmp, dpi=dpi,
                                                                      format="png"))
    finally:
        plt.close(fig)
