"""msseg's nnU-Net adapter, piece by piece, against nnU-Net v2's own functions (nnunetv2 2.6.0,
a test extra) and on hand-built cases: window grid, Gaussian, resampling, non-zero crop,
normalisation, label handling, orientation codes, safe checkpoint loading, network factory."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from msseg.errors import MssegError
from msseg.models import nnunet_folder as adapter
from msseg.models.windows import WindowRunner, gaussian_weights, window_starts, windows
from msseg.preprocess import nnunet_preprocessing as nn

REQUIRE = os.environ.get("MSSEG_REQUIRE_DATA") == "1"


def nnunet_module(name: str):
    """An nnunetv2 module (the peer): fails under MSSEG_REQUIRE_DATA=1 if it cannot import."""
    try:
        return pytest.importorskip(name, reason="nnunetv2 (test extra) not installed")
    except pytest.skip.Exception:
        if REQUIRE:
            pytest.fail("nnunetv2 must be importable (pip install -e '.[test]')")
        raise


@pytest.mark.parametrize("size,patch", [(382, 320), (320, 320), (110, 64), (442, 320),
                                        (19, 6), (1000, 128), (129, 128), (6, 6)])
def test_window_starts_match_nnunet(size, patch):
    peer = nnunet_module("nnunetv2.inference.sliding_window_prediction")
    expected = peer.compute_steps_for_sliding_window((size,), (patch,), 0.5)[0]
    assert window_starts(size, patch) == expected


def test_window_starts_hand_example():
    assert window_starts(382, 320) == [0, 62]   # the example
    assert window_starts(110, 64) == [0, 23, 46]


@pytest.mark.parametrize("patch", [(320, 320), (6, 128, 128), (7, 33)])
def test_gaussian_matches_nnunet(patch):
    peer = nnunet_module("nnunetv2.inference.sliding_window_prediction")
    ref = peer.compute_gaussian(patch, 1 / 8, 1, dtype=torch.float32,
                                device=torch.device("cpu")).numpy()
    np.testing.assert_allclose(gaussian_weights(patch, half=False), ref, rtol=1e-6,
                               atol=1e-12)


def test_windows_touching_a_region_of_interest():
    # 2D configuration: slices (axis 0) one at a time; in-plane windows at 0 and 62
    all_windows = windows((3, 382, 320), (320, 320))
    assert len(all_windows) == 3 * 2
    near_start = windows((3, 382, 320), (320, 320), box=(slice(1, 2), slice(0, 50),
                                                          slice(0, 320)))
    assert near_start == [(slice(1, 2), slice(0, 320), slice(0, 320))]


def test_window_runner_blends_to_the_identity_and_skips_outside_the_roi():
    def echo(x):
        return np.concatenate([x, -x], 1)

    rng = np.random.default_rng(0)
    data = rng.normal(size=(1, 50, 41, 3)).astype(np.float32)
    runner = WindowRunner([echo, echo], (16, 16, 3), batch_size=3)
    out, covered = runner.predict(data, 2)
    assert covered.all()
    np.testing.assert_allclose(out[0], data[0], atol=1e-5)   # weighted mean of copies
    np.testing.assert_allclose(out[1], -data[0], atol=1e-5)
    roi = np.zeros(data.shape[1:], bool)
    roi[2:9, 30:35, :] = True
    part, covered = runner.predict(data, 2, roi)
    assert covered[roi].all() and not covered.all()
    np.testing.assert_allclose(part[0][roi], data[0][roi], atol=1e-5)
    np.testing.assert_allclose(part[0][roi], out[0][roi], atol=1e-6)   # as the whole pass


def test_window_runner_pads_small_images_centred():
    def ones(x):
        return (x != 0).astype(np.float32)

    data = np.ones((1, 5, 7), np.float32)
    out, covered = WindowRunner([ones], (8, 8)).predict(data, 1)
    assert out.shape == (1, 5, 7) and covered.all()
    np.testing.assert_allclose(out, 1.0)   # the padding (zeros) was cut away again


@pytest.mark.parametrize("shape,new,spacing,target,order", [
    ((1, 19, 64, 50), (19, 88, 70), (7.5, 0.69, 0.69), (7.5, 0.5, 0.5), 3),  # 2D: in-plane
    ((1, 20, 24, 22), (26, 31, 17), (1.0, 1.0, 1.0), (0.77, 0.77, 1.3), 3),  # joint 3D
    ((1, 9, 40, 30), (14, 50, 37), (6.0, 0.8, 0.8), (3.85, 0.64, 0.65), 3),  # separate z
    ((2, 9, 40, 30), (5, 31, 20), (6.0, 0.8, 0.8), (10.8, 1.03, 1.2), 1),    # back, order 1
])
def test_resampling_matches_nnunet(shape, new, spacing, target, order):
    peer = nnunet_module("nnunetv2.preprocessing.resampling.default_resampling")
    rng = np.random.default_rng(1)
    data = rng.normal(size=shape).astype(np.float32)
    expected = peer.resample_data_or_seg_to_shape(data, new, spacing, target, is_seg=False,
                                                  order=order, order_z=0,
                                                  force_separate_z=None)
    axis = nn.separate_axis(spacing, target, None)
    ours = nn.resample(data, new, axis, order, 0)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_separate_axis_rule():
    assert nn.separate_axis((7.5, 0.5, 0.5), (7.5, 0.5, 0.5), None) == 0
    assert nn.separate_axis((1, 1, 1), (1, 1, 4), None) == 2
    assert nn.separate_axis((1, 1, 1), (1, 1, 2), None) is None
    assert nn.separate_axis((0.24, 1.25, 1.25), (0.24, 1.25, 1.25), None) is None  # 2 axes tie


def test_nonzero_crop_matches_nnunet():
    peer = nnunet_module("nnunetv2.preprocessing.cropping.cropping")
    data = np.zeros((12, 15, 9), np.float32)
    data[3:9, 2:11, 1:7] = 1.0
    data[5, 5, 3] = 0.0            # a hole: filled, does not split the box
    _, _, bbox = peer.crop_to_nonzero(data[None])
    assert nn.nonzero_box(data) == tuple(slice(a, b) for a, b in bbox)
    assert nn.nonzero_box(np.zeros((3, 4, 5))) == (slice(0, 3), slice(0, 4), slice(0, 5))


@pytest.mark.parametrize("scheme,use_mask", [("ZScoreNormalization", False),
                                              ("ZScoreNormalization", True),
                                              ("CTNormalization", False),
                                              ("RescaleTo01Normalization", False)])
def test_normalisation_matches_nnunet(scheme, use_mask):
    peer = nnunet_module("nnunetv2.preprocessing.normalization.default_normalization_schemes")
    rng = np.random.default_rng(2)
    data = rng.gamma(2.0, 50.0, size=(10, 11, 12)).astype(np.float32)
    data[:2] = 0
    props = {"mean": 90.0, "std": 40.0, "percentile_00_5": 5.0, "percentile_99_5": 300.0}
    inside = data != 0
    seg = np.where(inside, 0, -1)
    expected = getattr(peer, scheme)(use_mask, props).run(data.copy(), seg)
    plan = nn.NnunetPlan("3d", (1, 1, 1), (8, 8, 8), (0, 1, 2), scheme, use_mask, props)
    np.testing.assert_allclose(nn.normalize_scheme(data.copy(), plan, inside), expected, rtol=1e-5,
                               atol=1e-5)


def test_label_map_region_based_matches_nnunet():
    peer = nnunet_module("nnunetv2.utilities.label_handling.label_handling")
    dataset = {"labels": {"background": 0, "sc": [1, 2], "lesion": 2},
               "regions_class_order": [1, 2]}
    ours = adapter.LabelMap.from_dataset(dataset)
    theirs = peer.LabelManager(dataset["labels"], dataset["regions_class_order"])
    assert ours.heads == theirs.num_segmentation_heads == 2
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 6, 7, 5)).astype(np.float32) * 4
    expected = theirs.convert_logits_to_segmentation(torch.from_numpy(logits)).numpy()
    probs = ours.probabilities(logits.copy())
    np.testing.assert_allclose(probs, torch.sigmoid(torch.from_numpy(logits)).numpy(),
                               rtol=1e-6)
    seg = ours.label_map(probs)
    np.testing.assert_array_equal(seg, expected)
    masks, maps = ours.named_maps(seg, probs)
    assert set(masks) == {"cord", "lesion"}
    np.testing.assert_array_equal(masks["cord"], expected >= 1)   # sc = cord ∪ lesion
    np.testing.assert_array_equal(masks["lesion"], expected == 2)
    np.testing.assert_array_equal(maps["lesion"], probs[1])


def test_label_map_softmax_cord_covers_lesion_and_other_labels_keep_names():
    dataset = {"labels": {"background": 0, "cord": 1, "lesion": 2, "CSF-space": 3}}
    labels = adapter.LabelMap.from_dataset(dataset)
    assert not labels.region_based and labels.heads == 4
    assert labels.outputs() == {"cord": (1, 2), "lesion": (2,), "CSFspace": (3,)}
    logits = np.zeros((4, 1, 1, 4), np.float32)
    for voxel, label in enumerate((0, 1, 2, 3)):
        logits[label, 0, 0, voxel] = 5
    probs = labels.probabilities(logits)
    np.testing.assert_allclose(probs.sum(0), 1, rtol=1e-6)
    seg = labels.label_map(probs)
    masks, maps = labels.named_maps(seg, probs)
    assert masks["cord"][0, 0].tolist() == [False, True, True, False]
    assert masks["lesion"][0, 0].tolist() == [False, False, True, False]
    assert masks["CSFspace"][0, 0].tolist() == [False, False, False, True]
    np.testing.assert_allclose(maps["cord"], probs[1] + probs[2])


def test_label_map_errors():
    with pytest.raises(MssegError, match="background"):
        adapter.LabelMap.from_dataset({"labels": {"sc": 1}})
    with pytest.raises(MssegError, match="regions_class_order"):
        adapter.LabelMap.from_dataset({"labels": {"background": 0, "sc": [1, 2], "lesion": 2}})


def test_sct_orientation_codes():
    assert nn.sct_to_nibabel("RPI") == "LAS"
    assert nn.sct_to_nibabel("AIL") == "PSR"
    for bad in ("RPX", "RRI", "RP"):
        with pytest.raises(MssegError, match="orientation"):
            nn.sct_to_nibabel(bad)


def _corners(affine: np.ndarray, shape) -> np.ndarray:
    ijk = np.array(np.meshgrid(*[[-0.5, n - 0.5] for n in shape], indexing="ij")).reshape(3, -1)
    return np.sort((affine @ np.vstack([ijk, np.ones(8)]))[:3].T, axis=0)


def test_network_grid_maps_voxels_to_their_world_points():
    from msseg.image import Image

    affine = np.array([[-0.5, 0, 0, 10], [0, 0.6, 0, -20], [0, 0, 7, 3], [0, 0, 0, 1.0]])
    data = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3) + 1
    image = Image(data, affine)
    # reoriented to PIR, axes reversed by the reader, then transposed (0, 2, 1); the plan's
    # spacing is the image's own, so no resampling: every value must sit at its world point
    # (PIR: shape (5, 3, 4) at (0.6, 7, 0.5) mm; reversed (4, 3, 5); transposed (4, 5, 3))
    plan = nn.NnunetPlan("3d", (0.5, 0.6, 7.0), (2, 2, 2), (0, 2, 1), "NoNormalization",
                         False, {}, orientation="PIR")
    prepared = nn.preprocess(image, plan)
    assert prepared.oriented.orientation == "PIR"
    assert prepared.data.shape[1:] == (4, 5, 3)
    inverse = np.linalg.inv(image.affine)
    for index in np.ndindex(prepared.data.shape[1:]):
        world = prepared.grid.affine @ np.r_[index, 1]
        voxel = np.round(inverse @ world)[:3].astype(int)
        assert image.data[tuple(voxel)] == prepared.data[(0, *index)]
    # with resampling, the grid still covers the same world box corner to corner
    plan = nn.NnunetPlan("3d", (0.25, 0.3, 3.5), (2, 2, 2), (0, 2, 1), "NoNormalization",
                         False, {}, orientation="PIR")
    prepared = nn.preprocess(image, plan)
    np.testing.assert_allclose(_corners(prepared.grid.affine, prepared.data.shape[1:]),
                               _corners(image.affine, image.shape), atol=1e-9)


def test_checkpoints_load_safely(tmp_path):
    weights = {"w": torch.ones(2)}
    good = {"network_weights": weights, "logging": {"loss": [np.float64(0.5)]},
            "init_args": {"configuration": "2d", "device": torch.device("cpu")},
            "_best_ema": np.float64(0.4), "inference_allowed_mirroring_axes": (0, 1)}
    torch.save(good, tmp_path / "good.pth")
    loaded = adapter.load_checkpoint(tmp_path / "good.pth")
    assert float(loaded["logging"]["loss"][0]) == 0.5 and loaded["init_args"]["configuration"]

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo unsafe",))

    torch.save({"network_weights": weights, "x": Payload()}, tmp_path / "bad.pth")
    with pytest.raises(MssegError, match="cannot load checkpoint safely"):
        adapter.load_checkpoint(tmp_path / "bad.pth")
    torch.save({"weights": weights}, tmp_path / "other.pth")
    with pytest.raises(MssegError, match="not an nnU-Net checkpoint"):
        adapter.load_checkpoint(tmp_path / "other.pth")


def test_network_factory_refuses_foreign_classes():
    arch = {"network_class_name": "os.system", "arch_kwargs": {}, "_kw_requires_import": []}
    with pytest.raises(MssegError, match="not supported"):
        adapter.build_network(arch, 1, 2, "plans.json")
    arch = {"network_class_name": adapter.ARCHITECTURES[0],
            "arch_kwargs": {"conv_op": "os.system"}, "_kw_requires_import": ["conv_op"]}
    with pytest.raises(MssegError, match="not a torch.nn module"):
        adapter.build_network(arch, 1, 2, "plans.json")


def test_folder_detection_folds_and_configuration(tmp_path):
    folder = tmp_path / "model" / "nnUNetTrainer__nnUNetPlans__2d"
    (folder / "fold_0").mkdir(parents=True)
    (folder / "fold_3").mkdir()
    (folder / "fold_all").mkdir()
    for fold in ("fold_0", "fold_all"):
        (folder / fold / "checkpoint_final.pth").write_bytes(b"")
    (folder / "fold_3" / "checkpoint_best.pth").write_bytes(b"")
    (folder / "plans.json").write_text(json.dumps({"configurations": {"2d": {}}}))
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "sc": 1}}))
    assert adapter.trainer_folder(tmp_path / "model") == folder   # SCT's layout
    model = adapter.NnunetFolder(folder)
    assert model.folds == ["0", "3", "all"] and model.configuration == "2d"
    assert model.select_folds(None) == ["0", "3", "all"]
    assert model.select_folds("3,0") == ["3", "0"]
    assert model.checkpoint("3").name == "checkpoint_best.pth"
    with pytest.raises(MssegError, match="not available"):
        model.select_folds("1")
    assert model.outputs == ("cord",)
