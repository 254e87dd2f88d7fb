"""Brain lesion locations on real scans: the consensus lesions of 3D-MR-MS patient 07 in MNI
space, and the same scan moved to a scanner-like grid (rigid motion, 0.7 × 0.7 × 3 mm)."""

from __future__ import annotations

import numpy as np
import pytest

from msseg import io
from msseg.data.brain_synthesis import scanner_grid
from msseg.image import Image
from msseg.lesion_location import CLASSES, atlas_on_scan, classify
from msseg.preprocess.resample import resample_to_grid

PATIENT = "brain/3d-mr-ms/MNI/patient07"
FLAIR = "FLAIR_N4_noneck_reduced_winsor_regtoFLAIR_brain_N4_regtoMNI.nii.gz"
LESIONS = "GOLD_STANDARD_N4_noneck_reduced_winsor_regtoFLAIR_regtoMNI.nii.gz"


def _class_map(lesion: np.ndarray, tissue: np.ndarray) -> np.ndarray:
    """Each lesion voxel's class as 1 + its index in CLASSES (0 elsewhere)."""
    labels, classes = classify(lesion, tissue)
    codes = np.array([0, *(1 + CLASSES.index(c) for c in classes)], np.uint8)
    return codes[labels]


@pytest.mark.slow
def test_locations_on_a_moved_anisotropic_scan_agree_with_mni_space(shared_data):
    """The atlas is registered to the scan both times (the patient's brain, rigidly in MNI
    space, does not fill the atlas); moved by 8° and (5, −4, 6) mm and resampled to
    0.7 × 0.7 × 3 mm, ≥ 90% of the lesion voxels keep their class, and every class found in
    MNI space is found again."""
    flair = io.load(shared_data / PATIENT / FLAIR)
    lesion = io.load(shared_data / PATIENT / LESIONS).data > 0
    tissue, how = atlas_on_scan(flair, "auto")
    assert how.startswith("register")
    reference = flair.with_data(_class_map(lesion, tissue))

    shape, grid, sampled_at = scanner_grid(flair.shape, flair.affine)
    moved = Image(resample_to_grid(flair, shape, sampled_at, order=1).data, grid)
    moved_lesion = resample_to_grid(Image(lesion.astype(np.float32), flair.affine), shape,
                                    sampled_at, order=1).data >= 0.5
    expected = resample_to_grid(reference, shape, sampled_at, order=0).data

    moved_tissue, moved_how = atlas_on_scan(moved, "auto")
    assert moved_how.startswith("register")
    found = _class_map(moved_lesion, moved_tissue)
    inside = moved_lesion & (expected > 0)
    agreement = float((found[inside] == expected[inside]).mean())
    print(f"class agreement over {int(inside.sum())} lesion voxels: {agreement:.3f}")
    assert agreement >= 0.9
    assert set(np.unique(found[moved_lesion])) == set(np.unique(reference.data[lesion]))
