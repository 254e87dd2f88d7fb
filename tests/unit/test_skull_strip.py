"""Brain extraction (msseg.preprocess.skull_strip, BET through brainextractor) and the synthetic
head it is checked on (msseg.data.brain_synthesis.with_skull)."""

from __future__ import annotations

import numpy as np
import pytest

from msseg.data.brain_synthesis import HEAD_LAYERS, with_skull
from msseg.errors import MssegError
from msseg.image import Image


def _ellipsoid_brain(shape=(70, 84, 70), radii=(28, 35, 26)) -> np.ndarray:
    """A brain-sized ellipsoid (at 2 mm: 112 × 140 × 104 mm), brighter deep inside."""
    rng = np.random.default_rng(1)
    grid = np.indices(shape, dtype=float)
    centre = (np.asarray(shape) - 1) / 2
    r = sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, radii, strict=True))
    inside = r <= 1
    return np.where(inside, 100 + rng.normal(0, 5, shape) + 30 * (r < 0.3), 0).astype(np.float32)


def test_the_synthetic_head_wraps_the_brain_in_its_layers():
    flair = _ellipsoid_brain()
    head, brain, pad = with_skull(flair, (2.0, 2.0, 2.0), pad_mm=20.0, noise=0.0)
    assert pad == 10 and head.shape == tuple(n + 20 for n in flair.shape)
    np.testing.assert_array_equal(brain[10:-10, 10:-10, 10:-10], flair > 0)
    np.testing.assert_array_equal(head[brain], np.pad(flair, 10)[brain])
    level = float(np.median(flair[flair > 0]))
    centre = tuple(n // 2 for n in head.shape)
    edge = next(i for i in range(centre[0], head.shape[0]) if not brain[i, centre[1], centre[2]])
    # along +x from the brain's edge, 2 mm voxels: diploë (4–6 mm) at the third, scalp (7.5–13
    # mm) at the fifth (smoothed with σ = 0.7 voxel: within 25% of the layer's level)
    diploe, scalp = head[edge + 2, centre[1], centre[2]], head[edge + 4, centre[1], centre[2]]
    assert abs(diploe / level - HEAD_LAYERS[2][1]) < 0.25
    assert abs(scalp / level - HEAD_LAYERS[4][1]) < 0.25
    air = head[0, 0, :]
    assert (air > 0).all() and air.mean() < 0.05 * level    # a raw scan's air: never exactly 0
    assert float(np.mean(head == 0)) < 0.01


@pytest.mark.slow
def test_bet_strips_a_synthetic_head_on_a_reoriented_grid():
    """BET on a 2 mm head stored with permuted, flipped axes (about 15 s): the mask comes back
    on the scan's grid and overlaps the brain with Dice ≥ 0.93 (0.947 when written)."""
    pytest.importorskip("brainextractor")
    from msseg.preprocess.skull_strip import brain_mask

    head, brain, _ = with_skull(_ellipsoid_brain(), (2.0, 2.0, 2.0))
    affine = np.array([[0, 0, 2.0, -90], [-2.0, 0, 0, 100], [0, 2.0, 0, -80], [0, 0, 0, 1]])
    scan = Image(head, affine)
    mask = brain_mask(scan)
    assert mask.shape == scan.shape and mask.data.dtype == np.uint8
    np.testing.assert_array_equal(mask.affine, affine)
    found = mask.data > 0
    dice = 2 * (found & brain).sum() / (found.sum() + brain.sum())
    print(f"Dice {dice:.3f}")
    assert dice >= 0.93


def test_a_fractional_intensity_outside_zero_one_is_refused():
    from msseg.preprocess.skull_strip import brain_mask

    with pytest.raises(MssegError, match="must be in"):
        brain_mask(Image(np.ones((4, 4, 4), np.float32), np.eye(4)), frac=1.5)
