"""`msseg segment` end to end: outputs, headers, batches, resume, failures, Dask, QC, bad input.

Uses a tiny model trained here on phantoms (fast, tests the machinery) and, where marked, the
bundled `lesion_ms_axial_t2` model on the real scans of ../shared/data.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from msseg import io
from msseg.cli.main import main
from msseg.evaluation.voxel import dice
from msseg.inference.options import SegmentOptions
from msseg.inference.segment import Segmenter
from msseg.lesion_measures import COLUMNS as CORD_COLUMNS
from msseg.models.registry import bundled_models, find_model
from msseg.postprocess import dilate_mm


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def segment(*argv) -> int:
    return main(["segment", *map(str, argv)])


def test_locations_are_for_brain_models_only(tiny_model, tmp_path, capsys):
    model, images = tiny_model
    assert segment(model, "-i", images[0], "-o", tmp_path / "out", "--locations", "mni") == 1
    err = capsys.readouterr().err
    assert "--locations: only brain models" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert segment(model, "-i", images[0], "-o", tmp_path / "out", "--locations", "off") == 0


@pytest.mark.parametrize("option", [["--skull-strip", "bet"], ["--no-skull-strip"],
                                    ["--model-space", "mni"]])
def test_brain_options_are_for_brain_models_only(tiny_model, tmp_path, capsys, option):
    model, images = tiny_model
    assert segment(model, "-i", images[0], "-o", tmp_path / "out", *option) == 1
    err = capsys.readouterr().err
    assert "only brain models" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_single_scan_outputs_headers_and_untouched_input(tiny_model, tmp_path, capsys):
    model, images = tiny_model
    before = digest(images[0])
    assert segment(model, "-i", images[0], "-o", tmp_path / "out", "--soft") == 0
    stem = io.strip_nifti_suffix(images[0].name)
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {f"{stem}_label-SC_seg.nii.gz", f"{stem}_label-lesion_seg.nii.gz",
            f"{stem}_label-lesion_probseg.nii.gz", f"{stem}_lesions.csv",
            "summary.csv", "segment_options.json", ".msseg"} == names
    assert {p.name for p in (tmp_path / "out/.msseg").iterdir()} == {
        f"{stem}.json", f"{stem}.lock", "folder.lock"}
    import json

    recorded = json.loads((tmp_path / "out" / "segment_options.json").read_text())
    # min_lesion_volume_mm3 None: the model's own (its plan's; else 3 mm³)
    assert recorded["options"]["postprocess"] == {"cord_margin_mm": 2.0,
                                                  "min_lesion_volume_mm3": None,
                                                  "largest_cord_component": True,
                                                  "restrict_lesions_to_cord": True}
    assert recorded["options"]["crop"] is True and recorded["model"] == str(model)
    assert digest(images[0]) == before
    src = nib.load(images[0]).header
    for suffix in ("_label-SC_seg", "_label-lesion_seg", "_label-lesion_probseg"):
        out = nib.load(tmp_path / "out" / f"{stem}{suffix}.nii.gz")
        for key in io.GEOMETRY_FIELDS:
            np.testing.assert_array_equal(out.header[key], src[key])
    prob = nib.load(tmp_path / "out" / f"{stem}_label-lesion_probseg.nii.gz").get_fdata()
    assert prob.min() >= 0 and prob.max() <= 1
    table = pd.read_csv(tmp_path / "out" / f"{stem}_lesions.csv")
    assert list(table.columns) == [
        "lesion_id", "volume_mm3", "length_si_mm", "max_axial_area_mm2",
        "equivalent_diameter_mm", "centroid_x_mm", "centroid_y_mm", "centroid_z_mm",
        "slice_min", "slice_max", "mean_probability", "region", *CORD_COLUMNS,
        "distance_from_top_mm", "chunk"]
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert list(summary.columns[:6]) == ["scan", "status", "n_lesions",
                                         "total_lesion_volume_mm3", "cord_volume_mm3", "seconds"]
    assert "view: fsleyes" in capsys.readouterr().out


def test_batch_resume_and_failure(tiny_model, tmp_path):
    model, images = tiny_model
    folder = tmp_path / "in"
    folder.mkdir()
    for image in images:
        shutil.copy(image, folder / image.name)
    bad = np.zeros((8, 8, 4), np.float32)
    bad[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(bad, np.eye(4)), folder / "broken.nii.gz")
    out = tmp_path / "out"
    assert segment(model, "-i", folder, "-o", out) == 1  # one scan failed
    summary = pd.read_csv(out / "summary.csv").set_index("scan")
    assert summary.loc["broken", "status"] == "failed"
    assert "NaN" in summary.loc["broken", "error"]
    assert (summary.drop(index="broken").status == "ok").all()
    # simulate a kill in the middle of one scan: one of its outputs is missing
    first = io.strip_nifti_suffix(images[0].name)
    (out / f"{first}_lesions.csv").unlink()
    kept = (out / f"{io.strip_nifti_suffix(images[1].name)}_label-SC_seg.nii.gz").stat().st_mtime
    (folder / "broken.nii.gz").unlink()
    assert segment(model, "-i", folder, "-o", out) == 0
    resumed = pd.read_csv(out / "summary.csv").set_index("scan")
    # skipped scans keep their recorded rows (cord volume, time); the folder keeps the failure
    pd.testing.assert_frame_equal(resumed.drop(index=first), summary.drop(index=first))
    assert resumed.loc[first, "status"] == "ok"
    assert resumed.loc[first, "cord_volume_mm3"] == summary.loc[first, "cord_volume_mm3"]
    assert (out / f"{first}_lesions.csv").exists()
    assert (out / f"{io.strip_nifti_suffix(images[1].name)}_label-SC_seg.nii.gz"
            ).stat().st_mtime == kept


def test_jobs_and_dask_local_cluster(tiny_model, tmp_path):
    from dask.distributed import LocalCluster

    model, images = tiny_model
    assert segment(model, "-i", *images[:2], "-o", tmp_path / "jobs", "--jobs", "2") == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None, processes=True) as cluster:
        assert segment(model, "-i", *images[:2], "-o", tmp_path / "dask",
                       "--dask-scheduler", cluster.scheduler_address) == 0
    for name in ("jobs", "dask"):
        summary = pd.read_csv(tmp_path / name / "summary.csv")
        assert (summary.status == "ok").all() and len(summary) == 2
    for image in images[:2]:
        stem = io.strip_nifti_suffix(image.name)
        a = nib.load(tmp_path / "jobs" / f"{stem}_label-SC_seg.nii.gz").get_fdata()
        b = nib.load(tmp_path / "dask" / f"{stem}_label-SC_seg.nii.gz").get_fdata()
        np.testing.assert_array_equal(a, b)


def make_bad_inputs(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True)
    eye = np.diag([0.5, 0.5, 5.0, 1.0])
    data = np.random.default_rng(0).random((16, 16, 6)).astype(np.float32)
    paths = {}
    (folder / "notes.txt").write_text("not an image")
    paths["non-NIfTI"] = folder / "notes.txt"
    nib.save(nib.Nifti1Image(np.stack([data, data], -1), eye), folder / "four_d.nii.gz")
    paths["4D"] = folder / "four_d.nii.gz"
    nan = data.copy()
    nan[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(nan, eye), folder / "nan.nii.gz")
    paths["NaN"] = folder / "nan.nii.gz"
    nib.save(nib.Nifti1Image(data[:, :, :1], eye), folder / "one_slice.nii.gz")
    paths["single slice"] = folder / "one_slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros_like(data), eye), folder / "empty.nii.gz")
    paths["empty"] = folder / "empty.nii.gz"
    c, s = np.cos(np.pi / 4), np.sin(np.pi / 4)
    oblique = np.array([[0.5 * c, -0.5 * s, 0, 0], [0.5 * s, 0.5 * c, 0, 0], [0, 0, 5, 0],
                        [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, oblique), folder / "oblique.nii.gz")
    paths["oblique"] = folder / "oblique.nii.gz"
    return paths


@pytest.mark.parametrize("kind,message", [
    ("non-NIfTI", "not a NIfTI"), ("4D", "3D"), ("NaN", "NaN"), ("single slice", "single slice"),
    ("empty", "empty"), ("oblique", "oblique"),
])
def test_bad_inputs_clear_error_nothing_written(tiny_model, tmp_path, capsys, kind, message):
    model, _ = tiny_model
    paths = make_bad_inputs(tmp_path / "bad")
    out = tmp_path / "out"
    assert segment(model, "-i", paths[kind], "-o", out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("msseg segment: error:") and message in err[-1], err
    assert paths[kind].name in err[-1]
    assert not out.exists() or not any(out.iterdir())


def test_bad_quaternion_and_usage_errors(tiny_model, tmp_path, capsys, shared_data):
    model, _ = tiny_model
    bad = shared_data / "spine/sct_testing_data/_history/bad_quaternion.nii.gz"
    assert segment(model, "-i", bad, "-o", tmp_path / "o") == 1
    assert "bad_quaternion" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert segment("no_such_task", "-i", bad, "-o", tmp_path / "o") == 1
    assert "unknown task" in capsys.readouterr().err
    assert segment(model, "-i", tmp_path / "missing.nii.gz", "-o", tmp_path / "o") == 1


def _chrome(tmp_path):
    """Selenium driving Debian's chromium through chromium-driver (make test installs both),
    downloads into tmp_path/downloads."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        pytest.skip("Debian packages chromium and chromium-driver not installed (make test "
                    "installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,1400", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(tmp_path / "downloads"),
        "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.mark.slow
def test_qc_page_rating_with_real_key_presses(tiny_model, tmp_path):
    """Rate three scans with the keyboard in a real browser, reload (marks kept), toggle the
    overlays, export the CSV and read it; a small page size paginates."""
    import time

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    model, images = tiny_model
    qc = tmp_path / "qc"
    assert segment(model, "-i", *images, "-o", tmp_path / "out", "--qc", qc) == 0
    names = [io.strip_nifti_suffix(p.name) for p in images]
    browser = _chrome(tmp_path)
    try:
        browser.get((qc / "index.html").as_uri())
        sections = browser.find_elements(By.CSS_SELECTOR, "section.scan")
        assert [s.get_attribute("data-scan") for s in sections] == sorted(names)
        keys = ActionChains(browser)
        keys.send_keys("1").send_keys("j").send_keys("f").send_keys(Keys.ARROW_DOWN)
        keys.send_keys("3").perform()
        counts = browser.find_element(By.ID, "counts").text
        assert counts == "pass 1 · fail 1 · artefact 1 · unrated 0"
        # Chromium hands localStorage writes to its storage service asynchronously: on a
        # loaded machine a reload 1.5 s after the last key could still find none of the marks
        # (reproduced here with two busy processes beside it). A reload never writes (the page
        # saves on a mark only), so the marks must show after some reload within 15 s.
        deadline = time.monotonic() + 15
        while True:
            time.sleep(0.5)
            browser.refresh()                                  # kept in localStorage
            if browser.find_element(By.ID, "counts").text == counts \
                    or time.monotonic() > deadline:
                break
        assert browser.find_element(By.ID, "counts").text == counts
        ratings = [s.find_element(By.CLASS_NAME, "rating").text
                   for s in browser.find_elements(By.CSS_SELECTOR, "section.scan")]
        assert ratings == ["pass", "fail", "artefact"]
        first = browser.find_element(By.CSS_SELECTOR, "section.scan img.axial")
        assert first.get_attribute("src").endswith("_axial.png")
        ActionChains(browser).send_keys("o").perform()
        assert first.get_attribute("src").endswith("_axial_plain.png")
        assert (qc / f"{sorted(names)[0]}_axial_plain.png").is_file()
        browser.find_element(By.ID, "export").click()
        csv = tmp_path / "downloads" / "qc_ratings.csv"
        for _ in range(50):
            if csv.is_file() and csv.stat().st_size:
                break
            time.sleep(0.1)
        exported = pd.read_csv(csv)
        assert exported.scan.tolist() == sorted(names)
        assert exported.rating.tolist() == ["pass", "fail", "artefact"]
        assert pd.to_datetime(exported.time).notna().all()
        # pages of two: the third scan is hidden until the next page (→)
        from msseg.report.qc import write_index

        paged = write_index(tmp_path / "paged", pd.read_csv(tmp_path / "out" / "summary.csv"),
                            {}, page_size=2)
        browser.get(paged.as_uri())
        shown = [s.is_displayed() for s in browser.find_elements(By.CSS_SELECTOR,
                                                                  "section.scan")]
        assert shown == [True, True, False]
        ActionChains(browser).send_keys(Keys.ARROW_RIGHT).perform()
        shown = [s.is_displayed() for s in browser.find_elements(By.CSS_SELECTOR,
                                                                  "section.scan")]
        assert shown == [False, False, True]
        assert browser.find_element(By.ID, "page").text == "page 2 / 2"
        # a cohort of 2,000 scans: one page of 50 shown, the keys still page through it
        many = pd.DataFrame({"scan": [f"sub-{i:04d}_T2w" for i in range(2000)],
                             "status": "ok", "n_lesions": 0, "error": ""})
        browser.get(write_index(tmp_path / "many", many, {}).as_uri())
        sections = browser.find_elements(By.CSS_SELECTOR, "section.scan")
        assert len(sections) == 2000
        assert sum(s.is_displayed() for s in sections[:120]) == 50
        ActionChains(browser).send_keys(Keys.ARROW_RIGHT).send_keys("2").perform()
        assert browser.find_element(By.ID, "page").text == "page 2 / 40"
        assert browser.find_element(By.ID, "counts").text.startswith("pass 0 · fail 1")
        assert sections[50].find_element(By.CLASS_NAME, "rating").text == "fail"
    finally:
        browser.quit()


# ---------------------------------------------------------------- the bundled model, real data

def bundled():
    models = [m for m in bundled_models() if m.path.name == "lesion_ms_axial_t2"]
    if not models:
        pytest.fail("bundled model lesion_ms_axial_t2 is missing from the package")
    return models[0]


@pytest.mark.slow
def test_crop_agrees_with_no_crop_on_real_scans(shared_data):
    model = bundled()
    crop, full = (Segmenter(model, SegmentOptions(crop=c)) for c in (True, False))
    for rel in ("spine/sct_2014_testing/errsm_18/gre/gre.nii.gz",
                "spine/ms_patient_unlabelled/t2_ms/t2.nii.gz",
                "spine/sct_testing_data/t2s/t2s.nii.gz"):
        image = io.load(shared_data / rel)
        a, b = crop.segment(image), full.segment(image)
        assert dice(a.cord.data > 0, b.cord.data > 0) >= 0.99, rel
        assert dice(a.lesion.data > 0, b.lesion.data > 0) >= 0.99, rel


@pytest.mark.slow
def test_real_ms_patient_plausibility(shared_data, tmp_path, capsys):
    image_path = shared_data / "spine/ms_patient_unlabelled/t2_ms/t2.nii.gz"
    assert segment("lesion_ms_axial_t2", "-i", image_path, "-o", tmp_path,
                   "--morphometry") == 0
    cord = nib.load(tmp_path / "t2_label-SC_seg.nii.gz").get_fdata() > 0
    lesion = nib.load(tmp_path / "t2_label-lesion_seg.nii.gz").get_fdata() > 0
    assert cord.any(axis=(0, 1)).all(), "cord missing on some axial slice"
    margin = dilate_mm(cord, nib.load(image_path).header.get_zooms()[:3], 2.0)
    assert not (lesion & ~margin).any()
    # --morphometry: a CSA row per slice holding cord, in the adult cord's range (mm²)
    csa = pd.read_csv(tmp_path / "t2_morphometry.csv")
    assert len(csa) == cord.any(axis=(0, 1)).sum()
    assert 40 < csa.area.median() < 120
    lesions = pd.read_csv(tmp_path / "t2_lesions.csv")
    assert (lesions.max_axial_damage_ratio.dropna() <= 1).all()
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert summary.loc[0, "seconds"] > 0
    print(f"t2_ms: {summary.loc[0, 'seconds']:.1f} s, {summary.loc[0, 'n_lesions']} lesions")


def card_cord_dice(model, image_name: str) -> float:
    """The cord Dice that the model card's per-image table gives for ``image_name``."""
    rows = [line for line in model.card.splitlines() if line.startswith(f"| {image_name} |")]
    assert len(rows) == 1, image_name
    return float(rows[0].split("|")[4])


@pytest.mark.slow
def test_bundled_model_reproduces_its_card_on_real_held_out_scans(shared_data):
    """The card's cord Dice on real held-out scans (manual masks) is what the package gives."""
    model = bundled()
    segmenter = Segmenter(model)
    spine = shared_data / "spine"
    for image_rel, mask_rel in (
            ("sct_2014_testing/errsm_24/mt/mt1",
             "sct_2014_testing/errsm_24/mt/segmentation_binary"),
            ("ivadomed_unf/sub-unf01/anat/sub-unf01_T2w",
             "ivadomed_unf/derivatives/labels/sub-unf01/anat/sub-unf01_T2w_seg-manual")):
        image = io.load(spine / f"{image_rel}.nii.gz")
        cord = segmenter.segment(image).cord.data > 0
        measured = dice(cord, io.load(spine / f"{mask_rel}.nii.gz").data > 0.5)
        expected = card_cord_dice(model, Path(image_rel).name + ".nii.gz")
        assert measured == pytest.approx(expected, abs=0.0015), image_rel
        assert measured >= 0.9


def test_list_shows_bundled_model_card(capsys):
    bundled()
    assert main(["segment", "--list"]) == 0
    out = capsys.readouterr().out
    assert "lesion_ms_axial_t2" in out and "cord Dice" in out
    assert find_model("lesion_ms_axial_t2").plan.dims == 2


def test_outputs_keep_header_for_every_orientation(tiny_model, tmp_path, shared_data):
    model, _ = tiny_model
    spine = shared_data / "spine"
    images = {"LAS": spine / "sct_testing_data/t2s/t2s.nii.gz",
              "PSR": spine / "sct_testing_data/t2/t2.nii.gz",
              "RAS": spine / "sct_testing_data/t1/t1w.nii.gz"}
    for code, path in images.items():
        assert io.load(path).orientation == code
        out = tmp_path / code
        assert segment(model, "-i", path, "-o", out, "--soft") == 0
        src = nib.load(path)
        stem = io.strip_nifti_suffix(path.name)
        for suffix in ("_label-SC_seg", "_label-lesion_seg", "_label-lesion_probseg"):
            res = nib.load(out / f"{stem}{suffix}.nii.gz")
            assert res.shape == src.shape
            np.testing.assert_array_equal(res.get_qform(), src.get_qform())
            np.testing.assert_array_equal(res.get_sform(), src.get_sform())
            for key in io.GEOMETRY_FIELDS:
                np.testing.assert_array_equal(res.header[key], src.header[key], err_msg=key)


def test_onnx_backend_matches_torch(tiny_model, tmp_path):
    model, images = tiny_model
    assert segment(model, "-i", images[0], "-o", tmp_path / "torch", "--soft") == 0
    assert segment(model, "-i", images[0], "-o", tmp_path / "onnx", "--soft",
                   "--backend", "onnx") == 0
    stem = io.strip_nifti_suffix(images[0].name)
    a = nib.load(tmp_path / "torch" / f"{stem}_label-lesion_probseg.nii.gz").get_fdata()
    b = nib.load(tmp_path / "onnx" / f"{stem}_label-lesion_probseg.nii.gz").get_fdata()
    np.testing.assert_allclose(a, b, atol=1e-3)
    c = nib.load(tmp_path / "torch" / f"{stem}_label-SC_seg.nii.gz").get_fdata() > 0
    d = nib.load(tmp_path / "onnx" / f"{stem}_label-SC_seg.nii.gz").get_fdata() > 0
    assert dice(c, d) >= 0.99


def test_int16_image_with_full_range_is_not_called_empty(tiny_model):
    from msseg.image import Image
    from msseg.inference.options import check_image

    data = np.zeros((8, 8, 4), np.int16)
    data[0, 0, 0], data[1, 1, 1] = -32768, 32767
    check_image(Image(data, np.eye(4)), "full_range")  # no error


def test_windows_run_around_the_cord_core_unless_the_margin_is_too_long():
    """The core (cord half-width) picks the windows; a margin longer than a window minus its
    step (64 voxels of 0.5 mm here) falls back to the whole neighbourhood."""
    from msseg.inference.crop import CORD_HALF_WIDTH_MM, cord_neighbourhood

    shape, affine = (200, 200, 10), np.diag([0.5, 0.5, 2.0, 1.0])
    world = np.array([[50.0, 50.0, z] for z in np.arange(0, 20, 2.0)])
    for margin, fallback in ((5.0, False), (40.0, True)):
        seg = Segmenter(bundled(), SegmentOptions(crop_margin_mm=margin))
        roi = cord_neighbourhood(shape, affine, world, margin + CORD_HALF_WIDTH_MM)
        core = seg._core(shape, affine, world, roi)
        assert not (core & ~roi).any()
        widths = [int(m.any(axis=(1, 2)).sum()) for m in (core, roi)]
        if fallback:
            assert core is roi
        else:   # ±14 and ±24 voxels (7 mm, 12 mm) around x = 100
            assert widths == [2 * 14 + 1, 2 * 24 + 1]


def test_lesion_ms_hands_t2star_scans_to_the_stronger_model(shared_data, tmp_path, capsys):
    """lesion_ms on a T2*w scan (named _T2star): segmented by lesion_ms_axial_t2, voxel for
    voxel, announced in one line; --no-fallback keeps lesion_ms."""
    image = tmp_path / "sub-01_T2star.nii.gz"
    shutil.copy(shared_data / "spine/sct_testing_data/t2s/t2s.nii.gz", image)
    outs = {}
    for name, argv in (("fallback", ["lesion_ms"]), ("axial", ["lesion_ms_axial_t2"]),
                       ("own", ["lesion_ms", "--no-fallback"])):
        outs[name] = tmp_path / name
        assert segment(argv[0], "-i", image, "-o", outs[name], *argv[1:]) == 0
        printed = capsys.readouterr().out
        assert ("segmented with lesion_ms_axial_t2" in printed) == (name == "fallback")
    for mask in ("label-SC_seg", "label-lesion_seg"):
        a, b = (io.load(outs[k] / f"sub-01_T2star_{mask}.nii.gz").data for k in ("fallback",
                                                                                  "axial"))
        np.testing.assert_array_equal(a, b)
