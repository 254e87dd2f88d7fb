"""The checks a brain model makes of its input (msseg.inference.brain), on hand-made images."""

from __future__ import annotations

import numpy as np
import pytest

from msseg.errors import MssegError
from msseg.image import Image
from msseg.inference.brain import brain_input


def _brain(spacing: tuple[float, float, float], shape=(160, 180, 50)) -> Image:
    data = np.zeros(shape, np.float32)
    data[30:130, 30:150, 5:45] = 100.0                       # most voxels outside are 0
    return Image(data, np.diag([*spacing, 1.0]).astype(np.float32))


def test_three_millimetre_slices_pass_even_when_stored_inexactly():
    image = _brain((1.0, 1.0, np.float32(3.0) + np.float32(2e-7)))
    assert brain_input(image, "x") is image


@pytest.mark.parametrize("spacing, shape, message", [
    ((1.0, 1.0, 3.1), (160, 180, 50), "slices of 3.1 mm"),
    ((1.0, 1.0, 1.0), (160, 180, 50), "not a brain's"),          # 50 mm along S–I
])
def test_geometry_the_model_was_not_made_for_is_refused_unless_forced(spacing, shape, message):
    image = _brain(spacing, shape)
    with pytest.raises(MssegError, match=message):
        brain_input(image, "x")
    assert brain_input(image, "x", force=True) is image


def test_an_unstripped_scan_needs_a_mask_or_the_word_that_it_is_stripped():
    image = _brain((1.0, 1.0, 3.0))
    noisy = image.with_data(image.data + 5.0)                 # a scanner's background
    with pytest.raises(MssegError, match="does not look skull-stripped"):
        brain_input(noisy, "x")
    assert brain_input(noisy, "x", stripped=True) is noisy
    masked = brain_input(noisy, "x", brain_mask=image.with_data(image.data > 0))
    np.testing.assert_array_equal(masked.data, np.where(image.data > 0, noisy.data, 0))
