"""Straightening of the spinal cord along its centerline, and its exact inverse.

Design notes: docs/explanation/design-notes.md#mssegpreprocessstraighten.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.interpolate import make_smoothing_spline

from msseg.errors import MssegError
from msseg.image import Image, si_axis
from msseg.preprocess.tube import centerline_from_mask

LPS = np.array([-1.0, -1.0, 1.0])   # RAS <-> LPS: x and y change sign
SLAB = 8
XY_SIZE_MM = 35.0    # in-plane field of view of straightened images
SMOOTHING_MM = 5.0   # cutoff wavelength of the centerline's smoothing spline


@dataclass(frozen=True)
class Curve:
    """A smooth centerline sampled densely by arc length, with a rotation-minimising frame."""
    s: np.ndarray          # (N,) arc length, mm, from the inferior end
    points: np.ndarray     # (N, 3) world RAS mm
    tangents: np.ndarray   # (N, 3) unit, towards superior
    normals: np.ndarray    # (N, 3) n1 (≈ right)
    binormals: np.ndarray  # (N, 3) n2 = t × n1 (≈ anterior)

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def at(self, s: np.ndarray) -> tuple[np.ndarray, ...]:
        """(point, n1, n2) at arc lengths ``s`` (linear between dense samples, clamped)."""
        s = np.clip(np.asarray(s, np.float64), 0, self.length)
        step = self.s[1] - self.s[0]
        k = np.minimum((s / step).astype(int), len(self.s) - 2)
        f = ((s - self.s[k]) / step)[..., None]
        blend = [(1 - f) * arr[k] + f * arr[k + 1] for arr in (self.points, self.normals,
                                                               self.binormals)]
        return tuple(blend)


def fit_curve(world: np.ndarray, smoothing_mm: float = 5.0, step_mm: float = 0.2) -> Curve:
    """The smooth curve through centerline points (n, 3) world mm (ordered or not)."""
    world = np.asarray(world, float)
    world = world[~np.isnan(world).any(1)]
    if len(world) < 4:
        raise MssegError("the centerline has fewer than 4 points: cannot fit a curve")
    order = np.argsort(world[:, 2])
    z, xy = world[order, 2], world[order, :2]
    z, unique = np.unique(z, return_index=True)
    xy = xy[unique]
    h = float(np.median(np.diff(z)))
    lam = (smoothing_mm / (2 * np.pi)) ** 4 / h if smoothing_mm > 0 else 0.0
    splines = [make_smoothing_spline(z, xy[:, a], lam=lam) for a in range(2)]
    dense_z = np.arange(z[0], z[-1] + 1e-9, step_mm / 4)
    dense = np.column_stack([splines[0](dense_z), splines[1](dense_z), dense_z])
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    s = np.arange(0.0, arc[-1] + 1e-9, step_mm)
    points = np.column_stack([np.interp(s, arc, dense[:, a]) for a in range(3)])
    tangents = np.gradient(points, s, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    normals = rotation_minimising_normals(points, tangents)
    binormals = np.cross(tangents, normals)
    return Curve(s, points, tangents, normals, binormals)


def rotation_minimising_normals(points: np.ndarray, tangents: np.ndarray) -> np.ndarray:
    """Double-reflection rotation-minimising frame, starting from the world x axis made
    orthogonal to the first tangent."""
    normals = np.empty_like(points)
    r = np.array([1.0, 0.0, 0.0]) - tangents[0] * tangents[0, 0]
    if np.linalg.norm(r) < 1e-6:   # a cord along x: start from y instead
        r = np.array([0.0, 1.0, 0.0]) - tangents[0] * tangents[0, 1]
    normals[0] = r / np.linalg.norm(r)
    for i in range(len(points) - 1):
        v1 = points[i + 1] - points[i]
        c1 = v1 @ v1
        if c1 == 0:
            normals[i + 1] = normals[i]
            continue
        r_l = normals[i] - (2 / c1) * (v1 @ normals[i]) * v1
        t_l = tangents[i] - (2 / c1) * (v1 @ tangents[i]) * v1
        v2 = tangents[i + 1] - t_l
        c2 = v2 @ v2
        r_next = r_l - (2 / c2) * (v2 @ r_l) * v2 if c2 > 0 else r_l
        normals[i + 1] = r_next / np.linalg.norm(r_next)
    return normals


@dataclass(frozen=True)
class Straightening:
    """The curve and the straight grid it defines."""
    curve: Curve
    shape: tuple[int, int, int]
    affine: np.ndarray          # straight grid, RPI (nibabel LAS)
    centre: np.ndarray          # (x̄, ȳ, z₀): the straight line's world position

    @classmethod
    def around(cls, curve: Curve, spacing: tuple[float, float, float],
               xy_size_mm: float = 35.0) -> Straightening:
        sx, sy, sz = spacing
        nx, ny = (int(np.ceil(xy_size_mm / sx)), int(np.ceil(xy_size_mm / sy)))
        nz = int(np.floor(curve.length / sz)) + 1
        centre = np.array([*curve.points[:, :2].mean(0), curve.points[0, 2]])
        affine = np.array([[-sx, 0, 0, centre[0] + (nx - 1) / 2 * sx],
                           [0, sy, 0, centre[1] - (ny - 1) / 2 * sy],
                           [0, 0, sz, centre[2]], [0, 0, 0, 1.0]])
        return cls(curve, (nx, ny, nz), affine, centre)

    def straight_to_curve(self, world: np.ndarray) -> np.ndarray:
        """World points of straight space (…, 3) -> the curved (native) world points."""
        a = world[..., 0] - self.centre[0]
        b = world[..., 1] - self.centre[1]
        s = world[..., 2] - self.centre[2]
        point, n1, n2 = self.curve.at(s)
        return point + a[..., None] * n1 + b[..., None] * n2

    def curve_to_straight(self, world: np.ndarray) -> np.ndarray:
        """Curved (native) world points (n, 3) -> straight space: each point's projection
        onto the curve (the arc length s where (x − C(s)) ⟂ C'(s)), from the curve point at
        the same height refined by Newton steps, and its offsets along (n1, n2)."""
        s = np.interp(world[:, 2], self.curve.points[:, 2], self.curve.s)
        for _ in range(3):
            point, tangent = self._point_tangent(s)
            s = np.clip(s + np.einsum("ij,ij->i", world - point, tangent), 0,
                        self.curve.length)
        point, n1, n2 = self.curve.at(s)
        delta = world - point
        a = np.einsum("ij,ij->i", delta, n1)
        b = np.einsum("ij,ij->i", delta, n2)
        return np.column_stack([self.centre[0] + a, self.centre[1] + b, self.centre[2] + s])

    def _point_tangent(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        step = self.curve.s[1] - self.curve.s[0]
        k = np.minimum((s / step).astype(int), len(self.curve.s) - 2)
        f = ((s - self.curve.s[k]) / step)[:, None]
        point = (1 - f) * self.curve.points[k] + f * self.curve.points[k + 1]
        return point, self.curve.tangents[k]


def default_spacing(image: Image) -> tuple[float, float, float]:
    """The input's finest in-plane voxel size in-plane, its S–I voxel size along the cord."""
    axis = si_axis(image)
    inplane = min(s for a, s in enumerate(image.spacing) if a != axis)
    return (inplane, inplane, float(image.spacing[axis]))


def geometry_for(image: Image, points: np.ndarray, xy_size_mm: float = XY_SIZE_MM,
                 spacing: tuple[float, float, float] | None = None,
                 smoothing_mm: float = SMOOTHING_MM) -> Straightening:
    """The straightening of an image around its cord's centerline.

    Args:
        image: the image whose grid is straightened.
        points: centerline points (n, 3), world mm.
        xy_size_mm: the straight image's in-plane field of view.
        spacing: the straight grid's spacing (default: the image's own, see
            :func:`default_spacing`).
        smoothing_mm: the centerline's smoothing.

    Returns:
        The geometry that :func:`straighten_image` and :func:`unstraighten` use.
    """
    curve = fit_curve(points, smoothing_mm)
    return Straightening.around(curve, spacing or default_spacing(image), xy_size_mm)


def straighten_mask(mask: Image, geometry: Straightening) -> Image:
    """A mask straightened as the axial-T2w paper did: linear interpolation, then ≥ 0.5."""
    out = straighten_image(mask.with_data(np.asarray(mask.data) > 0.5), geometry, 1)
    return out.with_data((out.data >= 0.5).astype(np.uint8))


def _grid_world(shape, affine, k0: int, k1: int) -> np.ndarray:
    """(nx, ny, k1-k0, 3) world coordinates of a slab of voxel centres."""
    ijk = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), np.arange(k0, k1),
                               indexing="ij"), axis=-1).astype(np.float64)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def sample(image: Image, world: np.ndarray, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Values of ``image`` at world points (…, 3), zero outside its field of view."""
    inverse = np.linalg.inv(image.affine)
    ijk = world @ inverse[:3, :3].T + inverse[:3, 3]
    coords = np.moveaxis(ijk, -1, 0)
    data = np.asarray(image.data, np.float32)
    return ndimage.map_coordinates(data, coords, order=order, mode="constant", cval=cval,
                                   output=np.float32)


def straighten_image(image: Image, geometry: Straightening, order: int = 1) -> Image:
    """An image resampled onto the straight grid.

    Args:
        image: the image.
        geometry: from :func:`geometry_for`.
        order: the interpolation order (0 for masks).

    Returns:
        The straightened image.
    """
    out = np.zeros(geometry.shape, np.float32)
    for k0 in range(0, geometry.shape[2], SLAB):
        k1 = min(k0 + SLAB, geometry.shape[2])
        world = geometry.straight_to_curve(_grid_world(geometry.shape, geometry.affine, k0, k1))
        out[:, :, k0:k1] = sample(image, world, order)
    return Image(out, geometry.affine)


def unstraighten(straight: Image, geometry: Straightening, like: Image,
                 order: int = 1) -> np.ndarray:
    """Straight-space values brought back onto an image's grid.

    Args:
        straight: values on the straight grid.
        geometry: from :func:`geometry_for`.
        like: the image whose grid they go back to.
        order: the interpolation order.

    Returns:
        An array of ``like``'s shape (zero outside the straight field of view).
    """
    out = np.zeros(like.shape[:3], np.float32)
    for k0 in range(0, like.shape[2], SLAB):
        k1 = min(k0 + SLAB, like.shape[2])
        world = _grid_world(like.shape, like.affine, k0, k1)
        flat = geometry.curve_to_straight(world.reshape(-1, 3)).reshape(world.shape)
        out[:, :, k0:k1] = sample(straight, flat, order)
    return out


def displacement_field(geometry: Straightening, reference_shape, reference_affine,
                       to_straight: bool) -> np.ndarray:
    """ITK displacement field (X, Y, Z, 1, 3) float32 in LPS mm on a reference grid.

    ``to_straight=False`` (curve2straight; reference = straight grid): p + d is p's curved
    point. ``to_straight=True`` (straight2curve; reference = the input's grid): p + d is p's
    straight point."""
    field = np.zeros((*reference_shape[:3], 1, 3), np.float32)
    for k0 in range(0, reference_shape[2], SLAB):
        k1 = min(k0 + SLAB, reference_shape[2])
        world = _grid_world(reference_shape, reference_affine, k0, k1)
        if to_straight:
            target = geometry.curve_to_straight(world.reshape(-1, 3)).reshape(world.shape)
        else:
            target = geometry.straight_to_curve(world)
        field[:, :, k0:k1, 0, :] = (target - world) * LPS
    return field


def apply_field(moving: Image, field: np.ndarray, field_affine: np.ndarray, dest_shape,
                dest_affine, order: int = 1) -> np.ndarray:
    """Resample ``moving`` onto a destination grid through an ITK displacement field (as
    ``antsApplyTransforms`` / ``sct_apply_transfo`` do): for each destination voxel centre p,
    the field (linearly interpolated at p on its own grid) gives d, and the moving image is
    sampled at p + d."""
    components = [Image(field[..., 0, c], field_affine) for c in range(3)]
    out = np.zeros(dest_shape[:3], np.float32)
    for k0 in range(0, dest_shape[2], SLAB):
        k1 = min(k0 + SLAB, dest_shape[2])
        world = _grid_world(dest_shape, dest_affine, k0, k1)
        d = np.stack([sample(c, world, 1) for c in components], axis=-1) * LPS
        out[:, :, k0:k1] = sample(moving, world + d, order)
    return out


def centerline_of_mask(mask: Image, min_fraction: float = 0.5) -> np.ndarray:
    """World centre of mass of a cord mask per slice of its axis closest to S–I (n, 3).

    Refuses a mask that is empty on more than ``1 - min_fraction`` of the slices between its
    first and last: the curve would be guesswork there."""
    axis = si_axis(mask)
    data = np.moveaxis(np.asarray(mask.data) > 0.5, axis, 2)
    present = np.flatnonzero(data.any(axis=(0, 1)))
    if present.size < 4:
        raise MssegError("cord mask covers fewer than 4 slices: cannot fit a centerline")
    span = present[-1] - present[0] + 1
    if present.size < min_fraction * span:
        raise MssegError(f"cord mask is empty on {span - present.size} of the {span} slices "
                         "it spans: give a complete mask (or none, to use msseg's centerline)")
    index = np.empty((present.size, 3))
    index[:, [a for a in range(3) if a != axis]] = centerline_from_mask(data)[present]
    index[:, axis] = present
    return index @ mask.affine[:3, :3].T + mask.affine[:3, 3]


def complete_slices(geometry: Straightening, image: Image, radius_mm: float = 10.0
                    ) -> np.ndarray:
    """Straight slices whose plane lies inside the input's field of view within
    ``radius_mm`` of the straight line (at the curve's ends a tilted plane leaves it)."""
    ones = Image(np.ones(image.shape[:3], np.float32), image.affine)
    inside = straighten_image(ones, geometry, 0).data
    spacing = np.asarray(geometry.affine[:3, :3]).diagonal()[:2]
    i, j = np.indices(geometry.shape[:2], dtype=float)
    centre = (np.asarray(geometry.shape[:2]) - 1) / 2
    near = np.hypot((i - centre[0]) * spacing[0], (j - centre[1]) * spacing[1]) <= radius_mm
    return (inside[near] > 0.5).all(axis=0)


def straightening_accuracy(straight_mask: Image, slices: np.ndarray | None = None) -> dict:
    """SCT's straightening accuracy: per straight slice holding cord (among ``slices``, a
    boolean per slice), the in-plane distance (mm) of the mask's centre of mass from the
    straight line; maximum and RMS, and ``within_voxel``: the share of those slices whose
    centre lies within one in-plane voxel of the line."""
    data = np.asarray(straight_mask.data) > 0
    centre = (np.asarray(data.shape[:2]) - 1) / 2
    spacing = np.asarray(straight_mask.spacing[:2])
    keep = data.any(axis=(0, 1)) & (True if slices is None else slices)
    centres = centerline_from_mask(data)[keep]
    distances = np.linalg.norm((centres - centre) * spacing, axis=1)
    within = float((distances <= spacing.min()).mean()) if distances.size else float("nan")
    return {**_summary(distances), "within_voxel": round(within, 4)}


def points_accuracy(geometry: Straightening, world: np.ndarray) -> dict:
    """The same figures for centerline points (n, 3) mapped into straight space."""
    straight = geometry.curve_to_straight(np.asarray(world, float))
    return _summary(np.linalg.norm(straight[:, :2] - geometry.centre[:2], axis=1))


def _summary(distances: np.ndarray) -> dict:
    if distances.size == 0:
        return {"max_distance_mm": float("nan"), "rms_distance_mm": float("nan"), "slices": 0}
    return {"max_distance_mm": round(float(distances.max()), 4),
            "rms_distance_mm": round(float(np.sqrt((distances ** 2).mean())), 4),
            "slices": int(distances.size)}
