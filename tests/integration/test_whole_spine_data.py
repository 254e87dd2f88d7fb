"""The semi-synthetic whole-spine chunk generator (msseg.data.whole_spine) on the PAM50 maps."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage

from msseg.data.index import scan
from msseg.data.whole_spine import (
    SITES,
    WholeSpineConfig,
    cut_chunks,
    region_slices,
    sagittal_profile,
    whole_spine,
    write_session,
)
from msseg.evaluation.voxel import dice
from msseg.image import Image
from msseg.preprocess.resample import resample_to_grid
from msseg.preprocess.stitch import stitch

pytestmark = pytest.mark.slow

COUNTS = {"cervical": 3, "thoracic": 2, "lumbar": 1}
STILL = WholeSpineConfig(lesions=COUNTS, motion_mm=0.0, motion_deg=0.0)


@pytest.fixture(scope="module")
def spine(shared_data):
    pam50 = shared_data / "spine" / "PAM50"
    made = whole_spine(pam50, seed=5, site=SITES["A"], config=STILL)
    return made, cut_chunks(made, seed=5, config=STILL)


def test_lesion_counts_per_region_as_configured(spine):
    made, _ = spine
    assert made.lesions.region.value_counts().to_dict() == COUNTS
    labels = made.lesion.data
    assert labels.max() == sum(COUNTS.values())
    _, n = ndimage.label(labels > 0, np.ones((3, 3, 3)))
    assert n == sum(COUNTS.values())   # every lesion its own component
    assert ((labels > 0) <= (made.cord.data > 0)).all()
    ranges = made.regions
    for row in made.lesions.itertuples():   # each lesion lies within its region's slices
        z = np.flatnonzero((labels == row.lesion_id).any(axis=(0, 1)))
        a, b = ranges[row.region]
        assert a <= z.min() and z.max() < b


def test_sagittal_profile_has_lordosis_and_kyphosis(shared_data):
    from msseg.data.whole_spine import _levels

    levels = _levels(str(shared_data / "spine" / "PAM50"))
    profile = sagittal_profile(levels, WholeSpineConfig(lordosis_mm=6, kyphosis_mm=9))
    ranges = region_slices(levels)
    cervical = profile[slice(*ranges["cervical"])]
    thoracic = profile[slice(*ranges["thoracic"])]
    assert cervical.max() == pytest.approx(6, abs=0.01) and cervical.min() >= -1e-6
    assert thoracic.min() == pytest.approx(-9, abs=0.01)
    assert np.abs(np.diff(profile)).max() < 0.1   # smooth: < 0.1 mm per 0.5 mm slice


def test_chunks_are_axial_anisotropic_overlapping_and_ordered(spine):
    _, chunks = spine
    site = SITES["A"]
    assert [c.number for c in chunks] == [1, 2, 3]
    tops = []
    for chunk in chunks:
        sx, sy, sz = chunk.image.spacing
        assert site.in_plane_mm[0] <= sx <= site.in_plane_mm[1] and sy == pytest.approx(sx)
        assert site.slice_mm[0] <= sz <= site.slice_mm[1]
        assert chunk.cord.shape == chunk.image.shape == chunk.lesion.shape
        assert chunk.cord.data.any(axis=(0, 1)).mean() > 0.9   # cord on (almost) every slice
        z = [chunk.image.world_coordinates(np.array([[0, 0, k]]))[0, 2]
             for k in (0, chunk.image.shape[2] - 1)]
        tops.append((min(z), max(z)))
    # chunk 1 is the most superior; consecutive chunks overlap
    for upper, lower in zip(tops, tops[1:], strict=False):
        assert upper[0] > lower[0] and upper[1] > lower[1]
        assert lower[1] - upper[0] >= STILL.overlap_mm[0] - 2 * max(c.image.spacing[2]
                                                                   for c in chunks)


def test_chunks_stitch_back_to_the_whole_spine(spine):
    made, chunks = spine
    images = [c.image for c in chunks]
    stitched, labels, report = stitch(images, labels={"cord": [c.cord for c in chunks]},
                                      order=1)
    assert not report.gaps_mm
    cord_ref = resample_to_grid(Image(made.cord.data.astype(np.float32), made.cord.affine),
                                stitched.shape, stitched.affine, order=1).data >= 0.5
    covered = labels["cord"].data.any(axis=(0, 1))
    assert dice(labels["cord"].data[:, :, covered] > 0, cord_ref[:, :, covered]) >= 0.9
    truth = resample_to_grid(made.image, stitched.shape, stitched.affine, order=1).data
    inside = stitched.data > 0
    r = np.corrcoef(stitched.data[inside], truth[inside])[0, 1]
    assert r > 0.9


def test_motion_moves_chunks_against_their_headers(shared_data):
    made = whole_spine(shared_data / "spine" / "PAM50", seed=6, site=SITES["B"],
                       config=replace(STILL, lesions={"cervical": 1}))
    still = cut_chunks(made, seed=1, config=STILL)
    moved = cut_chunks(made, seed=1, config=replace(STILL, motion_mm=2.0, motion_deg=2.0))
    for a, b in zip(still, moved, strict=True):
        np.testing.assert_array_equal(a.image.affine, b.image.affine)   # same header
        assert dice(a.cord.data > 0, b.cord.data > 0) < 0.99            # other content


def test_written_session_is_indexed_with_site_chunk_and_masks(spine, tmp_path):
    made, chunks = spine
    paths = write_session(made, chunks, tmp_path, "A01")
    records = sorted(scan(tmp_path), key=lambda r: r.chunk)
    assert [r.chunk for r in records] == [1, 2, 3]
    assert {r.site for r in records} == {"A"} and {r.patient for r in records} == {"sub-A01"}
    assert all(r.cord and r.lesion and r.contrast == "T2w" for r in records)
    assert [r.image for r in records] == [str(p) for p in paths]
    table = (tmp_path / "derivatives/labels/sub-A01/ses-01/anat/sub-A01_ses-01_lesions.tsv")
    assert len(table.read_text().splitlines()) == sum(COUNTS.values()) + 1


def test_synth_chunks_command_writes_a_cohort_or_nothing(shared_data, tmp_path, capsys):
    from msseg.cli.main import main

    pam50 = str(shared_data / "spine" / "PAM50")
    out = tmp_path / "cohort"
    assert main(["dataset", "synth-chunks", str(out), "--pam50", pam50,
                 "--subjects", "A=1,Z=2"]) == 1
    assert "unknown site(s) Z" in capsys.readouterr().err and not out.exists()
    assert main(["dataset", "synth-chunks", str(out), "--pam50", str(tmp_path),
                 "--subjects", "A=1"]) == 1
    assert not out.exists()
    assert main(["dataset", "synth-chunks", str(out), "--pam50", pam50, "--subjects", "C=1",
                 "--seed", "2"]) == 0
    records = scan(out)
    assert sorted(r.chunk for r in records) == [1, 2, 3]
    assert {r.site for r in records} == {"C"}
    assert (out / "participants.tsv").read_text().splitlines() == ["participant_id\tsite",
                                                                   "sub-C01\tC"]
    cohort = (out / "derivatives/labels/lesions.tsv").read_text().splitlines()
    session = (out / "derivatives/labels/sub-C01/ses-01/anat/sub-C01_ses-01_lesions.tsv"
               ).read_text().splitlines()
    assert len(cohort) == len(session) and cohort[0].endswith("subject\tsite")
    assert main(["dataset", "synth-chunks", str(out), "--pam50", pam50]) == 1  # not empty
