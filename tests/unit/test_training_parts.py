"""Training pieces: config, planning, sampling weights and frequencies, patches, loss."""

from __future__ import annotations

import dataclasses
from collections import Counter

import numpy as np
import pytest
import torch

from msseg.errors import MssegError
from msseg.models.networks import build_network
from msseg.training.config import TrainConfig
from msseg.training.data import Case, PatchSampler, case_weights, extract
from msseg.training.loop import RegionLoss, load_compatible, rpi_geometry
from msseg.training.planning import plan


def test_config_yaml_round_trip_and_errors(tmp_path):
    config = TrainConfig(dataset="d.json", patch_size=(64, 64), sampling="contrast-sqrt")
    path = config.to_yaml(tmp_path / "c.yaml")
    assert TrainConfig.from_yaml(path) == config
    with pytest.raises(MssegError, match="unknown config keys: nope"):
        TrainConfig.from_dict({"nope": 1})
    with pytest.raises(MssegError, match="sampling"):
        TrainConfig.from_dict({"sampling": "random"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3


def test_plan_anisotropic_3d_kernels_and_strides():
    p = plan([[0.5, 0.5, 5.0]] * 3, [[320, 320, 20]] * 3, dims=3)
    assert p.target_spacing == (0.5, 0.5, 5.0)
    # 1x3x3-style kernels (1 through-plane) until in-plane pooling reaches the slice spacing
    assert p.kernels[0] == (3, 3, 1)
    assert p.strides[1] == (2, 2, 1)
    z_pool = [s[2] for s in p.strides]
    first_z = z_pool.index(2)
    in_plane_spacing = 0.5 * 2 ** sum(s[0] == 2 for s in p.strides[:first_z])
    assert in_plane_spacing * 2 >= 5.0 / 2  # z pooled only once in-plane is within 2x
    total = np.prod(p.strides, axis=0)
    assert all(s % t == 0 for s, t in zip(p.patch_size, total, strict=True))
    net = build_network(p)
    out = net(torch.zeros(1, 1, *p.patch_size))
    assert out.shape == (1, 2, *p.patch_size)


def test_plan_whole_context_covers_the_longest_image_along_s_i():
    spacings, shapes = [[0.5, 0.5, 3.0]] * 3, [[320, 320, 50], [320, 320, 140], [300, 300, 60]]
    patch = plan(spacings, shapes, dims=3)
    whole = plan(spacings, shapes, dims=3, whole_context=True)
    assert patch.patch_size[2] == 40                      # the cap: a patch of 40 slices
    total = np.prod(whole.strides, axis=0)
    assert whole.patch_size[2] >= 140 and whole.patch_size[2] % total[2] == 0
    assert whole.patch_size[2] - 140 < total[2]            # rounded up, no further
    assert whole.patch_size[:2] == patch.patch_size[:2]
    assert plan(spacings, shapes, dims=2, whole_context=True) == plan(spacings, shapes, dims=2)


def test_plan_2d_uses_median_in_plane_spacing():
    p = plan([[0.5, 0.5, 7.5], [1.0, 1.0, 1.0], [0.7, 0.7, 7.5]],
             [[320, 320, 14], [60, 52, 55], [320, 256, 19]], dims=2)
    assert p.target_spacing == (0.7, 0.7)
    assert all(k == (3, 3) for k in p.kernels)
    assert p.patch_size[0] % 2 ** (len(p.strides) - 1) == 0


def test_rpi_geometry_of_sagittal_record():
    from msseg.data.index import Record

    r = Record("x", None, None, "T2w", "PSR", (1.0, 0.8, 0.5), (384, 225, 52), "p", None, "s",
               None)
    assert rpi_geometry(r) == ((0.5, 1.0, 0.8), (52, 384, 225))


def test_contrast_sqrt_weights_and_sampler_frequencies():
    contrasts = ["T2w"] * 16 + ["T2starw"] * 4 + ["PSIR"] * 1
    w = case_weights(contrasts, "contrast-sqrt")
    # per contrast: n / sqrt(n) = sqrt(n) -> 4 : 2 : 1
    per = {c: w[[i for i, x in enumerate(contrasts) if x == c]].sum() for c in set(contrasts)}
    assert per["T2w"] / per["PSIR"] == pytest.approx(4.0)
    assert per["T2starw"] / per["PSIR"] == pytest.approx(2.0)
    cases = [Case(str(i), c, np.zeros((8, 8, 2), np.float32), np.zeros((2, 8, 8, 2), np.uint8))
             for i, c in enumerate(contrasts)]
    from msseg.training.planning import Plan

    p = Plan(2, (1.0, 1.0), (4, 4), ((3, 3),), ((1, 1),), (8,))
    sampler = PatchSampler(cases, p, w, 0.5, 0.25, seed=0)
    draws = Counter()
    for _ in range(14000):
        draws[contrasts[sampler.draw_case()]] += 1
    total = sum(draws.values())
    for c, expected in per.items():
        assert draws[c] / total == pytest.approx(expected, abs=0.015)
    assert np.allclose(case_weights(contrasts, "uniform"), 1 / len(contrasts))


def test_foreground_patches_contain_cord():
    image = np.random.default_rng(0).random((100, 100, 3)).astype(np.float32)
    regions = np.zeros((2, 100, 100, 3), np.uint8)
    regions[0, 70:80, 20:30, :] = 1
    from msseg.training.planning import Plan

    p = Plan(2, (1.0, 1.0), (32, 32), ((3, 3),), ((1, 1),), (8,))
    sampler = PatchSampler([Case("a", "T2w", image, regions)], p, np.ones(1), 1.0, 0.25, 0)
    for _ in range(50):
        x, y = sampler.sample()
        assert x.shape == (1, 32, 32) and y.shape == (2, 32, 32)
        assert y[0].any()


def test_extract_pads_outside():
    a = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    out = extract(a, np.array([-1, 2]), np.array([3, 3]), fill=-5)
    np.testing.assert_array_equal(out[0], [[-5, -5, -5], [2, 3, -5], [6, 7, -5]])


def test_region_loss_is_dice_plus_bce():
    logits = torch.tensor([[[[4.0, -4.0]]], [[[-4.0, 4.0]]]]).reshape(1, 2, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]]).reshape(1, 2, 1, 2)
    perfect = RegionLoss()(logits * 10, target)
    assert float(perfect) == pytest.approx(0.0, abs=1e-3)
    wrong = RegionLoss()(-logits * 10, target)
    assert float(wrong) > 1.0 + 10  # Dice loss ~1 plus a large BCE


