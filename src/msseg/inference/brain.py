"""What a brain model (``plan.frame == "resize"``: ``brain_lesion_flair``) needs of its input,
checked before it runs: a skull-stripped brain (or a brain mask to strip it with), a field of
view that is a brain, slices no thicker than the model supports. msseg does not strip skulls
itself yet: a raw scan needs ``--brain-mask`` (e.g. from HD-BET, SynthStrip or FSL's BET)."""

from __future__ import annotations

import numpy as np

from msseg.errors import MssegError
from msseg.image import Image
from msseg.preprocess.resample import resample_to_grid

STRIPPED_ZEROS = 0.3       # a skull-stripped scan: at least this share of voxels exactly 0
BRAIN_SIDE_MM = (80.0, 320.0)   # a field of view holding a brain: every side in this range
MAX_SLICE_MM = 3.0         # thicker slices than the model supports (trained at 1 mm)


def brain_input(image: Image, name: str, brain_mask: Image | None = None,
                stripped: bool = False, force: bool = False) -> Image:
    """The image a brain model may segment: masked by ``brain_mask`` (resampled from its own
    grid, nearest neighbour), or checked to be skull-stripped (unless ``stripped`` says it
    is), with a brain-sized field of view and slices of at most 3 mm (unless ``force``).

    Raises:
        MssegError: in one line naming the image, saying what to give instead.
    """
    if not force:
        _check_geometry(image, name)
    if brain_mask is not None:
        inside = resample_to_grid(brain_mask.with_data(
            (np.asarray(brain_mask.data) > 0).astype(np.float32)), image.shape[:3],
            image.affine, order=0).data > 0.5
        if not inside.any():
            raise MssegError(f"{name}: the brain mask does not cover the image (no voxel of "
                             "it falls inside the field of view)")
        return image.with_data(np.where(inside, image.data, 0).astype(image.data.dtype))
    zeros = float(np.mean(np.asarray(image.data) == 0))
    if not stripped and zeros < STRIPPED_ZEROS:
        raise MssegError(f"{name}: does not look skull-stripped ({zeros:.0%} of voxels are 0; "
                         "the model needs a brain without skull): give --brain-mask MASK, or "
                         "--no-skull-strip if it is stripped")
    return image


def _check_geometry(image: Image, name: str) -> None:
    spacing = np.asarray(image.spacing, float)
    sides = spacing * np.asarray(image.shape[:3])
    low, high = BRAIN_SIDE_MM
    if sides.min() < low or sides.max() > high:
        raise MssegError(f"{name}: a field of view of {' × '.join(f'{s:.0f}' for s in sides)} "
                         f"mm is not a brain's (each side {low:.0f}–{high:.0f} mm); --force "
                         "to segment it anyway")
    if spacing.max() > MAX_SLICE_MM + 1e-3:          # 3 mm stored as 3.0000001: allowed
        raise MssegError(f"{name}: slices of {spacing.max():.1f} mm are thicker than the model "
                         f"supports ({MAX_SLICE_MM:.0f} mm; trained at 1 mm isotropic); --force "
                         "to segment it anyway")
