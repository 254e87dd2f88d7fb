"""The bundled two-stage models on real scans of ../shared/data: sagittal, axial, isotropic,
lumbar, and an axial scan whose top slices reach the skull base (medulla, cisterna magna)."""

from __future__ import annotations

import numpy as np
import pytest

from msseg import io
from msseg.centerline.detect import CenterlineOptions
from msseg.evaluation.centerline import centerline_from_mask, centerline_mse_mm, localisation_rate
from msseg.evaluation.voxel import dice
from msseg.inference.centerline import CenterlineFinder
from msseg.inference.segment import Segmenter
from msseg.models.registry import find_model
from msseg.preprocess.orient import to_rpi
from msseg.preprocess.tube import centres_on_grid

SPINE = "spine"
HELD_OUT = {  # image, manual cord mask (held-out subjects: never trained on)
    "sagittal": ("sct_2014_testing/errsm_24/t2/t2",
                 "sct_2014_testing/errsm_24/t2/t2_manual_segmentation"),
    "axial": ("sct_2014_testing/errsm_24/mt/mt1",
              "sct_2014_testing/errsm_24/mt/segmentation_binary"),
    "isotropic": ("ivadomed_unf/sub-unf01/anat/sub-unf01_T2w",
                  "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T2w_seg-manual"),
}


@pytest.fixture(scope="module")
def finder():
    """CNN1 heatmap on slices ≥ 2 mm apart (the path bridges the rest), to keep tests quick."""
    return CenterlineFinder("cnn", options=CenterlineOptions(slice_step_mm=2.0))


def _paths(shared, key):
    image, cord = HELD_OUT[key]
    return shared / SPINE / f"{image}.nii.gz", shared / SPINE / f"{cord}.nii.gz"


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(HELD_OUT))
def test_cnn_centerline_on_held_out_scans(shared_data, finder, key):
    image_path, cord_path = _paths(shared_data, key)
    image = io.load(image_path)
    line = finder.find(image)
    rpi = to_rpi(image)
    ref = to_rpi(io.load(cord_path)).data > 0.5
    points = centres_on_grid(line.world(), rpi.affine, rpi.shape[2])
    assert localisation_rate(points, ref) >= 0.9
    assert centerline_mse_mm(points, centerline_from_mask(ref), rpi.spacing) < 2.0


@pytest.mark.slow
def test_lumbar_and_skull_base_scans(shared_data, finder):
    lumbar = io.load(shared_data / SPINE / "ms_patient_unlabelled/t2_lumbar/t2_lumbar.nii.gz")
    line = finder.find(lumbar)
    sampled = line.detected[CenterlineOptions(slice_step_mm=2.0).slices(
        lumbar.shape[2], to_rpi(lumbar).spacing[2])]
    assert sampled.mean() >= 0.5            # the lumbar cord / conus is found
    ms = io.load(shared_data / SPINE / "ms_patient_unlabelled/t2_ms/t2.nii.gz")
    line = finder.find(ms)
    assert line.detected.all()              # every slice, the skull-base ones included
    # a smooth curve: within 3 mm of a parabola through it (the cervical lordosis), no jumps
    world = line.world()
    fit = np.polynomial.polynomial.polyfit(world[:, 2], world[:, :2], 2)
    residual = world[:, :2] - np.polynomial.polynomial.polyval(world[:, 2], fit).T
    assert np.abs(residual).max() < 3.0


@pytest.mark.slow
def test_sc_2stage_and_lesion_2stage_on_real_scans(shared_data):
    image_path, cord_path = _paths(shared_data, "isotropic")
    image = io.load(image_path)
    cord = Segmenter(find_model("sc_2stage")).segment(image, str(image_path)).cord
    assert dice(cord.data > 0, io.load(cord_path).data > 0.5) >= 0.8
    np.testing.assert_array_equal(cord.affine, image.affine)
    lesion_model = Segmenter(find_model("lesion_2stage"))
    result = lesion_model.segment(image, str(image_path))
    assert len(result.table) == 0            # a lesion-free scan: no lesion found
    lumbar = io.load(shared_data / SPINE / "ms_patient_unlabelled/t2_lumbar/t2_lumbar.nii.gz")
    assert Segmenter(find_model("sc_2stage")).segment(lumbar).cord.data.sum() > 0
