"""The one evaluation path: image metrics, intensity floors, reconstruction quality, pixel metrics.

Results are written as `evaluation.json` next to the checkpoint, and the model card and the
manifests are regenerated from it.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import metrics, scoring
from .checkpoint import EVALUATION, refresh, write_json
from .detector import Detector


def reconstruction_quality(det: Detector, normal_images: np.ndarray, pred=None) -> dict[str, float]:
    """SSIM of reconstructions of healthy images (MorphAEus Table 2), when the method reconstructs."""
    if pred is None:
        pred = det.predict(normal_images)
    if pred.reconstruction is None:
        return {}
    x = torch.as_tensor(np.asarray(normal_images, dtype=np.float32))
    r = torch.as_tensor(pred.reconstruction)
    out = {"ssim": float(scoring.ssim(x, r).mean()), "mae": float((x - r).abs().mean())}
    return out


def synthetic_pixel_eval(det: Detector, normal_images: np.ndarray, n: int, seed: int = 0) -> dict[str, Any]:
    """Pixel AP and best Dice on normal images with synthetic lesions of known masks."""
    from .lesions import lesion_dataset

    imgs = np.asarray(normal_images[:n], dtype=np.float32)
    les, masks = lesion_dataset(imgs, seed=seed)
    pred = det.predict(les)
    res = metrics.pixel_metrics(masks, pred.anomaly_map)
    res["protocol"] = f"synthetic lesions (upd_core.lesions, seed {seed}) on {len(imgs)} normal test images"
    return res


def _image_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """AUROC/AP/FPR95/FPR99 plus stratified-bootstrap 95 % CIs of AUROC and AP."""
    return {**metrics.image_metrics(labels, scores), "ci95": metrics.bootstrap_ci(labels, scores)}


def _calibration(det: Detector, normal_percentiles: np.ndarray) -> dict[str, Any]:
    source = "calibration split" if det.calib_scores.numel() else "validation split (older checkpoint)"
    return {**metrics.percentile_calibration(normal_percentiles), "reference": source}


def evaluate(det: Detector, images: np.ndarray, labels: np.ndarray, masks: np.ndarray | None = None, *,
             split: str = "test", synthetic_lesions: int = 0, seed: int = 0,
             progress: bool = False) -> dict[str, Any]:
    """Evaluate a detector on labelled images (0 normal, 1 abnormal); returns a JSON-able dict.
    `progress` shows a bar over the scorings (the default one and every variant)."""
    images = np.asarray(images, dtype=np.float32)
    labels = np.asarray(labels).astype(int)
    t0 = time.perf_counter()
    pred = det.predict(images)
    seconds = time.perf_counter() - t0
    res: dict[str, Any] = {
        "method": det.method, "split": split, "n_normal": int((labels == 0).sum()),
        "n_abnormal": int((labels == 1).sum()),
        "image": _image_metrics(labels, pred.score),
        "floors": metrics.intensity_floors(images, labels),
        "score_reduction": det.config.score_reduction,
        "inference_images_per_second": round(len(images) / max(seconds, 1e-9), 1),
        "device": str(det.device),
    }
    if pred.percentile is not None:  # do calibration percentiles transfer to normal test images?
        res["calibration"] = _calibration(det, pred.percentile[labels == 0])
    if getattr(det.config, "perceptual_used", ""):  # the perceptual backend actually used (never a random one)
        res["perceptual_backend"] = det.config.perceptual_used
    if getattr(det.config, "backbone_used", ""):  # feature-modeling methods: the frozen backbone's origin
        res["backbone"] = det.config.backbone_used
    normal = labels == 0
    if pred.reconstruction is not None:
        sub = type(pred)(score=pred.score[normal], anomaly_map=pred.anomaly_map[normal],
                         reconstruction=pred.reconstruction[normal])
        res["reconstruction"] = reconstruction_quality(det, images[normal], sub)
    has_masks = masks is not None and np.asarray(masks).any()
    if has_masks:
        res["pixel"] = {**metrics.pixel_metrics(masks, pred.anomaly_map), "protocol": "ground-truth masks"}
    elif synthetic_lesions > 0:
        res["pixel"] = synthetic_pixel_eval(det, images[normal], synthetic_lesions, seed)
    names = det.variant_names()
    if len(names) > 1:  # the other scoring variants of the same weights, same split and protocol
        from tqdm.auto import tqdm

        current = det.variant
        res["variant"] = current
        res["variants"] = {}
        try:
            for name in tqdm([n for n in names if n != current], desc="other scorings", unit="scoring",
                             disable=not progress, leave=False):
                det.set_variant(name)
                p = det.predict(images)
                entry: dict[str, Any] = {"image": _image_metrics(labels, p.score)}
                if p.percentile is not None:
                    entry["calibration"] = _calibration(det, p.percentile[labels == 0])
                if has_masks:
                    entry["pixel"] = {**metrics.pixel_metrics(masks, p.anomaly_map), "protocol": "ground-truth masks"}
                elif synthetic_lesions > 0:
                    entry["pixel"] = synthetic_pixel_eval(det, images[normal], synthetic_lesions, seed)
                res["variants"][name] = entry
        finally:
            det.set_variant(current if current in names else None)
    return res


def evaluate_checkpoint_dir(det: Detector, ckpt_dir: Path, result: dict[str, Any], dataset: str) -> Path:
    """Store an evaluation next to its checkpoint and regenerate card and manifests."""
    result = {**result, "dataset": dataset, "checkpoint": det.checkpoint_id if hasattr(det, "checkpoint_id") else ""}
    write_json(Path(ckpt_dir) / EVALUATION, result)
    refresh(Path(ckpt_dir))
    return Path(ckpt_dir) / EVALUATION
