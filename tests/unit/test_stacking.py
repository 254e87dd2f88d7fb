"""Chunk stacking: order, physical spacing, padding, resampling, separation of chunks."""

from __future__ import annotations

import numpy as np
import pytest

from msseg.evaluation.engine import EvalOptions, evaluate_masks
from msseg.evaluation.stacking import split_chunk, stack_chunks
from msseg.image import Image
from msseg.preprocess.orient import reorient


def chunk(shape, spacing, fill_slices=(), value=True):
    data = np.zeros(shape, bool)
    for k in fill_slices:
        data[2:4, 2:4, k] = value
    return Image(data, np.diag([-spacing[0], spacing[1], spacing[2], 1.0]))


def test_split_chunk():
    assert split_chunk("sub-01_chunk-2_T2w") == ("sub-01_T2w", 2)
    assert split_chunk("sub-01_T2w") == ("sub-01_T2w", None)


def test_stack_order_spacing_padding_and_gap():
    c1 = chunk((6, 6, 3), (0.5, 0.5, 5.0), fill_slices=[2])   # cranial: mark top slice
    c2 = chunk((8, 7, 4), (0.5, 0.5, 5.0), fill_slices=[0])   # caudal: mark bottom slice
    stack = stack_chunks([c2, c1], [2, 1])
    assert stack.image.shape == (8, 7, 4 + 1 + 3)
    assert stack.image.spacing == pytest.approx((0.5, 0.5, 5.0))
    assert stack.image.orientation == "LAS"
    np.testing.assert_array_equal(stack.slice_chunk, [2, 2, 2, 2, 0, 1, 1, 1])
    z = np.flatnonzero(stack.image.data.any(axis=(0, 1)))
    np.testing.assert_array_equal(z, [0, 7])  # chunk 2's bottom at the bottom, chunk 1's top up
    assert not stack.image.data[:, :, 4].any()
    # chunk 1 (6x6) is centred in the 8x7 plane: its square moves by (1, 0)
    np.testing.assert_array_equal(np.argwhere(stack.image.data[:, :, 7])[0], [3, 2])


def test_stack_accepts_any_orientation():
    c1 = chunk((6, 6, 3), (0.5, 0.5, 5.0), fill_slices=[2])
    flipped = reorient(c1, "PSR")
    a = stack_chunks([c1, c1], [1, 2]).image.data
    b = stack_chunks([flipped, c1], [1, 2]).image.data
    np.testing.assert_array_equal(a, b)


def test_stack_resamples_chunks_on_other_in_plane_grid():
    c1 = chunk((8, 8, 2), (0.5, 0.5, 5.0), fill_slices=[0])
    c2 = chunk((4, 4, 2), (1.0, 1.0, 5.0), fill_slices=[0])
    stack = stack_chunks([c1, c2], [1, 2])
    assert stack.image.shape == (8, 8, 5)
    # chunk 2's 2x2 square of 1 mm voxels becomes 4x4 voxels of 0.5 mm
    assert stack.image.data[:, :, 0].sum() == 16


def test_lesion_across_chunk_border_is_not_merged():
    c1 = chunk((6, 6, 3), (0.5, 0.5, 5.0), fill_slices=[0])   # lesion at chunk 1's bottom
    c2 = chunk((6, 6, 3), (0.5, 0.5, 5.0), fill_slices=[2])   # and at chunk 2's top
    stack = stack_chunks([c1, c2], [1, 2])
    metrics, rows = evaluate_masks(stack.image.data, stack.image.data, stack.image.spacing,
                                   EvalOptions(connectivity=26), stack.slice_chunk)
    assert metrics["n_ref_lesions"] == 2
    assert sorted(r["chunk"] for r in rows if r["kind"] == "ref") == [1, 2]
    assert metrics["ref_volume_mm3"] == pytest.approx(2 * 4 * 0.5 * 0.5 * 5.0)
