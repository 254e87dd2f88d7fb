"""Networks built from a plan: MONAI's DynUNet (the nnU-Net topology), not hand-written."""

from __future__ import annotations

from monai.networks.nets import DynUNet

from msseg.training.planning import Plan

#: Output channels of region-based models: 0 = cord ∪ lesion, 1 = lesion (sigmoid each).
REGIONS = ("cord", "lesion")


def build_network(plan: Plan, out_channels: int = len(REGIONS)) -> DynUNet:
    return DynUNet(
        spatial_dims=plan.dims, in_channels=1, out_channels=out_channels,
        kernel_size=[list(k) for k in plan.kernels], strides=[list(s) for s in plan.strides],
        upsample_kernel_size=[list(s) for s in plan.strides[1:]], filters=list(plan.filters),
        norm_name="instance", act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
        deep_supervision=False, res_block=False,
    )
