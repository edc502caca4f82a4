"""upd_core.app.tails: disk-cached score sets, curves, densities and the tail cases."""
from __future__ import annotations

import numpy as np

from tests.app_fixtures import env, smooth_images, with_blob
from upd_core.app import tails
from upd_core.app.folders import LabelledSet


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
        a = tails.dataset_scores("spatial-ae-tiny-32", "set-key", x, y, ids, load)
        b = tails.dataset_scores("spatial-ae-tiny-32", "set-key", x, y, ids, load)
        c = tails.dataset_scores("spatial-ae-tiny-32", "other-key", x, y, ids, load)
    assert not a.from_cache and b.from_cache and not c.from_cache
    assert loads == ["spatial-ae-tiny-32", "spatial-ae-tiny-32"]
    np.testing.assert_allclose(a.scores, b.scores)
    assert list((tmp_path / "scores").glob("spatial-ae-tiny-32-*.json"))


def test_score_sets_keep_going_after_a_failing_checkpoint(ckpts, tmp_path):
    import upd_core

    x = smooth_images(4, 32, seed=6)
    data = LabelledSet(x, np.r_[0, 0, 1, 1], [f"i{i}" for i in range(4)], "tiny", "tiny-key")
    seen = []
    with env(UPD_CACHE_DIR=str(tmp_path)):
        sets, errors = tails.score_sets(["nope", "spatial-ae-tiny-32"], data, upd_core.load_detector,
                                        progress=lambda i, n, cid: seen.append((i, n, cid)))
    assert list(sets) == ["spatial-ae-tiny-32"] and list(errors) == ["nope"] and errors["nope"]
    assert seen == [(0, 2, "nope"), (1, 2, "spatial-ae-tiny-32")]


def test_curves_densities_and_tail_cases():
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    cur = tails.curves(labels, scores)
    assert cur["auroc"] == 1.0 and cur["ap"] == 1.0 and cur["prevalence"] == 0.5
    d = tails.densities(scores, labels)
    assert d["normal"].shape == d["grid"].shape == d["abnormal"].shape
    cases = tails.tail_cases(scores, labels, quantile=100)
    assert cases["normal"] == {"best": 0, "average": 2, "worst": 3, "q100": 3}
    assert cases["abnormal"] == {"best": 7, "average": 6, "worst": 4, "q100": 7}
    assert tails.curves(np.zeros(4), scores[:4]) == {}


def test_tail_gallery_pairs_each_case_with_its_heatmap(ckpts):
    import upd_core

    normal = smooth_images(4, 32, seed=7)
    x = np.concatenate([normal, np.stack([with_blob(im, i) for i, im in enumerate(normal)])])
    y = np.r_[np.zeros(4, int), np.ones(4, int)]
    s = tails.ScoreSet("spatial-ae-tiny-32", "k", np.arange(8, dtype=float), y, [str(i) for i in range(8)])
    gallery = tails.tail_gallery(upd_core.load_detector("spatial-ae-tiny-32"), x, s, quantile=50)
    assert set(gallery) == {"normal", "abnormal"} and len(gallery["normal"]) == 4
    (img, heat), *_ = gallery["normal"]  # best normal case: the lowest score, image 0
    assert img.caption == "best: score 0" and heat.caption == "25th percentile of normal"
    np.testing.assert_array_equal(img.image, x[0])
    assert heat.image.shape == (32, 32, 3) and heat.image.dtype == np.uint8
    worst = gallery["abnormal"][2]
    assert worst[0].caption == "worst: score 4" and worst[1].caption == "25th percentile of abnormal"
