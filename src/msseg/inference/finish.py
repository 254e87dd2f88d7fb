"""The finishing stage of every segmenter: native-space probability maps -> thresholded masks
(each map at its own threshold) -> post-processing (lesions restricted to the dilated cord,
small components removed, largest cord component) -> the lesion table, all inside the
bounding box of the masks so the cost follows the cord."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pandas as pd

from msseg.image import Image, bounding_box, union_bounding_box
from msseg.inference.options import SegmentOptions, SegmentResult
from msseg.lesion_table import lesion_table
from msseg.postprocess import THRESHOLD, PostprocessConfig, postprocess


def finish(image: Image, probabilities: dict[str, np.ndarray], masks: dict[str, np.ndarray],
           config: PostprocessConfig | None) -> tuple[dict, dict, pd.DataFrame]:
    """Post-process the cord and lesion masks (other labels stay as predicted), wrap every
    map on the input's grid and header, and measure the lesions. Post-processing and the
    lesion table work inside the bounding box of the masks (the same result: every mask
    voxel is in it), so their cost follows the cord, not the field of view."""
    masks = dict(masks)
    # every mask voxel is in box (one voxel at the origin if all masks are empty)
    box = union_bounding_box(list(masks.values())) or (slice(0, 1),) * 3
    if config is not None and ("cord" in masks or "lesion" in masks):
        if "cord" not in masks:  # nothing to restrict lesions to
            config = replace(config, restrict_lesions_to_cord=False,
                             largest_cord_component=False)
        empty = np.zeros(tuple(b.stop - b.start for b in box), bool)
        cord, lesion = postprocess(masks["cord"][box] if "cord" in masks else empty,
                                   masks["lesion"][box] if "lesion" in masks else empty,
                                   image.spacing, config)
        for name, mask in (("cord", cord), ("lesion", lesion)):
            if name in masks:
                masks[name] = np.zeros(image.shape, bool)
                masks[name][box] = mask
    mask_images = {n: image.with_data(_uint8_in(m, box)) for n, m in masks.items()}
    prob_images = {n: image.with_data(_unit_float32(p)) for n, p in probabilities.items()}
    if "lesion" not in mask_images:
        return mask_images, prob_images, lesion_table(Image(np.zeros((1, 1, 1), np.uint8),
                                                            image.affine))
    return mask_images, prob_images, _lesion_table_in(box, image, mask_images,
                                                      prob_images.get("lesion"))


def finish_probabilities(image: Image, probabilities: dict[str, np.ndarray],
                         options: SegmentOptions, start: float, line=None,
                         plan=None) -> SegmentResult:
    """Native-space probability maps -> thresholded, post-processed (unless
    ``postprocessing`` is False) result, timed from ``start``; ``plan``: the model's, whose
    threshold and minimum lesion volume apply where the options leave them open."""
    mask_images, prob_images, table = finish(image, probabilities,
                                             threshold_maps(probabilities, options, plan),
                                             postprocess_config(options, plan))
    return SegmentResult(mask_images, prob_images, table, time.perf_counter() - start,
                         None, line)


def threshold_maps(probabilities: dict[str, np.ndarray], options: SegmentOptions,
                   plan=None) -> dict[str, np.ndarray]:
    """Each map thresholded at its own threshold (:func:`model_threshold`)."""
    return {key: threshold_mask(p, model_threshold(options, plan, key))
            for key, p in probabilities.items()}


def model_threshold(options: SegmentOptions, plan=None, region: str = "lesion") -> float:
    """``--threshold`` if given (every map), else for the lesion map the model's own (its
    plan's, tuned on lesions; 0.5 without one) and 0.5 for every other map."""
    if options.threshold is not None:
        return options.threshold
    return getattr(plan, "threshold", THRESHOLD) if region == "lesion" else THRESHOLD


def model_postprocess(config: PostprocessConfig, plan) -> PostprocessConfig:
    """``config`` with the model's own minimum lesion volume where it leaves it open."""
    own = getattr(plan, "min_lesion_volume_mm3", None)
    if config.min_lesion_volume_mm3 is None and own is not None:
        return replace(config, min_lesion_volume_mm3=own)
    return config


def postprocess_config(options: SegmentOptions, plan=None) -> PostprocessConfig | None:
    """The post-processing a run applies (None: ``postprocessing`` is False)."""
    if options.postprocessing is False:
        return None
    return model_postprocess(options.postprocess, plan)


def threshold_mask(p: np.ndarray, threshold: float) -> np.ndarray:
    """``p >= threshold``, written only inside the bounding box of ``p > 0`` when the
    threshold is positive (the rest stays untouched zero memory)."""
    if threshold <= 0:
        return p >= threshold
    mask = np.zeros(p.shape, bool)
    box = bounding_box(p)
    if box is not None:
        mask[box] = p[box] >= threshold
    return mask


def _uint8_in(mask: np.ndarray, box: tuple[slice, ...]) -> np.ndarray:
    """A 0/1 uint8 copy of a mask whose voxels all lie in ``box``."""
    out = np.zeros(mask.shape, np.uint8)
    out[box] = mask[box]
    return out


def _unit_float32(p: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]; already such arrays are passed as they are (no full-size pass that
    would touch the untouched zero pages of a mostly empty map)."""
    if p.dtype == np.float32 and (p.size == 0 or (p.min() >= 0 and p.max() <= 1)):
        return p
    return np.clip(p, 0, 1).astype(np.float32, copy=False)


def _lesion_table_in(box: tuple[slice, ...], image: Image, masks: dict[str, Image],
                     probability: Image | None) -> pd.DataFrame:
    """:func:`msseg.lesion_table.lesion_table` computed on the box (world positions follow the
    cropped affine), slice indices shifted back to the whole image."""
    from msseg.image import closest_axis, si_axis

    crop = {n: m.crop(box) for n, m in masks.items()}
    k = si_axis(image)
    superior_last = image.affine[2, k] > 0       # the index grows towards S
    inferior = box[k].start if superior_last else image.shape[k] - box[k].stop
    table = lesion_table(crop["lesion"], None if probability is None else probability.crop(box),
                         crop.get("cord"), si_slices=image.shape[k], si_offset=inferior)
    for column in ("slice_min", "slice_max"):
        table[column] = table[column] + int(box[k].start)
    if "midsagittal_slice" in table:
        rl = closest_axis(image, 0)
        table["midsagittal_slice"] = table["midsagittal_slice"] + int(box[rl].start)
    return table
