"""Networks built from a plan, from MONAI's building blocks (not hand-written layers).

Design notes: docs/explanation/design-notes.md#mssegmodelsnetworks.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import BasicUNetPlusPlus, DynUNet, UNet
from monai.networks.nets.basic_unet import TwoConv
from monai.networks.nets.resnet import ResNet

from msseg.preprocess.plan import Plan

ARCHITECTURES = ("dynunet", "dilated_unet", "unet", "unetpp", "unetpp_resnet", "unet_resnet")


def build_network(plan: Plan) -> torch.nn.Module:
    out = len(plan.regions)
    if plan.architecture == "dilated_unet":
        return DilatedUNet(plan.filters, out, plan.dropout)
    if plan.architecture == "unet":
        return UNet(spatial_dims=plan.dims, in_channels=1, out_channels=out,
                    channels=plan.filters, strides=(2,) * (len(plan.filters) - 1),
                    num_res_units=0, norm="batch", act="relu", dropout=plan.dropout)
    if plan.architecture in ("unetpp_resnet", "unet_resnet"):
        return ResNetUNetPlusPlus(plan.filters[:4], out, plan.dims, plan.dropout,
                                  nested=plan.architecture == "unetpp_resnet")
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


class ResNetFeatureMaps(ResNet):
    """MONAI's ResNet-18 layout (basic blocks, [2, 2, 2, 2]) with the given stage widths, one
    input channel, returning the feature maps at strides 2 (stem), 4, 8, 16 and 32."""

    def __init__(self, widths: tuple[int, ...], dims: int = 2):
        super().__init__(block="basic", layers=[2, 2, 2, 2], block_inplanes=list(widths),
                         spatial_dims=dims, n_input_channels=1, conv1_t_stride=2,
                         feed_forward=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.act(self.bn1(self.conv1(x)))
        maps = [stem]
        x = self.maxpool(stem)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            maps.append(x)
        return maps


class ResNetUNetPlusPlus(torch.nn.Module):
    """UNet++ (Zhou et al. 2018) on :class:`ResNetFeatureMaps`: node (i, j) of depth i (stride
    2^(i+1)) is two 3×3 convolutions of the concatenation of nodes (i, 0..j−1) and the
    up-sampled node (i+1, j−1); node (i, 0) is the encoder's map. The head takes node (0, 4)
    (stride 2) back to the input's resolution. Input sides must be multiples of 32.
    ``nested=False``: the plain U-Net decoder, nodes (i, 4 − i) only, each joining the encoder
    map (i, 0) and the up-sampled node below."""

    def __init__(self, widths: tuple[int, ...], out_channels: int, dims: int = 2,
                 dropout: float = 0.0, nested: bool = True):
        super().__init__()
        self.encoder = ResNetFeatureMaps(tuple(widths), dims)
        chans = (widths[0], *widths)       # stem, then the four stages
        act, norm = ("relu", {"inplace": True}), ("batch", {"eps": 1e-3})
        self.nested = nested
        self.nodes = torch.nn.ModuleDict({
            f"{i}_{j}": TwoConv(dims, chans[i] * (j if nested else 1) + chans[i + 1], chans[i],
                                act, norm, False, dropout)
            for j in range(1, 5) for i in range(5 - j) if nested or i + j == 4})
        mode = "bilinear" if dims == 2 else "trilinear"
        self.up = torch.nn.Upsample(scale_factor=2, mode=mode, align_corners=False)
        self.head = torch.nn.Sequential(
            torch.nn.Upsample(scale_factor=2, mode=mode, align_corners=False),
            TwoConv(dims, chans[0], chans[0], act, norm, False, 0.0),
            Convolution(dims, chans[0], out_channels, kernel_size=1, conv_only=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = [[m] for m in self.encoder(x)]          # grid[i][j]: node (i, j)
        for j in range(1, 5):
            for i in range(5 - j):
                if not self.nested and i + j != 4:     # U-Net: (i, 0) stands for (i, j)
                    grid[i].append(grid[i][-1])
                    continue
                same = grid[i][:j] if self.nested else grid[i][:1]
                inputs = [*same, self.up(grid[i + 1][j - 1])]
                grid[i].append(self.nodes[f"{i}_{j}"](torch.cat(inputs, dim=1)))
        return self.head(grid[0][4])
