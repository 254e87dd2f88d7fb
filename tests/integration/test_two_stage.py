"""The two-stage framework end to end on phantoms: CNN1 training with Nyúl standardisation,
`msseg centerline`, stage-2 training on tubes along the centerline, `msseg segment`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from msseg import io
from msseg.cli.main import main
from msseg.data.index import load_index
from msseg.evaluation.centerline import centerline_from_mask
from msseg.inference.centerline import CenterlineFinder
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import Segmenter
from msseg.models.networks import DilatedUNet
from msseg.models.registry import open_model
from msseg.training.augment import RandLesionEdged
from msseg.training.config import TrainConfig
from msseg.training.loop import train
from msseg.training.package import package_checkpoint
from phantom_data import phantom_index


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return phantom_index(tmp_path_factory.mktemp("phantoms"), n=3)


def tiny(index, out, **changes) -> TrainConfig:
    base = TrainConfig(dataset=str(index), output=str(out), epochs=1, iterations_per_epoch=2,
                       batch_size=2, base_filters=4, max_filters=16, val_max_cases=1,
                       num_threads=1, optimizer="adam", learning_rate=1e-3, loss="dice",
                       normalization="nyul")
    return base.replace(**changes)


def test_dilated_unet_shapes_and_dilation():
    net = DilatedUNet((4, 8, 16), 1, dropout=0.2)
    assert net(torch.zeros(2, 1, 96, 96)).shape == (2, 1, 96, 96)
    dilations = [m.dilation for m in net.enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert dilations == [(3, 3), (1, 1), (3, 3), (1, 1)]


def test_lesion_edge_augmentation_erodes_or_dilates_by_one_voxel():
    label = np.zeros((2, 9, 9, 9), np.float32)
    label[1, 3:6, 3:6, 3:6] = 1
    seen = set()
    for seed in range(20):
        t = RandLesionEdged("label", channel=1, prob=1.0)
        t.set_random_state(seed)
        out = t({"label": label})["label"]
        seen.add(int(out[1].sum()))
        assert out[0].sum() == 0      # other channels untouched
    # erosion of the 3x3x3 cube by the 3D cross leaves its centre (1); dilation adds the
    # 6 faces of 9 voxels (27 + 54 = 81)
    assert seen == {1, 81}


@pytest.mark.slow
def test_cnn1_then_stage2_end_to_end(index, tmp_path, capsys):
    cnn1_run = train(tiny(index, tmp_path / "cnn1", task="centerline",
                          architecture="dilated_unet", regions=("cord",), patch_size=(32, 32),
                          target_spacing=(0.5, 0.5), dropout=0.2, augmentation="cnn1"))
    cnn1 = package_checkpoint(cnn1_run / "checkpoint_best.pt", tmp_path / "cnn1_model", "# t\n")
    plan = cnn1.plan
    assert plan.architecture == "dilated_unet" and plan.regions == ("cord",)
    assert len(plan.intensity["landmarks"]) == 11 and plan.intensity["std"] > 0
    image_path = load_index(index)[0].image
    image = io.load(image_path)
    heat, grid = CenterlineFinder("cnn", cnn1).heatmap(image)
    assert heat.shape == grid.shape and 0 <= heat.min() and heat.max() <= 1
    assert grid.spacing[:2] == pytest.approx((0.5, 0.5))

    # msseg centerline: the intensity baseline finds the phantom's cord on every slice
    out = tmp_path / "cl"
    assert main(["centerline", "-i", image_path, "-o", str(out), "--method", "intensity"]) == 0
    stem = io.strip_nifti_suffix(image_path.rsplit("/", 1)[-1])
    table = pd.read_csv(out / f"{stem}_centerline.csv")
    mask = io.load(out / f"{stem}_centerline.nii.gz")
    assert list(table.columns[:4]) == ["slice", "x", "y", "z"] and len(table) == image.shape[2]
    assert mask.data.sum() == image.shape[2]
    np.testing.assert_array_equal(mask.affine, image.affine)
    cord = io.load(load_index(index)[0].cord).data > 0
    truth = centerline_from_mask(cord)
    found = centerline_from_mask(mask.data > 0)
    # the baseline is coarse (mm): on the first slice two blobs score within 2% of each other,
    # and a one-voxel change of a candidate's position decides which one the path takes
    error = np.abs(found - truth).max(axis=1) * image.spacing[0]
    assert (error < 5.0).sum() >= len(error) - 1 and error.max() < 7.0
    assert main(["centerline", "-i", image_path, "-o", str(out), "--method", "intensity"]) == 1
    assert "exists" in capsys.readouterr().err

    # stage 2 on tubes along the centerline, then msseg segment's pipeline
    run = train(tiny(index, tmp_path / "sc", task="lesion_2stage", dims=3, architecture="unet",
                     frame="centerline", patch_size=(16, 16, 16), target_spacing=(0.5,) * 3,
                     dropout=0.4, augmentation="cnn2", lesion_share=0.5))
    model = package_checkpoint(run / "checkpoint_best.pt", tmp_path / "m", "# t\n")
    assert model.plan.frame == "centerline" and model.plan.filters == (4, 8, 16)
    seg = Segmenter(model, SegmentOptions(centerline="intensity"))
    result = seg.segment(image, image_path)
    assert result.centerline is not None and result.centerline.found
    assert result.cord.shape == image.shape and result.cord.data.dtype == np.uint8
    np.testing.assert_array_equal(result.cord.affine, image.affine)
    with pytest.raises(Exception, match="centerline"):
        Segmenter(open_model(tmp_path / "cnn1_model"))
