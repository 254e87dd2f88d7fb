"""The pieces that let `msseg segment` work on the cord's neighbourhood only, each against the
whole-image computation it replaces: preprocessing of a box of the network grid, the part of the
image the windows touching a box read, per-slice centerline candidates inside the heatmap's
box, the neighbourhood's slices on thick and thin grids, and ISA-L reading of .nii.gz files."""

from __future__ import annotations

from dataclasses import replace

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from msseg import io
from msseg.centerline.detect import CenterlineOptions, slice_candidates
from msseg.errors import MssegError
from msseg.image import Image, bounding_box
from msseg.inference.crop import cord_neighbourhood
from msseg.models.windows import WindowRunner, pad_box, windows, windows_box
from msseg.preprocess.pipeline import NetworkGrid, preprocess_image
from msseg.preprocess.plan import Plan


def _scan(shape=(37, 29, 11), spacing=(0.69, 0.71, 5.0), seed=0) -> Image:
    rng = np.random.default_rng(seed)
    data = ndimage.gaussian_filter(rng.gamma(2.0, 80.0, shape), 1.5).astype(np.float32)
    affine = np.diag([-spacing[0], spacing[1], spacing[2], 1.0])   # RAS -> LAS flips on read
    affine[:3, 3] = [10.0, -20.0, 5.0]
    return Image(data, affine)


PLANS = {
    "2d zscore": Plan(2, (0.5, 0.5), (16, 16), ((3, 3),), ((1, 1),), (8,)),
    "2d nyul": Plan(2, (0.4, 0.6), (16, 16), ((3, 3),), ((1, 1),), (8,), normalization="nyul",
                    intensity={"landmarks": list(np.linspace(0, 100, 11)), "mean": 40.0,
                               "std": 20.0}),
    "3d minmax": Plan(3, (0.5, 0.5, 2.0), (8, 8, 8), ((3, 3, 3),), ((1, 1, 1),), (8,),
                      normalization="minmax"),
}


@pytest.mark.parametrize("name", PLANS)
def test_network_grid_box_equals_the_whole_image_preprocessing_cropped(name):
    plan, image = PLANS[name], _scan()
    full = preprocess_image(image, plan)
    grid = NetworkGrid(image, plan)
    shape, affine = grid.shape, grid.affine
    assert shape == full.shape and np.allclose(affine, full.affine)
    rng = np.random.default_rng(1)
    boxes = [tuple(slice(0, n) for n in shape), (slice(0, 1), slice(shape[1] - 1, None),
                                                  slice(None))]
    for _ in range(20):
        lo = [int(rng.integers(0, n)) for n in shape]
        boxes.append(tuple(slice(a, int(rng.integers(a + 1, n + 1)))
                           for a, n in zip(lo, shape, strict=True)))
    for box in boxes:
        np.testing.assert_allclose(grid.box(box), full.data[box], atol=1e-5)


@pytest.mark.parametrize("shape,patch", [((5, 300, 220), (64, 64)), ((5, 50, 40), (64, 64)),
                                         ((90, 70, 40), (32, 32, 16))])
