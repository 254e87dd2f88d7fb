"""nnU-Net v2 model folders through `msseg segment`, against nnU-Net's own predictor.

Model folders are planned by nnU-Net's own fingerprinting + default planner on three real axial
scans of ../shared/data (2D: PlainConvUNet, 7 stages, 32…512 features, 320² patches at 0.5 mm —
the axial-T2w paper's kind of plan; 3D: a small 3d_fullres plan, 6×128×128 patches), with random
weights (2 folds). nnU-Net's ``nnUNetPredictor`` (tile step 0.5, Gaussian, no mirroring) and
msseg predict the real MS patient scan cut to 6 slices (two windows per in-plane axis).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import nnunet_peer as peer
from msseg import io
from msseg.cli.main import main
from msseg.evaluation.voxel import dice
from msseg.inference.crop import CORD_HALF_WIDTH_MM
from msseg.inference.options import SegmentOptions
from msseg.preprocess.orient import reorient

#: how far the crop reaches beyond the centerline (values there are the whole image's)
CROP_RADIUS_MM = CORD_HALF_WIDTH_MM + SegmentOptions().crop_margin_mm

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def models(shared_data, tmp_path_factory):
    """Plans, folders and nnU-Net's own predictions (built once, about a minute)."""
    _need_nnunet()
    work = tmp_path_factory.mktemp("nnunet")
    name = peer.write_raw_dataset(shared_data, work)
    plans = peer.plan(work, 901, "nnUNetPlans")
    small = peer.plan(work, 901, "nnUNetPlansSmall", gpu_gb=0.5)
    cut = io.load(shared_data / "spine/ms_patient_unlabelled/t2_ms/t2.nii.gz")
    cut = cut.crop((slice(None), slice(None), slice(6, 12)))   # six slices, LAS (= SCT's RPI)
    image = work / "t2_ms_cut.nii.gz"
    io.save(cut, image)
    folders = {
        "2d": peer.make_model_folder(work, name, plans, "2d"),
        "3d": peer.make_model_folder(work, name, small, "3d_fullres"),
    }
    softmax_name = _softmax_dataset(work, name)
    folders["softmax"] = peer.make_model_folder(work, softmax_name, plans, "2d", folds=1)
    predictions = {key: work / f"pred_{key}" for key in folders}
    seconds = {key: peer.predict(work, folder, image, predictions[key],
                                 folds=(0,) if key == "softmax" else (0, 1))
               for key, folder in folders.items()}
    return {"work": work, "image": image, "folders": folders, "pred": predictions,
            "seconds": seconds}


def _need_nnunet() -> None:
    """nnunetv2 is a test extra: skip without it, fail under MSSEG_REQUIRE_DATA=1."""
    import importlib.util
    import os

    if importlib.util.find_spec("nnunetv2") is None:
        if os.environ.get("MSSEG_REQUIRE_DATA") == "1":
            pytest.fail("nnunetv2 must be installed (pip install -e '.[test]')")
        pytest.skip("nnunetv2 (test extra) not installed")


def _softmax_dataset(work: Path, region_name: str) -> str:
    """The same raw dataset with plain labels (softmax: background, cord, lesion)."""
    name = "Dataset902_MsSegPeerSoftmax"
    shutil.copytree(work / "raw" / region_name, work / "raw" / name, dirs_exist_ok=True)
    path = work / "raw" / name / "dataset.json"
    dataset = json.loads(path.read_text())
    dataset["labels"] = {"background": 0, "cord": 1, "lesion": 2}
    dataset.pop("regions_class_order")
    path.write_text(json.dumps(dataset))
    return name


def nnunet_output(pred: Path) -> tuple[np.ndarray, np.ndarray]:
    """nnU-Net's label map and probabilities, both in nibabel's (x, y, z) order."""
    seg = np.asarray(nib.load(pred / "case.nii.gz").dataobj)
    probs = np.load(pred / "case.npz")["probabilities"].transpose(0, 3, 2, 1)
    return seg, probs


