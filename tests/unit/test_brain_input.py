"""The checks a brain model makes of its input (msseg.inference.brain), on hand-made images."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from msseg.errors import MssegError
from msseg.image import Image
from msseg.inference.brain import brain_input
from msseg.preprocess import skull_strip


def _brain(spacing: tuple[float, float, float], shape=(160, 180, 50)) -> Image:
    data = np.zeros(shape, np.float32)
    data[30:130, 30:150, 5:45] = 100.0                       # most voxels outside are 0
    return Image(data, np.diag([*spacing, 1.0]).astype(np.float32))


def test_three_millimetre_slices_pass_even_when_stored_inexactly():
    image = _brain((1.0, 1.0, np.float32(3.0) + np.float32(2e-7)))
    out, mask = brain_input(image, "x")
    assert out is image
    np.testing.assert_array_equal(mask.data, image.data > 0)
    assert mask.data.dtype == np.uint8


@pytest.mark.parametrize("spacing, shape, message", [
    ((1.0, 1.0, 3.1), (160, 180, 50), "slices of 3.1 mm"),
    ((1.0, 1.0, 1.0), (160, 180, 50), "not a brain's"),          # 50 mm along S–I
])
def test_geometry_the_model_was_not_made_for_is_refused_unless_forced(spacing, shape, message):
    image = _brain(spacing, shape)
    with pytest.raises(MssegError, match=message):
        brain_input(image, "x")
    assert brain_input(image, "x", force=True)[0] is image


@pytest.fixture
def fake_bet(monkeypatch):
    """BET replaced by a box: the calls it gets are recorded."""
    calls = []

    def box(image):
        calls.append(image)
        inside = np.zeros(image.shape, np.uint8)
        inside[40:120, 40:140, 10:40] = 1
        return image.with_data(inside)

    monkeypatch.setattr(skull_strip, "brain_mask", box)
    return calls


def test_an_unstripped_scan_is_stripped_unless_a_mask_or_off_is_given(fake_bet):
    image = _brain((1.0, 1.0, 3.0))
    noisy = image.with_data(image.data + 5.0)                 # a scanner's background
    said = []
    out, mask = brain_input(noisy, "x", say=said.append)
    assert len(fake_bet) == 1 and said == ["skull stripping (BET's surface model, about "
                                           "20–30 s)"]
    np.testing.assert_array_equal(out.data, np.where(mask.data > 0, noisy.data, 0))
    assert int(mask.data.sum()) == 80 * 100 * 30
    assert brain_input(noisy, "x", skull_strip="off")[0] is noisy
    masked, given = brain_input(noisy, "x", brain_mask=image.with_data(image.data > 0))
    np.testing.assert_array_equal(masked.data, np.where(image.data > 0, noisy.data, 0))
    np.testing.assert_array_equal(given.data, image.data > 0)
    assert len(fake_bet) == 1                                 # neither called BET
    assert brain_input(image, "x")[0] is image                # looks stripped: as given
    assert len(fake_bet) == 1
    brain_input(image, "x", skull_strip="bet")                # bet: stripped all the same
    assert len(fake_bet) == 2
    with pytest.raises(MssegError, match="one of auto, bet, off"):
        brain_input(image, "x", skull_strip="yes")


def test_without_brainextractor_an_unstripped_scan_is_refused_in_one_line(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "brainextractor" else real(name, *a))
    image = _brain((1.0, 1.0, 3.0))
    with pytest.raises(MssegError) as error:
        brain_input(image.with_data(image.data + 5.0), "x")
    message = str(error.value)
    assert "does not look skull-stripped (0% of voxels are 0)" in message
    assert "pip install 'msseg[brain]'" in message and "--brain-mask" in message
    assert "\n" not in message