@pytest.mark.parametrize("central", [False, True])
def test_windows_box_is_what_the_windows_touching_the_box_read(shape, patch, central):
    """Every window (central: every window whose centre part, all but patch/8 of each side,
    meets the box) read, found by brute force over all windows."""
    rng = np.random.default_rng(2)
    lead = len(shape) - len(patch)
    trim = [0] * lead + [p // 8 if central else 0 for p in patch]
    for _ in range(10):
        lo = [int(rng.integers(0, n)) for n in shape]
        box = tuple(slice(a, int(rng.integers(a + 1, n + 1))) for a, n in
                    zip(lo, shape, strict=True))
        pads = pad_box(shape, patch)
        padded = tuple(n + a + b for n, (a, b) in zip(shape, pads, strict=True))
        shifted = tuple(slice(b.start + a, b.stop + a) for b, (a, _) in
                        zip(box, pads, strict=True))
        read = np.zeros(shape, bool)
        for w in windows(padded, patch, 0.5, None, "monai"):
            if not all(s.start + t < b.stop and s.stop - t > b.start
                       for s, b, t in zip(w, shifted, trim, strict=True)):
                continue
            src = tuple(slice(max(s.start - a, 0), min(s.stop - a, n))
                        for s, (a, _), n in zip(w, pads, shape, strict=True))
            read[src] = True
        expected = bounding_box(read) or tuple(slice(0, 0) for _ in shape)
        assert windows_box(shape, patch, box, central=central) == expected
        if not central:
            assert all(b.start >= e.start and b.stop <= e.stop for b, e in
                       zip(box[lead:], expected[lead:], strict=True))


def test_prediction_needs_only_the_windows_box():
    """Voxels outside windows_box may hold anything: the roi's values do not change."""
    rng = np.random.default_rng(3)
    data = rng.normal(size=(1, 60, 70, 9)).astype(np.float32)
    roi = np.zeros(data.shape[1:], bool)
    roi[20:31, 33:40, 2:6] = True

    def network(batch):   # any deterministic function of the window: a local mean
        return ndimage.uniform_filter(batch, size=(1, 1, 5, 5, 3))

    runner = WindowRunner([network], (24, 24, 8), rule="monai")
    whole, _ = runner.predict(data, 1, roi)
    box = windows_box(data.shape[1:], (24, 24, 8), bounding_box(roi))
    garbage = rng.normal(size=data.shape).astype(np.float32) * 100
    garbage[(slice(None), *box)] = data[(slice(None), *box)]
    part, _ = runner.predict(garbage, 1, roi)
    np.testing.assert_array_equal(part[:, roi], whole[:, roi])


def _reference_candidates(heat, spacing, options):
    """The whole-slice computation: EDT of the slice, deepest voxel of each component (of
    several as deep, the one nearest to their centre), mean probability."""
    labels, n = ndimage.label(heat > options.threshold)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0)
    depth = ndimage.distance_transform_edt(labels > 0, sampling=spacing)
    peaks, scores = [], []
    for i in range(1, n + 1):
        inside = np.where(labels == i, depth, -1.0)
        tied = np.argwhere(inside == inside.max())
        peaks.append(tied[np.argmin(((tied - tied.mean(axis=0)) ** 2).sum(axis=1))])
        mean = heat[labels == i].mean(dtype=np.float64)
        scores.append(mean * min(1.0, inside.max() / options.cord_radius_mm))
    order = np.argsort(-np.asarray(scores), kind="stable")[:options.max_candidates]
    return np.asarray(peaks, float)[order], np.asarray(scores)[order]


@pytest.mark.parametrize("seed", range(8))
def test_slice_candidates_in_the_heatmap_box_equal_the_whole_slice(seed):
    rng = np.random.default_rng(seed)
    heat = np.zeros((70, 60), np.float32)
    for _ in range(int(rng.integers(1, 6))):   # blobs anywhere, some at the slice's border
        x, y = rng.integers(0, 70), rng.integers(0, 60)
        r = rng.uniform(1, 8)
        xx, yy = np.ogrid[:70, :60]
        heat = np.maximum(heat, np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * r ** 2)))
    options = CenterlineOptions(threshold=0.4, cord_radius_mm=1.5, refine=False)
    got = slice_candidates(heat, (0.5, 0.7), options)
    want = _reference_candidates(heat, (0.5, 0.7), options)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    # refined: each candidate moves to its component's heat-weighted centre of mass, the
    # scores stay
    refined = slice_candidates(heat, (0.5, 0.7), replace(options, refine=True))
    np.testing.assert_allclose(refined[1], want[1], rtol=1e-12)
    labels, _ = ndimage.label(heat > options.threshold)
    for peak, centre in zip(want[0], refined[0], strict=True):
        own = labels == labels[tuple(peak.astype(int))]
        com = np.array(ndimage.center_of_mass(np.where(own, heat, 0)))
        expected = com if own[tuple(np.round(com).astype(int))] else peak
        np.testing.assert_allclose(centre, expected, atol=1e-9)


