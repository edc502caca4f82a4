"""upd_core.app.myth: the Myth page's tables and verdicts over the manifold-test numbers, the
example cells and the curse-of-resolution series. Generated images and tiny models only."""
from __future__ import annotations

import numpy as np
import pytest

from tests.app_fixtures import smooth_images, tiny_domain_model
from upd_core.app import manifold, myth
from upd_core.app.demo_set import DemoItem
from upd_core.app.views import CheckpointView

TINY = "spatial-ae-tiny-32"


def stat(v, se=0.01):
    return {"value": v, "lo": v - 2 * se, "hi": v + 2 * se, "se": se}


def drow(domain, kind=manifold.KIND_OTHER, ssim=0.5, p=None, fd=None, fd_in=None, note=None):
    r = {"domain": domain, "kind": kind, "n": 10, "sources": 2, "ssim": stat(ssim), "l1": stat(0.1)}
    if p is not None:
        r["p_chest"], r["p_chest_inputs"] = stat(p), stat(0.01)
    if fd is not None:
        r["fd"], r["fd_inputs"] = stat(fd, 1.0), stat(fd_in, 1.0)
    if note:
        r["fd_note"] = note
    return r


def test_verdicts_follow_the_numbers():
    learned = [drow("a", p=0.9, fd=4, fd_in=10), drow("b", p=0.8, fd=6, fd_in=10)]
    assert myth.verdict(learned) == "✓ yes"
    assert myth.verdict([drow("a", p=0.1, fd=10, fd_in=10), drow("b", p=0.2, fd=11, fd_in=10)]) == "✗ no"
    # closer in FD (e.g. blurred) but no reconstruction looks like a chest X-ray to the classifier: no
    assert myth.verdict([drow("a", p=0.1, fd=4, fd_in=10), drow("b", p=0.2, fd=4, fd_in=10)]) == "✗ no"
    # classified as chest X-rays but not closer in FD: not a ✗ (the reconstructions do look like chest X-rays)
    assert myth.verdict([drow("a", p=0.9, fd=10, fd_in=10), drow("b", p=0.9, fd=12, fd_in=10)]) == "◐ partly"
    assert myth.verdict([drow("a", p=0.9, fd=4, fd_in=10), drow("b", p=0.1, fd=10, fd_in=10)]) == "◐ partly"
    assert myth.verdict([drow("a", p=0.9), drow("b", p=0.7)]) == "✓ yes (no FD)"
    assert myth.verdict([drow("a", p=0.1), drow("b", p=0.7)]) == "◐ partly"
    assert myth.verdict([drow("a", p=0.1), drow("b", p=0.2)]) == "✗ no"
    assert myth.verdict([drow("a")]) is None and myth.verdict([]) is None
    assert [myth.domain_verdict(r) for r in (drow("a", p=0.9, fd=4, fd_in=10), drow("a", p=0.9, fd=10, fd_in=10),
                                             drow("a", p=0.1, fd=4, fd_in=10), drow("a", p=0.1, fd=10, fd_in=10),
                                             drow("a", p=0.9), drow("a"))] == [
        "✓", "◐ not closer in FD", "✗ (FD closer)", "✗", "✓", "–"]


