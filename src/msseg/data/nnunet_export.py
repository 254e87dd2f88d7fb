"""Export to an nnU-Net v2 raw dataset with region-based labels (the papers' training setup).

Writes ``imagesTr/<case>_0000.nii.gz`` (the image, header untouched), ``labelsTr/<case>.nii.gz``
(0 background, 1 cord, 2 lesion, on the image's grid) and ``dataset.json`` with
``"labels": {"background": 0, "cord": [1, 2], "lesion": 2}`` and
``"regions_class_order": [1, 2]``, so nnU-Net trains region 1 = cord ∪ lesion and region 2 =
lesion with sigmoid outputs, as the axial-T2w paper did.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from msseg import io
from msseg.data.index import Record
from msseg.errors import MssegError


def case_name(record: Record) -> str:
    stem = io.strip_nifti_suffix(Path(record.image).name)
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{record.patient}_{stem}"
                  if not stem.startswith(record.patient) else stem)


def export_nnunet(records: list[Record], out: str | Path, dataset_id: int = 501,
                  name: str = "MSSpineLesion") -> Path:
    records = [r for r in records if r.cord is not None]
    if not records:
        raise MssegError("no image with a cord mask to export")
    root = Path(out) / f"Dataset{dataset_id:03d}_{name}"
    (root / "imagesTr").mkdir(parents=True, exist_ok=True)
    (root / "labelsTr").mkdir(parents=True, exist_ok=True)
    names = []
    for record in records:
        case = case_name(record)
        if case in names:
            raise MssegError(f"{record.image}: case name {case} is not unique")
        names.append(case)
        shutil.copyfile(record.image, root / "imagesTr" / f"{case}_0000.nii.gz")
        image = io.load(record.image)
        labels = (io.load(record.cord).data > 0.5).astype(np.uint8)
        if record.lesion is not None:
            labels[io.load(record.lesion).data > 0.5] = 2
        io.save_like(labels, image, root / "labelsTr" / f"{case}.nii.gz")
    contrasts = sorted({r.contrast for r in records})
    meta = {
        "channel_names": {"0": contrasts[0] if len(contrasts) == 1 else "MRI"},
        "labels": {"background": 0, "cord": [1, 2], "lesion": 2},
        "regions_class_order": [1, 2],
        "numTraining": len(names),
        "file_ending": ".nii.gz",
        "name": name,
        "description": "exported by msseg; region-based: cord = cord ∪ lesion, lesion",
    }
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root
