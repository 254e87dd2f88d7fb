"""Networks built from a plan, from MONAI's building blocks (not hand-written layers).

* ``dynunet``: MONAI's DynUNet, the nnU-Net topology of the plan (axial T2w model).
* ``dilated_unet``: CNN1 of Gros et al. 2019 — a 2D U-Net with two down-sampling levels whose
  contracting path uses dilated convolutions (dilation 3), batch norm, ReLU and dropout.
* ``unet``: CNN2 of Gros et al. 2019 — MONAI's UNet, 3D, depth 2 (two down-samplings), batch
  norm, dropout.
* ``unetpp``: MONAI's BasicUNetPlusPlus (nested U-Net, Zhou et al. 2018), 2D.

Output channels are the plan's regions (sigmoid each): ``cord`` = cord ∪ lesion, ``lesion``.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import BasicUNetPlusPlus, DynUNet, UNet

from msseg.preprocess.plan import Plan

ARCHITECTURES = ("dynunet", "dilated_unet", "unet", "unetpp")


def build_network(plan: Plan) -> torch.nn.Module:
    out = len(plan.regions)
    if plan.architecture == "dilated_unet":
        return DilatedUNet(plan.filters, out, plan.dropout)
    if plan.architecture == "unet":
        return UNet(spatial_dims=plan.dims, in_channels=1, out_channels=out,
                    channels=plan.filters, strides=(2,) * (len(plan.filters) - 1),
                    num_res_units=0, norm="batch", act="relu", dropout=plan.dropout)
    if plan.architecture == "unetpp":
        features = (*plan.filters, plan.filters[0])
        return _LastOutput(BasicUNetPlusPlus(spatial_dims=plan.dims, in_channels=1,
                                             out_channels=out, features=features,
                                             dropout=plan.dropout))
    return DynUNet(
        spatial_dims=plan.dims, in_channels=1, out_channels=out,
        kernel_size=[list(k) for k in plan.kernels], strides=[list(s) for s in plan.strides],
        upsample_kernel_size=[list(s) for s in plan.strides[1:]], filters=list(plan.filters),
        norm_name="instance", act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        deep_supervision=False, res_block=False,
    )


class _LastOutput(torch.nn.Module):
    """BasicUNetPlusPlus returns a list of (deep-supervision) outputs: keep the final one."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[-1]


def _conv(cin: int, cout: int, dilation: int, dropout: float) -> Convolution:
    return Convolution(2, cin, cout, kernel_size=3, dilation=dilation, act="relu",
                       norm="batch", dropout=dropout, adn_ordering="NDA")


class DilatedUNet(torch.nn.Module):
    """2D U-Net, two down-samplings; contracting convolutions dilated by 3 (then 1)."""

    def __init__(self, filters: tuple[int, ...], out_channels: int, dropout: float = 0.2,
                 dilation: int = 3):
        super().__init__()
        f0, f1, f2 = filters[:3]
        self.enc = torch.nn.ModuleList([
            torch.nn.Sequential(_conv(1, f0, dilation, dropout), _conv(f0, f0, 1, dropout)),
            torch.nn.Sequential(_conv(f0, f1, dilation, dropout), _conv(f1, f1, 1, dropout)),
        ])
        self.bottom = torch.nn.Sequential(_conv(f1, f2, dilation, dropout),
                                          _conv(f2, f2, 1, dropout))
        self.up = torch.nn.ModuleList([torch.nn.ConvTranspose2d(f2, f1, 2, 2),
                                       torch.nn.ConvTranspose2d(f1, f0, 2, 2)])
        self.dec = torch.nn.ModuleList([
            torch.nn.Sequential(_conv(2 * f1, f1, 1, 0.0), _conv(f1, f1, 1, 0.0)),
            torch.nn.Sequential(_conv(2 * f0, f0, 1, 0.0), _conv(f0, f0, 1, 0.0)),
        ])
        self.head = torch.nn.Conv2d(f0, out_channels, 1)
        self.pool = torch.nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.enc:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.head(x)
