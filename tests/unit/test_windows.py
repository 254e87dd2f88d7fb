"""msseg's NumPy sliding window against MONAI's ``sliding_window_inference`` (the one msseg's
models were validated with): window placement, Gaussian, and blended outputs of a real
network, 2D slices and 3D; a region of interest keeps the whole-image values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers import sliding_window_inference
from monai.networks.nets import DynUNet

from msseg.models.backends import TorchNetwork
from msseg.models.windows import gaussian_weights, predict_regions, window_starts


@pytest.mark.parametrize("size,patch", [(100, 32), (64, 64), (65, 64), (130, 128), (7, 4),
                                        (350, 128)])
def test_monai_placement(size, patch):
    expected = sorted({s[0].start for s in dense_patch_slices((size,), (patch,), (patch // 2,))})
    if size == patch:
        expected = [0]
    assert window_starts(size, patch, 0.5, "monai") == expected


@pytest.mark.parametrize("patch", [(32, 32), (48, 40, 24), (7, 9)])
def test_monai_gaussian(patch):
    ref = compute_importance_map(patch, mode="gaussian", sigma_scale=0.125).numpy()
    np.testing.assert_allclose(gaussian_weights(patch, "monai"), ref, rtol=1e-5)


def small_net(dims: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return DynUNet(dims, 1, 2, kernel_size=[3, 3, 3], strides=[1, 2, 2],
                   upsample_kernel_size=[2, 2], filters=[4, 8, 16], norm_name="instance").eval()


@pytest.mark.parametrize("dims,shape,patch", [(2, (70, 50, 3), (32, 32)),
                                               (3, (40, 36, 20), (16, 16, 16)),
                                               (2, (20, 24, 2), (32, 32))])
def test_blended_outputs_match_monai(dims, shape, patch):
    net = small_net(dims)
    volume = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    with torch.inference_mode():
        x = torch.from_numpy(volume)
        if dims == 2:
            logits = sliding_window_inference(x.permute(2, 0, 1)[:, None], patch, 4, net,
                                              overlap=0.5, mode="gaussian").permute(1, 2, 3, 0)
        else:
            logits = sliding_window_inference(x[None, None], patch, 4, net, overlap=0.5,
                                              mode="gaussian")[0]
    expected = torch.sigmoid(logits).numpy()
    ours = predict_regions([TorchNetwork(net)], volume, patch, dims, 2, batch_size=3)
    np.testing.assert_allclose(ours, expected, atol=2e-5)
    roi = np.zeros(shape, bool)
    roi[5:12, 6:9, :] = True
    part = predict_regions([TorchNetwork(net)], volume, patch, dims, 2, roi=roi)
    np.testing.assert_allclose(part[:, roi], expected[:, roi], atol=2e-5)


def test_windows_touching_a_core_blend_only_those_windows_beyond_it():
    """``touch``: only the windows touching the core run; the core keeps the whole pass's
    values, and the rest of the roi blends exactly the windows that ran (computed here
    window by window)."""
    net, patch, shape = small_net(2), (32, 32), (70, 50, 2)
    volume = np.random.default_rng(2).normal(size=shape).astype(np.float32)
    roi = np.zeros(shape, bool)
    roi[20:40, 10:30, :] = True
    core = np.zeros(shape, bool)
    core[26:34, 16:24, :] = True
    whole = predict_regions([TorchNetwork(net)], volume, patch, 2, 2)
    part = predict_regions([TorchNetwork(net)], volume, patch, 2, 2, roi=roi, touch=core)
    np.testing.assert_allclose(part[:, core], whole[:, core], atol=2e-5)
    gauss = gaussian_weights(patch, "monai")
    sums, weight = np.zeros((2, *shape), np.float32), np.zeros(shape, np.float32)
    for z in range(shape[2]):
        for x in window_starts(shape[0], patch[0], 0.5, "monai"):
            for y in window_starts(shape[1], patch[1], 0.5, "monai"):
                box = (slice(x, x + 32), slice(y, y + 32), z)
                if not core[box].any():
                    continue
                with torch.inference_mode():
                    out = net(torch.from_numpy(volume[box][None, None].copy()))[0].numpy()
                sums[(slice(None), *box)] += out * gauss
                weight[box] += gauss
    assert weight[roi].min() > 0   # every roi voxel lies in a window that ran
    expected = 1 / (1 + np.exp(-sums[:, roi] / weight[roi]))
    np.testing.assert_allclose(part[:, roi], expected, atol=2e-5)
    assert np.abs(part[:, roi & ~core] - whole[:, roi & ~core]).max() > 1e-4  # not the whole pass
    assert (part[:, ~roi] == 0).all()