def test_refined_candidate_is_the_sub_voxel_centre_or_the_deepest_voxel():
    options = CenterlineOptions(threshold=0.5, cord_radius_mm=1.0)
    xx, yy = np.mgrid[:40, :40]
    blob = np.exp(-((xx - 20.3) ** 2 / 30 + (yy - 17.6) ** 2 / 12)).astype(np.float32)
    (centre,), _ = slice_candidates(blob, (0.5, 0.5), options)
    np.testing.assert_allclose(centre, [20.3, 17.6], atol=0.06)   # not the voxel 20, 18
    ring = ((np.hypot(xx - 20, yy - 20) > 6) & (np.hypot(xx - 20, yy - 20) < 10)
            & (yy > 14)).astype(np.float32)                       # a C: its centre is outside
    (peak,), _ = slice_candidates(ring, (0.5, 0.5), options)
    assert ring[tuple(peak.astype(int))] == 1


def test_neighbourhood_of_thick_slices_holds_each_slices_own_cord_positions():
    affine = np.diag([0.5, 0.5, 7.5, 1.0])
    # a centerline tilted 3 mm per slice in x; one point per slice
    world = np.array([[20 + 3 * k, 20, 7.5 * k] for k in range(6)], float)
    roi = cord_neighbourhood((100, 80, 6), affine, world, margin_mm=5.0)
    for k in range(6):
        xs = np.flatnonzero(roi[:, 40, k])
        centre = (20 + 3 * k) / 0.5
        # this slice's own position ± 5 mm, stretched by the tilt within half a slice only
        assert xs.min() >= centre - 10 - 3 / 0.5 / 2 - 1 and xs.max() <= centre + 10 + 4
        assert xs.min() <= centre - 10 and xs.max() >= centre + 10


def test_neighbourhood_skips_no_slice_of_a_fine_grid():
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    world = np.array([[10.0, 10.0, 0.0], [10.0, 10.0, 40.0]])   # along S-I, 0.5 mm steps
    roi = cord_neighbourhood((50, 50, 81), affine, world, margin_mm=2.0)
    assert roi.any(axis=(0, 1)).all()
    steep = np.array([[5.0, 10.0, 0.0], [20.0, 10.0, 10.0]])    # 56° from S-I
    roi = cord_neighbourhood((50, 50, 81), affine, steep, margin_mm=2.0)
    assert roi[:, :, :21].any(axis=(0, 1)).all() and not roi[:, :, 23:].any()


@pytest.mark.parametrize("dtype,slope,inter,klass", [
    (np.int16, 1.0, 0.0, nib.Nifti1Image), (">i2", 2.5, -10.0, nib.Nifti1Image),
    (np.uint8, 0.5, 3.0, nib.Nifti2Image), (np.float32, np.nan, np.nan, nib.Nifti1Image),
    (np.float64, 1.0, 0.0, nib.Nifti2Image)])
def test_gzip_voxels_equal_nibabels(tmp_path, dtype, slope, inter, klass):
    rng = np.random.default_rng(4)
    data = (rng.random((23, 19, 7)) * 100).astype(dtype)
    nii = klass(data, np.diag([0.7, 0.7, 3.0, 1.0]))
    nii.header.set_data_dtype(dtype)
    nii.header.set_slope_inter(slope, inter)
    path = tmp_path / "x.nii.gz"
    nib.save(nii, path)
    want = np.asanyarray(nib.load(path).dataobj)
    got = io.load(path).data
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


