"""Post-processing of predicted masks (pure functions on arrays, parameters recorded by callers).

* lesions are kept only inside the cord mask dilated by ``cord_margin_mm`` (a lesion cannot lie
  outside the cord; the margin tolerates boundary errors of the cord mask);
* connected components (26-connectivity) smaller than ``min_lesion_volume_mm3`` are removed
  (None: :data:`MIN_LESION_VOLUME_MM3`; a model may carry its own, tuned on validation);
* the cord mask keeps its largest 3D component (optional) to drop spurious islands.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cc3d
import numpy as np
from scipy import ndimage

MIN_LESION_VOLUME_MM3 = 3.0
THRESHOLD = 0.5   # probability threshold of every map a model's plan does not tune


@dataclass(frozen=True)
class PostprocessConfig:
    cord_margin_mm: float = 2.0
    min_lesion_volume_mm3: float | None = None   # None: the model's own, else 3 mm³
    largest_cord_component: bool = True
    restrict_lesions_to_cord: bool = True   # False for models without a cord (brain)

    def to_dict(self) -> dict:
        return asdict(self)


def dilate_mm(mask: np.ndarray, spacing: Sequence[float], margin_mm: float) -> np.ndarray:
    """Dilation by an ellipsoid of radius ``margin_mm`` in physical space."""
    if margin_mm <= 0:
        return mask.astype(bool)
    radius = [int(np.floor(margin_mm / s)) for s in spacing]
    grids = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g * s / margin_mm) ** 2 for g, s in zip(grids, spacing, strict=True)) <= 1
    return ndimage.binary_dilation(mask, structure=ball)


def remove_small_components(mask: np.ndarray, spacing: Sequence[float],
                            min_volume_mm3: float) -> np.ndarray:
    labels, n = cc3d.connected_components(mask.astype(bool), connectivity=26, return_N=True)
    if n == 0 or min_volume_mm3 <= 0:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())[1:] * float(np.prod(spacing))
    keep = np.flatnonzero(sizes >= min_volume_mm3) + 1
    return np.isin(labels, keep)


def largest_component(mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return mask.astype(bool)
    return cc3d.largest_k(mask.astype(bool), k=1, connectivity=26) > 0


def postprocess(cord: np.ndarray, lesion: np.ndarray, spacing: Sequence[float],
                config: PostprocessConfig = PostprocessConfig()) -> tuple[np.ndarray, np.ndarray]:
    """Return (cord, lesion) boolean masks after the steps in the module docstring."""
    cord = largest_component(cord) if config.largest_cord_component else cord.astype(bool)
    lesion = lesion.astype(bool)
    if config.restrict_lesions_to_cord:
        lesion &= dilate_mm(cord, spacing, config.cord_margin_mm)
    minimum = config.min_lesion_volume_mm3
    lesion = remove_small_components(lesion, spacing,
                                     MIN_LESION_VOLUME_MM3 if minimum is None else minimum)
    return cord, lesion
