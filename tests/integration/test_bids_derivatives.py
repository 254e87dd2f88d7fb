"""`msseg segment` on a BIDS dataset made from ../shared/data: a BIDS derivative dataset
(names checked against the official BIDS schema), sidecars, dataset_description.json, lesion
tables with positions and levels; `msseg evaluate` and `msseg dataset scan` read it back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msseg import bids, io
from msseg.cli.main import main
from msseg.data.index import scan
from msseg.errors import MssegError
from msseg.image import Image


def test_derivative_names_round_trip_to_the_older_convention():
    stem = "sub-A01_ses-01_acq-ax_chunk-2_T2w"
    assert bids.derivative_stem(stem, "cord") == \
        "sub-A01_ses-01_acq-ax_chunk-2_label-SC_desc-T2w_mask"
    assert bids.derivative_stem(stem, "lesion", "probseg") == \
        "sub-A01_ses-01_acq-ax_chunk-2_label-lesion_desc-T2w_probseg"
    assert bids.legacy_name(bids.derivative_stem(stem, "cord")) == f"{stem}_label-SC_seg"
    assert bids.legacy_name(bids.derivative_stem(stem, "lesion", "probseg")) == \
        f"{stem}_label-lesion_probseg"
    assert bids.legacy_name("sub-01_T2w_label-SC_seg") == "sub-01_T2w_label-SC_seg"
    assert bids.derivative_stem("sub-01_T2star", "lesion") == "sub-01_label-lesion_desc-T2star_mask"
    with pytest.raises(MssegError, match="not a BIDS name"):
        bids.derivative_stem("t2_ms", "cord")


def schema_problems(root: Path) -> list[str]:
    """Every file of a derivative dataset checked against the official BIDS schema
    (bidsschematools): a derivative imaging rule of its datatype must allow its suffix,
    extension and entities, entities in the schema's order; dataset_description.json has the
    fields the schema requires of a derivative dataset."""
    from bidsschematools import schema

    s = schema.load_schema()
    order = [s["objects"]["entities"][e]["name"] for e in s["rules"]["entities"]]
    names = {s["objects"]["entities"][e]["name"]: e for e in s["rules"]["entities"]}
    rules = list(s["rules"]["files"]["deriv"]["imaging"].values())
    problems = []
    ignored = (root / ".bidsignore").read_text().split()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if rel.parts[0].startswith(".") or any(rel.match(g.rstrip("/") + ("/*" if g.endswith(
                "/") else "")) for g in ignored) or rel.name in ("dataset_description.json",
                                                                 ".bidsignore"):
            continue
        stem, ext = (path.name[:-7], ".nii.gz") if path.name.endswith(".nii.gz") else (
            path.stem, path.suffix)
        entities, suffix = bids.parse(stem)
        keys = list(entities)
        if keys != sorted(keys, key=order.index):
            problems.append(f"{rel}: entity order {keys}")
        datatype = rel.parts[-2]
        if not any(suffix in r["suffixes"] and ext in r["extensions"]
                   and datatype in r["datatypes"]
                   and all(names[k] in r["entities"] for k in keys) for r in rules):
            problems.append(f"{rel}: no derivative rule allows it")
        expected = Path(f"sub-{entities['sub']}") / (f"ses-{entities['ses']}" if "ses" in
                                                     entities else "") / datatype
        if rel.parent != expected:
            problems.append(f"{rel}: not in {expected}")
    description = json.loads((root / "dataset_description.json").read_text())
    for field in ("Name", "BIDSVersion", "DatasetType", "GeneratedBy"):
        if field not in description:
            problems.append(f"dataset_description.json: no {field}")
    if description.get("DatasetType") != "derivative":
        problems.append("dataset_description.json: DatasetType is not derivative")
    return problems


@pytest.fixture
def bids_dataset(shared_data, tmp_path):
    """ivadomed's spine-generic subject as a BIDS dataset (T1w, T2w, T2star; manual cord
    masks in derivatives/labels), with a second session holding a chunked T2w."""
    root = tmp_path / "ds"
    shutil.copytree(shared_data / "spine" / "ivadomed_unf", root)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "unf", "BIDSVersion": "1.10.0", "DatasetType": "raw"}))
    anat = root / "sub-unf02" / "ses-02" / "anat"
    anat.mkdir(parents=True)
    shutil.copy(root / "sub-unf01" / "anat" / "sub-unf01_T2w.nii.gz",
                anat / "sub-unf02_ses-02_chunk-1_T2w.nii.gz")
    return root


def test_segment_bids_dataset_round_trip(tiny_model, bids_dataset, capsys):
    model, _ = tiny_model
    assert main(["segment", str(model), "-i", str(bids_dataset), "--soft"]) == 0
    deriv = bids_dataset / "derivatives" / "msseg"
    assert schema_problems(deriv) == []
    anat = deriv / "sub-unf01" / "anat"
    names = {p.name for p in anat.iterdir()}
    for contrast in ("T1w", "T2w", "T2star"):
        for kind in ("label-SC", "label-lesion"):
            assert f"sub-unf01_{kind}_desc-{contrast}_mask.nii.gz" in names
            assert f"sub-unf01_{kind}_desc-{contrast}_mask.json" in names
        assert f"sub-unf01_label-lesion_desc-{contrast}_probseg.nii.gz" in names
        assert f"sub-unf01_{contrast}_lesions.csv" in names
    chunk = deriv / "sub-unf02" / "ses-02" / "anat"
    assert (chunk / "sub-unf02_ses-02_chunk-1_label-SC_desc-T2w_mask.nii.gz").is_file()
    # exact header of the input, sidecar pointing at the raw source
    source = bids_dataset / "sub-unf01" / "anat" / "sub-unf01_T2w.nii.gz"
    mask = io.load(anat / "sub-unf01_label-SC_desc-T2w_mask.nii.gz")
    np.testing.assert_array_equal(mask.affine, io.load(source).affine)
    sidecar = json.loads((anat / "sub-unf01_label-SC_desc-T2w_mask.json").read_text())
    assert sidecar["Sources"] == ["bids:raw:sub-unf01/anat/sub-unf01_T2w.nii.gz"]
    assert sidecar["Threshold"] == 0.5 and sidecar["Model"] == str(model)
    assert sidecar["Postprocessing"]["min_lesion_volume_mm3"] is None   # the model's: default
    description = json.loads((deriv / "dataset_description.json").read_text())
    assert description["GeneratedBy"][0]["Name"] == "msseg"
    table = pd.read_csv(chunk / "sub-unf02_ses-02_chunk-1_T2w_lesions.csv")
    assert {"distance_from_top_mm", "chunk"} <= set(table.columns)
    assert (table.chunk == 1).all()
    # evaluate reads the layout: msseg's cord masks against the manual ones, case by case
    out = bids_dataset / "eval.csv"
    assert main(["evaluate", "-p", str(deriv / "sub-unf01"), "-r",
                 str(bids_dataset / "derivatives" / "labels"), "--structure", "cord",
                 "-o", str(out)]) == 0
    metrics = pd.read_csv(out)
    assert sorted(metrics.case) == ["sub-unf01_T1w", "sub-unf01_T2star", "sub-unf01_T2w"]
    # scan indexes the images with the manual masks first, msseg's where there is no other
    records = {Path(r.image).name: r for r in scan(bids_dataset)}
    assert records["sub-unf01_T2w.nii.gz"].cord.endswith("sub-unf01_T2w_seg-manual.nii.gz")
    assert records["sub-unf02_ses-02_chunk-1_T2w.nii.gz"].cord.endswith(
        "sub-unf02_ses-02_chunk-1_label-SC_desc-T2w_mask.nii.gz")
    # a second run resumes (nothing recomputed); the description is kept
    assert main(["segment", str(model), "-i", str(bids_dataset), "--soft"]) == 0
    assert "skipped (done)" in capsys.readouterr().out


def test_bids_refusals_write_nothing(tiny_model, tmp_path, shared_data):
    model, images = tiny_model
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(images[0], plain / "scan.nii.gz")
    # a folder that is not a BIDS dataset needs -o
    assert main(["segment", str(model), "-i", str(plain)]) == 1
    # a name that is not BIDS cannot have a derivative name
    assert main(["segment", str(model), "-i", str(plain / "scan.nii.gz"), "-o",
                 str(tmp_path / "out"), "--bids-derivatives"]) == 1
    assert not (tmp_path / "out").exists()


def test_levels_flag_adds_levels_and_cohort_summary(tiny_model, tmp_path):
    """The tiny model's lesions on a two-level map: each lesion's shares sum to 1, the cohort
    summary holds the whole lesion volume; a map of another grid or count is refused."""
    model, images = tiny_model
    image = io.load(images[0])
    levels = np.zeros(image.shape, np.uint8)
    levels[..., : image.shape[2] // 2] = 4
    levels[..., image.shape[2] // 2:] = 3
    io.save_like(levels, image, tmp_path / "levels.nii.gz")
    out = tmp_path / "out"
    assert main(["segment", str(model), "-i", str(images[0]), "-o", str(out),
                 "--levels", str(tmp_path / "levels.nii.gz")]) == 0
    stem = io.strip_nifti_suffix(images[0].name)
    table = pd.read_csv(out / f"{stem}_lesions.csv")
    assert {"vert_level", "vert_level_name", "level_shares", "distance_from_top_mm"} <= set(
        table.columns)
    assert len(table) >= 1 and set(table.vert_level_name) <= {"C3", "C4"}
    for shares in table.level_shares:
        assert sum(float(p.split(":")[1]) for p in shares.split(";")) == pytest.approx(1, abs=0.02)
    summary = pd.read_csv(out / "levels.csv")
    cohort = summary[summary.scan == "all"]
    assert cohort.volume_mm3.sum() == pytest.approx(table.volume_mm3.sum(), rel=0.02)
    assert cohort.n_lesions.sum() == len(table)
    wrong = tmp_path / "wrong.nii.gz"
    io.save(Image(np.ones((3, 3, 3), np.uint8), np.eye(4)), wrong)
    assert main(["segment", str(model), "-i", str(images[1]), "-o", str(tmp_path / "o2"),
                 "--levels", str(wrong)]) == 1
    assert main(["segment", str(model), "-i", str(images[1]), str(images[2]), "-o",
                 str(tmp_path / "o3"), "--levels", str(wrong)]) == 1


@pytest.mark.slow
def test_a_brain_model_writes_the_brain_it_saw_as_a_bids_mask(shared_data, tmp_path):
    """brain_lesion_flair on a BIDS dataset (3D-MR-MS patient 07's stripped FLAIR): the brain
    mask is a schema-valid derivative with a sidecar, and holds the scan's non-zero voxels."""
    root = tmp_path / "ds"
    anat = root / "sub-07" / "anat"
    anat.mkdir(parents=True)
    source = next((shared_data / "brain/3d-mr-ms/MNI/patient07").glob("FLAIR_*.nii.gz"))
    shutil.copy(source, anat / "sub-07_FLAIR.nii.gz")
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "3d-mr-ms", "BIDSVersion": "1.10.0", "DatasetType": "raw"}))
    assert main(["segment", "brain_lesion_flair", "-i", str(root), "--locations", "off"]) == 0
    deriv = root / "derivatives" / "msseg"
    assert schema_problems(deriv) == []
    out = deriv / "sub-07" / "anat"
    brain = io.load(out / "sub-07_label-brain_desc-FLAIR_mask.nii.gz")
    np.testing.assert_array_equal(brain.data, io.load(source).data != 0)
    sidecar = json.loads((out / "sub-07_label-brain_desc-FLAIR_mask.json").read_text())
    assert sidecar["Sources"] == ["bids:raw:sub-07/anat/sub-07_FLAIR.nii.gz"]
    assert "Threshold" not in sidecar and sidecar["Description"].startswith("brain")
