"""What a brain model (``plan.frame == "resize"``: ``brain_lesion_flair``) needs of its input,
checked before it runs: a field of view that is a brain, slices no thicker than the model
supports, and a brain without its skull — the scan as given when it is skull-stripped, masked by
the user's brain mask, or stripped by msseg (BET's surface model:
:mod:`msseg.preprocess.skull_strip`)."""

from __future__ import annotations

import numpy as np

from msseg.errors import MssegError
from msseg.image import Image
from msseg.preprocess.resample import resample_to_grid

SKULL_STRIP = ("auto", "bet", "off")

STRIPPED_ZEROS = 0.3       # a skull-stripped scan: at least this share of voxels exactly 0
BRAIN_SIDE_MM = (80.0, 320.0)   # a field of view holding a brain: every side in this range
MAX_SLICE_MM = 3.0         # thicker slices than the model supports (trained at 1 mm)


def brain_input(image: Image, name: str, brain_mask: Image | None = None,
                skull_strip: str = "auto", force: bool = False,
                say=None) -> tuple[Image, Image]:
    """The image a brain model may segment, and the brain mask it was given: masked by
    ``brain_mask`` (resampled from its own grid, nearest neighbour); else, by ``skull_strip``,
    ``auto``: as given when it looks skull-stripped (≥ 30% of its voxels exactly 0), else
    stripped with BET; ``bet``: stripped with BET; ``off``: as given (the user says it is
    stripped; the mask is its non-zero voxels). A brain-sized field of view and slices of at
    most 3 mm are checked first (unless ``force``). ``say(line)`` reports skull stripping.

    Raises:
        MssegError: in one line naming the image, saying what to give instead.
    """
    if skull_strip not in SKULL_STRIP:
        raise MssegError(f"skull stripping {skull_strip!r}: one of {', '.join(SKULL_STRIP)}")
    if not force:
        _check_geometry(image, name)
    if brain_mask is not None:
        inside = resample_to_grid(brain_mask.with_data(
            (np.asarray(brain_mask.data) > 0).astype(np.float32)), image.shape[:3],
            image.affine, order=0).data > 0.5
        if not inside.any():
            raise MssegError(f"{name}: the brain mask does not cover the image (no voxel of "
                             "it falls inside the field of view)")
        return _masked(image, inside)
    zeros = float(np.mean(np.asarray(image.data) == 0))
    if skull_strip == "off" or (skull_strip == "auto" and zeros >= STRIPPED_ZEROS):
        return image, _as_mask(image, np.asarray(image.data) != 0)
    return _masked(image, _strip(image, name, zeros, say))


def _strip(image: Image, name: str, zeros: float, say) -> np.ndarray:
    import importlib.util

    from msseg.extras import hint
    from msseg.preprocess.skull_strip import brain_mask

    if importlib.util.find_spec("brainextractor") is None:
        raise MssegError(f"{name}: does not look skull-stripped ({zeros:.0%} of voxels are 0); "
                         f"{hint('brainextractor', 'skull stripping')}, or give --brain-mask "
                         "MASK, or --no-skull-strip if it is stripped")
    if say is not None:
        say("skull stripping (BET's surface model, about 20–30 s)")
    return np.asarray(brain_mask(image).data) > 0


def _masked(image: Image, inside: np.ndarray) -> tuple[Image, Image]:
    data = np.where(inside, image.data, 0).astype(image.data.dtype)
    return image.with_data(data), _as_mask(image, inside)


def _as_mask(image: Image, inside: np.ndarray) -> Image:
    return image.with_data(np.asarray(inside, dtype=np.uint8))


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


def segment_in_mni(segmenter, image: Image, name: str = "image", threads: int = 0,
                   say=None):
    """Segment a skull-stripped scan in the model's own space and bring the result back:
    FSL's MNI152 1 mm brain is registered to the scan (rigid, Mattes mutual information,
    reproducible: :func:`msseg.preprocess.registration.register`), the scan is resampled onto
    the template's grid through it (linear), segmented there, and its probability maps come
    back to the scan's grid through the inverse (linear), where they are thresholded,
    post-processed and measured as any segmentation (:func:`finish_probabilities`).

    Returns:
        The :class:`~msseg.inference.options.SegmentResult` on the scan's own grid and header.
    """
    import time

    from msseg.inference.finish import finish_probabilities
    from msseg.preprocess.registration import register, resample_through
    from msseg.preprocess.templates import mni_brain

    start = time.perf_counter()
    template = mni_brain("--model-space mni")
    if say is not None:
        say("registering the scan to MNI152, the model's space (rigid, about 10–30 s)")
    transform = register(template, image, "rigid", threads)   # MNI points -> scan points
    result = segmenter.segment(resample_through(image, template, transform), name)
    back = transform.GetInverse()
    probabilities = {key: np.clip(resample_through(p, image, back).data, 0.0, 1.0)
                     for key, p in result.probabilities.items()}
    return finish_probabilities(image, probabilities, segmenter.options, start,
                                plan=segmenter.plan)
