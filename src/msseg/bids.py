"""BIDS derivative names and layout of ``msseg segment --bids-derivatives``.

Design notes: docs/explanation/design-notes.md#mssegbids.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from msseg.errors import MssegError

#: BIDS entity order (schema 1.11, ``rules.entities``), as file-name keys.
ENTITY_ORDER = ("sub", "tpl", "ses", "cohort", "sample", "task", "tracksys", "acq", "nuc",
                "voi", "ce", "trc", "stain", "rec", "dir", "run", "mod", "echo", "flip", "inv",
                "mt", "part", "proc", "hemi", "space", "split", "recording", "chunk", "atlas",
                "seg", "scale", "res", "den", "label", "desc")
LABELS = {"cord": "SC", "lesion": "lesion"}      # msseg output -> BIDS label value
DATATYPES = ("anat", "dwi", "func", "fmap", "perf")
PIPELINE = "msseg"
_PAIR = re.compile(r"^([a-zA-Z]+)-([a-zA-Z0-9]+)$")
_DERIVATIVE = re.compile(r"^(?P<head>.*?)_label-(?P<label>[a-zA-Z0-9]+)_desc-(?P<desc>"
                         r"[a-zA-Z0-9]+)_(?P<kind>mask|probseg)$")


#: Mask names of the field (SCT, BIDS derivatives, ivadomed): a file whose name ends so is a
#: mask, never an image; contrasts by BIDS suffix and by plain name.
CORD_SUFFIXES = ("_label-SC_seg", "_seg-manual", "_manual_segmentation", "_sc_seg",
                 "_seg")
LESION_SUFFIXES = ("_label-lesion_seg", "_lesion-manual", "_lesion_seg", "_lesionseg")
OTHER_LABEL_SUFFIXES = ("_labels-disc-manual", "_labels", "_centerline-manual", "_gmseg_manual",
                        "_gmseg", "_labeled", "_levels", "_labels-disc", "_label-disc",
                        "_probseg")   # _labeled, _levels, _label(s)-disc: level maps (--levels)
BIDS_CONTRASTS = {"T2w": "T2w", "T2starw": "T2starw", "T2star": "T2starw", "T1w": "T1w",
                  "PSIR": "PSIR", "STIR": "STIR", "UNIT1": "UNIT1", "MTS": "MTS", "FLAIR": "FLAIR",
                  "T2w-sag": "T2w", "acq-sag_T2w": "T2w"}
PLAIN_CONTRASTS = {"t2": "T2w", "t2w": "T2w", "t2s": "T2starw", "t2star": "T2starw",
                   "gre": "T2starw", "t1": "T1w", "t1w": "T1w", "mt1": "MTS", "mt0": "MTS",
                   "psir": "PSIR", "stir": "STIR", "flair": "FLAIR", "unit1": "UNIT1"}
ENTITY = re.compile(r"(?:^|_)(sub|ses|acq|chunk|run)-([A-Za-z0-9]+)")


def is_mask_name(stem: str) -> bool:
    stem = legacy_name(stem)    # BIDS derivative names (msseg segment --bids-derivatives)
    return stem.endswith(CORD_SUFFIXES + LESION_SUFFIXES + OTHER_LABEL_SUFFIXES) or \
        "segmentation" in stem or stem.startswith("labels")


def site_of(name: str) -> str | None:
    """The site a BIDS name says: the letters of its subject label (``sub-unf01`` -> ``unf``;
    empty for a label of digits only); None without a ``sub-`` entity."""
    entities = dict(ENTITY.findall(name))
    if "sub" not in entities:
        return None
    return re.sub(r"\d+$", "", entities["sub"])


def contrast_of(stem: str) -> str:
    """The contrast a file name says: its BIDS suffix (``_T2w``, ``_T2starw``…) or, for plain
    names, :data:`PLAIN_CONTRASTS` (``t2`` -> T2w, ``gre`` -> T2starw…); else its last part."""
    parts = stem.split("_")
    if parts[-1] in BIDS_CONTRASTS:
        return BIDS_CONTRASTS[parts[-1]]
    key = parts[-1].lower()
    return PLAIN_CONTRASTS.get(key, PLAIN_CONTRASTS.get(stem.lower(), parts[-1]))


def parse(stem: str) -> tuple[dict[str, str], str]:
    """(entities in order of appearance, suffix) of a BIDS name without extension."""
    parts = stem.split("_")
    entities, suffix = {}, parts[-1]
    for part in parts[:-1]:
        match = _PAIR.match(part)
        if match is None:
            raise MssegError(f"{stem}: not a BIDS name ('{part}' is not key-value)")
        entities[match.group(1)] = match.group(2)
    if "-" in suffix or "sub" not in entities:
        raise MssegError(f"{stem}: not a BIDS name (want sub-<label>[_key-value…]_<suffix>)")
    return entities, suffix


def derivative_stem(source_stem: str, output: str, kind: str = "mask") -> str:
    """The BIDS derivative name (no extension) of ``output`` (cord, lesion or another label)
    of the image ``source_stem``; ``kind`` mask or probseg."""
    entities, suffix = parse(source_stem)
    entities = {k: v for k, v in entities.items() if k not in ("label", "desc")}
    entities["label"] = LABELS.get(output, output)
    entities["desc"] = re.sub(r"[^a-zA-Z0-9]", "", suffix)
    ordered = sorted(entities.items(), key=lambda kv: (ENTITY_ORDER.index(kv[0])
                                                       if kv[0] in ENTITY_ORDER else 99))
    return "_".join(f"{k}-{v}" for k, v in ordered) + f"_{kind}"


def legacy_name(stem: str) -> str:
    """``…_label-SC_desc-T2w_mask`` -> ``…_T2w_label-SC_seg`` (probseg -> ``_probseg``); any
    other name unchanged."""
    match = _DERIVATIVE.match(stem)
    if match is None:
        return stem
    end = "seg" if match.group("kind") == "mask" else "probseg"
    return f"{match.group('head')}_{match.group('desc')}_label-{match.group('label')}_{end}"


def folder_of(image: Path, root: Path | None) -> Path:
    """The image's folder relative to its BIDS dataset root (``sub-X/[ses-Y/]anat``); outside
    a dataset, made from its name's entities."""
    if root is not None:
        try:
            return image.parent.relative_to(root)
        except ValueError:
            pass
    entities, _ = parse(_stem(image))
    folder = Path(f"sub-{entities['sub']}")
    if "ses" in entities:
        folder /= f"ses-{entities['ses']}"
    datatype = image.parent.name if image.parent.name in DATATYPES else "anat"
    return folder / datatype


