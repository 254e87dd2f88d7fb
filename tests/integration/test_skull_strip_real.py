"""Skull stripping of raw-like brain FLAIR: the real 3D-MR-MS scans (skull-stripped, MNI space)
given a synthetic head back (:func:`msseg.data.brain_synthesis.with_skull`: CSF, skull, marrow,
scalp, air noise; no face or neck) and moved to a scanner-like grid (8° about L–R, (5, −4, 6)
mm, 0.7 × 0.7 × 3 mm). No unstripped scan with a brain mask is in ``../shared``: these heads
are the only check of BET's masks here."""

from __future__ import annotations

import numpy as np
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.data.brain_synthesis import scanner_grid, synthetic_head
from msseg.evaluation.voxel import dice
from msseg.image import Image
from msseg.preprocess.resample import resample_to_grid

pytestmark = [pytest.mark.data, pytest.mark.slow]

FLAIR = "FLAIR_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz"


def _moved_head(shared_data, patient: str) -> tuple[Image, np.ndarray]:
    """The patient's synthetic head on the scanner-like grid, and its brain mask there."""
    flair = io.load(shared_data / f"brain/3d-mr-ms/MNI/patient{patient}" / FLAIR)
    head, brain = synthetic_head(flair)
    shape, grid, sampled_at = scanner_grid(flair.shape, flair.affine)
    moved = resample_to_grid(head, shape, sampled_at, order=1).data
    truth = resample_to_grid(head.with_data(brain.astype(np.float32)), shape, sampled_at,
                             order=1).data >= 0.5
    return Image(moved, grid), truth


def test_bet_masks_the_brain_of_a_moved_anisotropic_head(shared_data):
    """Patient 07: Dice ≥ 0.95 with the true brain (0.962 when written)."""
    pytest.importorskip("brainextractor")
    from msseg.preprocess.skull_strip import brain_mask

    head, truth = _moved_head(shared_data, "07")
    found = brain_mask(head).data > 0
    print(f"brain Dice {dice(found, truth):.3f}")
    assert dice(found, truth) >= 0.95


def test_segment_strips_a_raw_head_by_itself(shared_data, tmp_path, capsys):
    """Patient 19 through `msseg segment` with no option: one line says the skull is being
    stripped; the brain mask it writes (the input's exact header) has Dice ≥ 0.95 with the true
    brain (0.957 when written), and the lesions are within Dice 0.95 of those found with the
    true brain mask (0.975)."""
    pytest.importorskip("brainextractor")
    head, truth = _moved_head(shared_data, "19")
    raw = io.save(head, tmp_path / "sub-19_FLAIR.nii.gz")
    given = io.save(head.with_data(truth.astype(np.uint8)), tmp_path / "truth.nii.gz")
    off = ["--locations", "off"]
    assert main(["segment", "brain_lesion_flair", "-i", str(raw), "-o", str(tmp_path / "bet"),
                 *off]) == 0
    err = capsys.readouterr().err
    assert err.count("skull stripping") == 1
    assert main(["segment", "brain_lesion_flair", "-i", str(raw), "-o", str(tmp_path / "true"),
                 "--brain-mask", str(given), *off]) == 0
    mask = io.load(tmp_path / "bet" / "sub-19_FLAIR_desc-brain_mask.nii.gz")
    np.testing.assert_array_equal(mask.affine, io.load(raw).affine)
    assert mask.header.get_data_shape() == io.load(raw).header.get_data_shape()
    print(f"brain Dice {dice(mask.data > 0, truth):.3f}")
    assert dice(mask.data > 0, truth) >= 0.95
    lesions = [io.load(tmp_path / run / "sub-19_FLAIR_label-lesion_seg.nii.gz").data > 0
               for run in ("bet", "true")]
    print(f"lesion Dice, BET vs true mask {dice(*lesions):.3f}")
    assert dice(*lesions) >= 0.95