def msseg_output(out: Path, stem: str, name: str) -> np.ndarray:
    return nib.load(out / f"{stem}_label-{name}.nii.gz").get_fdata()


def run_segment(folder, image, out, *extra) -> Path:
    assert main(["segment", str(folder), "-i", str(image), "-o", str(out), "--soft",
                 *map(str, extra)]) == 0
    return out


def test_2d_exact_matches_nnunet_predictor(models, tmp_path):
    out = run_segment(models["folders"]["2d"], models["image"], tmp_path / "o", "--nnunet-exact")
    seg, probs = nnunet_output(models["pred"]["2d"])
    cord, lesion = (msseg_output(out, "t2_ms_cut", n) > 0 for n in ("SC_seg", "lesion_seg"))
    assert (seg >= 1).sum() > 10000 and (seg == 2).sum() > 10000   # random weights mark a lot
    assert dice(cord, seg >= 1) >= 0.999
    assert dice(lesion, seg == 2) >= 0.999
    difference = np.abs(msseg_output(out, "t2_ms_cut", "lesion_probseg") - probs[1])
    print(f"2d: largest probability difference {difference.max():.2e}")
    assert difference.max() < 5e-3   # a few float16 steps (nnU-Net rounds to float16)
    src = nib.load(models["image"]).header
    written = nib.load(out / "t2_ms_cut_label-lesion_seg.nii.gz").header
    for key in io.GEOMETRY_FIELDS:
        np.testing.assert_array_equal(written[key], src[key])


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_2d_crop_matches_inside_the_cord_neighbourhood(models, tmp_path, backend):
    out = run_segment(models["folders"]["2d"], models["image"], tmp_path / "o", "--backend",
                      backend)
    seg, _ = nnunet_output(models["pred"]["2d"])
    cord = msseg_output(out, "t2_ms_cut", "SC_seg") > 0
    lesion = msseg_output(out, "t2_ms_cut", "lesion_seg") > 0
    near = cord_neighbourhood(models["image"], radius_mm=CROP_RADIUS_MM)
    assert near.sum() > 3000
    assert dice(cord[near], seg[near] >= 1) >= 0.99
    assert dice(lesion[near], seg[near] == 2) >= 0.99
    assert not cord[outside_crop(models["image"], margin_mm=20)].any()  # background there


def outside_crop(image_path: Path, margin_mm: float) -> np.ndarray:
    """Voxels farther than ``margin_mm`` along x or y from the centerline's extent (the crop
    reaches CROP_RADIUS_MM beyond it along the grid axes; the scan is a few degrees
    oblique)."""
    from msseg.inference.centerline import CenterlineFinder

    image = io.load(image_path)
    line = CenterlineFinder().find(image).world()
    xyz = image.world_coordinates(np.indices(image.shape).reshape(3, -1).T)
    lo, hi = line[:, :2].min(0) - margin_mm, line[:, :2].max(0) + margin_mm
    return ((xyz[:, :2] < lo) | (xyz[:, :2] > hi)).any(1).reshape(image.shape)


def cord_neighbourhood(image_path: Path, radius_mm: float) -> np.ndarray:
    """Voxels within ``radius_mm`` (in-plane) of the stage-1 centerline of the scan."""
    from msseg.inference.centerline import CenterlineFinder

    image = io.load(image_path)
    line = CenterlineFinder().find(image).world()
    xyz = image.world_coordinates(np.indices(image.shape).reshape(3, -1).T)
    nearest = np.abs(xyz[:, 2][:, None] - line[None, :, 2]).argmin(1)
    distance = np.linalg.norm(xyz[:, :2] - line[nearest, :2], axis=1)
    return (distance < radius_mm).reshape(image.shape)


