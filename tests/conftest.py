"""Shared fixtures: the real data in ../shared/data, pinned by checksum.

Tests that need the data use the ``shared_data`` fixture: they skip with a reason when the
folder is absent, and fail instead when ``MSSEG_REQUIRE_DATA=1`` (CI sets it). Every file is
hashed before the session and again after it, so a test that modifies the data fails the run.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
REQUIRE = os.environ.get("MSSEG_REQUIRE_DATA") == "1"


def _checksums() -> dict[str, str]:
    sums = {}
    for line in (DATA / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.strip()] = digest
    return sums


def _verify(expected: dict[str, str]) -> list[str]:
    bad = []
    for name, digest in expected.items():
        path = DATA / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            bad.append(name)
    return bad


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (DATA / "SHA256SUMS").is_file():
        message = f"shared data not found at {DATA} (needs ../shared/data beside the repo)"
        if REQUIRE:
            pytest.fail(message + "; MSSEG_REQUIRE_DATA=1 forbids skipping")
        pytest.skip(message)
    expected = _checksums()
    bad = _verify(expected)
    assert not bad, f"shared data differs from SHA256SUMS before the tests: {bad[:5]}"
    yield DATA
    bad = _verify(expected)
    assert not bad, f"a test modified the shared data: {bad[:5]}"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A tiny region-based model trained here on three phantoms (seconds): the machinery of
    ``msseg segment`` without the cost of a real model. Returns (model folder, images)."""
    from msseg.data.index import load_index
    from msseg.training.config import TrainConfig
    from msseg.training.loop import train
    from msseg.training.package import package_checkpoint
    from phantom_data import phantom_index

    tmp = tmp_path_factory.mktemp("tiny")
    index = phantom_index(tmp, n=3)
    config = TrainConfig(dataset=str(index), output=str(tmp / "run"), epochs=1,
                         iterations_per_epoch=3, batch_size=2, patch_size=(32, 32),
                         base_filters=4, max_filters=16, val_max_cases=1, num_threads=1)
    run = train(config)
    model = package_checkpoint(run / "checkpoint_best.pt", tmp / "model", "# tiny test model\n")
    return model.path, [Path(r.image) for r in load_index(index)]


def spine_images(data: Path) -> list[Path]:
    """Every readable 3D NIfTI under spine/ (the malformed-header file excluded; of the 14
    PAM50 maps, which share one large grid, only the cord map)."""
    return sorted(p for p in (data / "spine").rglob("*.nii.gz")
                  if "_history/bad_q" not in str(p)
                  and ("PAM50/" not in str(p) or p.name == "PAM50_cord.nii.gz"))


def brain_lesion_masks(data: Path) -> list[Path]:
    return sorted((data / "brain" / "3d-mr-ms" / "MNI").glob("patient*/GOLD_STANDARD*.nii.gz"))


SHARED = ROOT.parent / "shared"


def _shared_folder(path: Path, what: str) -> Path:
    """A folder of ../shared beside its SHA256SUMS (checked); skip when absent, fail under
    MSSEG_REQUIRE_DATA=1."""
    if not path.is_dir():
        message = f"{what} not found at {path} (needs ../shared beside the repo)"
        if REQUIRE:
            pytest.fail(message + "; MSSEG_REQUIRE_DATA=1 forbids skipping")
        pytest.skip(message)
    sums = path / "SHA256SUMS"
    if sums.is_file():
        for line in sums.read_text().splitlines():
            digest, name = line.split(maxsplit=1)
            file = path / name.strip().lstrip("*")
            assert hashlib.sha256(file.read_bytes()).hexdigest() == digest, f"{file} changed"
    return path


@pytest.fixture(scope="session")
def sct_models() -> Path:
    """SCT's released Keras weights (../shared/models/sct_deepseg), read in place."""
    return _shared_folder(SHARED / "models" / "sct_deepseg", "SCT's released models")


@pytest.fixture(scope="session")
def sct_reference() -> Path:
    """SCT's own outputs and intermediates (../shared/peers/sct_deepseg_lesion)."""
    return _shared_folder(SHARED / "peers" / "sct_deepseg_lesion", "SCT's reference outputs")


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """msseg's user cache (ONNX exports of model files given by path) in a temporary folder,
    never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()
