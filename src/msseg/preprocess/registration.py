"""Reproducible SimpleITK registration between two :class:`~msseg.image.Image` s, and
resampling through its transform (linear for images, nearest for label maps)."""

from __future__ import annotations

import numpy as np

from msseg.errors import MssegError
from msseg.image import Image

LPS = np.diag([-1.0, -1.0, 1.0])
SAMPLING_SEED = 20261207   # the registration's metric sampling: the same points every run
KINDS = ("rigid", "affine")


def to_sitk(image: Image, pixel=None):
    """An :class:`Image` as a SimpleITK image (LPS physical space, the same world points)."""
    import SimpleITK as sitk

    data = np.asarray(image.data, dtype=pixel or np.float32)
    out = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
    matrix = LPS @ image.affine[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    out.SetSpacing(tuple(float(s) for s in spacing))
    out.SetOrigin(tuple(float(v) for v in LPS @ image.affine[:3, 3]))
    out.SetDirection(tuple(float(v) for v in (matrix / spacing).ravel()))
    return out


def register(fixed: Image, moving: Image, kind: str = "rigid", threads: int = 0,
             shrink: tuple[int, ...] = (4, 2, 1)):
    """The transform mapping ``fixed`` points to ``moving`` points (SimpleITK): Mattes mutual
    information on a regular sampling grid jittered by a fixed seed (the same points every
    run), three resolution levels; ``kind`` ``rigid`` or ``affine`` (an affine starts from the
    rigid result). ``threads``: ITK's threads (0: one, so that two runs give the same
    transform to the last bit; more threads sum the metric's parts in a varying order)."""
    import SimpleITK as sitk

    if kind not in KINDS:
        raise ValueError(f"registration {kind!r}: one of {', '.join(KINDS)}")
    f, m = to_sitk(fixed), to_sitk(moving)
    transform = sitk.CenteredTransformInitializer(
        f, m, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY)
    default = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads or 1)
    try:
        transform = _run(f, m, transform, threads, shrink)
        if kind == "affine":
            affine = sitk.AffineTransform(3)
            affine.SetCenter(transform.GetCenter())
            affine.SetMatrix(transform.GetMatrix())
            affine.SetTranslation(transform.GetTranslation())
            transform = _run(f, m, affine, threads, shrink)
        return transform
    except RuntimeError as exc:
        raise MssegError(f"{kind} registration failed: {str(exc).splitlines()[-1]}") from exc
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(default)


def _run(f, m, initial, threads: int, shrink: tuple[int, ...]):
    import SimpleITK as sitk

    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.REGULAR)
    # a fixed non-zero seed: SimpleITK reads seed 0 as sitkWallClock, a new one every run
    method.SetMetricSamplingPercentage(0.25, SAMPLING_SEED)
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=1.0, minStep=1e-4,
                                                    numberOfIterations=300,
                                                    relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel(list(shrink))
    method.SetSmoothingSigmasPerLevel([s / 2 if s > 1 else 0.0 for s in shrink])
    method.SetInitialTransform(initial, inPlace=False)
    # ITK sums the metric's per-thread parts in an order that varies: one thread (unless
    # asked otherwise) makes two runs agree to the last bit
    method.SetNumberOfThreads(threads or 1)
    return method.Execute(f, m).GetNthTransform(0)   # the optimised transform itself


def resample_through(image: Image, grid: Image, transform, labels: bool = False) -> Image:
    """``image`` on ``grid``'s voxels through ``transform`` (``grid`` points -> ``image``
    points): linear, or nearest for a label map (``labels``; its dtype kept)."""
    import SimpleITK as sitk

    if labels:
        moved = sitk.Resample(to_sitk(image, np.int32), to_sitk(grid), transform,
                              sitk.sitkNearestNeighbor, 0, sitk.sitkInt32)
        data = sitk.GetArrayFromImage(moved).transpose(2, 1, 0).astype(image.data.dtype)
    else:
        moved = sitk.Resample(to_sitk(image), to_sitk(grid), transform, sitk.sitkLinear, 0.0,
                              sitk.sitkFloat32)
        data = sitk.GetArrayFromImage(moved).transpose(2, 1, 0)
    return grid.with_data(data)