def test_load_compatible_reports_skipped(tmp_path):
    p = plan([[0.5, 0.5, 5]], [[64, 64, 4]], dims=2)
    source = build_network(p.replace(regions=("cord", "lesion", "other")))
    torch.save({"model": source.state_dict()}, tmp_path / "c.pt")
    target = build_network(p)
    loaded, skipped = load_compatible(target, tmp_path / "c.pt")
    assert skipped and all("output_block" in s for s in skipped)
    assert loaded == len(target.state_dict()) - len(skipped)
    name = next(k for k in target.state_dict() if k not in skipped and "weight" in k)
    assert torch.equal(target.state_dict()[name], source.state_dict()[name])


def test_lesion_share_centres_patches_on_lesions():
    image = np.zeros((200, 200, 1), np.float32)
    regions = np.zeros((2, 200, 200, 1), np.uint8)
    regions[0, 20:180, 20:180] = 1
    regions[1, 150:152, 150:152] = 1          # a tiny lesion in a large cord
    from msseg.training.planning import Plan

    p = Plan(2, (1.0, 1.0), (16, 16), ((3, 3),), ((1, 1),), (8,))
    case = Case("a", "T2w", image, regions)
    with_share = PatchSampler([case], p, np.ones(1), 1.0, 0.1, 0, lesion_share=0.5)
    without = PatchSampler([case], p, np.ones(1), 1.0, 0.1, 0)
    hit_with = np.mean([with_share.sample()[1][1].any() for _ in range(400)])
    hit_without = np.mean([without.sample()[1][1].any() for _ in range(400)])
    assert hit_with == pytest.approx(0.5, abs=0.08)
    assert hit_without < 0.1


