"""Dataset indexing on a BIDS-like tree, patient-level splits, nnU-Net export."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from msseg.cli.main import main
from msseg.data.index import Record, assign_folds, load_index, save_index, scan
from msseg.errors import MssegError
from phantom_data import phantom_index


def touch(path, shape=(8, 8, 4), affine=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, np.uint8), np.diag([0.5, 0.5, 3.0, 1.0])
                             if affine is None else affine), path)


@pytest.fixture
def bids(tmp_path):
    root = tmp_path / "ds"
    (root).mkdir()
    (root / "participants.tsv").write_text("participant_id\tsite\nsub-01\tmontreal\n"
                                           "sub-02\ttoronto\n")
    touch(root / "sub-01/ses-A/anat/sub-01_ses-A_chunk-1_T2w.nii.gz")
    touch(root / "sub-01/ses-A/anat/sub-01_ses-A_chunk-2_T2w.nii.gz")
    touch(root / "sub-01/ses-B/anat/sub-01_ses-B_T2starw.nii.gz")
    touch(root / "sub-02/anat/sub-02_PSIR.nii.gz", affine=np.diag([-0.5, 0.5, 3.0, 1.0]))
    touch(root / "sub-03/anat/sub-03_acq-sag_T2w.nii.gz")
    der = root / "derivatives/labels"
    touch(der / "sub-01/ses-A/anat/sub-01_ses-A_chunk-1_T2w_label-SC_seg.nii.gz")
    touch(der / "sub-01/ses-A/anat/sub-01_ses-A_chunk-1_T2w_label-lesion_seg.nii.gz")
    touch(der / "sub-01/ses-A/anat/sub-01_ses-A_chunk-2_T2w_seg-manual.nii.gz")
    touch(der / "sub-02/anat/sub-02_PSIR_lesion-manual.nii.gz")
    return root


def test_scan_bids_tree(bids):
    records = {r.image.split("/")[-1]: r for r in scan(bids)}
    assert len(records) == 5  # masks are never images
    c1 = records["sub-01_ses-A_chunk-1_T2w.nii.gz"]
    assert (c1.patient, c1.session, c1.chunk, c1.contrast, c1.site) == (
        "sub-01", "ses-A", 1, "T2w", "montreal")
    assert c1.cord.endswith("chunk-1_T2w_label-SC_seg.nii.gz")
    assert c1.lesion.endswith("chunk-1_T2w_label-lesion_seg.nii.gz")
    c2 = records["sub-01_ses-A_chunk-2_T2w.nii.gz"]
    assert c2.cord.endswith("_seg-manual.nii.gz") and c2.lesion is None and c2.chunk == 2
    assert records["sub-01_ses-B_T2starw.nii.gz"].contrast == "T2starw"
    psir = records["sub-02_PSIR.nii.gz"]
    assert (psir.contrast, psir.orientation, psir.site, psir.cord) == ("PSIR", "LAS", "toronto",
                                                                       None)
    assert psir.lesion.endswith("_lesion-manual.nii.gz")
    assert psir.spacing == (0.5, 0.5, 3.0) and psir.shape == (8, 8, 4)
    assert records["sub-03_acq-sag_T2w.nii.gz"].site == "unknown"  # no participants row


def test_plain_folder_patients_and_contrasts(tmp_path):
    touch(tmp_path / "errsm_11/t2/t2.nii.gz")
    touch(tmp_path / "errsm_11/t2/t2_manual_segmentation.nii.gz")
    touch(tmp_path / "errsm_11/gre/gre.nii.gz")
    records = sorted(scan(tmp_path), key=lambda r: r.image)
    assert [(r.patient, r.contrast) for r in records] == [("errsm_11", "T2starw"),
                                                          ("errsm_11", "T2w")]
    assert records[1].cord.endswith("t2_manual_segmentation.nii.gz")


def test_split_has_no_patient_leakage(bids):
    records = scan(bids) * 3  # several images per patient
    for k in (2, 3):
        folded = assign_folds(records, k, seed=1)
        folds_of = {}
        for r in folded:
            folds_of.setdefault(r.patient, set()).add(r.fold)
        assert all(len(f) == 1 for f in folds_of.values())
        assert {r.fold for r in folded} <= set(range(k))
    # many patients: folds are balanced to within one patient
    many = [Record(f"/x{i}.nii.gz", None, None, "T2w", "LAS", (1, 1, 1), (1, 1, 1),
                   f"sub-{i:03d}", None, "s", None) for i in range(53)]
    sizes = np.bincount([r.fold for r in assign_folds(many, 5)])
    assert sizes.max() - sizes.min() <= 1
    with pytest.raises(MssegError):
        assign_folds(records, 1)


def test_index_round_trip(bids, tmp_path):
    records = assign_folds(scan(bids), 2)
    assert load_index(save_index(records, tmp_path / "d.json")) == records


def test_export_nnunet_json_and_labels(tmp_path):
    index = phantom_index(tmp_path, n=3)
    assert main(["dataset", "export-nnunet", str(index), "-o", str(tmp_path / "raw"),
                 "--id", "7"]) == 0
    root = tmp_path / "raw" / "Dataset007_MSSpineLesion"
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "cord": [1, 2], "lesion": 2}
    assert meta["regions_class_order"] == [1, 2]
    assert meta["channel_names"] == {"0": "T2w"} and meta["numTraining"] == 3
    assert meta["file_ending"] == ".nii.gz"
    images = sorted(p.name for p in (root / "imagesTr").iterdir())
    labels = sorted(p.name for p in (root / "labelsTr").iterdir())
    assert images == [f"sub-ph0{i}_T2w_0000.nii.gz" for i in range(3)]
    assert labels == [f"sub-ph0{i}_T2w.nii.gz" for i in range(3)]
    record = load_index(index)[0]
    lab = nib.load(root / "labelsTr" / labels[0])
    cord = nib.load(record.cord).get_fdata() > 0
    lesion = nib.load(record.lesion).get_fdata() > 0
    data = np.asarray(lab.dataobj)
    assert set(np.unique(data)) == {0, 1, 2}
    np.testing.assert_array_equal(data == 2, lesion)
    np.testing.assert_array_equal(data > 0, cord | lesion)
    np.testing.assert_array_equal(lab.affine, nib.load(record.image).affine)


def test_dataset_scan_cli(bids, tmp_path, capsys):
    out = tmp_path / "index.json"
    assert main(["dataset", "scan", str(bids), "-o", str(out), "--folds", "2"]) == 0
    assert "5 images of 3 patients" in capsys.readouterr().out
    assert main(["dataset", "scan", str(bids), "-o", str(out)]) == 1  # exists


def test_rater_masks_indexed_and_consensus_labels(tmp_path):
    from msseg import io
    from msseg.data.index import scan
    from msseg.phantom import make_phantom
    from msseg.preprocess.orient import to_rpi
    from msseg.training.data import load_case
    from msseg.training.planning import plan as make_plan

    p = make_phantom(0, shape=(24, 24, 4), spacing=(1.0, 1.0, 1.0), n_lesions=0)
    anat = tmp_path / "sub-r01" / "anat"
    io.save(p.image, anat / "sub-r01_FLAIR.nii.gz")
    io.save_like(p.cord.data, p.image, anat / "sub-r01_FLAIR_seg.nii.gz")
    raters = []
    for k, rows in enumerate(((4, 10), (6, 12), (8, 14)), start=1):
        mask = np.zeros(p.image.shape, np.uint8)
        mask[rows[0]:rows[1], 10:12, 1:3] = 1
        raters.append(mask)
        io.save_like(mask, p.image, anat / f"sub-r01_FLAIR_label-lesion_rater{k}_seg.nii.gz")
    (record,) = scan(tmp_path)
    assert [Path(r).name for r in record.raters] == [
        f"sub-r01_FLAIR_label-lesion_rater{k}_seg.nii.gz" for k in (1, 2, 3)]
    plan = make_plan([[1, 1, 1]], [[24, 24, 4]], dims=2, patch_size=(16, 16),
                     target_spacing=(1.0, 1.0))
    stack = np.stack([to_rpi(p.image.with_data(m)).data for m in raters]).astype(bool)
    expected = {"union": stack.any(0), "majority": stack.sum(0) >= 2}
    for method, want in expected.items():
        case = load_case(record, plan, method)
        np.testing.assert_array_equal(case.regions[1] > 0, want)
    staple = load_case(record, plan, "staple").regions[1] > 0
    assert expected["majority"].sum() * 0.5 <= staple.sum() <= expected["union"].sum()
