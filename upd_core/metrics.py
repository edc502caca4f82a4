"""Image- and pixel-level metrics used by the one evaluation path.

Image level: AUROC, AP (abnormal = positive), FPR at 95 % / 99 % TPR. Pixel level (when masks
exist): AP over all pixels and the best Dice over thresholds (UPD study, Sec. 4).
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(int).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels but {scores.size} scores")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN or infinite values")
    if len(np.unique(labels)) != 2:
        raise ValueError("metrics need both normal (0) and abnormal (1) samples")
    return labels, scores


def fpr_at_tpr(labels: np.ndarray, scores: np.ndarray, tpr_level: float) -> float:
    """False-positive rate at the first threshold reaching the given true-positive rate."""
    labels, scores = _check(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(fpr[np.searchsorted(tpr, tpr_level, side="left")])


def image_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """AUROC, AP, FPR95, FPR99 with abnormal as the positive class."""
    labels, scores = _check(labels, scores)
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "ap": float(average_precision_score(labels, scores)),
        "fpr95": fpr_at_tpr(labels, scores, 0.95),
        "fpr99": fpr_at_tpr(labels, scores, 0.99),
    }


def best_dice(masks: np.ndarray, maps: np.ndarray, n_thresholds: int = 512) -> tuple[float, float]:
    """Best Dice over thresholds of the anomaly maps, and the threshold reaching it."""
    y = np.asarray(masks).ravel() > 0.5
    s = np.asarray(maps, dtype=np.float64).ravel()
    if not y.any():
        raise ValueError("best Dice needs at least one positive pixel")
    order = np.argsort(-s, kind="stable")
    s_sorted, y_sorted = s[order], y[order]
    tp = np.cumsum(y_sorted)
    pred_pos = np.arange(1, s.size + 1)
    # only evaluate where the threshold changes (last index of each run of equal scores)
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], s.size - 1]
    if last.size > n_thresholds:
        last = last[np.linspace(0, last.size - 1, n_thresholds).astype(int)]
    dice = 2 * tp[last] / (pred_pos[last] + y.sum())
    i = int(np.argmax(dice))
    return float(dice[i]), float(s_sorted[last[i]])


def pixel_metrics(masks: np.ndarray, maps: np.ndarray) -> dict[str, float]:
    """Pixel-level AP and best Dice over all pixels of all images."""
    y = (np.asarray(masks).ravel() > 0.5).astype(int)
    s = np.asarray(maps, dtype=np.float64).ravel()
    if not y.any() or y.all():
        raise ValueError("pixel metrics need both lesion and background pixels")
    dice, thr = best_dice(y, s)
    return {"pixel_ap": float(average_precision_score(y, s)), "best_dice": dice,
            "best_dice_threshold": thr}


def intensity_floors(images: np.ndarray, labels: np.ndarray) -> dict[str, dict]:
    """Trivial baselines every result must be read against: AUROC of the image mean and std.

    Each statistic is reported with the better sign (higher = abnormal or lower = abnormal).
    """
    images = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    out = {}
    for name, stat in (("mean_intensity", images.mean(1)), ("std_intensity", images.std(1))):
        auc = float(roc_auc_score(np.asarray(labels).astype(int), stat))
        sign = "higher is abnormal" if auc >= 0.5 else "lower is abnormal"
        out[name] = {"auroc": max(auc, 1 - auc), "sign": sign}
    return out


def bootstrap_ci(labels: np.ndarray, scores: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, list[float]]:
    """Percentile-bootstrap confidence intervals of AUROC and AP.

    Resamples normal and abnormal images separately (stratified), so every replicate has both
    classes; `n_boot` replicates, fixed `seed`: the same inputs always give the same interval.
    """
    labels, scores = _check(labels, scores)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    aucs, aps = np.empty(n_boot), np.empty(n_boot)
    for b in range(n_boot):
        idx = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
        aucs[b] = roc_auc_score(labels[idx], scores[idx])
        aps[b] = average_precision_score(labels[idx], scores[idx])
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    return {"auroc": [float(v) for v in np.percentile(aucs, q)], "ap": [float(v) for v in np.percentile(aps, q)],
            "n_boot": n_boot, "level": level}


def percentile_calibration(percentiles: np.ndarray, bins: int = 10) -> dict[str, object]:
    """How normal test images fall on the calibration percentiles: ideally uniform.

    Returns the share of images per decile bin and the largest gap between the empirical CDF and
    the uniform one (Kolmogorov-Smirnov statistic).
    """
    p = np.sort(np.clip(np.asarray(percentiles, dtype=np.float64).ravel(), 0, 100)) / 100.0
    if p.size == 0:
        raise ValueError("no percentiles given")
    hist, _ = np.histogram(p, bins=bins, range=(0, 1))
    n = p.size
    ks = float(np.max(np.maximum(np.arange(1, n + 1) / n - p, p - np.arange(n) / n)))
    return {"bin_shares": (hist / n).round(4).tolist(), "ks": round(ks, 4), "n": int(n),
            "median_percentile": float(np.median(p) * 100)}


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between two Gaussians (the formula of FID, in whatever feature space)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(s1.shape[0])
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(max(0.0, diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)))


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of (N, D) features (zero covariance for a single sample)."""
    f = np.asarray(feats, np.float64)
    return f.mean(0), np.cov(f, rowvar=False) if len(f) > 1 else np.zeros((f.shape[1], f.shape[1]))
