"""The centerline optimiser: exact optimum (brute force) and robustness on synthetic heatmaps."""

import itertools

import numpy as np
import pytest

from msseg.centerline.detect import (
    CenterlineOptions,
    centerline_from_heatmap,
    centerline_mask,
    slice_candidates,
)
from msseg.centerline.optimize import PathCost, optimal_path, path_cost
from msseg.image import Image


def brute_force(positions, scores, z, cost):
    options = [range(-1, len(p)) for p in positions]
    return min(path_cost(c, positions, scores, z, cost) for c in itertools.product(*options))


@pytest.mark.parametrize("seed", range(12))
def test_dynamic_programming_is_exact_on_small_cases(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 7))
    positions = [rng.uniform(0, 20, (int(rng.integers(0, 3)), 2)) for _ in range(n)]
    scores = [rng.uniform(0, 1, len(p)) for p in positions]
    z = np.cumsum(rng.uniform(0.5, 3, n))
    cost = PathCost(smoothness=float(rng.uniform(0.01, 0.5)), max_gap_mm=float(rng.uniform(2, 6)),
                    free_slope=float(rng.uniform(0, 2)))
    choice = optimal_path(positions, scores, z, cost)
    assert path_cost(choice, positions, scores, z, cost) == pytest.approx(
        brute_force(positions, scores, z, cost), abs=1e-9)


def test_corrupted_slice_is_skipped_and_dropped_slices_bridged():
    z = np.arange(8.0)
    positions = [np.array([[10.0, 10.0]]) for _ in z]
    positions[3] = np.array([[40.0, 10.0]])         # a false detection far away
    positions[5] = np.zeros((0, 2))                 # CNN1 found nothing here
    scores = [np.ones(len(p)) for p in positions]
    choice = optimal_path(positions, scores, z, PathCost(smoothness=1.0))
    assert choice == [0, 0, 0, -1, 0, -1, 0, 0]
    # a weak but plausible second candidate on the corrupted slice is preferred
    positions[3] = np.array([[40.0, 10.0], [10.5, 10.0]])  # 0.5 mm drift: free
    scores[3] = np.array([1.0, 0.6])
    assert optimal_path(positions, scores, z, PathCost(smoothness=1.0))[3] == 1


def test_gap_limit_and_empty_path():
    positions = [np.array([[0.0, 0.0]]), np.zeros((0, 2)), np.array([[0.0, 0.0]])]
    scores = [np.array([0.5]), np.zeros(0), np.array([0.5])]
    cost = PathCost(max_gap_mm=1.5)
    assert path_cost([0, -1, 0], positions, scores, [0, 1, 2], cost) == float("inf")
    assert sum(c >= 0 for c in optimal_path(positions, scores, [0, 1, 2], cost)) == 1
    assert optimal_path([np.zeros((0, 2))] * 3, [np.zeros(0)] * 3, [0, 1, 2]) == [-1] * 3
    with pytest.raises(ValueError):
        optimal_path(positions, scores, [0, 0, 1])


def _tube_heatmap(nz=40, shape=(60, 60), radius=4, dropped=(), corrupted=()):
    """A cord-like heatmap: a disc whose centre drifts smoothly; some slices empty, some with
    only a distractor."""
    heat = np.zeros((*shape, nz), np.float32)
    xx, yy = np.mgrid[:shape[0], :shape[1]]
    truth = np.column_stack([30 + 6 * np.sin(np.arange(nz) / 10), 25 + 0.2 * np.arange(nz)])
    for k in range(nz):
        if k in dropped:
            continue
        cx, cy = (10, 50) if k in corrupted else truth[k]
        heat[:, :, k] = ((xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2) * 0.9
    return heat, truth


def test_centerline_survives_dropped_and_corrupted_slices():
    heat, truth = _tube_heatmap(dropped=(5, 6, 7, 20), corrupted=(12, 13, 30))
    grid = Image(heat, np.diag([0.5, 0.5, 1.0, 1.0]))
    line = centerline_from_heatmap(heat, grid, CenterlineOptions(smoothing_mm=0))
    assert not line.detected[[5, 6, 7, 20, 12, 13, 30]].any()
    assert line.detected.sum() == 40 - 7
    error_mm = np.abs(line.voxels - truth).max() * 0.5
    assert error_mm < 1.0   # interpolated across the gaps, never pulled to the distractor
    # without the continuity term, the distractors would be kept
    free = centerline_from_heatmap(heat, grid, CenterlineOptions(
        smoothing_mm=0, cost=PathCost(smoothness=0.0)))
    assert free.detected[[12, 13, 30]].all()


def test_candidates_are_deepest_points_scored_by_size():
    heat = np.zeros((30, 30), np.float32)
    heat[5:14, 5:14] = 1.0          # a 9x9 square: deepest point at its centre
    heat[20:22, 20:22] = 1.0        # a small blob: shallow, lower score
    pos, score = slice_candidates(heat, (1.0, 1.0), CenterlineOptions(cord_radius_mm=4))
    np.testing.assert_array_equal(pos[0], [9, 9])
    assert score[0] == pytest.approx(1.0) and score[1] == pytest.approx(0.25)


def test_world_points_and_one_voxel_per_slice_mask():
    heat, _ = _tube_heatmap(nz=10)
    affine = np.array([[-0.5, 0, 0, 20], [0, 0.5, 0, -10], [0, 0, 2.0, 5], [0, 0, 0, 1]])
    grid = Image(heat, affine)
    line = centerline_from_heatmap(heat, grid)
    world = line.world()
    np.testing.assert_allclose(world[:, 2], 5 + 2.0 * np.arange(10))
    np.testing.assert_allclose(world[:, 0], 20 - 0.5 * line.voxels[:, 0])
    mask = centerline_mask(line, grid)
    assert mask.sum() == 10 and (mask.sum(axis=(0, 1)) == 1).all()


def test_heatmap_slice_step_keeps_both_ends_and_is_bridged():
    options = CenterlineOptions(slice_step_mm=3.0)
    np.testing.assert_array_equal(options.slices(10, 1.0), [0, 3, 6, 9])
    np.testing.assert_array_equal(options.slices(11, 1.0), [0, 3, 6, 9, 10])
    np.testing.assert_array_equal(CenterlineOptions().slices(4, 7.5), [0, 1, 2, 3])
    heat, truth = _tube_heatmap(nz=30)
    keep = np.zeros(30, bool)
    keep[options.slices(30, 1.0)] = True
    heat[:, :, ~keep] = 0
    line = centerline_from_heatmap(heat, Image(heat, np.diag([0.5, 0.5, 1.0, 1.0])),
                                   CenterlineOptions(smoothing_mm=0))
    np.testing.assert_array_equal(line.detected, keep)
    assert np.abs(line.voxels - truth).max() < 1.0   # linear bridges of a smooth curve


def test_oblique_cord_sampled_sparsely_is_kept():
    """A cord drifting 0.6 mm per mm along S–I, heatmap every 5 mm: every sample is chosen
    (a pure displacement penalty, free_slope = 0, keeps a single one)."""
    z = np.arange(0.0, 100.0, 5.0)
    positions = [np.array([[0.6 * h, 0.0]]) for h in z]
    scores = [np.array([0.95]) for _ in z]
    assert optimal_path(positions, scores, z) == [0] * len(z)
    choice = optimal_path(positions, scores, z, PathCost(free_slope=0.0))
    assert sum(c >= 0 for c in choice) == 1
