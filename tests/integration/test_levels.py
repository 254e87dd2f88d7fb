"""Lesions per vertebral level: lesions placed at known levels of the PAM50 level maps (dense
and disc labels), a real SCT labelled segmentation in another orientation, the per-level
summary, and the distance from the top of the field of view."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from msseg import io
from msseg.errors import MssegError
from msseg.image import Image
from msseg.lesion_table import lesion_table
from msseg.levels import (
    distance_from_top,
    is_point_map,
    lesion_levels,
    level_name,
    level_summary,
    slice_levels,
)

# PAM50_levels (LAS, 0.5 mm, 991 slices): C3 = slices 871–907, C4 834–870, C5 801–833,
# T5 (level 12) 501–551, L1 (level 20) 40–105 (read from the map; disc n sits at the top of
# vertebra n: disc 3 at slice 908, disc 4 at 871, disc 5 at 834)
PLACED = {"C3": (886, 892), "T5": (520, 530), "L1": (65, 75), "C4/C5": (826, 846)}


@pytest.fixture(scope="module")
def pam50(shared_data):
    folder = shared_data / "spine" / "PAM50"
    levels = io.load(folder / "PAM50_levels.nii.gz")
    discs = io.load(folder / "PAM50_label_disc.nii.gz")
    cord = io.load(folder / "PAM50_cord.nii.gz").data > 0
    lesion = np.zeros(cord.shape, np.uint8)
    for z0, z1 in PLACED.values():           # in the cord, around its centre column
        lesion[68:73, 68:73, z0:z1] = 1
    lesion &= cord
    return levels, discs, levels.with_data(lesion)


def test_level_names():
    assert [level_name(v) for v in (1, 7, 8, 19, 20, 24, 25, 0)] == \
        ["C1", "C7", "T1", "T12", "L1", "L5", "S1", "unknown"]


@pytest.mark.parametrize("kind", ["dense", "discs"])
def test_lesions_at_known_pam50_levels(pam50, kind):
    levels, discs, lesion = pam50
    level_map = levels if kind == "dense" else discs
    assert is_point_map(level_map.data) == (kind == "discs")
    table = lesion_levels(lesion, level_map)
    sizes = lesion_table(lesion)
    assert table.lesion_id.tolist() == sizes.lesion_id.tolist()
    # lesion ids follow the voxel order: the most inferior lesion (L1) first here (axis 2 = S)
    by_name = dict(zip(table.vert_level_name, table.level_shares, strict=True))
    assert set(by_name) == {"C3", "T5", "L1", "C4"}
    assert by_name["C3"] == "C3:1.00" and by_name["T5"] == "T5:1.00"
    assert by_name["L1"] == "L1:1.00"
    # the straddling lesion: slices 834–845 on C4 (12), 826–833 on C5 (8)
    assert by_name["C4"] == "C4:0.60;C5:0.40"


def test_disc_and_dense_maps_agree_slice_by_slice(pam50):
    levels, discs, _ = pam50
    dense, points = slice_levels(levels), slice_levels(discs)
    inside = dense > 0
    assert (dense[inside] == points[inside]).mean() > 0.99
    assert points[950] == 1 and points[990] == 0           # above disc 1: unknown (level 0)


def test_real_sct_labelled_segmentation_in_psr(shared_data):
    """sct_testing_data's t2 (PSR): the manual cord mask labelled with levels 2–5 by SCT."""
    folder = shared_data / "spine" / "sct_testing_data" / "t2"
    labelled = io.load(folder / "t2_seg-manual_labeled.nii.gz")
    data = np.rint(labelled.data).astype(int)
    lesion = np.zeros(data.shape, np.uint8)
    lesion[data == 4] = 1                                    # the whole C4 part of the cord
    table = lesion_levels(labelled.with_data(lesion), labelled)
    assert table.vert_level.tolist() == [4]
    assert table.level_shares.iloc[0].startswith("C4:")
    assert float(table.level_shares.iloc[0].split(";")[0].split(":")[1]) > 0.8


