"""Training end to end on phantoms: a short run, exact resume, DDP with 2 CPU processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from msseg.cli.main import main
from msseg.training.config import TrainConfig
from msseg.training.loop import train
from phantom_data import phantom_index


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return phantom_index(tmp_path_factory.mktemp("phantoms"), n=4, contrasts=("T2w", "T2starw"))


def tiny(index, out, **changes):
    base = TrainConfig(dataset=str(index), output=str(out), epochs=2, iterations_per_epoch=2,
                       batch_size=2, patch_size=(32, 32), base_filters=4, max_filters=16,
                       val_max_cases=1, sampling="contrast-sqrt", num_threads=1)
    return base.replace(**changes)


def weights(run):
    return torch.load(run / "checkpoint_last.pt", weights_only=False)["model"]


@pytest.mark.slow
def test_two_iterations_then_resume_is_exact(index, tmp_path):
    straight = train(tiny(index, tmp_path / "a"))
    log = pd.read_csv(straight / "log.csv")
    assert log.epoch.tolist() == [0, 1] and log.train_loss.notna().all()
    assert {"checkpoint_best.pt", "checkpoint_last.pt", "config.yaml", "plan.json",
            "curves.png"} <= {p.name for p in straight.iterdir()}
    saved = torch.load(straight / "checkpoint_last.pt", weights_only=False)
    assert TrainConfig.from_dict(saved["config"]) == tiny(index, tmp_path / "a")
    # interrupted after one epoch, then resumed: identical weights and log
    train(tiny(index, tmp_path / "b"), max_epochs=1)
    assert len(pd.read_csv(tmp_path / "b" / "log.csv")) == 1
    resumed = train(tiny(index, tmp_path / "b"), resume=True)
    a, b = weights(straight), weights(resumed)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    pd.testing.assert_series_equal(pd.read_csv(resumed / "log.csv").train_loss, log.train_loss,
                                   rtol=1e-5)


@pytest.mark.slow
def test_cli_train_with_init_from(index, tmp_path, capsys):
    first = train(tiny(index, tmp_path / "a", epochs=1))
    code = main(["train", "--dataset", str(index), "-o", str(tmp_path / "ft"), "--epochs", "1",
                 "--iterations-per-epoch", "1", "--batch-size", "2", "--patch-size", "32,32",
                 "--init-from", str(first / "checkpoint_best.pt")])
    # a different default topology (filters 16…): compatible tensors only
    assert code == 0
    err = capsys.readouterr().err
    assert "init from" in err and "loaded" in err and "not loaded" in err
    assert "not loaded 0" not in err
    # --base-filters/--max-filters give the first run's width: every tensor is loaded
    assert main(["train", "--dataset", str(index), "-o", str(tmp_path / "same"), "--epochs", "1",
                 "--iterations-per-epoch", "1", "--batch-size", "2", "--patch-size", "32,32",
                 "--base-filters", "4", "--max-filters", "16",
                 "--init-from", str(first / "checkpoint_best.pt")]) == 0
    assert "not loaded 0" in capsys.readouterr().err
    plan = json.loads((tmp_path / "same" / "plan.json").read_text())
    assert plan["filters"] == json.loads((first / "plan.json").read_text())["filters"]
    assert plan["filters"][:3] == [4, 8, 16]


@pytest.mark.slow
def test_ddp_two_cpu_processes(index, tmp_path):
    config = tiny(index, tmp_path / "ddp", epochs=1, iterations_per_epoch=2, batch_size=4)
    path = config.to_yaml(tmp_path / "ddp.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "msseg.cli.main", "train", str(path)],
        capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    sums = json.loads((tmp_path / "ddp" / "distributed.json").read_text())["param_sums"]
    assert len(sums) == 2 and sums[0] == sums[1]  # replicas stayed in sync
    log = pd.read_csv(tmp_path / "ddp" / "log.csv")
    assert log.world_size.tolist() == [2]


@pytest.mark.slow
def test_package_and_predict_in_native_space(index, tmp_path):
    from msseg import io
    from msseg.data.index import load_index
    from msseg.inference.segment import Segmenter
    from msseg.models.registry import find_model
    from msseg.training.package import package_checkpoint

    run = train(tiny(index, tmp_path / "a", epochs=1))
    model = package_checkpoint(run / "checkpoint_best.pt", tmp_path / "model", "# card\n")
    assert find_model(str(model.path)).card == "# card\n"
    assert model.task == "lesion_ms_axial_t2"
    assert (model.path / "model.pt").stat().st_size < 50e6
    image = io.load(load_index(index)[0].image)
    result = Segmenter(model).segment(image)
    for mask in (result.cord, result.lesion):
        assert mask.shape == image.shape and mask.header is image.header
        assert set(mask.data.ravel().tolist()) <= {0, 1}
    prob = result.lesion_probability.data
    assert prob.min() >= 0 and prob.max() <= 1


def test_unknown_task_lists_bundled():
    from msseg.errors import MssegError
    from msseg.models.registry import find_model

    with pytest.raises(MssegError, match="unknown task 'nope'"):
        find_model("nope")


@pytest.mark.slow
def test_3d_training_and_prediction(index, tmp_path):
    from msseg import io
    from msseg.data.index import load_index
    from msseg.inference.options import SegmentOptions
    from msseg.inference.segment import Segmenter
    from msseg.training.package import package_checkpoint

    run = train(tiny(index, tmp_path / "3d", dims=3, epochs=1, patch_size=(32, 32, 4)))
    plan = json.loads((run / "plan.json").read_text())
    assert plan["dims"] == 3 and plan["kernels"][0] == [3, 3, 1]  # 0.7 x 0.7 x 5 mm voxels
    model = package_checkpoint(run / "checkpoint_last.pt", tmp_path / "m3d", "# 3d\n")
    image = io.load(load_index(index)[0].image)
    result = Segmenter(model, SegmentOptions(crop=False)).segment(image)
    assert result.cord.shape == image.shape and result.cord.header is image.header


@pytest.mark.slow
def test_straightened_frame_trains_and_segments_in_native_space(index, tmp_path):
    import nibabel as nib
    import numpy as np

    from msseg import io
    from msseg.data.index import load_index
    from msseg.training.package import package_checkpoint

    run = train(tiny(index, tmp_path / "s", epochs=1, frame="straightened"))
    plan = json.loads((run / "plan.json").read_text())
    assert plan["frame"] == "straightened"
    model = package_checkpoint(run / "checkpoint_best.pt", tmp_path / "model", "# s\n")
    image = load_index(index)[0].image
    assert main(["segment", str(model.path), "-i", image, "-o", str(tmp_path / "o")]) == 0
    stem = io.strip_nifti_suffix(os.path.basename(image))
    out = nib.load(tmp_path / "o" / f"{stem}_label-SC_seg.nii.gz")
    src = nib.load(image)
    assert out.shape == src.shape
    for key in io.GEOMETRY_FIELDS:
        np.testing.assert_array_equal(out.header[key], src.header[key])
