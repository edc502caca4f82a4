"""Metrics against hand-computable cases and sklearn-free identities."""
import numpy as np
import pytest

from upd_core import metrics


def test_perfect_and_reversed_scores():
    y = np.array([0, 0, 0, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    m = metrics.image_metrics(y, s)
    assert m["auroc"] == 1.0 and m["ap"] == 1.0 and m["fpr95"] == 0.0 and m["fpr99"] == 0.0
    r = metrics.image_metrics(y, -s)
    assert r["auroc"] == 0.0 and r["fpr95"] == 1.0


def test_fpr_at_tpr_partial_overlap():
    y = np.array([0, 0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.6, 0.3, 0.5, 0.9])
    # reaching TPR 1.0 needs threshold 0.5, where 1 of 4 normals (0.6) is above -> FPR 0.25
    assert metrics.fpr_at_tpr(y, s, 0.99) == pytest.approx(0.25)


def test_metrics_refuse_one_class_and_nan():
    with pytest.raises(ValueError, match="both"):
        metrics.image_metrics(np.zeros(4), np.arange(4.0))
    with pytest.raises(ValueError, match="NaN"):
        metrics.image_metrics(np.array([0, 1]), np.array([0.0, np.nan]))


def test_best_dice_exact():
    mask = np.zeros((2, 8, 8))
    mask[0, 2:4, 2:4] = 1
    amap = mask * 0.9 + 0.05
    d, thr = metrics.best_dice(mask, amap)
    assert d == pytest.approx(1.0) and 0.05 < thr <= 0.95 + 1e-9
    noisy = amap.copy()
    noisy[1, 0, 0] = 1.0  # one false positive brighter than every lesion pixel
    d2, _ = metrics.best_dice(mask, noisy)
    assert d2 == pytest.approx(8 / 9)  # best: threshold keeps the 4 lesion pixels + the outlier
    p = metrics.pixel_metrics(mask, amap)
    assert p["pixel_ap"] == pytest.approx(1.0)


def test_best_dice_matches_bruteforce():
    rng = np.random.default_rng(0)
    mask = rng.random((3, 10, 10)) > 0.8
    amap = rng.random((3, 10, 10)) + mask * 0.5
    d, _ = metrics.best_dice(mask, amap, n_thresholds=10_000)
    brute = max(2 * ((amap >= t) & mask).sum() / ((amap >= t).sum() + mask.sum()) for t in np.unique(amap))
    assert d == pytest.approx(brute)


def test_intensity_floors_sign():
    imgs = np.stack([np.full((4, 4), v) for v in (0.1, 0.2, 0.8, 0.9)])
    imgs[:, 0, 0] += np.array([0.0, 0.3, 0.0, 0.3])
    fl = metrics.intensity_floors(imgs, np.array([1, 1, 0, 0]))
    assert fl["mean_intensity"]["auroc"] == 1.0
    assert fl["mean_intensity"]["sign"] == "lower is abnormal"
