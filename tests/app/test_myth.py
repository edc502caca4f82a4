"""upd_core.app.myth: the manifold test and the curse-of-resolution series."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app_fixtures import smooth_images
from upd_core.app import myth
from upd_core.app.demo_set import DemoItem
from upd_core.app.myth import ManifoldRow
from upd_core.app.views import CheckpointView
from upd_core.metrics import feature_stats, frechet_distance


def test_frechet_distance_of_feature_statistics():
    """The FD column of the manifold test (upd_core.metrics, used through upd_core.domain)."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(400, 4))
    mu, sig = feature_stats(f)
    assert frechet_distance(mu, sig, mu, sig) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(mu + 2, sig, mu, sig) == pytest.approx(16, rel=1e-6)
    assert feature_stats(f[:1])[1].shape == (4, 4)


def test_manifold_test_without_domain_model(ckpts):
    import upd_core

    det = upd_core.load_detector("spatial-ae-tiny-32")
    sets = {"a": smooth_images(3, 32), "b": smooth_images(2, 32, seed=9), "empty": np.zeros((0, 32, 32))}
    rows = myth.manifold_test(det, sets, checkpoint_id="spatial-ae-tiny-32@v")
    assert [r.domain for r in rows] == ["a", "b"] and all(-1 <= r.ssim <= 1 for r in rows)
    assert rows[0].fd is None and rows[0].confidence is None and rows[0].checkpoint == "spatial-ae-tiny-32@v"
    assert rows[0].example.image.shape == (32, 32)
    np.testing.assert_allclose(rows[0].example.image, np.clip(det.predict(sets["a"]).reconstruction[0], 0, 1))
    assert myth.manifold_test(det, {"a": sets["a"]})[0].checkpoint == "spatial-ae-tiny-32"


def test_manifold_sets_put_chest_x_rays_first():
    groups = {"photo": [DemoItem("p1", "P1", "photo", ""), DemoItem("p2", "P2", "photo", "")]}
    sets = myth.manifold_sets(np.zeros((3, 8, 8)), groups, ["photo"], lambda i: np.ones((8, 8)))
    assert list(sets) == [myth.IN_DISTRIBUTION, "photo"] and sets["photo"].shape == (2, 8, 8)
    assert list(myth.manifold_sets(None, groups, ["photo"], lambda i: np.ones((8, 8)))) == ["photo"]


def row(cid, domain, ssim, fd=None, fd_in=None, conf=None):
    return ManifoldRow(cid, domain, 4, ssim, fd, fd_in, conf, None)


def test_manifold_summary_applies_the_papers_rule():
    rows = [row("copy", myth.IN_DISTRIBUTION, 0.9), row("copy", "photo", 0.8, 10.0, 10.0, 0.1),
            row("learn", myth.IN_DISTRIBUTION, 0.7), row("learn", "photo", 0.3, 4.0, 10.0, 0.9),
            row("learn", "digit", 0.5, 6.0, 10.0, 0.7)]
    out = myth.manifold_summary(rows, ["copy", "learn", "absent"], {"copy": "Copier"}, "FD (x)")
    copy, learn, absent = out
    assert copy["method"] == "Copier" and copy["SSIM (chest X-rays)"] == 0.9
    assert copy["learned the distribution?"] == "✗" and learn["learned the distribution?"] == "✓"
    assert learn["mean SSIM (other domains)"] == pytest.approx(0.4)
    assert learn["mean FD (x) (other domains)"] == pytest.approx(5.0)
    assert learn["mean P(chest X-ray) (other domains)"] == pytest.approx(0.8)
    assert absent["SSIM (chest X-rays)"] is None and "learned the distribution?" not in absent
    no_fd = myth.manifold_summary([row("a", "photo", 0.5)], ["a"], {}, "FD")[0]
    assert "learned the distribution?" not in no_fd and no_fd["mean FD (other domains)"] is None
    detail = myth.manifold_detail(rows[:2], {"copy": "Copier"}, "FD (x)")
    assert detail[1]["FD (x) of reconstructions"] == 10.0 and detail[1]["domain"] == "photo"


def view(method):
    return CheckpointView(f"{method}-x", method, method, "", ("reconstruction",), False, {}, "")


def test_curse_of_resolution_series_and_examples():
    series, morph = myth.resolution_series([view("ae-latent-1"), view("morphaeus"), view("ae-latent-32"),
                                            view("ae-latent-4"), view("vae")])
    assert [v.method for v in series] == ["ae-latent-32", "ae-latent-4", "ae-latent-1"]
    assert [v.method for v in morph] == ["morphaeus"]
    assert myth.resolution_caption(series, morph) == ("Latent side at 128×128 input, left to right: 32×32, 4×4, "
                                                      "1×1 — then MorphAEus (1×1 prior, locally deformed).")
    chest = {"normal": smooth_images(2, 32), "abnormal": smooth_images(1, 32, seed=3)}
    items = [DemoItem("astronaut", "Astronaut", "photo", ""), DemoItem("other", "Other", "photo", "")]
    ex = myth.resolution_examples(chest, items, lambda i: np.full((32, 32), 0.5, np.float32))
    assert [n for n, _ in ex] == ["healthy chest X-ray", "pneumonia", "healthy + synthetic lesion", "Astronaut"]
    assert [n for n, _ in myth.resolution_examples({"normal": chest["normal"][:1]}, [], np.zeros)] == [
        "healthy chest X-ray"]


def test_reconstruction_cell(ckpts):
    import upd_core

    det = upd_core.load_detector("spatial-ae-tiny-32")
    cell = myth.reconstruction_cell(det, "spatial-ae-tiny-32", smooth_images(1, 32)[0])
    assert cell.image.shape == (32, 32) and cell.caption.startswith("score ")
