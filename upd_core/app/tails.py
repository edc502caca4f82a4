"""The Tails page: scores of labelled image sets, how they separate, and the cases in the tails.

Scores are cached on disk per (checkpoint weights, dataset, image ids), so revisiting a dataset is
instant; ROC/PR curves and per-class densities come from those scores; `tail_gallery` gives the
best, average and worst case of each class with its heatmap (MorphAEus paper, Fig. 6b).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..checkpoint import WEIGHTS, list_checkpoints, sha256_file, split_variant
from ..paths import REPO_ROOT
from .cells import Cell, heatmap, picture
from .folders import LabelledSet
from .formatting import percentile_rank_text, sig3
from .units import units_of


def cache_dir() -> Path:
    """The project's cache folder (upd_core.data's: $UPD_CACHE_DIR, else ~/.cache/upd)."""
    try:
        from ..data.cache import default_cache_dir
    except ImportError:
        env = os.environ.get("UPD_CACHE_DIR")
        return Path(env) if env else REPO_ROOT / ".cache"
    return default_cache_dir()


@dataclass
class ScoreSet:
    """Scores of one checkpoint on a labelled image set (0 normal, 1 abnormal)."""

    checkpoint: str
    dataset: str
    scores: np.ndarray
    labels: np.ndarray
    ids: list[str]
    from_cache: bool = False


def _weights_digest(checkpoint_id: str) -> str:
    base, _ = split_variant(checkpoint_id)  # a scoring variant shares its checkpoint's weights
    info = {c.id: c for c in list_checkpoints()}.get(str(base))
    p = (info.path if info else Path(base)) / WEIGHTS
    return sha256_file(p)[:16] if p.is_file() else "unknown"


def scores_cache_file(checkpoint_id: str, dataset_key: str, ids: Sequence[str]) -> Path:
    """Where the scores of a checkpoint on a set of image ids are cached."""
    h = hashlib.sha256()
    h.update(_weights_digest(checkpoint_id).encode())
    h.update(dataset_key.encode())
    for i in ids:
        h.update(str(i).encode() + b"\0")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in checkpoint_id)
    return cache_dir() / "scores" / f"{safe}-{h.hexdigest()[:20]}.json"


def dataset_scores(checkpoint_id: str, dataset_key: str, images: np.ndarray, labels: np.ndarray,
                   ids: Sequence[str], load: Callable[[str], Any]) -> ScoreSet:
    """Scores of a checkpoint on a labelled set, cached on disk per (weights, dataset, image ids)."""
    from ..checkpoint import write_json

    ids = [str(i) for i in ids]
    f = scores_cache_file(checkpoint_id, dataset_key, ids)
    if f.is_file():
        try:
            doc = json.loads(f.read_text())
            if doc.get("ids") == ids:
                return ScoreSet(checkpoint_id, dataset_key, np.asarray(doc["scores"], np.float64),
                                np.asarray(doc["labels"], int), ids, from_cache=True)
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
            pass  # a corrupt cache file is recomputed
    det = load(checkpoint_id)
    scores = det.predict(np.asarray(images, np.float32)).score
    labels = np.asarray(labels).astype(int)
    write_json(f, {"checkpoint": checkpoint_id, "dataset": dataset_key, "ids": ids,
                   "labels": labels.tolist(), "scores": [float(s) for s in scores]})
    return ScoreSet(checkpoint_id, dataset_key, np.asarray(scores, np.float64), labels, ids)


def score_sets(checkpoint_ids: Sequence[str], data: LabelledSet, load: Callable[[str], Any],
               progress: Callable[[int, int, str], None] | None = None) -> tuple[dict[str, ScoreSet], dict[str, str]]:
    """Scores of several checkpoints on one set, and the error of each that failed (one failing
    checkpoint must not hide the others)."""
    sets: dict[str, ScoreSet] = {}
    errors: dict[str, str] = {}
    for i, cid in enumerate(checkpoint_ids):
        if progress:
            progress(i, len(checkpoint_ids), cid)
        try:
            sets[cid] = dataset_scores(cid, data.key, data.images, data.labels, data.ids, load)
        except Exception as exc:
            errors[cid] = str(exc)
    return sets, errors


def curves(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """ROC and precision-recall curves (abnormal = positive) with AUROC and AP."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, np.float64)
    if len(np.unique(labels)) < 2:
        return {}
    fpr, tpr, _ = roc_curve(labels, scores)
    prec, rec, _ = precision_recall_curve(labels, scores)
    return {"fpr": fpr, "tpr": tpr, "auroc": float(roc_auc_score(labels, scores)),
            "precision": prec, "recall": rec, "ap": float(average_precision_score(labels, scores)),
            "prevalence": float(labels.mean())}


def densities(scores: np.ndarray, labels: np.ndarray, n: int = 200) -> dict[str, Any]:
    """Gaussian kernel densities of the scores per class on a shared grid (for the Tails plot)."""
    from scipy.stats import gaussian_kde

    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(int)
    lo, hi = float(scores.min()), float(scores.max())
    pad = 0.05 * (hi - lo or abs(hi) or 1.0)
    grid = np.linspace(lo - pad, hi + pad, n)
    out: dict[str, Any] = {"grid": grid}
    for lab, name in ((0, "normal"), (1, "abnormal")):
        s = scores[labels == lab]
        if s.size >= 2 and np.ptp(s) > 0:
            out[name] = gaussian_kde(s)(grid)
    return out


def tail_cases(scores: np.ndarray, labels: np.ndarray, quantile: float | None = None) -> dict[str, dict[str, int]]:
    """Indices of the best, average (median) and worst cases of each class (MorphAEus Fig. 6b).

    Normal: best = lowest score, worst = highest. Abnormal: best = highest, worst = lowest.
    With `quantile` (0..100), also the case nearest to that quantile of each class's scores.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(int)
    out: dict[str, dict[str, int]] = {}
    for lab, name in ((0, "normal"), (1, "abnormal")):
        idx = np.nonzero(labels == lab)[0]
        if idx.size == 0:
            continue
        order = idx[np.argsort(scores[idx], kind="stable")]
        low, high, mid = int(order[0]), int(order[-1]), int(order[len(order) // 2])
        cases = {"best": low, "average": mid, "worst": high} if lab == 0 else \
            {"best": high, "average": mid, "worst": low}
        if quantile is not None:
            cases[f"q{quantile:g}"] = int(order[min(len(order) - 1, int(round(quantile / 100 * (len(order) - 1))))])
        out[name] = cases
    return out


def tail_gallery(det, images: np.ndarray, s: ScoreSet,
                 quantile: float | None = None) -> dict[str, list[tuple[Cell, Cell]]]:
    """Per class, the (image, heatmap) cells of its tail cases; the images are predicted in one batch.

    The image's caption gives the case and its score, the heatmap's the score's percentile within
    its class.
    """
    cases = tail_cases(s.scores, s.labels, quantile)
    idx = sorted({i for c in cases.values() for i in c.values()})
    pred = det.predict(np.asarray(images)[idx])
    maps = {i: pred.anomaly_map[k] for k, i in enumerate(idx)}
    unit = units_of(det).map
    out: dict[str, list[tuple[Cell, Cell]]] = {}
    for name, c in cases.items():
        same_class = s.scores[s.labels == (0 if name == "normal" else 1)]
        out[name] = [(picture(images[i], f"{label}: score {sig3(s.scores[i])}"),
                      heatmap(images[i], maps[i], percentile_rank_text(100.0 * float(np.mean(same_class <= s.scores[i])),
                                                                       name), unit=unit))
                     for label, i in c.items()]
    return out
