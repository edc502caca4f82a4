"""upd_core.app_support: the computations behind the app pages (no Streamlit needed)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.app_fixtures import env, make_dataset, shared_checkpoints, smooth_images
from upd_core import app_support as sup
from upd_core.errors import DataError


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    root = shared_checkpoints()
    with env(UPD_CHECKPOINTS=str(root)):
        yield root


# ---- folders: the allow-list


def test_safe_folder_allows_data_root_and_refuses_elsewhere(tmp_path):
    data = tmp_path / "data"
    (data / "set").mkdir(parents=True)
    other = tmp_path / "other"
    other.mkdir()
    with env(UPD_DATA_ROOT=str(data), UPD_ALLOWED_DIRS=None):
        assert sup.safe_folder(data / "set") == (data / "set").resolve()
        assert sup.safe_folder("set") == (data / "set").resolve()  # relative = under the data root
        with pytest.raises(DataError, match="only reads folders under"):
            sup.safe_folder(other)
        with pytest.raises(DataError, match="only reads folders under"):
            sup.safe_folder(str(data / ".." / "other"))
        with pytest.raises(DataError, match="only reads folders under"):
            sup.safe_folder("/etc")
        os.symlink(other, data / "escape")  # a symlink out of the root is resolved first
        with pytest.raises(DataError, match="only reads folders under"):
            sup.safe_folder(data / "escape")
        with pytest.raises(DataError):
            sup.safe_folder("")
    with env(UPD_DATA_ROOT=str(data), UPD_ALLOWED_DIRS=str(other)):
        assert sup.safe_folder(other) == other.resolve()


def test_folder_listing_and_reading_stay_inside(tmp_path):
    base = make_dataset(tmp_path, n=3)
    with env(UPD_DATA_ROOT=str(tmp_path)):
        root = sup.safe_folder(base)
        files = sup.list_folder_images(root)
        assert len(files) == 9 and all(not f.startswith("/") for f in files)
        groups = sup.folder_groups(files)
        assert set(groups) == {"train/NORMAL", "test/NORMAL", "test/PNEUMONIA"}
        img = sup.read_folder_image(root, files[0], size=32)
        assert img.shape == (32, 32) and img.dtype == np.float32
        with pytest.raises(DataError, match="outside"):
            sup.read_folder_image(root, "../../../etc/passwd")


# ---- maps, deformation grid, OOD check


def test_deformation_grid_shows_a_regular_grid_for_zero_field():
    g = sup.deformation_grid(np.zeros((2, 32, 32), np.float32), spacing=8)
    assert g.shape == (32, 32, 3) and g.dtype == np.uint8
    lines = (g != 255).any(-1)
    assert lines[0].all() and lines[:, 8].all() and not lines[4, 4]
    moved = sup.deformation_grid(np.stack([np.full((32, 32), 3.0), np.zeros((32, 32))]).astype(np.float32), 8)
    assert not np.array_equal(moved, g)
    assert "max 3.00 px" in sup.deformation_stats(np.stack([np.full((4, 4), 3.0), np.zeros((4, 4))]))


def test_robust_z_and_ood_levels():
    ref = np.random.default_rng(0).normal(1.0, 0.1, 200)
    assert abs(sup.robust_z(1.0, ref)) < 0.2
    assert sup.robust_z(3.0, ref) > 15
    assert sup.robust_z(1.0, ref[:2]) is None

    def res(z):
        return sup.MethodResult("c", "spatial-ae", "AE", score=1.0, robust_z=z)

    assert sup.ood_check([res(0.5), res(1.0)]).level == "ok"
    assert sup.ood_check([res(8.0), res(9.0)]).level == "unusual"
    far = sup.ood_check([res(40.0), res(60.0)])
    assert far.level == "far" and "not meaningful" in far.message
    assert sup.ood_check([res(0.5)], domain_probability=0.05).level == "far"
    assert sup.ood_check([res(0.5)], domain_probability=0.4).level == "unusual"
    assert sup.ood_check([res(0.5)], domain_probability=0.99).level == "ok"
    assert sup.ood_check([res(50.0)], domain_probability=0.99).level == "unusual"  # e.g. severe pathology
    assert sup.ood_check([res(-9.0)]).level == "unusual"


def test_run_checkpoints_fills_outputs_and_reasons(ckpts):
    import upd_core

    img = smooth_images(1, 48, seed=3)[0]
    calls = []
    results = sup.run_checkpoints(img, ["spatial-ae-tiny-32", "morphaeus-tiny-32", "nope"], upd_core.load_detector,
                                  progress=lambda i, n, c: calls.append((i, n)))
    ae, morph, missing = results
    assert calls[-1] == (3, 3)
    assert ae.anomaly_map.shape == (48, 48) and ae.reconstruction.shape == (48, 48) and ae.prior is None
    assert ae.residual is not None and np.isfinite(ae.score) and 0 <= ae.percentile <= 100
    assert morph.deformation.shape == (2, 48, 48) and morph.warped is not None and morph.prior is not None
    assert missing.error and "could not load" in missing.error
    assert "global prior" in sup.missing_reason("spatial-ae", "prior")
    assert "deformation" in sup.missing_reason("spatial-ae", "deformation")
    doc = json.loads(sup.results_json(results, "x.png", sup.ood_check(results)))
    assert doc["results"][0]["checkpoint"] == "spatial-ae-tiny-32" and "out_of_distribution" in doc
    png = sup.heatmap_png(img, ae.anomaly_map)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_views_order_and_default_selection(ckpts):
    views = sup.checkpoint_views()
    assert [v.method for v in views] == ["spatial-ae", "morphaeus", "ae-latent-1"]
    assert sup.default_selection(views) == ["spatial-ae-tiny-32", "morphaeus-tiny-32"]
    fake = [sup.CheckpointView("ae-latent-1-x", "ae-latent-1", "t", "", (), False, {}, ""), *views]
    assert "ae-latent-1-x" not in sup.default_selection(fake)


# ---- Tails


def test_dataset_scores_are_cached_on_disk(ckpts, tmp_path):
    import upd_core

    loads = []

    def load(cid):
        loads.append(cid)
        return upd_core.load_detector(cid)

    x = smooth_images(6, 32, seed=4)
    y = np.r_[np.zeros(3, int), np.ones(3, int)]
    ids = [f"img{i}" for i in range(6)]
    with env(UPD_CACHE_DIR=str(tmp_path)):
        a = sup.dataset_scores("spatial-ae-tiny-32", "set-key", x, y, ids, load)
        b = sup.dataset_scores("spatial-ae-tiny-32", "set-key", x, y, ids, load)
        c = sup.dataset_scores("spatial-ae-tiny-32", "other-key", x, y, ids, load)
    assert not a.from_cache and b.from_cache and not c.from_cache
    assert loads == ["spatial-ae-tiny-32", "spatial-ae-tiny-32"]
    np.testing.assert_allclose(a.scores, b.scores)
    assert list((tmp_path / "scores").glob("spatial-ae-tiny-32-*.json"))


def test_curves_densities_and_tail_cases():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    cur = sup.curves(labels, scores)
    assert cur["auroc"] == 1.0 and cur["ap"] == 1.0 and cur["prevalence"] == 0.5
    d = sup.densities(scores, labels)
    assert d["normal"].shape == d["grid"].shape == d["abnormal"].shape
    cases = sup.tail_cases(scores, labels, quantile=100)
    assert cases["normal"] == {"best": 0, "average": 2, "worst": 3, "q100": 3}
    assert cases["abnormal"] == {"best": 7, "average": 6, "worst": 4, "q100": 7}
    assert sup.curves(np.zeros(4), scores[:4]) == {}


def test_labelled_folder_and_demo_set(tmp_path):
    base = make_dataset(tmp_path, n=4)
    with env(UPD_DATA_ROOT=str(tmp_path), UPD_CACHE_DIR=str(tmp_path / "cache")):
        s = sup.load_labelled_folder(base, "test", 32)
        assert s.images.shape == (8, 32, 32) and sorted(np.bincount(s.labels)) == [4, 4]
        s2 = sup.load_labelled_folder(base, "test", 32, max_per_class=2)
        assert len(s2.labels) == 4
        with pytest.raises(DataError):
            sup.load_labelled_folder(tmp_path.parent, "test", 32)
    if sup.demo_items():
        demo = sup.demo_labelled_set(32, n_per_class=4)
        assert demo.images.shape == (8, 32, 32) and demo.labels.tolist() == [0] * 4 + [1] * 4
        assert demo.images.min() >= 0 and demo.images.max() <= 1


# ---- Lesion lab and Myth


def test_add_lesion_and_sweep(ckpts):
    import upd_core

    img = smooth_images(1, 32, seed=5)[0]
    out, mask = sup.add_lesion(img, size=0.15, contrast=0.4, center=(0.5, 0.5))
    assert mask.sum() > 0 and not np.array_equal(out, img) and np.array_equal(out[mask == 0], img[mask == 0])
    assert mask[16, 16] == 1
    rows = sup.lesion_sweep({"spatial-ae-tiny-32": upd_core.load_detector("spatial-ae-tiny-32")}, img,
                            [0.08, 0.16], [-0.3, 0.3])
    assert len(rows) == 4 and all(0 <= r["dice"] <= 1 for r in rows)
    assert {(r["size"], r["contrast"]) for r in rows} == {(0.08, -0.3), (0.08, 0.3), (0.16, -0.3), (0.16, 0.3)}
    assert set(sup.lesion_shapes()) >= {"ellipse", "circle"}


def test_frechet_distance():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 4))
    mu, sig = sup.feature_stats(f)
    assert sup.frechet_distance(mu, sig, mu, sig) == pytest.approx(0, abs=1e-6)
    assert sup.frechet_distance(mu + 2, sig, mu, sig) == pytest.approx(16, rel=1e-6)


def test_manifold_test_without_domain_model(ckpts):
    import upd_core

    det = upd_core.load_detector("spatial-ae-tiny-32")
    rows = sup.manifold_test(det, {"a": smooth_images(3, 32), "b": smooth_images(2, 32, seed=9)})
    assert [r.domain for r in rows] == ["a", "b"] and all(-1 <= r.ssim <= 1 for r in rows)
    assert rows[0].fd is None and rows[0].confidence is None


# ---- Benchmarks


def test_benchmark_rows_floors_first(ckpts):
    tables = sup.benchmark_rows()
    assert len(tables) == 1
    rows = next(iter(tables.values()))
    kinds = [r["kind"] for r in rows]
    assert kinds[:2] == ["floor", "floor"] and kinds[2:] == ["method"] * 3
    assert rows[0]["method"].startswith("floor: mean intensity")
    assert all(r["AUROC"] is not None for r in rows)


def test_reported_numbers_are_marked_with_their_source():
    rows = sup.reported_rows(["morphaeus"])
    assert rows and all(r["id"] == "morphaeus" and r["source"] and r["data"] for r in rows)
    assert any(r["source"] == "MorphAEus paper, Table 2" and r["AUROC"] == 0.868 for r in rows)
    assert "0.868" in sup.reported_summary("morphaeus") and sup.reported_summary("no-such-method") == ""
    assert {r["source"] for r in sup.reported_rows()} >= {"MorphAEus paper, Table 2", "UPD study, Table III",
                                                          "PII paper, Table 1"}