def test_summary_and_detail_rows():
    numbers = {
        "copy": {"domains": [drow(manifold.IN_DISTRIBUTION, manifold.KIND_IN, 0.9, 0.95, 2, 2),
                             drow("chest-xray (DRR)", manifold.KIND_SYNTHETIC, 0.3, 0.9, 3, 3),
                             drow("photo", ssim=0.8, p=0.1, fd=10, fd_in=10),
                             drow("digit", ssim=0.6, p=0.3, fd=20, fd_in=20)]},
        "learn": {"domains": [drow("chest-xray (DRR)", manifold.KIND_SYNTHETIC, 0.7, 0.9, 3, 3),
                              drow("photo", ssim=0.3, p=0.9, fd=4, fd_in=10),
                              drow("digit", ssim=0.5, p=0.7, fd=6, fd_in=10)]},
        "few": {"domains": [drow("photo", p=0.9, note="no FD: 2 images"),
                            drow("digit", p=0.2, note="no FD: 2 images")]},
    }
    rows = {r["method"]: r for r in myth.summary_rows(numbers, {"copy": "Copier"})}
    copy, learn, few = rows["Copier"], rows["learn"], rows["few"]
    assert copy["SSIM CXR"] == 0.9 and learn["SSIM CXR"] == 0.7  # real chest X-rays, else the DRRs
    assert copy["SSIM other"] == pytest.approx(0.7) and copy["learned?"] == "✗ no" and learn["learned?"] == "✓ yes"
    assert copy["CXR-like"] == "0/2" and learn["closer"] == "2/2" and learn["CXR-like"] == "2/2"
    se = np.sqrt(2 * 0.01 ** 2) / 2
    assert learn["P(CXR) other"] == f"0.8 [{0.8 - 1.96 * se:.3g}–{0.8 + 1.96 * se:.3g}]"
    assert learn["FD other"].startswith("5 [") and learn["FD inputs"] == 10
    assert few["FD other"] is None and few["closer"] is None and few["learned?"] == "◐ partly"
    assert set(copy) == set(myth.SUMMARY_HELP)  # every column has a tooltip
    assert myth.fd_notes({"few": {**numbers["few"], "feature_dim": 16}}) == [
        "No FD where a domain has only 10 images, fewer than the 16 feature dimensions (its covariance would be "
        "singular); `python -m upd_core myth precompute` computes the FD on 234 images per domain."]
    assert myth.real_chest(numbers) and not myth.real_chest({"learn": numbers["learn"]})
    detail = myth.detail_rows(numbers, {})
    assert len(detail) == 9 and set(detail[0]) - {"method", "domain", "sources"} <= set(myth.DETAIL_HELP)
    photo = next(d for d in detail if d["method"] == "learn" and d["domain"] == "photo")
    assert photo["✓?"] == "✓" and photo["FD in"] == 10 and photo["FD"].startswith("4 [")
    assert detail[0]["✓?"] == ""  # no verdict for the in-distribution row
    text = myth.verdict_caption(numbers, {"copy": "Copier"})
    assert text.startswith("Here: 1 of 3 (learn) turn every other domain into a chest X-ray;")
    assert "1 of 3 (Copier) make no other domain look like" in text and "1 of 3 (few) make some other" in text


def test_captions_say_what_the_numbers_are():
    numbers = {"a": {"feature_space": "FD (x features)", "images_per_domain": 234, "n_boot": 200,
                     "reference": "1098 training images", "domains": [drow(manifold.IN_DISTRIBUTION, manifold.KIND_IN)]}}
    text = myth.numbers_caption(numbers)
    assert "FD (x features)" in text and "not FID" in text and "Every domain has 234 images: the normal test" in text
    assert "(1098 training images)" in text and "200 resamples" in text
    live = myth.live_note({"vae-x@combi": "not precomputed"}, {"vae-x@combi": "VAE"})
    assert "VAE (not precomputed)" in live and "`python -m upd_core myth precompute --checkpoint vae-x`" in live


def test_combine_needs_every_domain():
    assert myth.combine([stat(1.0), None]) is None and myth.combine([]) is None
    c = myth.combine([stat(1.0, 0.3), stat(3.0, 0.4)])
    assert c["value"] == 2.0 and c["se"] == pytest.approx(0.25) and c["hi"] == pytest.approx(2 + 1.96 * 0.25)
    assert myth.with_interval(None) is None and myth.with_interval(stat(0.5)) == "0.5 [0.48–0.52]"


def test_example_cells(ckpts):
    import upd_core

    det = upd_core.load_detector(TINY)
    ex = {"a": smooth_images(1, 32)[0], "b": smooth_images(1, 32, seed=2)[0]}
    cells = myth.example_cells(det, TINY, ex, tiny_domain_model())
    assert list(cells) == ["a", "b"] and cells["a"].image.shape == (32, 32) and cells["a"].caption.startswith("P(CXR) ")
    assert myth.example_cells(det, TINY, ex)["b"].caption == ""

    class Broken:
        def predict(self, x):
            raise RuntimeError("boom")

    assert myth.example_cells(Broken(), "x", ex)["a"].reason == "RuntimeError: boom"  # a line, not a traceback


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

    det = upd_core.load_detector(TINY)
    cell = myth.reconstruction_cell(det, TINY, smooth_images(1, 32)[0])
    assert cell.image.shape == (32, 32) and cell.caption.startswith("score ")