def test_per_lesion_sampling_sees_small_lesions_as_often_as_large_ones():
    from msseg.training.data import lesion_voxels
    from msseg.training.planning import Plan

    image = np.zeros((120, 120, 1), np.float32)
    regions = np.zeros((2, 120, 120, 1), np.uint8)
    regions[0] = 1
    regions[1, 10:50, 10:50] = 1              # a large lesion: 1600 voxels
    regions[1, 100:102, 100:102] = 1          # a small one: 4 voxels
    voxels, starts = lesion_voxels(regions[1], per_lesion=True)
    assert starts.tolist() == [0, 1600, 1604] and len(voxels) == 1604
    assert lesion_voxels(regions[1], per_lesion=False)[1] is None
    p = Plan(2, (1.0, 1.0), (8, 8), ((3, 3),), ((1, 1),), (8,))
    case = Case("a", "T2w", image, regions)

    def small_hits(mode: str) -> float:
        sampler = PatchSampler([case], p, np.ones(1), 1.0, 0.0, 0, lesion_share=1.0,
                               lesion_sampling=mode)
        # an 8×8 patch centred in the large lesion holds ≥ 16 lesion voxels; the small: ≤ 4
        return np.mean([sampler.sample()[1][1].sum() <= 4 for _ in range(400)])

    assert small_hits("lesion") == pytest.approx(0.5, abs=0.08)   # one lesion in two
    assert small_hits("voxel") < 0.02                              # 4 voxels in 1604
    with pytest.raises(ValueError):
        PatchSampler([case], p, np.ones(1), 1.0, 0.0, 0, lesion_sampling="blob")


def test_resize_frame_samples_whole_slices():
    from msseg.training.data import Case, PatchSampler

    p = plan([[1, 1, 1]], [[8, 8, 4]], dims=2, patch_size=(8, 8)).replace(frame="resize")
    image = np.arange(8 * 8 * 4, dtype=np.float32).reshape(8, 8, 4)
    regions = np.zeros((2, 8, 8, 4), np.uint8)
    regions[0, 2, 3, 1] = 1
    sampler = PatchSampler([Case("c", "FLAIR", image, regions)], p, np.ones(1), 1.0, 0.5, 0)
    patch, target = sampler.sample()
    np.testing.assert_array_equal(patch[0], image[:, :, 1])   # the whole slice, no shift
    assert target[0, 2, 3] == 1 and target.sum() == 1


def test_weighted_bce_and_dice_only_losses():
    logits = torch.zeros(1, 1, 1, 2)                 # p = 0.5 everywhere
    target = torch.tensor([1.0, 0.0]).reshape(1, 1, 1, 2)
    # -mean(0.8 log 0.5, 0.2 log 0.5) = 0.5 log 2
    assert float(RegionLoss("wbce", 0.8)(logits, target)) == pytest.approx(0.5 * np.log(2))
    p = 1 / (1 + np.exp(-2.0))                       # logits 2: p = 0.881
    expected = (0.8 * -np.log(p) + 0.2 * -np.log(1 - p)) / 2
    assert float(RegionLoss("wbce", 0.8)(logits + 2, target)) == pytest.approx(expected)
    dice_only = float(RegionLoss("dice")(logits, target))
    assert dice_only == pytest.approx(1 - 2 * 0.5 / (1.0 + 1.0), abs=1e-4)   # 1 - 2·0.5/2
