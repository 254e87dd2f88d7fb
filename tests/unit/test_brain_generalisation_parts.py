"""Parts of the generalising brain FLAIR model: UNet++ on a ResNet-18-style encoder, the
scanner augmentation, and the threshold / minimum lesion size tuned on validation data and
carried by the plan into inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msseg.models.networks import ResNetUNetPlusPlus, build_network
from msseg.postprocess import PostprocessConfig
from msseg.preprocess.plan import Plan
from msseg.training.augment import augment_batch, build_augmentation
from msseg.training.tuning import score_pair, tune_postprocessing


def test_resnet_unetpp_shapes_nested_nodes_and_resnet18_layout():
    net = ResNetUNetPlusPlus((8, 16, 32, 64), out_channels=2)
    out = net(torch.zeros(2, 1, 64, 96))
    assert out.shape == (2, 2, 64, 96)
    # UNet++: nodes (i, j) for j = 1..4, i = 0..4-j: 4 + 3 + 2 + 1 = 10 decoder nodes
    assert sorted(net.nodes) == sorted(f"{i}_{j}" for j in range(1, 5) for i in range(5 - j))
    # node (0, 4) concatenates nodes (0, 0..3) (4 × 8 channels) and the up-sampled (1, 3) (8)
    assert net.nodes["0_4"].conv_0.conv.in_channels == 4 * 8 + 8
    # ResNet-18: two basic blocks in each of four stages, widths as given
    stages = [net.encoder.layer1, net.encoder.layer2, net.encoder.layer3, net.encoder.layer4]
    assert [len(s) for s in stages] == [2, 2, 2, 2]
    assert [s[-1].conv2.out_channels for s in stages] == [8, 16, 32, 64]
    maps = net.encoder(torch.zeros(1, 1, 64, 64))
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4, 2]   # strides 2, 4, 8, 16, 32


def test_resnet_unet_is_the_plain_decoder_on_the_same_encoder():
    torch.manual_seed(0)
    plain = ResNetUNetPlusPlus((8, 16, 32, 64), out_channels=1, nested=False)
    nested = ResNetUNetPlusPlus((8, 16, 32, 64), out_channels=1)
    assert sorted(plain.nodes) == ["0_4", "1_3", "2_2", "3_1"]     # one node per level
    assert plain.nodes["0_4"].conv_0.conv.in_channels == 8 + 8    # encoder map + up-sampled
    assert plain(torch.zeros(1, 1, 64, 64)).shape == (1, 1, 64, 64)
    encoder = {k for k in plain.state_dict() if k.startswith("encoder.")}
    assert encoder == {k for k in nested.state_dict() if k.startswith("encoder.")}
    count = [sum(p.numel() for p in n.parameters()) for n in (plain, nested)]
    assert count[0] < count[1]
    plan = Plan(2, (1.0, 1.0), (64, 64), ((3, 3),), ((1, 1),), (8, 16, 32, 64, 128),
                architecture="unet_resnet", regions=("lesion",))
    assert not build_network(plan).nested


def test_plan_builds_resnet_unetpp_and_round_trips_threshold():
    plan = Plan(2, (1.0, 1.0), (224, 224), ((3, 3),), ((1, 1),), (16, 32, 64, 128, 256),
                architecture="unetpp_resnet", regions=("lesion",), threshold=0.35,
                min_lesion_volume_mm3=5.0)
    net = build_network(plan)
    assert isinstance(net, ResNetUNetPlusPlus)
    assert net.encoder.layer4[-1].conv2.out_channels == 128      # filters[:4]
    again = Plan.from_dict(plan.to_dict())
    assert (again.threshold, again.min_lesion_volume_mm3) == (0.35, 5.0)
    old = {k: v for k, v in plan.to_dict().items()
           if k not in ("threshold", "min_lesion_volume_mm3")}
    assert (Plan.from_dict(old).threshold, Plan.from_dict(old).min_lesion_volume_mm3) == (0.5, None)


def test_scanner_augmentation_changes_intensities_not_labels_geometry_kept():
    transforms = build_augmentation(2, seed=3, profile="scanner")
    rng = np.random.default_rng(0)
    images = rng.random((16, 1, 48, 48)).astype(np.float32) + 1
    targets = np.zeros((16, 1, 48, 48), np.float32)
    targets[:, :, 20:28, 20:28] = 1
    out_i, out_t = augment_batch(transforms, images, targets)
    assert out_i.shape == images.shape and out_t.shape == targets.shape
    changed = [not np.allclose(a, b) for a, b in zip(out_i, images, strict=True)]
    assert sum(changed) >= 12          # nine intensity transforms, most samples touched
    assert set(np.unique(out_t)) <= {0.0, 1.0}


def _case():
    """A 40³ volume, 1 mm: two true lesions of probability 0.45 (27 voxels each) and a
    2-voxel false positive of probability 0.9."""
    prob = np.zeros((40, 40, 40), np.float32)
    ref = np.zeros(prob.shape, bool)
    for z in (5, 25):
        prob[z:z + 3, 10:13, 10:13] = 0.45
        ref[z:z + 3, 10:13, 10:13] = True
    prob[30, 30, 30:32] = 0.9
    return prob, ref, (1.0, 1.0, 1.0)


def test_score_pair_by_hand():
    prob, ref, spacing = _case()
    # threshold 0.5: only the 2-voxel false positive -> Dice 0, F1 0
    assert score_pair(prob, ref, spacing, 0.5, 0.0) == pytest.approx(
        {"dice": 0.0, "lesion_f1": 0.0, "lesion_ppv": 0.0, "lesion_sensitivity": 0.0})
    # threshold 0.4 and no size rule: 54 TP voxels, 2 FP -> Dice 108/110; 2 of 3 lesions true
    scores = score_pair(prob, ref, spacing, 0.4, 0.0)
    assert scores["dice"] == pytest.approx(108 / 110)
    assert scores["lesion_ppv"] == pytest.approx(2 / 3)
    assert scores["lesion_sensitivity"] == pytest.approx(1.0)
    assert scores["lesion_f1"] == pytest.approx(0.8)
    # removing lesions under 3 mm³ drops the false positive: perfect
    assert score_pair(prob, ref, spacing, 0.4, 3.0)["lesion_f1"] == pytest.approx(1.0)
    # one component covering everything: every lesion touched, yet one false positive (the
    # symmetric rule; the published one would give F1 = 1 for this blob)
    blob = score_pair(np.ones_like(prob), ref, spacing, 0.5, 0.0)
    assert blob["lesion_f1"] == 0.0 and blob["lesion_sensitivity"] == 1.0


def test_tuning_picks_the_threshold_and_size_that_validation_supports():
    best, table = tune_postprocessing([_case()], thresholds=(0.3, 0.4, 0.5),
                                      min_volumes_mm3=(0.0, 3.0, 30.0))
    assert len(table) == 9
    # (0.3, 3) and (0.4, 3) both score 1; ties go to the first in grid order
    assert (best["threshold"], best["min_lesion_volume_mm3"]) == (0.3, 3.0)
    assert best["score"] == pytest.approx(1.0)
    # 30 mm³ removes every lesion (27 mm³ each)
    assert table.query("min_lesion_volume_mm3 == 30").score.max() == 0.0
    with pytest.raises(ValueError):
        tune_postprocessing([])


def test_segmenter_applies_the_plans_threshold_and_min_volume(tiny_model, tmp_path):
    """A model's tuned pair is what `segment` uses unless the options override it."""
    import json
    import shutil
    from dataclasses import replace

    from msseg import io
    from msseg.inference.finish import model_postprocess
    from msseg.inference.options import SegmentOptions
    from msseg.inference.segment import Segmenter
    from msseg.models.registry import open_model

    folder, images = tiny_model
    tuned = tmp_path / "tuned"
    shutil.copytree(folder, tuned)
    raw = json.loads((tuned / "plan.json").read_text())
    (tuned / "plan.json").write_text(json.dumps({**raw, "threshold": 0.3}))
    image = io.load(images[0])
    off = SegmentOptions(crop=False, postprocessing=False, backend="torch")
    result = Segmenter(open_model(tuned), off).segment(image)
    # the tuned threshold is the lesion map's; the cord keeps 0.5
    for name, mask in result.masks.items():
        own = 0.3 if name == "lesion" else 0.5
        np.testing.assert_array_equal(mask.data > 0, result.probabilities[name].data >= own)
    assert (result.probabilities["lesion"].data >= 0.3).sum() > (
        result.probabilities["lesion"].data >= 0.5).sum()      # 0.3 is not 0.5 here
    explicit = Segmenter(open_model(tuned), replace(off, threshold=0.4)).segment(image)
    for name, mask in explicit.masks.items():      # --threshold: every map
        np.testing.assert_array_equal(mask.data > 0, explicit.probabilities[name].data >= 0.4)
    plan = replace(open_model(tuned).plan, min_lesion_volume_mm3=12.0)
    assert model_postprocess(PostprocessConfig(), plan).min_lesion_volume_mm3 == 12.0
    given = PostprocessConfig(min_lesion_volume_mm3=1.0)
    assert model_postprocess(given, plan).min_lesion_volume_mm3 == 1.0