def test_truncated_gzip_voxels_are_refused(tmp_path):
    import gzip

    data = np.arange(40 * 40 * 40, dtype=np.float32).reshape(40, 40, 40)
    whole = tmp_path / "whole.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), whole)
    raw = whole.read_bytes()
    cut = tmp_path / "cut.nii.gz"
    cut.write_bytes(gzip.compress(raw[: len(raw) // 2]))
    with pytest.raises(MssegError, match="cut.nii.gz: truncated"):   # one line, the file named
        io.load(cut)


def test_resampling_onto_a_sub_box_of_the_own_grid_is_a_copy_of_those_voxels():
    from msseg.preprocess.resample import resample_to_grid

    image = _scan()
    shift = np.eye(4)
    shift[:3, 3] = [3, 5, 2]
    for order in (0, 1, 3):
        got = resample_to_grid(image, (20, 10, 6), image.affine @ shift, order=order).data
        np.testing.assert_array_equal(got, image.data[3:23, 5:15, 2:8])
    shift[:3, 3] = [30, 5, 2]   # partly outside: interpolated with the border rule
    from scipy import ndimage as ndi

    got = resample_to_grid(image, (20, 10, 6), image.affine @ shift, order=1).data
    want = ndi.affine_transform(image.data, np.eye(3), offset=[30, 5, 2], output_shape=(20, 10, 6),
                                order=1, mode="nearest")
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_piecewise_map_of_every_voxel_equals_the_masked_path():
    from msseg.preprocess import intensity

    data = _scan().data * 3 - 200
    q = np.percentile(data, [5, 50, 95])
    src, dst = [q[0], q[1], q[1], q[2]], [0.0, 40.0, 40.0, 100.0]   # a repeated knot too
    every = intensity.piecewise_map(data, src, dst, intensity.EVERYWHERE)
    masked = intensity.piecewise_map(data, src, dst, np.ones(data.shape, bool))
    np.testing.assert_array_equal(every, masked)
    assert every.min() < 0 and every.max() > 100   # the end segments extend


def test_network_grid_slice_boxes_equal_the_whole_slices_cropped():
    plan, image = PLANS["2d nyul"], _scan(shape=(41, 33, 9))
    source = NetworkGrid(image, plan)
    ks = np.array([0, 3, 4, 8])
    whole = source.slices(ks)
    assert whole.shape == (*source.shape[:2], 4)
    np.testing.assert_allclose(whole, preprocess_image(image, plan).data[:, :, ks], atol=1e-5)
    rng = np.random.default_rng(2)
    for _ in range(15):
        lo = [int(rng.integers(0, n)) for n in source.shape[:2]]
        box = tuple(slice(a, int(rng.integers(a + 1, n + 1)))
                    for a, n in zip(lo, source.shape[:2], strict=True))
        np.testing.assert_allclose(source.slices(ks, box), whole[box], atol=1e-5)


def test_stage_one_passes_split_the_heatmap_slices():
    options = CenterlineOptions(slice_step_mm=5.0, coarse_step_mm=20.0)
    coarse, fine = options.passes(30, 1.0)    # slices 0, 5, ..., 25, 29; every 4th whole
    np.testing.assert_array_equal(coarse, [0, 20, 29])
    np.testing.assert_array_equal(fine, [5, 10, 15, 25])
    coarse, fine = CenterlineOptions().passes(19, 7.5)   # thick: every slice, every 5th whole
    np.testing.assert_array_equal(coarse, [0, 5, 10, 15, 18])   # round(40 / 7.5) = 5
    assert len(fine) == 14
    coarse, fine = CenterlineOptions(coarse_step_mm=0).passes(19, 7.5)
    assert len(coarse) == 19 and len(fine) == 0
    coarse, fine = CenterlineOptions().passes(4, 30.0)    # slices farther apart than the step
    assert len(coarse) == 4 and len(fine) == 0


class _Threshold:
    """A stand-in for CNN1 that is pointwise (logit = value − offset of the normalised slice),
    so a window's heatmap is exactly the whole slice's cropped; records the pixels it saw."""

    def __init__(self, offset: float = 1.5):
        self.pixels, self.offset = 0, offset

    def __call__(self, batch):
        self.pixels += batch[0, 0].size
        return (batch - self.offset) * 8.0


def _tube_scan(n=80, z=120) -> Image:
    """A bright tube winding through noise, 0.5 mm in-plane, 1 mm slices."""
    rng = np.random.default_rng(3)
    data = rng.normal(100, 10, (n, n, z)).astype(np.float32)
    x, y = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    for k in range(z):
        cx, cy = n / 2 + 12 * np.sin(k / 30), n / 2 + 8 * np.cos(k / 25)
        data[:, :, k][((x - cx) / 6) ** 2 + ((y - cy) / 5) ** 2 <= 1] += 150
    return Image(data, np.diag([0.5, 0.5, 1.0, 1.0]))


@pytest.mark.parametrize("step", [0.0, 5.0])
def test_two_pass_stage_one_finds_the_one_pass_centerline_on_less_of_the_image(step):
    from msseg.inference.centerline import CenterlineFinder

    image = _tube_scan()
    runs = {}
    for coarse in (0.0, 20.0):
        options = CenterlineOptions(slice_step_mm=step, coarse_step_mm=coarse, window_mm=20.0)
        finder = CenterlineFinder("cnn", options=options)
        finder.network = _Threshold()
        runs[coarse] = finder.find(image), finder.network.pixels
    (one, seen_one), (two, seen_two) = runs[0.0], runs[20.0]
    np.testing.assert_array_equal(two.detected, one.detected)
    np.testing.assert_allclose(two.voxels, one.voxels, atol=1e-9)
    heat_slices = 120 if step == 0 else 25
    assert one.detected.sum() == heat_slices and seen_one == heat_slices * 80 * 80
    # 7 whole slices 20 mm apart, 20 mm windows (40²) on the others
    assert seen_two == 7 * 80 * 80 + (heat_slices - 7) * 40 * 40


def test_two_pass_stage_one_falls_back_to_whole_slices_without_a_cord():
    from msseg.inference.centerline import CenterlineFinder

    image = Image(np.random.default_rng(4).normal(100, 10, (40, 40, 60)).astype(np.float32),
                  np.diag([0.5, 0.5, 1.0, 1.0]))
    finder = CenterlineFinder("cnn", options=CenterlineOptions(coarse_step_mm=20.0))
    finder.network = _Threshold(offset=1e3)   # no cord anywhere
    line = finder.find(image)
    assert not line.found
    assert finder.network.pixels == 60 * 40 * 40   # every slice whole, once


def test_central_windows_cover_the_roi_and_leave_out_only_light_windows():
    """central=True (2D) runs the windows whose centre part (all but patch/8 of each side)
    meets the roi: fewer windows, every roi voxel still covered, and each window left out
    weighs at most e^-4.5 of its peak there, under 2% of the nearest window run along its
    axis (evenly spaced windows, away from the image's edge) — with windows that each answer
    a constant 0 or 1, the blend moves by at most 1 - 0.98² (hand bound)."""
    rng = np.random.default_rng(4)
    patch, shape = (32, 32), (1, 9, 100, 90)
    data = rng.normal(size=shape).astype(np.float32)
    roi = np.zeros(shape[1:], bool)
    roi[:, 41:55, 30:47] = True

    def network(batch):   # each window its own constant, the same whoever asks
        return np.stack([np.full((1, *patch), float(b.ravel()[0] > 0), np.float32)
                         for b in batch])

    runs = {}
    for central in (False, True):
        runner = WindowRunner([network], patch, rule="monai", central=central)
        counted = []
        runner.forward = (lambda f, c: lambda b: c.append(len(b)) or f(b))(runner.forward,
                                                                          counted)
        runs[central] = runner.predict(data, 1, roi), sum(counted)
    (whole, covered_all), n_all = runs[False]
    (part, covered), n_central = runs[True]
    # a slice: rows 41-54 meet the centre parts of 3 windows of 3, columns 30-46 of 2 of 3
    assert n_central == 9 * 3 * 2 and n_all == 9 * 3 * 3
    assert covered[roi].all() and covered_all[roi].all()
    moved = np.abs(part[0][roi] - whole[0][roi])
    assert 0 < moved.max() <= 1 - 0.98 ** 2