def test_summary_counts_and_volume_split_by_share():
    tables = {"a": pd.DataFrame({"volume_mm3": [10.0, 20.0], "vert_level_name": ["C3", "C4"],
                                 "level_shares": ["C3:1.00", "C4:0.60;C5:0.40"]}),
              "b": pd.DataFrame({"volume_mm3": [5.0], "vert_level_name": ["C3"],
                                 "level_shares": ["C3:1.00"]})}
    summary = level_summary(tables)
    cohort = summary[summary.scan == "all"].set_index("level")[["n_lesions", "volume_mm3"]]
    assert cohort.loc["C3"].tolist() == [2, 15.0]
    assert cohort.loc["C4"].tolist() == [1, 12.0]
    assert cohort.loc["C5"].tolist() == [0, 8.0]
    assert summary[summary.scan == "a"].level.tolist() == ["C3", "C4", "C5"]
    assert level_summary({}).empty


def test_distance_from_top_and_grid_check():
    data = np.zeros((4, 4, 10), np.uint8)
    data[1, 1, 8] = 1          # one slice below the top (slice 9), 2 mm slices -> 2 mm
    data[2, 2, 1:4] = 1        # centroid slice 2: 7 slices below the top -> 14 mm
    image = Image(data, np.diag([1.0, 1.0, 2.0, 1.0]))
    table = lesion_table(image)
    distance = dict(zip(table.volume_mm3, distance_from_top(table, image), strict=True))
    assert distance == {2.0: pytest.approx(2.0), 6.0: pytest.approx(14.0)}
    flipped = Image(data[:, :, ::-1].copy(), np.diag([1.0, 1.0, -2.0, 1.0]))   # S at index 0
    table = lesion_table(flipped)
    distance = dict(zip(table.volume_mm3, distance_from_top(table, flipped), strict=True))
    assert distance == {2.0: pytest.approx(2.0), 6.0: pytest.approx(14.0)}
    with pytest.raises(MssegError, match="not on the image's grid"):
        lesion_levels(image, Image(np.ones((4, 4, 9), np.uint8), np.eye(4)))
    with pytest.raises(MssegError, match="empty"):
        lesion_levels(image, image.with_data(np.zeros(data.shape, np.uint8)))


def test_pam50_tables_are_the_maps(shared_data):
    """levels.PAM50_VERTEBRAL / PAM50_SPINAL: the first and last slice of every level of the
    PAM50 maps (the facts spinal_levels maps through)."""
    from msseg.levels import PAM50_SPINAL, PAM50_VERTEBRAL

    folder = shared_data / "spine" / "PAM50"
    for name, table in (("PAM50_levels", PAM50_VERTEBRAL),
                        ("PAM50_spinal_levels", PAM50_SPINAL)):
        data = np.rint(io.load(folder / f"{name}.nii.gz").data).astype(int)   # LAS = RPI
        found = {}
        for level in np.unique(data[data > 0]):
            z = np.flatnonzero((data == level).any(axis=(0, 1)))
            found[int(level)] = (int(z.min()), int(z.max()))
        assert found == table, name


def test_spinal_levels_through_pam50():
    """Hand-computed: a vertebral level of 4 slices maps its slice centres (t = 1/8, 3/8, 5/8,
    7/8) into PAM50's own slices of that level, and takes the spinal level found there."""
    from msseg.levels import PAM50_VERTEBRAL, spinal_level_name, spinal_levels

    vertebral = np.array([0, 3, 3, 3, 3, 2, 2, 30])   # RPI order: inferior first; 30: no such
    out = spinal_levels(vertebral)
    low, high = PAM50_VERTEBRAL[3]                   # C3: PAM50 slices 871–907 (37 slices)
    assert [int(np.floor(low + t * (high - low + 1))) for t in (1 / 8, 3 / 8, 5 / 8, 7 / 8)] \
        == [875, 884, 894, 903]
    # PAM50 spinal C4 = 883–915, C5 = 850–882: slice 875 lies in C5, the others in C4
    assert [spinal_level_name(int(v)) for v in out[1:5]] == ["C5", "C4", "C4", "C4"]
    assert out[0] == 0 and out[7] == 0
    # C2 = PAM50 908–938: t = 1/4 -> slice 915 (spinal C4, 883–915), 3/4 -> 931 (C3)
    assert [spinal_level_name(int(v)) for v in out[5:7]] == ["C4", "C3"]
    assert spinal_level_name(9) == "T1" and spinal_level_name(21) == "L1"
