"""SCT's lesion preprocessing and CNN1 procedure as pure functions, on hand-made arrays."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from msseg.centerline.sct_cnn1 import centerline_from_cnn1, cnn1_input, sct_heatmap
from msseg.preprocess import sct


def test_crop_start_is_scts_window_rule():
    assert sct.crop_start(100.7, 48, 440) == 77          # int(c) - 24 + 1
    assert sct.crop_start(5.0, 48, 440) == 0             # clamped at the start
    assert sct.crop_start(430.2, 48, 440) == 392         # clamped at the end: dim - size
    assert sct.crop_start(20.0, 48, 30) == 0             # grid smaller than the crop


def test_grid_shape_and_sampling_rule():
    assert sct.grid_shape((320, 256, 19), (0.6875, 0.6875, 7.5), (0.5, 0.5, None)) == \
        (440, 352, 19)
    rng = np.random.default_rng(1)
    data = rng.random((7, 6, 3))
    factors = (7 / 10, 6 / 9, 1.0)
    out = sct.sample(data, factors, (10, 9, 3))
    grid = np.meshgrid(*[np.arange(n) * f for n, f in zip((10, 9, 3), factors, strict=True)],
                       indexing="ij")
    expected = ndimage.map_coordinates(data, grid, order=1, mode="nearest")
    assert np.allclose(out, expected, atol=1e-12)
    box = (slice(2, 5), slice(0, 9), slice(1, 2))
    assert np.allclose(sct.sample(data, factors, (10, 9, 3), box), expected[box], atol=1e-12)
    assert sct.sample(data.astype(np.float32), factors, (10, 9, 3)).dtype == np.float64
    # beyond the last voxel the edge value is kept (mode='nearest')
    assert np.allclose(sct.sample(data, (2.0, 1, 1), (7, 6, 3))[6], data[6])


def test_nyul_maps_percentiles_to_landmarks_with_exponential_tails():
    data = np.arange(1, 1001, dtype=np.float32).reshape(10, 10, 10)
    landmarks = sct.CONTRASTS["t2s"].landmarks
    out = sct.nyul(data, landmarks)
    knots = np.percentile(data, sct.PERCENTILES)
    inside = (data >= knots[0]) & (data <= knots[-1])
    assert np.allclose(out[inside], np.interp(data[inside], knots, landmarks), rtol=1e-6)
    below, above = data < knots[0], data > knots[-1]
    assert below.any() and above.any()
    assert (out[below] > 0).all() and (out[below] < landmarks[1]).all()   # toward L0 = 0
    assert (out[above] < landmarks[-1]).all()                            # toward L10 = 2611
    # the upper tail passes through (p90, L9) with the slope of the p80-p90 segment
    tail = sct._exp_tail(knots[-3:-1], np.asarray(landmarks[-3:-1]), landmarks[-1])
    assert np.isclose(tail(knots[-2]), landmarks[-2])
    slope = (landmarks[-2] - landmarks[-3]) / (knots[-2] - knots[-3])
    h = 1e-3
    assert np.isclose((tail(knots[-2] + h) - tail(knots[-2] - h)) / (2 * h), slope, rtol=1e-4)
    assert out.dtype == np.float32


def test_chunks_pad_skip_and_come_back():
    volume = np.zeros((48, 48, 100), np.float32)
    volume[:, :, 60:70] = 1.0        # only the second chunk (48:96) holds data
    batch, starts = sct.chunks(volume, 0.5, 2.0)
    assert starts == [48] and batch.shape == (1, 1, 48, 48, 48)
    assert np.isclose(batch[0, 0, 0, 0, 12], 0.25) and np.isclose(batch[0, 0, 0, 0, 0], -0.25)
    volume[:, :, 99] = 2.0           # now the last, zero-padded chunk (96:100) too
    batch, starts = sct.chunks(volume, 0.5, 2.0)
    assert starts == [48, 96]
    assert np.isclose(batch[1, 0, 0, 0, 10], -0.25)   # padding is (0 - mean) / std
    prob = np.full((2, 1, 48, 48, 48), 0.05, np.float32)
    prob[1, 0, :, :, 5] = 0.2        # beyond the volume's end (96 + 5): dropped
    prob[1, 0, :, :, 2] = 0.2
    seg = sct.unchunk(prob, starts, 100)
    assert seg.shape == (48, 48, 100) and seg.sum() == 48 * 48 and seg[:, :, 98].all()


def test_centres_of_mass_are_value_weighted():
    line = np.zeros((10, 10, 3))
    line[2, 4, 0] = 1.0
    line[3, 4, 0] = 3.0
    centres = sct.centres_of_mass(line)
    assert list(centres) == [0] and np.allclose(centres[0], (2.75, 4.0))


class Disc:
    """A fake CNN1: probability 0.9 where the (normalised) input is bright."""

    def __init__(self):
        self.calls = []

    def __call__(self, batch):
        self.calls.append(len(batch))
        return (batch > 1.0).astype(np.float32) * 0.9


def _cord(shape, slices, centre=(50, 40), radius=16):
    volume = np.zeros(shape, np.float32)
    x, y = np.ogrid[:shape[0], :shape[1]]
    disc = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius**2
    for z in slices:
        volume[:, :, z][disc] = 100.0
    # faint noise: the disc holds > 2% of the voxels, so p98 is the disc's value
    volume += np.random.default_rng(0).random(shape).astype(np.float32)
    return volume


def test_cnn1_input_pads_x_and_crops_y():
    data = cnn1_input(_cord((100, 170, 2), [0]))
    assert data.shape == (160, 160, 2)          # x padded to 2×80, y cropped to 2×80
    assert data.min() == 0 and np.isclose(data.max(), 255)


def test_heatmap_tracks_the_cord_and_crops_above_it():
    network = Disc()
    result = sct_heatmap(_cord((100, 90, 15), range(10)), network, 51.1417, 57.4408)
    assert result.found and result.z_max == 9
    assert result.probabilities[50, 40, :10].all() and not result.probabilities[:, :, 10:].any()
    # slice 0 is scanned (2 × 1 tiles: x padded to 160, y cropped to 80), then one block per
    # slice while the cord is tracked, then scans again
    assert network.calls[:3] == [2, 1, 1]
    line = centerline_from_cnn1(result, np.diag([0.5, 0.5, 5.0, 1.0]))
    assert line.detected[:9].all() and not line.detected[9:].any()
    assert np.allclose(line.voxels[:9], (50, 40), atol=1.0)


def test_heatmap_stops_after_more_than_ten_scans_in_the_brain():
    volume = _cord((100, 90, 20), range(12, 20))   # cord only from slice 12 upward
    result = sct_heatmap(volume, Disc(), 51.1417, 57.4408, brain=True)
    assert not result.found                         # stopped at slice 10
    result = sct_heatmap(volume, Disc(), 51.1417, 57.4408, brain=False)
    assert result.found and result.z_max is None    # the top slice holds cord
