"""Half-precision storage of checkpoint weights, only where the evaluation does not change.

    python -m upd_core compact --checkpoint vae-kermany-128 [--dtype float16] [--data kermany]

Why: checkpoints/ must stay within 200 MB (15 MB each) as methods are added, and fp32 weights are
twice the bytes the scores need. `compact` scores the test split with the fp32 weights and again
with the weights rounded to `--dtype`, and rewrites the checkpoint in that dtype only when the
AUROC and AP move by at most `--tolerance` (0.002 by default; issue 14, item 8); otherwise the
fp32 file stays and the command says why. Only parameters are stored in half precision: buffers
(BatchNorm statistics, density heads, calibration scores) keep their dtype, because they carry
data-dependent sizes and sums that half precision would round. On load, `load_state_dict` copies
the stored values into the fp32 model, so a compact checkpoint runs in fp32 like any other. The
check is recorded in config.json (`storage`) and in the model card.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from .checkpoint_files import DTYPES, stored_state  # noqa: F401 (stored_state: re-exported)
from .detector import Detector
from .errors import UPDError

TOLERANCE = 0.002  # issue 14, item 8: AUROC (and AP) within 0.002 of the fp32 weights


@torch.no_grad()
def round_parameters(det: Detector, dtype: str) -> None:
    """Round every floating-point parameter to `dtype` and back (in place): the model then scores
    exactly as it will after a save in `dtype` and a load. Refuses values the dtype cannot hold."""
    half = DTYPES[dtype]
    for name, p in det.named_parameters():
        if not p.is_floating_point():
            continue
        q = p.to(half)
        if not torch.isfinite(q).all():
            raise UPDError(f"parameter {name} does not fit {dtype} (values up to {float(p.abs().max()):.3g})")
        p.copy_(q.to(p.dtype))


def _metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from .metrics import image_metrics

    m = image_metrics(labels, scores)
    return {"auroc": float(m["auroc"]), "ap": float(m["ap"])}


def check_rounding(det: Detector, images: np.ndarray, labels: np.ndarray, dtype: str = "float16",
                   tolerance: float = TOLERANCE, split: str = "") -> dict[str, Any]:
    """Score with the current (fp32) weights and with the weights rounded to `dtype`; returns the
    record that `compact` stores. Leaves `det` rounded."""
    labels = np.asarray(labels).astype(int)
    if labels.min() == labels.max():
        raise UPDError("the check needs normal and abnormal images (AUROC/AP)")
    s32 = np.asarray(det.predict(images).score, dtype=np.float64)
    round_parameters(det, dtype)
    s_half = np.asarray(det.predict(images).score, dtype=np.float64)
    m32, m_half = _metrics(labels, s32), _metrics(labels, s_half)
    delta = {k: round(m_half[k] - m32[k], 6) for k in m32}
    scale = max(float(np.std(s32)), 1e-12)
    return {"weights_dtype": dtype, "split": split, "n_images": int(len(labels)),
            "fp32": m32, "rounded": m_half, "delta": delta, "tolerance": tolerance,
            "max_score_change_in_std": round(float(np.max(np.abs(s_half - s32))) / scale, 6),
            "passed": all(abs(d) <= tolerance for d in delta.values())}


def compact(checkpoint: str, data: str = "kermany", dtype: str = "float16", tolerance: float = TOLERANCE,
            split: str = "test", limit: int | None = None, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Check (see `check_rounding`) and, when it passes, rewrite the checkpoint's weights in `dtype`."""
    from .checkpoint import load_detector, save_checkpoint
    from .data import load_split
    from .paths import dataset_name

    if dtype == "float32":
        raise UPDError("--dtype float32 is what an uncompacted checkpoint already stores")
    det = load_detector(checkpoint)
    folder = det.checkpoint_dir
    root, images, labels, _, _ = load_split(data, "auto", split, det.image_size, limit, stratified=True)
    say(f"checking {det.checkpoint_id} in {dtype} on {len(labels)} images of {dataset_name(root)}/{split} ...")
    record = check_rounding(det, images, labels, dtype, tolerance, f"{dataset_name(root)}/{split}")
    d = record["delta"]
    say(f"AUROC {record['fp32']['auroc']:.4f} -> {record['rounded']['auroc']:.4f} ({d['auroc']:+.4f}), "
        f"AP {record['fp32']['ap']:.4f} -> {record['rounded']['ap']:.4f} ({d['ap']:+.4f})")
    if not record["passed"]:
        say(f"kept fp32: a change above the tolerance {tolerance}")
        return record
    save_checkpoint(det, folder, storage=record)  # keeps dataset, training and evaluation records
    say(f"wrote {folder} with {dtype} weights")
    return record
