"""SCT's released two-stage models (``../shared/models/sct_deepseg``) run by msseg, checked
against SCT's own outputs (``../shared/peers/sct_deepseg_lesion``, made by SCT with
``-centerline file``): the five networks, every intermediate image of the lesion pipeline, the
final masks voxel for voxel, the automatic centerline, the CLI contract and bad model files."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.inference import sct_lesion as sl
from msseg.models.keras import read_keras
from msseg.models.sct import NetworkFile, SctModel
from msseg.preprocess import sct
from msseg.preprocess.orient import to_rpi

pytestmark = pytest.mark.data

NETWORKS = ("t2_ctr", "t2s_ctr", "dwi_ctr", "t2_ax_lesion", "t2s_lesion")
#: case -> (image under shared/data, contrast, SCT's output stem)
CASES = {
    "t2_ms": ("spine/ms_patient_unlabelled/t2_ms/t2.nii.gz", "t2_ax", "t2"),
    "t2s_uncropped": ("spine/sct_testing_data/t2s/t2s_uncropped.nii.gz", "t2s", "t2s_uncropped"),
    "errsm_18_gre": ("spine/sct_2014_testing/errsm_18/gre/gre.nii.gz", "t2s", "gre"),
}
#: Lesion Dice of SCT's own automatic run (`-centerline cnn`, through the OptiC stand-in of
#: ../shared/peers/sct) against its `-centerline file` mask, measured on 2026-12-04 with the
#: peer install: 0.859, 0.507, 0.698. msseg's automatic centerline must do at least as well
#: (the 48 x 48 crop moved by one voxel changes SCT's output this much).
AUTO_DICE_FLOOR = {"t2_ms": 0.80, "t2s_uncropped": 0.50, "errsm_18_gre": 0.69}


def _ref(reference: Path, case: str, name: str) -> np.ndarray:
    return np.asarray(nib.load(reference / case / f"{name}.nii.gz").get_fdata(), np.float64)


@pytest.fixture(scope="module")
def segmenters(sct_models):
    return {c: sl.SctLesionSegmenter(SctModel.from_file(sct_models / f"{c}_lesion.h5"))
            for c in ("t2_ax", "t2s")}


@pytest.mark.parametrize("name", NETWORKS)
def test_networks_match_scts_conversions(sct_models, sct_reference, name):
    """ONNX Runtime (the default) within 1e-5 of SCT's own ONNX outputs (1e-4 for t2s_ctr,
    whose conversion differs from Keras by 6e-5), the torch fallback too, same masks."""
    ref = np.load(sct_reference / "network_io" / f"{name}.npz")
    x, y = ref["input"], ref["output"]
    if str(ref["layout"]) == "NHWC":   # msseg's layout is channels first
        x, y = np.moveaxis(x, -1, 1), np.moveaxis(y, -1, 1)
    tolerance = 1e-4 if name == "t2s_ctr" else 1e-5
    threshold = float(ref["threshold"])
    network = NetworkFile(sct_models / f"{name}.h5")
    for backend, n in (("onnx", len(x)), ("torch", 1)):   # (torch: float64, slower)
        out = np.concatenate([network.network(backend)(x[i:i + 1]) for i in range(n)])
        x, y = x[:n], y[:n]
        assert out.shape == y.shape
        assert np.abs(out - y).max() <= tolerance, backend
        assert ((out > threshold) == (y > threshold)).all(), backend
    model = read_keras(sct_models / f"{name}.h5")
    assert model.parameters == {"t2_ctr": 118033, "t2s_ctr": 39337, "dwi_ctr": 29961,
                                "t2_ax_lesion": 208865, "t2s_lesion": 246929}[name]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_lesion_pipeline_equals_scts(shared_data, sct_reference, segmenters, case):
    """With SCT's centerline file: every intermediate of SCT's pipeline within float32
    rounding and the lesion mask voxel for voxel (SCT's ``_lesionseg``)."""
    image_path, contrast, stem = CASES[case]
    image = io.load(shared_data / image_path)
    centerline = io.load(sct_reference / case / "centerline_input.nii.gz")
    segmenter = segmenters[contrast]
    rpi = to_rpi(image)
    grid = sl.SctGrid(rpi)
    step1 = nib.load(sct_reference / case / "sct_tmp" / "image_in_RPI_res.nii.gz")
    assert grid.shape == step1.shape
    assert np.allclose(grid.affine, step1.affine, atol=1e-6)
    assert np.allclose(sct.sample(rpi.data, grid.factor, grid.shape),
                       _ref(sct_reference, case, "sct_tmp/image_in_RPI_res"), rtol=1e-7,
                       atol=1e-6)
    assert np.allclose(sct.sample(to_rpi(centerline).data, grid.factor, grid.shape),
                       _ref(sct_reference, case, "sct_tmp/image_in_RPI_res_ctr"), atol=1e-9)
    centres = sl.file_centres(centerline, image, grid, case)
    crop, starts = sl.crop_stack(rpi.data, grid, centres)
    boxes = json.loads((sct_reference / case / "case.json").read_text())["intermediates"][
        "crop_boxes"]
    assert starts == {b["z"]: (b["x_start"], b["y_start"]) for b in boxes}
    assert np.allclose(crop, _ref(sct_reference, case, "recomputed/crop"), atol=1e-6)
    norm = sct.nyul(crop, segmenter.contrast.landmarks)   # values up to 2611: float32 ulp
    assert np.abs(norm - _ref(sct_reference, case, "sct_tmp/image_in_RPI_res_norm")).max() \
        <= 2.5e-4
    volume, n3d = sl.resample_crop_3d(norm, grid)
    assert np.abs(volume - _ref(sct_reference, case, "sct_tmp/image_in_RPI_res_norm_"
                                "resampled3d")).max() <= 2.5e-4
    prob, chunk_starts = segmenter.run_cnn2(volume)
    sct_prob = _ref(sct_reference, case, "recomputed/lesion_prob_resampled3d")
    for p, z in zip(prob[:, 0], chunk_starts, strict=True):
        n = min(sct.CHUNK, n3d - z)
        assert np.abs(p[:, :, :n] - sct_prob[:, :, z:z + n]).max() <= 1e-5
    seg3d = sct.unchunk(prob, chunk_starts, n3d)
    assert (seg3d == _ref(sct_reference, case, "sct_tmp/image_in_RPI_res_norm_resampled3d_"
                          "lesionseg")).all()
    seg2d = sl.resample_crop_back(seg3d, grid, crop.shape[2])
    assert np.allclose(seg2d, _ref(sct_reference, case, "sct_tmp/image_in_RPI_res_norm_"
                                   "resampled3d_lesionseg_resampled2d"), atol=1e-9)
    soft = segmenter.predict(rpi, grid, centres)
    assert np.allclose(soft, _ref(sct_reference, case, f"{stem}_RPI_seg"), atol=1e-6)
    result = segmenter.segment(image, case, centerline_mask=centerline)
    sct_mask = _ref(sct_reference, case, f"{stem}_lesionseg")
    assert int((result.lesion.data != sct_mask).sum()) == 0
    assert int(result.lesion.data.sum()) == json.loads(
        (sct_reference / case / "case.json").read_text())["result"]["lesion_voxels"]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_automatic_centerline_against_scts(shared_data, sct_reference, segmenters, case):
    """SCT's CNN1 + msseg's optimal path: within 1 mm (median) of the centerline SCT's own
    run used, and lesion Dice against SCT's mask at least SCT's own automatic run's."""
    image_path, contrast, stem = CASES[case]
    image = io.load(shared_data / image_path)
    result = segmenters[contrast].segment(image, case)
    grid = sl.SctGrid(to_rpi(image))
    theirs = sl.file_centres(io.load(sct_reference / case / "centerline_input.nii.gz"),
                             image, grid, case)
    ours = result.centerline.voxels
    distance = [np.hypot(*(ours[z] - np.asarray(c))) * sct.INPLANE_MM
                for z, c in theirs.items()]
    assert np.median(distance) <= 1.0
    sct_mask = _ref(sct_reference, case, f"{stem}_lesionseg") > 0
    mask = result.lesion.data > 0
    dice = 2 * (mask & sct_mask).sum() / (mask.sum() + sct_mask.sum())
    assert dice >= AUTO_DICE_FLOOR[case]


@pytest.mark.slow
def test_import_list_and_segment_cli(shared_data, sct_models, sct_reference, tmp_path,
                                     monkeypatch, capsys):
    """import-sct -> tasks in the list with SCT's cards -> segment with a centerline file:
    SCT's mask on the input's exact header, a lesion table, nothing next to the input; the
    .h5 file given directly gives the same mask."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "store"))
    assert main(["models", "import-sct", str(sct_models)]) == 0
    assert main(["segment", "--list"]) == 0
    listing = capsys.readouterr().out
    for name in ("sct_lesion_t2_ax", "sct_lesion_t2s", "sct_centerline_t2",
                 "sct_centerline_t2s", "sct_centerline_dwi"):
        assert f"== {name} [imported]" in listing
    assert "211 MR volumes" in listing and "Not trained by msseg" in listing
    assert f"source file: {sct_models / 't2_ax_lesion.h5'}" in listing
    assert main(["models", "import-sct", str(sct_models)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    image = shared_data / CASES["t2_ms"][0]
    before = sorted(p.name for p in image.parent.iterdir())
    centerline = sct_reference / "t2_ms" / "centerline_input.nii.gz"
    sct_mask = _ref(sct_reference, "t2_ms", "t2_lesionseg")
    for task, out in (("sct_lesion_t2_ax", tmp_path / "a"),
                      (str(sct_models / "t2_ax_lesion.h5"), tmp_path / "b")):
        assert main(["segment", task, "-i", str(image), "-o", str(out), "--centerline",
                     str(centerline), "--soft"]) == 0
        written = nib.load(out / "t2_label-lesion_seg.nii.gz")
        assert (np.asarray(written.dataobj) == sct_mask).all()
        source = nib.load(image)
        assert np.array_equal(written.affine, source.affine)
        assert written.header["qform_code"] == source.header["qform_code"]
        table = pd.read_csv(out / "t2_lesions.csv")
        assert len(table) == 5 and abs(table.volume_mm3.sum() - 283.594) < 0.01
        assert (out / "t2_label-lesion_probseg.nii.gz").is_file()
        options = json.loads((out / "segment_options.json").read_text())["options"]
        assert options["postprocessing"] is False
    assert sorted(p.name for p in image.parent.iterdir()) == before
    assert main(["segment", "lesion_ms_axial_t2", "-i", str(image), "-o", str(tmp_path / "c"),
                 "--centerline", str(centerline)]) == 1
    assert "only SCT's lesion models" in capsys.readouterr().err


def _copy_h5(source: Path, dest: Path, edit) -> Path:
    """A copy of a Keras file whose model_config is changed by ``edit(config)``."""
    dest.write_bytes(source.read_bytes())
    with h5py.File(dest, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config).encode()
    return dest


def _unknown_layer(config: dict) -> None:
    config["config"]["layers"][3]["class_name"] = "LSTM"


def _channels_first(config: dict) -> None:
    for layer in config["config"]["layers"]:
        if "data_format" in layer["config"]:
            layer["config"]["data_format"] = "channels_first"


def _bad_files(sct_models: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    folder.mkdir()
    not_keras = folder / "t2_ax_lesion.h5"
    with h5py.File(not_keras, "w") as f:
        f["x"] = np.zeros(3)
    truncated = folder / "t2s_lesion.h5"
    truncated.write_bytes((sct_models / "t2s_lesion.h5").read_bytes()[:20000])
    (folder / "u").mkdir()
    (folder / "c").mkdir()
    unknown = _copy_h5(sct_models / "t2_ctr.h5", folder / "u" / "t2_ctr.h5", _unknown_layer)
    layout = _copy_h5(sct_models / "t2s_ctr.h5", folder / "c" / "t2s_ctr.h5",
                      _channels_first)
    plain = folder / "model.h5"
    plain.write_bytes((sct_models / "t2_ctr.h5").read_bytes())
    return {"not keras": (not_keras, "not a Keras model file"),
            "truncated": (truncated, "truncated or damaged"),
            "unknown layer": (unknown, "of type LSTM is not supported"),
            "layout": (layout, "channels layout mismatch"),
            "unnamed": (plain, "not a model file msseg recognises")}


def test_bad_model_files_are_refused_in_one_line(shared_data, sct_models, tmp_path,
                                                 monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "store"))
    image = shared_data / CASES["t2_ms"][0]
    for what, (path, words) in _bad_files(sct_models, tmp_path / "bad").items():
        out = tmp_path / f"out_{what.replace(' ', '_')}"
        assert main(["segment", str(path), "-i", str(image), "-o", str(out)]) == 1, what
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and str(path) in err, (what, err)
        assert not out.exists(), what
        assert main(["models", "import", str(path)]) == 1, what
        assert words in capsys.readouterr().err, what
    assert not (tmp_path / "store" / "msseg" / "models").exists() or not any(
        p for p in (tmp_path / "store" / "msseg" / "models").iterdir()
        if not p.name.startswith("."))


def test_keras_module_layout_and_lambda(sct_models):
    """CNN1 is channels_last in its file, and runs channels first in msseg; its Lambda is
    SCT's division by a temperature of 1.0."""
    model = read_keras(sct_models / "t2_ctr.h5")
    assert model.layout == "channels_last" and model.spatial_shape == (80, 80)
    assert model.in_channels == 1 and model.dims == 2
    from msseg.models.keras_torch import build_module

    module = build_module(model)
    lambdas = [m for m in module.ops.values() if type(m).__name__ == "_Divide"]
    assert len(lambdas) == 1 and lambdas[0].divisor == 1.0
    lesion = read_keras(sct_models / "t2_ax_lesion.h5")
    assert lesion.layout == "channels_first" and lesion.spatial_shape == (48, 48, 48)


def test_scts_own_onnx_layout_is_read(sct_models, sct_reference, tmp_path):
    """SCT's ONNX conversions take CNN1 input as NHWC (``input_1``): an .onnx file of that
    form (made here from the .h5, as SCT's converter lays it out) runs in msseg's layout and
    gives SCT's outputs; such a model has no torch fallback."""
    import torch

    from msseg.errors import MssegError

    class Nhwc(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

    path = tmp_path / "t2_ctr.onnx"
    from msseg.models.keras_torch import build_module

    module = Nhwc(build_module(read_keras(sct_models / "t2_ctr.h5")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 80, 80, 1),), str(path),
                          input_names=["input_1"], output_names=["predictions"],
                          dynamic_axes={"input_1": {0: "n"}}, opset_version=17, dynamo=False)
    ref = np.load(sct_reference / "network_io" / "t2_ctr.npz")
    network = NetworkFile(path).network()
    out = network(np.moveaxis(ref["input"], -1, 1))
    assert np.abs(np.moveaxis(out, 1, -1) - ref["output"]).max() <= 1e-5
    with pytest.raises(MssegError, match="needs the Keras .h5"):
        NetworkFile(path).network("torch")


@pytest.mark.slow
def test_lesion_model_without_its_cnn1_uses_mssegs_stage_1(shared_data, sct_models,
                                                           sct_reference, tmp_path):
    """A lesion .h5 alone (no <contrast>_ctr file beside it): the centerline comes from
    msseg's own stage 1, within a millimetre of SCT's reference centerline (median)."""
    alone = tmp_path / "t2_ax_lesion.h5"
    alone.write_bytes((sct_models / "t2_ax_lesion.h5").read_bytes())
    model = SctModel.from_file(alone)
    assert model.centerline is None and "msseg's own stage 1" in model.card
    image = io.load(shared_data / CASES["t2_ms"][0])
    result = sl.SctLesionSegmenter(model).segment(image, "t2_ms")
    grid = sl.SctGrid(to_rpi(image))
    theirs = sl.file_centres(io.load(sct_reference / "t2_ms" / "centerline_input.nii.gz"),
                             image, grid, "t2_ms")
    distance = [np.hypot(*(result.centerline.voxels[z] - np.asarray(c))) * sct.INPLANE_MM
                for z, c in theirs.items() if result.centerline.detected[z]]
    assert len(distance) >= 15 and np.median(distance) <= 1.0


@pytest.mark.slow
def test_contract_bids_batch_and_qc(shared_data, sct_models, tmp_path, monkeypatch):
    """The contract of every task: a BIDS tree in, BIDS derivatives out (SCT's threshold in
    the sidecars, no post-processing), two local worker processes, a QC page; the masks
    equal those of one scan at a time."""
    import shutil

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "store"))
    assert main(["models", "import", str(sct_models / "t2s_lesion.h5")]) == 0
    root = tmp_path / "bids"
    (root / "sub-01" / "anat").mkdir(parents=True)
    (root / "sub-02" / "anat").mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "t", "BIDSVersion": "1.10.0"}))
    shutil.copy(shared_data / "spine/sct_2014_testing/errsm_18/gre/gre.nii.gz",
                root / "sub-01" / "anat" / "sub-01_T2star.nii.gz")
    shutil.copy(shared_data / "spine/sct_testing_data/t2s/t2s_uncropped.nii.gz",
                root / "sub-02" / "anat" / "sub-02_T2star.nii.gz")
    assert main(["segment", "sct_lesion_t2s", "-i", str(root), "--jobs", "2", "--qc",
                 str(tmp_path / "qc")]) == 0
    deriv = root / "derivatives" / "msseg"
    for sub in ("sub-01", "sub-02"):
        stem = deriv / sub / "anat" / f"{sub}_label-lesion_desc-T2star_mask"
        sidecar = json.loads(stem.with_suffix(".json").read_text())
        assert sidecar["Threshold"] == 0.1 and sidecar["Postprocessing"] is None
        alone = tmp_path / f"alone_{sub}"
        image = root / sub / "anat" / f"{sub}_T2star.nii.gz"
        assert main(["segment", "sct_lesion_t2s", "-i", str(image), "-o", str(alone)]) == 0
        assert (np.asarray(nib.load(f"{stem}.nii.gz").dataobj) == np.asarray(nib.load(
            alone / f"{sub}_T2star_label-lesion_seg.nii.gz").dataobj)).all()
    assert (tmp_path / "qc" / "index.html").is_file()
    assert json.loads((deriv / "dataset_description.json").read_text())["DatasetType"] == \
        "derivative"
