"""`msseg experiment preprocessing` on a tiny semi-synthetic chunk cohort (three sessions, two
sites)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.data.index import assign_folds, save_index, scan
from msseg.data.whole_spine import write_cohort
from msseg.evaluation.voxel import dice
from msseg.experiments import preprocessing as pre
from msseg.inference.options import SegmentResult
from msseg.preprocess import straighten as st
from msseg.training.config import TrainConfig

pytestmark = pytest.mark.slow

# patch_size: the 3D models' (a small one, for speed); 2D models plan their own
TINY = TrainConfig(epochs=1, iterations_per_epoch=2, batch_size=2, base_filters=4,
                   max_filters=16, val_max_cases=1, num_threads=1, augmentation="none",
                   foreground_fraction=1.0, patch_size=(64, 64, 16))


@pytest.fixture(scope="module")
def cohort(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    write_cohort(shared_data / "spine" / "PAM50", root / "bids", {"A": 2, "C": 1}, seed=4)
    return save_index(assign_folds(scan(root / "bids"), 2), root / "index.json")


class Oracle:
    """A perfect model: returns the reference masks of the image it is given."""

    def __init__(self, records):
        self.records = {r.image: r for r in records}

    def segment(self, image, name):
        record = self.records[name]
        masks = {k: io.load(p) for k, p in (("cord", record.cord), ("lesion", record.lesion))}
        masks = {k: m.with_data((m.data > 0).astype(np.uint8)) for k, m in masks.items()}
        return SegmentResult(masks, {k: m.with_data(m.data.astype(np.float32))
                                     for k, m in masks.items()}, pd.DataFrame(), 0.0, None)


def test_a_perfect_model_round_trips_to_native_space(cohort, tmp_path):
    from msseg.data.index import load_index

    design = pre.Preprocessing(load_index(cohort), TINY, ["chunks-native", "stitched-native"],
                               [2], folds=None)
    runs = {r.meta["variant"]: r for r in design.runs(tmp_path)}
    oracle = Oracle([*design.records, *design.stitched.values()])
    rows = {}
    for variant, run in runs.items():
        design._segmenter = (run.name, oracle)
        for case in design.chunks:
            for row in design.score(run, None, case).rows:
                rows[variant, case, row["reference"]] = row
    for case in design.chunks:
        native = rows["chunks-native", case, "chunks"]
        assert native["dice"] == native["cord_dice"] == native["lesion_f1"] == 1.0
        assert rows["stitched-native", case, "stitched"]["dice"] == 1.0
        back = rows["stitched-native", case, "chunks"]     # stitched -> every chunk's grid
        assert back["cord_dice"] >= 0.95 and back["dice"] >= 0.85
        assert back["lesion_f1"] == 1.0
        # stacking: every chunk's lesions counted once each; a lesion in an overlap is in two
        # chunks, so the stacked chunk references hold at least the stitched one's lesions
        assert native["n_ref_lesions"] >= rows["stitched-native", case, "stitched"][
            "n_ref_lesions"]
    # the straightened variants: straightened and back along the cord's own centerline
    for record in design.records:
        image, cord = io.load(record.image), io.load(record.cord)
        geometry = st.geometry_for(image, st.centerline_of_mask(cord))
        back = st.unstraighten(st.straighten_mask(cord, geometry), geometry, image, 1) >= 0.5
        assert dice(back, cord.data > 0) >= 0.95, record.image


def test_runner_trains_scores_resumes_and_summarises(cohort, tmp_path, monkeypatch):
    config = TINY.to_yaml(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    argv = ["experiment", "preprocessing", "--dataset", str(cohort), "-o", str(out),
            "--config", str(config), "--variants", "chunks-native,stitched-native",
            "--dims", "2,3", "--folds", "2", "--budget", "1x2", "--threads", "1"]
    real_score = pre.Preprocessing.score
    calls = []

    def killed_after_three(self, run, model, case):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append((run.name, case))
        return real_score(self, run, model, case)

    monkeypatch.setattr(pre.Preprocessing, "score", killed_after_three)
    assert main(argv) == 130                    # interrupted while scoring
    trained = sorted(out.glob("runs/*/*/*/model/model.pt"))
    assert 2 <= len(trained) < 8
    assert len(pd.read_csv(out / "results.csv")) == 3
    stamps = {p: p.stat().st_mtime for p in trained}
    monkeypatch.setattr(pre.Preprocessing, "score", real_score)
    assert main(argv) == 0
    assert all(p.stat().st_mtime == t for p, t in stamps.items())   # not trained again
    results = pd.read_csv(out / "results.csv")
    # every session once per variant × dims (by its fold's model); stitched: two references
    assert len(results) == 2 * 3 + 2 * 3 * 2
    assert len(trained_now := list(out.glob("runs/*/*/*/model/model.pt"))) == 8, trained_now
    assert not results.duplicated(["model", "case", "reference"]).any()
    assert set(results.reference) == {"chunks", "stitched"}
    stats = pd.read_csv(out / "statistics.csv")
    per_metric = stats[stats.metric == "dice"].test.value_counts().to_dict()
    assert per_metric == {"normality_dagostino_pearson": 4, "kruskal_wallis": 1,
                          "dunn_holm": 6, "wilcoxon_signed_rank": 2}
    assert set(stats.metric) == {"dice", "nsd", "lesion_ppv", "lesion_f1", "count_error",
                                 "cord_dice"}
    table = pd.read_csv(out / "table.csv")
    assert len(table) == 4 + 2 and set(table.reference) == {"chunks", "stitched"}
    assert "cord_dice" in table.columns
    for name in ("detection.png", "raincloud_dice.png", "detection_by_chunk.csv",
                 "detection_by_volume.csv", "lesion_counts.csv", "table.md"):
        assert (out / name).stat().st_size > 0, name
    regions = set(pd.read_csv(out / "detection_by_chunk.csv").region)
    assert regions <= {"cervical", "thoracic", "lumbar"} and regions
    assert Path(out / "variants" / "stitched" / "dataset.json").is_file()


def test_bad_arguments_stop_before_any_work(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["experiment", "preprocessing", "--dataset", str(cohort), "-o", str(out),
                 "--variants", "chunks-native,warped"]) == 1
    assert "unknown warped" in capsys.readouterr().err
    assert main(["experiment", "preprocessing", "--dataset", str(cohort), "-o", str(out),
                 "--budget", "0x5"]) == 1
    assert "at least 1" in capsys.readouterr().err
    assert not out.exists()


def test_test_sites_fold_ensembles_baseline_and_whole_context(cohort, tmp_path):
    config = TINY.to_yaml(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    assert main(["experiment", "preprocessing", "--dataset", str(cohort), "-o", str(out),
                 "--config", str(config), "--variants", "chunks-native", "--dims", "2",
                 "--whole-context", "--folds", "2", "--budget", "1x2", "--threads", "1",
                 "--train-sites", "A", "--test-sites", "C",
                 "--baseline", "lesion_ms_axial_t2"]) == 0
    results = pd.read_csv(out / "results.csv")
    cv = results[~results.fold.astype(str).isin(["ensemble", "test"])]
    assert set(cv.site) == {"A"} and len(cv) == 2 * 2          # 2 sessions × (2D, 3D whole)
    tested = results[results.fold.astype(str).isin(["ensemble", "test"])]
    assert set(tested.site) == {"C"}
    assert sorted(tested.model) == ["baseline/lesion_ms_axial_t2",
                                    "chunks-native/2d/ensemble",
                                    "chunks-native/3d-whole/ensemble"]
    general = pd.read_csv(out / "generalisation.csv")
    assert sorted(general.model) == ["baseline:lesion_ms_axial_t2 2D", "chunks-native 2D",
                                     "chunks-native 3D whole-context"]
    assert (general.site == "C").all() and (general.n == 1).all()
    from msseg.models.registry import open_model

    whole = open_model(out / "runs/chunks-native/3d-whole/fold0/model").plan
    lengths = [r.shape[2] for r in scan(Path(str(cohort)).parent / "bids") if r.site == "A"]
    # the whole S–I extent of the longest training chunk (the fold's own at its spacing),
    # beyond the 40-slice cap of patch models
    assert whole.patch_size[2] > 40 and whole.patch_size[2] >= 0.9 * max(lengths)
    assert len(list(out.glob("runs/*/*/*/model/model.pt"))) == 4   # no model for a baseline


def test_site_errors(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["experiment", "preprocessing", "--dataset", str(cohort), "-o", str(out)]
    assert main([*base, "--test-sites", "Q"]) == 1
    assert "site(s) Q not in the dataset" in capsys.readouterr().err
    assert main([*base, "--train-sites", "A"]) == 1
    assert "needs --test-sites" in capsys.readouterr().err
    assert main([*base, "--baseline", "lesion_ms_axial_t2"]) == 1
    assert not out.exists()
