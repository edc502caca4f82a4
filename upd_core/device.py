"""Device selection: CUDA when present, else CPU; and the autocast context used for training."""
from __future__ import annotations

import contextlib
from typing import Callable, ContextManager

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """`None` or "auto" picks CUDA when available, otherwise the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but no CUDA device is available; use device='cpu'")
    return dev


def autocast_factory(device: torch.device, amp: str = "auto") -> Callable[[], ContextManager]:
    """A zero-argument factory of autocast contexts.

    "auto"/"bf16": bf16 on CPU and on CUDA GPUs that support it (fp32 on older GPUs); "off".
    bf16 needs no loss scaling, so one training loop serves CPU and CUDA alike.
    """
    if amp == "off":
        return contextlib.nullcontext
    if amp not in ("auto", "bf16"):
        raise ValueError(f"amp must be 'auto', 'bf16' or 'off', got {amp!r}")
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
