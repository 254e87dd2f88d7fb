"""Reorientation by axis permutation and flips: exact, no interpolation."""

from __future__ import annotations

import numpy as np
from nibabel import orientations as ornt

from msseg.image import SCT_RPI, Image


def reorient(image: Image, axcodes: str, copy: bool = True) -> Image:
    """Permute/flip the voxel axes so that ``image.orientation == axcodes`` (nibabel codes).

    The world position of every voxel is unchanged: the affine is updated accordingly. The
    header is dropped (it described the old voxel order); use :func:`reorient_like` to go back.
    ``copy=False``: the data may be a strided view of the input's (read it, never write it).
    """
    current = ornt.io_orientation(image.affine)
    transform = ornt.ornt_transform(current, ornt.axcodes2ornt(tuple(axcodes)))
    data = ornt.apply_orientation(image.data, transform)
    affine = image.affine @ ornt.inv_ornt_aff(transform, image.shape)
    return Image(np.ascontiguousarray(data) if copy else data, affine, None)


def to_rpi(image: Image, copy: bool = True) -> Image:
    """Reorient to SCT's RPI (nibabel ``LAS``): axis 2 runs inferior to superior."""
    return reorient(image, SCT_RPI, copy=copy)


def reorient_like(image: Image, reference: Image, copy: bool = True) -> Image:
    """Undo :func:`reorient`: bring ``image`` back to ``reference``'s voxel order and header
    (``copy=False``: the data may be a strided view of ``image``'s).

    Raises ``ValueError`` if the result does not land exactly on the reference grid.
    """
    back = reorient(image, reference.orientation, copy=copy)
    if back.shape != reference.shape or not np.allclose(back.affine, reference.affine, atol=1e-5):
        raise ValueError("image does not lie on the reference grid after reorientation")
    return reference.with_data(back.data)

