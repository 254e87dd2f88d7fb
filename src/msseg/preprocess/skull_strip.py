"""Brain extraction (skull stripping) of a raw head scan with BET's deformable surface (Smith
2002, Hum Brain Mapp 17:143–155, doi:10.1002/hbm.10062) as the ``brainextractor`` package
implements it (MIT; numba; no weights, nothing fetched). The scan is resampled to an isotropic
grid (its finest voxel side, at least 1 mm), the surface grown there, filled, and the mask
brought back to the scan's own grid (linear, ≥ 0.5). Deterministic. How it was chosen and
checked: docs/explanation/design-notes.md."""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
from scipy import ndimage

from msseg.errors import MssegError
from msseg.extras import require
from msseg.image import Image
from msseg.preprocess.resample import resample_to_grid, resample_to_spacing

FRAC = 0.2            # BET's -f for FLAIR (FSL's default 0.5 is for T1; lower keeps more)
VOXEL_MM = 1.0        # the finest isotropic grid the surface runs on
ITERATIONS = 1000     # BET's number of surface updates


def brain_mask(image: Image, frac: float = FRAC, voxel_mm: float | None = None,
               iterations: int = ITERATIONS) -> Image:
    """The brain mask (uint8 0/1) of a head scan, on the scan's own grid. ``voxel_mm``: the
    isotropic grid BET runs on (default: the scan's finest voxel side, at least 1 mm).

    Raises:
        MssegError: when brainextractor is not installed (one line naming msseg's extra), or
            when the surface encloses nothing.
    """
    if not 0 < frac < 1:
        raise MssegError(f"skull stripping: fractional intensity {frac} must be in (0, 1)")
    bet = require("brainextractor", "skull stripping")
    import nibabel as nib

    if voxel_mm is None:
        voxel_mm = max(VOXEL_MM, float(min(image.spacing)))
    data = np.nan_to_num(np.asarray(image.data, dtype=np.float32))
    iso = resample_to_spacing(image.with_data(data), (voxel_mm,) * 3, order=1)
    head = nib.Nifti1Image(np.asarray(iso.data, dtype=np.float32), np.diag([voxel_mm] * 3 + [1]))
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")           # numba's caching notes, a read-only package
        surface = bet.BrainExtractor(img=head, bt=frac)
        surface.run(iterations=iterations)
        inside = np.asarray(surface.compute_mask(), dtype=np.float32) > 0
    inside = ndimage.binary_fill_holes(inside)
    if not inside.any():
        raise MssegError("skull stripping: the brain surface encloses no voxel")
    back = resample_to_grid(iso.with_data(inside.astype(np.float32)), image.shape[:3],
                            image.affine, order=1)
    mask = ndimage.binary_fill_holes(np.asarray(back.data) >= 0.5)
    return Image(mask.astype(np.uint8), image.affine, image.header)