def _cord_case(rng):
    """Smooth random cord and lesion probability maps on an anisotropic grid, and a reference."""
    from scipy import ndimage
    shape, spacing = (40, 36, 12), (0.5, 0.5, 3.0)
    cord = np.zeros(shape, np.float32)
    cord[14:26, 12:24, :6] = 0.9
    cord[14:26, 12:24, 6:] = 0.55                  # cord at 0.5 whatever the lesion threshold
    cord[2:4, 2:4, 2:4] = 0.8                      # a stray second "cord" component
    lesion = ndimage.gaussian_filter(rng.random(shape), 1.5).astype(np.float32)
    lesion = (lesion - lesion.min()) / (lesion.max() - lesion.min())
    reference = lesion > 0.7
    return lesion, reference, spacing, cord


def test_tuning_post_processes_as_segment_does_for_a_cord_model():
    """For a model with a cord, tuning scores exactly the lesion masks `segment` writes with
    the pair in the model's plan (the lesion map at the tuned threshold, the cord at 0.5;
    largest cord component, lesions within 2 mm of it, small ones removed), also after
    cutting every case to its box."""
    from msseg.image import Image
    from msseg.inference.finish import finish_probabilities
    from msseg.inference.options import SegmentOptions
    from msseg.training.tuning import predicted_lesions

    lesion, reference, spacing, cord = _cord_case(np.random.default_rng(3))
    image = Image(np.zeros(lesion.shape, np.float32), np.diag([*spacing, 1.0]))
    base = Plan(2, (0.5, 0.5), (32, 32), ((3, 3),), ((1, 1),), (8, 16))
    for threshold, volume in ((0.3, 0.0), (0.5, 3.0), (0.6, 10.0)):
        plan = base.replace(threshold=threshold, min_lesion_volume_mm3=volume)
        result = finish_probabilities(image, {"cord": cord, "lesion": lesion}, SegmentOptions(),
                                      0.0, plan=plan)
        ours = predicted_lesions(lesion, spacing, threshold, volume, cord)
        np.testing.assert_array_equal(ours, result.masks["lesion"].data > 0)
        whole_cord = np.zeros(cord.shape, bool)
        whole_cord[14:26, 12:24, :] = True        # 0.9 and 0.55 parts; stray 0.8 one gone
        np.testing.assert_array_equal(result.masks["cord"].data > 0, whole_cord)
        # lesions only within 2 mm (4 voxels) of the cord x 14:26, y 12:24 (stray one gone)
        assert ours.any() and not ours[:, :8].any() and not ours[:10].any()
    _, table = tune_postprocessing([(lesion, reference, spacing, cord)],
                                   thresholds=(0.3, 0.5), min_volumes_mm3=(0.0, 10.0))
    for row in table.itertuples():
        direct = score_pair(lesion, reference, spacing, row.threshold,
                            row.min_lesion_volume_mm3, cord)
        assert row.dice == pytest.approx(direct["dice"])
        assert row.lesion_f1 == pytest.approx(direct["lesion_f1"])


def test_lesion_free_validation_cases_reward_predicting_nothing():
    """A lesion-free case scores 1 when nothing survives post-processing, 0 otherwise: a
    5 mm³ false positive is what the minimum volume removes."""
    spacing = (1.0, 1.0, 1.0)
    cord = np.zeros((20, 20, 20), np.float32)
    cord[5:15, 5:15, :] = 1.0
    prob = np.zeros_like(cord)
    prob[8:9, 8:10, 8:11] = 0.9                     # 6 voxels = 6 mm³ inside the cord
    free = np.zeros(cord.shape, bool)
    best, table = tune_postprocessing([(prob, free, spacing, cord)],
                                      thresholds=(0.5,), min_volumes_mm3=(0.0, 5.0, 10.0))
    assert table.score.tolist() == [0.0, 0.0, 1.0]
    assert best["min_lesion_volume_mm3"] == 10.0
    # far from the cord the same blob is removed by the restriction alone
    away = np.zeros_like(cord)
    away[1:2, 1:3, 8:11] = 0.9
    assert score_pair(away, free, spacing, 0.5, 0.0, cord)["dice"] == 1.0
    assert score_pair(away, free, spacing, 0.5, 0.0)["dice"] == 0.0    # no cord: kept