def test_image_orientation_is_honoured(models, tmp_path):
    """dataset.json declares RPI (as SCT's axial-T2w model does): msseg reorients any input to
    it, so a PIR copy of the scan gives nnU-Net's masks of the RPI scan, in PIR."""
    folder = tmp_path / "rpi" / models["folders"]["2d"].name
    shutil.copytree(models["folders"]["2d"], folder)
    dataset = json.loads((folder / "dataset.json").read_text())
    (folder / "dataset.json").write_text(json.dumps({**dataset, "image_orientation": "RPI"}))
    turned = tmp_path / "t2_ms_pir.nii.gz"
    io.save(reorient(io.load(models["image"]), "PIR"), turned)
    out = run_segment(folder.parent, turned, tmp_path / "o", "--nnunet-exact", "--folds", "0,1")
    lesion = io.load(out / "t2_ms_pir_label-lesion_seg.nii.gz")
    assert lesion.orientation == "PIR"
    back = reorient(lesion, "LAS").data > 0
    seg, _ = nnunet_output(models["pred"]["2d"])
    assert dice(back, seg == 2) >= 0.999


def test_softmax_labels_match_nnunet(models, tmp_path):
    out = run_segment(models["folders"]["softmax"], models["image"], tmp_path / "o",
                      "--nnunet-exact")
    seg, probs = nnunet_output(models["pred"]["softmax"])
    cord = msseg_output(out, "t2_ms_cut", "SC_seg") > 0
    lesion = msseg_output(out, "t2_ms_cut", "lesion_seg") > 0
    assert dice(cord, seg >= 1) >= 0.999          # msseg's cord mask = cord ∪ lesion
    assert dice(lesion, seg == 2) >= 0.999
    difference = np.abs(msseg_output(out, "t2_ms_cut", "lesion_probseg") - probs[2])
    print(f"softmax: largest probability difference {difference.max():.2e}")
    assert difference.max() < 5e-3


def test_3d_fullres_matches_nnunet(models, tmp_path):
    out = run_segment(models["folders"]["3d"], models["image"], tmp_path / "o", "--nnunet-exact")
    seg, probs = nnunet_output(models["pred"]["3d"])
    cord = msseg_output(out, "t2_ms_cut", "SC_seg") > 0
    lesion = msseg_output(out, "t2_ms_cut", "lesion_seg") > 0
    assert dice(cord, seg >= 1) >= 0.999 and dice(lesion, seg == 2) >= 0.999
    difference = np.abs(msseg_output(out, "t2_ms_cut", "lesion_probseg") - probs[1])
    print(f"3d: largest probability difference {difference.max():.2e}")
    assert difference.max() < 5e-3
    out = run_segment(models["folders"]["3d"], models["image"], tmp_path / "crop")
    near = cord_neighbourhood(models["image"], radius_mm=CROP_RADIUS_MM)
    cropped = msseg_output(out, "t2_ms_cut", "SC_seg") > 0
    assert dice(cropped[near], seg[near] >= 1) >= 0.99


def test_folds_threshold_and_import(models, tmp_path, monkeypatch, capsys):
    folder = models["folders"]["2d"]
    image = models["image"]
    assert main(["segment", str(folder), "-i", str(image), "-o", str(tmp_path / "x"),
                 "--folds", "7"]) == 1
    assert "not available (available: 0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert main(["segment", str(models["folders"]["softmax"]), "-i", str(image), "-o",
                 str(tmp_path / "y"), "--threshold", "0.3"]) == 1
    assert "softmax" in capsys.readouterr().err
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "store"))
    # SCT keeps its models as <task>/nnUNetTrainer__…; import that parent folder
    assert main(["models", "import", str(folder.parent), "--name", "peer_2d"]) == 1
    assert "not a model folder" in capsys.readouterr().err  # (the parent holds 3 folders)
    assert main(["models", "import", str(folder), "--name", "peer_2d"]) == 0
    assert main(["models", "import", str(folder), "--name", "peer_2d"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["segment", "--list"]) == 0
    listing = capsys.readouterr().out
    assert "== peer_2d [imported] ==" in listing and f"source: {folder.resolve()}" in listing
    assert main(["segment", "peer_2d", "-i", str(image), "-o", str(tmp_path / "z"),
                 "--folds", "1", "--no-postprocess"]) == 0
    recorded = json.loads((tmp_path / "z" / "segment_options.json").read_text())
    assert recorded["options"]["folds"] == "1" and recorded["options"]["postprocessing"] is False