def dataset_root(path: Path) -> Path | None:
    """The raw BIDS dataset holding ``path`` (a folder with dataset_description.json that is
    not a derivative dataset), or None."""
    for folder in [path, *path.parents] if path.is_dir() else path.parents:
        description = folder / "dataset_description.json"
        if description.is_file():
            try:
                kind = json.loads(description.read_text()).get("DatasetType", "raw")
            except (OSError, json.JSONDecodeError):
                return None
            return folder if kind != "derivative" else None
    return None


def dataset_description(task: str, version: str, options: dict) -> dict:
    return {"Name": "msseg segmentations", "BIDSVersion": "1.10.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "msseg", "Version": version,
                             "Description": f"msseg segment {task}",
                             "Options": options}],
            "HowToAcknowledge": "Cite the model card of the task (msseg segment --list)."}


def write_dataset_description(root: Path, task: str, version: str, options: dict) -> Path:
    """Write ``dataset_description.json`` and ``.bidsignore`` (msseg's tables and records are
    not BIDS files); an existing description made by msseg is kept."""
    path = root / "dataset_description.json"
    root.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        existing = json.loads(path.read_text())
        names = [g.get("Name") for g in existing.get("GeneratedBy", [])]
        if "msseg" not in names:
            raise MssegError(f"{path}: a derivative dataset not made by msseg; choose another "
                             "-o")
    else:
        path.write_text(json.dumps(dataset_description(task, version, options), indent=2))
    (root / ".bidsignore").write_text("summary.csv\nlevels.csv\n*_lesions.csv\nqc/\n"
                                      "segment_options.json\n")
    return path


def sidecar(source: Path, raw_root: Path | None, task: str, output: str, kind: str,
            threshold: float | None, postprocess: dict | None) -> dict:
    where = (f"bids:raw:{source.relative_to(raw_root).as_posix()}"
             if raw_root is not None and source.is_relative_to(raw_root) else str(source))
    what = {"cord": "spinal cord (cord ∪ lesion)", "lesion": "MS lesions",
            "brain": "brain (what the model segmented)"}.get(output, output)
    body = {"Description": f"{what} {'probability' if kind == 'probseg' else 'mask'}, "
                           f"msseg segment {task}", "Sources": [where], "Model": task}
    if kind == "mask" and output != "brain":      # the brain mask: no threshold of ours
        body["Threshold"] = threshold
        body["Postprocessing"] = postprocess
    return body


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name
