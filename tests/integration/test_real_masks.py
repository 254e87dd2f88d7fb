"""Metrics on the real consensus lesion masks of 3D-MR-MS: invariances and MONAI cross-check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.metrics import (
    compute_average_surface_distance,
    compute_dice,
    compute_hausdorff_distance,
    compute_surface_dice,
)
from scipy import ndimage

from conftest import brain_lesion_masks
from msseg import io
from msseg.evaluation.engine import EvalOptions, evaluate_masks
from msseg.evaluation.lesion_matching import label_lesions
from msseg.evaluation.voxel import SurfaceDistances, dice
from msseg.phantom import perturb_mask


@pytest.fixture(scope="module")
def masks(shared_data):
    paths = brain_lesion_masks(shared_data)
    assert len(paths) == 29
    return [(p.parent.name, io.load(p)) for p in paths]


def test_invariances_on_every_real_mask(masks):
    for name, image in masks:
        mask = image.data > 0
        m, _ = evaluate_masks(mask, mask, image.spacing)
        assert (m["dice"], m["nsd"], m["hd95_mm"], m["assd_mm"], m["rve"]) == (1, 1, 0, 0, 0), name
        assert (m["lesion_f1"], m["lesion_count_abs_diff"]) == (1, 0), name
        grown = ndimage.binary_dilation(mask)
        g, _ = evaluate_masks(grown, mask, image.spacing)
        assert g["pred_volume_mm3"] > g["ref_volume_mm3"] and g["rve"] > 0, name
        assert g["lesion_sensitivity"] == 1.0, name
        n6, n18, n26 = (label_lesions(mask, c)[1] for c in (6, 18, 26))
        assert n6 >= n18 >= n26 >= 1, name


def monai_values(pred, ref, spacing, tolerance):
    p = torch.from_numpy(np.stack([~pred, pred])[None].astype(np.float32))
    r = torch.from_numpy(np.stack([~ref, ref])[None].astype(np.float32))
    return {
        "dice": float(compute_dice(p, r, include_background=False)),
        "nsd": float(compute_surface_dice(p, r, [tolerance], spacing=spacing)),
        "hd95_mm": float(compute_hausdorff_distance(p, r, percentile=95, spacing=spacing)),
        "assd_mm": float(compute_average_surface_distance(p, r, symmetric=True,
                                                          spacing=spacing)),
    }


@pytest.mark.parametrize("tolerance", [1.0, 2.0])
def test_dice_nsd_hd95_assd_match_monai(masks, tolerance):
    options = EvalOptions(nsd_tolerance_mm=tolerance)
    for k, (name, image) in enumerate(masks[:12]):
        ref = image.data > 0
        pred = perturb_mask(ref, seed=k, drop=1, add=2)
        spacing = (1.0, 1.0, 1.0) if k % 2 else (0.8, 1.0, 2.5)  # also anisotropic
        ours, _ = evaluate_masks(pred, ref, spacing, options)
        theirs = monai_values(pred, ref, spacing, tolerance)
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (name, key)


def test_pairs_of_different_patients_match_monai(masks):
    """Large disagreements: patient i's mask scored against patient i+1's."""
    for (_, a), (_, b) in zip(masks[:6], masks[1:7], strict=True):
        pred, ref = a.data > 0, b.data > 0
        ours = SurfaceDistances.compute(pred, ref, (1, 1, 1))
        theirs = monai_values(pred, ref, (1, 1, 1), 1.0)
        assert dice(pred, ref) == pytest.approx(theirs["dice"], rel=1e-5)
        assert ours.nsd(1.0) == pytest.approx(theirs["nsd"], rel=1e-5)
        assert ours.hd95() == pytest.approx(theirs["hd95_mm"], rel=1e-5)
        assert ours.assd() == pytest.approx(theirs["assd_mm"], rel=1e-5)


def test_fake_lesion_of_sct_testing_data(shared_data):
    """SCT's hand-painted lesion (83.5 mm³ per its README) scored against itself and a shift."""
    path = shared_data / "spine/sct_testing_data/t2/t2_fake_lesion_lesion_seg.nii.gz"
    image = io.load(path)
    lesion = image.data > 0
    m, rows = evaluate_masks(lesion, lesion, image.spacing)
    assert m["n_ref_lesions"] == 1
    assert m["ref_volume_mm3"] == pytest.approx(83.5, abs=0.05)
    shifted = np.roll(lesion, 1, axis=0)
    s, _ = evaluate_masks(shifted, lesion, image.spacing)
    assert s["lesion_sensitivity"] == 1.0 and 0 < s["dice"] < 1
    assert s["hd95_mm"] == pytest.approx(0.8, abs=1e-6)
