"""How a training run stopped: the stop kinds and the "converged" / "not converged" label.

Read by the training loop (which records `stop_kind`) and by everything that reports a run
(model cards, tables, `list`); it imports nothing, so any layer may use it.
"""
from __future__ import annotations

from typing import Any

STOP_EARLY, STOP_MAX, STOP_CAP, STOP_TIME = "early stopping", "max epochs", "epoch cap", "time budget"
CONVERGED_KINDS = (STOP_EARLY, STOP_MAX)  # the paper's rule ran to its end


def stop_label(record: dict[str, Any]) -> str:
    """'converged (early stopping)' / 'not converged (time budget)' for cards, tables and `list`."""
    kind = record.get("stop_kind")
    if kind is None:  # a record with only the free-text reason: read the kind from it
        reason = str(record.get("stop_reason", ""))
        kind = STOP_TIME if "time budget" in reason else STOP_EARLY if "early" in reason else STOP_CAP
    return f"{'converged' if kind in CONVERGED_KINDS else 'not converged'} ({kind})"


def is_converged(record: dict[str, Any]) -> bool:
    return stop_label(record).startswith("converged")


def plateau_reductions(val_losses: list[float], patience: int, threshold: float = 1e-4) -> int:
    """How often torch's ReduceLROnPlateau (mode "min", relative threshold, no cooldown) would
    have cut the learning rate after these epochs' validation losses. A pure function of the loss
    history, so a resumed run replays the same decisions without a saved scheduler state."""
    best, bad, cuts = float("inf"), 0, 0
    for v in val_losses:
        if v < best * (1 - threshold):
            best, bad = v, 0
        else:
            bad += 1
            if bad > patience:
                cuts, bad = cuts + 1, 0
    return cuts


def plateau_lr(base: float, factor: float, cuts: int, eps: float = 1e-8) -> float:
    """The rate after `cuts` reductions; like torch, a cut smaller than `eps` is not made."""
    lr = base
    for _ in range(cuts):
        if lr - lr * factor > eps:
            lr *= factor
    return lr
