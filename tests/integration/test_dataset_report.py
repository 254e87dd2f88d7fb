"""`msseg dataset report`: counts per site × acquisition × contrast, lesion volumes and the
Sankey picture, on a small BIDS tree whose every number is known."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from msseg.cli.main import main
from msseg.report.dataset import acquisition_of

AXIAL = np.diag([0.5, 0.5, 3.0, 1.0])        # RAS, thick along S-I
SAGITTAL = np.diag([3.0, 0.7, 0.7, 1.0])     # thick along L-R
ISO = np.diag([1.0, 1.0, 1.0, 1.0])


def _write(path, data, affine):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), path)


def _image(shape=(20, 20, 8)):
    return np.random.default_rng(0).random(shape) + 1


@pytest.fixture()
def bids(tmp_path):
    root = tmp_path / "bids"
    scans = {"sub-aaa01_T2w": AXIAL, "sub-aaa02_T2w": AXIAL, "sub-aaa02_PSIR": SAGITTAL,
             "sub-bbb01_UNIT1": ISO, "sub-bbb01_T2w": AXIAL}
    for name, affine in scans.items():
        _write(root / name.split("_")[0] / "anat" / f"{name}.nii.gz", _image(), affine)
    lesion = np.zeros((20, 20, 8))
    lesion[2:4, 2:4, 1:2] = 1          # 4 voxels x 0.75 mm³ = 3 mm³
    lesion[10:13, 10:13, 4:6] = 1      # 18 voxels = 13.5 mm³
    _write(root / "sub-aaa01/anat/sub-aaa01_T2w_label-lesion_seg.nii.gz", lesion, AXIAL)
    lesion = np.zeros((20, 20, 8))
    lesion[5:7, 5:7, 5:7] = 1          # 8 voxels x 1 mm³
    _write(root / "sub-bbb01/anat/sub-bbb01_UNIT1_label-lesion_seg.nii.gz", lesion, ISO)
    index = tmp_path / "dataset.json"
    assert main(["dataset", "scan", str(root), "-o", str(index), "--folds", "2"]) == 0
    return index


def test_acquisition_is_read_from_the_voxel_size():
    assert acquisition_of("RAS", (0.5, 0.5, 3.0)) == "2D axial"
    assert acquisition_of("LAS", (3.0, 0.7, 0.7)) == "2D sagittal"
    assert acquisition_of("PSR", (0.7, 3.0, 0.7)) == "2D axial"      # PSR: axis 1 runs S-I
    assert acquisition_of("RAS", (0.7, 4.0, 0.7)) == "2D coronal"
    assert acquisition_of("RAS", (1.0, 1.0, 1.5)) == "3D"
    assert acquisition_of("RAS", (0.9, 0.9, 1.3)) == "3D"
    assert acquisition_of("RAS", (0.8, 0.8, 1.3)) == "2D axial"   # 1.3 > 1.5 x 0.8


def test_report_counts_volumes_and_pictures(bids, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["dataset", "report", str(bids), "-o", str(out)]) == 0
    counts = pd.read_csv(out / "counts.csv")
    got = {(r.site, r.acquisition, r.contrast): (r.n_scans, r.n_patients)
           for r in counts.itertuples()}
    assert got == {("aaa", "2D axial", "T2w"): (2, 2), ("aaa", "2D sagittal", "PSIR"): (1, 1),
                   ("bbb", "3D", "UNIT1"): (1, 1), ("bbb", "2D axial", "T2w"): (1, 1)}
    assert counts.iloc[0].n_scans == 2           # largest group first
    volumes = pd.read_csv(out / "lesion_volumes.csv")
    by_site = volumes.groupby("site")["volume_mm3"].apply(sorted).to_dict()
    assert by_site.keys() == {"aaa", "bbb"}
    assert by_site["aaa"] == pytest.approx([3.0, 13.5]) and by_site["bbb"] == pytest.approx([8.0])
    assert set(volumes.contrast) == {"T2w", "UNIT1"}
    for name in ("sankey.png", "lesion_volumes.png"):
        picture = plt_read(out / name)
        assert picture.shape[1] >= 700             # readable without zooming
        assert picture[..., :3].std() > 0.05       # not blank
    assert "5 scans of 3 patients" in capsys.readouterr().out


def test_report_refuses_to_overwrite_and_writes_nothing_new(bids, tmp_path, capsys):
    out = tmp_path / "report"
    out.mkdir()
    (out / "sankey.png").write_bytes(b"mine")
    assert main(["dataset", "report", str(bids), "-o", str(out)]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["sankey.png"]
    assert (out / "sankey.png").read_bytes() == b"mine"
    assert main(["dataset", "report", str(bids), "-o", str(out), "--overwrite"]) == 0
    assert (out / "sankey.png").read_bytes()[:4] == b"\x89PNG"


def plt_read(path):
    import matplotlib.image

    return matplotlib.image.imread(path)
