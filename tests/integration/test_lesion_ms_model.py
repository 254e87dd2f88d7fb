"""The bundled contrast-agnostic `lesion_ms` model on the real held-out scans (never trained on)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.evaluation.voxel import dice
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import make_segmenter
from msseg.models.registry import find_model

pytestmark = pytest.mark.slow

SPINE = "spine"
# (image, manual cord mask): the held-out subjects of recipes/lesion_ms (every real contrast
# but T2*w of errsm_24, which the recipe does not hold out), lesion-free as acquired
HELD_OUT = [
    ("sct_2014_testing/errsm_24/t2/t2", "sct_2014_testing/errsm_24/t2/t2_manual_segmentation"),
    ("sct_2014_testing/errsm_24/mt/mt1", "sct_2014_testing/errsm_24/mt/segmentation_binary"),
    ("ivadomed_unf/sub-unf01/anat/sub-unf01_T2w",
     "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T2w_seg-manual"),
    ("ivadomed_unf/sub-unf01/anat/sub-unf01_T2star",
     "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T2star_seg-manual"),
    ("ivadomed_unf/sub-unf01/anat/sub-unf01_T1w",
     "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T1w_seg-manual"),
]


def test_lesion_ms_finds_the_cord_on_every_real_contrast_and_no_lesion(shared_data):
    segmenter = make_segmenter(find_model("lesion_ms"), SegmentOptions())
    scores, lesion_free = [], []
    for image_rel, cord_rel in HELD_OUT:
        image = io.load(shared_data / SPINE / f"{image_rel}.nii.gz")
        result = segmenter.segment(image, image_rel)
        reference = io.load(shared_data / SPINE / f"{cord_rel}.nii.gz").data > 0.5
        scores.append(dice(result.cord.data > 0, reference))
        lesion_free.append(not result.lesion.data.any())
    assert np.median(scores) >= 0.85, scores            # the acceptance
    assert min(scores) >= 0.85, scores                  # on every real contrast
    # volume-wise specificity (the issue asks 0.8): 1.0 with the threshold and minimum lesion
    # volume tuned on other images (recipes/lesion_ms/tune.py); 0.6 at 0.5 / 3 mm³
    assert np.mean(lesion_free) >= 0.8, lesion_free
    plan = find_model("lesion_ms").plan
    assert (plan.threshold, plan.min_lesion_volume_mm3) == (0.7, 10.0)


def test_lesion_ms_outputs_follow_the_task_contract(shared_data, tmp_path):
    path = shared_data / SPINE / "ivadomed_unf/sub-unf01/anat/sub-unf01_T1w.nii.gz"
    assert main(["segment", "lesion_ms", "-i", str(path), "-o", str(tmp_path), "--soft"]) == 0
    source = nib.load(path)
    for suffix in ("_label-SC_seg", "_label-lesion_seg", "_label-lesion_probseg"):
        out = nib.load(tmp_path / f"sub-unf01_T1w{suffix}.nii.gz")
        assert out.shape == source.shape
        np.testing.assert_array_equal(out.affine, source.affine)
    card = (find_model("lesion_ms").path / "model_card.md").read_text()
    for needle in ("Regime", "Budget", "Lesion Dice per contrast", "PSIR", "synthes"):
        assert needle in card, needle
