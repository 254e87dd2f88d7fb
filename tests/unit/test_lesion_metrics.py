"""Lesion-wise metrics: hand-computed cases, empty rules, connectivity, a naive peer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from msseg.evaluation.lesion_matching import (
    label_lesions,
    lesion_scores,
    match_lesions,
    size_bin_index,
    size_bin_labels,
)


def line(*segments, n=60):
    mask = np.zeros((1, 1, n), bool)
    for start, stop in segments:
        mask[0, 0, start:stop] = True
    return mask


# reference lesions A (10 voxels), B (20), C (5); predicted p1 touches A by 1 voxel (1/3 of
# p1), p2 covers 4 voxels of B (4/5 of p2), p3 touches nothing.
REF = line((0, 10), (20, 40), (50, 55))
PRED = line((9, 12), (36, 41), (45, 47))


def scores(overlap, rule="published", pred=PRED, ref=REF):
    return lesion_scores(match_lesions(pred, ref, overlap=overlap, rule=rule))


@pytest.mark.parametrize("overlap,ppv,sens,f1", [
    (0.10, 2 / 3, 2 / 3, 2 / 3),   # A (10%) and B (20%) detected, C missed, p3 false positive
    (0.15, 1 / 2, 1 / 3, 2 / 5),   # A no longer reaches θ
    (0.25, 0.0, 0.0, 0.0),         # Gros et al.'s θ: nothing reaches 25%; TP + FP = 1
])
def test_published_rule_hand_computed(overlap, ppv, sens, f1):
    s = scores(overlap)
    assert (s["lesion_ppv"], s["lesion_sensitivity"], s["lesion_f1"]) == pytest.approx(
        (ppv, sens, f1))
    assert (s["n_ref_lesions"], s["n_pred_lesions"], s["lesion_count_abs_diff"]) == (3, 3, 0)
    assert s["lesion_fp"] == 1


@pytest.mark.parametrize("overlap,ppv,sens,f1", [
    (0.1, 2 / 3, 2 / 3, 2 / 3),
    (0.3, 2 / 3, 0.0, 0.0),        # p1 (1/3) and p2 (4/5) pass; no reference lesion does
    (0.5, 1 / 3, 0.0, 0.0),        # only p2 passes: a sliver touching a lesion no longer counts
])
def test_symmetric_rule_hand_computed(overlap, ppv, sens, f1):
    s = scores(overlap, "symmetric")
    assert (s["lesion_ppv"], s["lesion_sensitivity"], s["lesion_f1"]) == pytest.approx(
        (ppv, sens, f1))


def test_touching_prediction_below_threshold_published_is_the_forks_ppv_one():
    # the ivadomed fork: TP + FP = 0 on non-empty masks gives PPV 1.0 (its test-suite value)
    s = scores(0.1, pred=line((19, 21)), ref=line((20, 40)))  # 1 of 20 voxels: 5% < θ
    assert (s["lesion_ppv"], s["lesion_sensitivity"], s["lesion_f1"], s["lesion_fp"]) == (
        1.0, 0.0, 0.0, 0)


def test_touching_prediction_below_threshold_symmetric_is_ppv_zero():
    s = scores(0.1, "symmetric", pred=line((19, 21)), ref=line((20, 40)))  # p: 1/2 ≥ θ ...
    assert s["lesion_ppv"] == 1.0 and s["lesion_sensitivity"] == 0.0
    s = scores(0.8, "symmetric", pred=line((19, 21)), ref=line((20, 40)))  # ... 1/2 < 0.8
    assert (s["lesion_ppv"], s["lesion_sensitivity"], s["lesion_f1"]) == (0.0, 0.0, 0.0)


EMPTY = line()


@pytest.mark.parametrize("pred,ref,expected", [
    (EMPTY, EMPTY, (1.0, 1.0, 1.0)),
    (PRED, EMPTY, (0.0, 1.0, 0.0)),
    (EMPTY, REF, (0.0, 0.0, 0.0)),
])
def test_published_empty_rules(pred, ref, expected):
    s = scores(0.1, pred=pred, ref=ref)
    assert (s["lesion_ppv"], s["lesion_sensitivity"], s["lesion_f1"]) == expected


@pytest.mark.parametrize("pred,ref,ppv,sens,f1", [
    (EMPTY, EMPTY, np.nan, np.nan, 1.0),
    (PRED, EMPTY, 0.0, np.nan, 0.0),
    (EMPTY, REF, np.nan, 0.0, 0.0),
])
def test_symmetric_empty_rules(pred, ref, ppv, sens, f1):
    s = scores(0.1, "symmetric", pred=pred, ref=ref)
    np.testing.assert_equal((s["lesion_ppv"], s["lesion_sensitivity"], s["lesion_f1"]),
                            (ppv, sens, f1))


def test_connectivity_changes_counts_as_expected():
    edge = np.zeros((3, 3, 3), bool)
    edge[0, 0, 0] = edge[1, 1, 0] = True      # share an edge
    corner = np.zeros((3, 3, 3), bool)
    corner[0, 0, 0] = corner[1, 1, 1] = True  # share a corner
    assert [label_lesions(edge, c)[1] for c in (6, 18, 26)] == [2, 1, 1]
    assert [label_lesions(corner, c)[1] for c in (6, 18, 26)] == [2, 2, 1]
    with pytest.raises(ValueError):
        label_lesions(edge, 8)


def naive_published(pred, ref, overlap):
    """The ivadomed MetricsReloaded loop, re-expressed: scipy labels, one lesion at a time."""
    ref_lab, n_ref = ndimage.label(ref)
    pred_lab, n_pred = ndimage.label(pred)
    tp = sum((pred[ref_lab == i].sum() / (ref_lab == i).sum()) >= overlap
             for i in range(1, n_ref + 1))
    fp = sum(not ref[pred_lab == i].any() for i in range(1, n_pred + 1))
    return tp, fp, n_ref - tp, n_ref, n_pred


def test_matches_naive_peer_on_random_masks():
    rng = np.random.default_rng(7)
    for _ in range(20):
        ref = ndimage.binary_opening(rng.random((20, 20, 8)) > 0.75)
        pred = ndimage.binary_opening(rng.random((20, 20, 8)) > 0.75) | (
            ref & (rng.random(ref.shape) > 0.5))
        s = scores(0.1, pred=pred, ref=ref)
        tp, fp, fn, n_ref, n_pred = naive_published(pred, ref, 0.1)
        assert (s["lesion_tp"], s["lesion_fp"], s["lesion_fn"]) == (tp, fp, fn)
        assert (s["n_ref_lesions"], s["n_pred_lesions"]) == (n_ref, n_pred)


def test_size_bins():
    assert size_bin_labels((10, 50, 200)) == ["[0,10)", "[10,50)", "[50,200)", "[200,inf)"]
    np.testing.assert_array_equal(size_bin_index(np.array([5, 10, 49.9, 50, 300]), (10, 50, 200)),
                                  [0, 1, 1, 2, 3])
