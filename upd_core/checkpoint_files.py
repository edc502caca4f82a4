"""The files of a checkpoint folder and how they are written: names, sha256, atomic writes.

The layer under `checkpoint` (format, loading, manifests) and `model_card` (card text): the card
writer reads and writes through it, so it never imports `checkpoint`, which calls the card writer.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file

from .errors import CheckpointError

FORMAT = "upd-checkpoint/1"
WEIGHTS, CONFIG, CARD, EVALUATION, MANIFEST = (
    "model.safetensors", "config.json", "MODEL_CARD.md", "evaluation.json", "manifest.json")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask_mode() -> int:
    """File mode an ordinary open() would give (mkstemp makes 0600 files, which other users cannot read)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _replace_via_temp(path: Path, write: Callable[[str], None]) -> None:
    """`write(tmp)` a temporary file next to `path`, then rename it to `path`, so a crash never
    leaves half a file; the temporary file is removed when anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file via a temporary file + rename, so a crash never leaves half a file."""
    payload = data.encode() if isinstance(data, str) else data
    _replace_via_temp(path, lambda tmp: Path(tmp).write_bytes(payload))


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def save_tensors_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Write tensors as safetensors via a temporary file + rename."""
    _replace_via_temp(path, lambda tmp: save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                                                  tmp, metadata=metadata))


def read_config(ckpt_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(ckpt_dir) / CONFIG).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt_dir} is not a checkpoint: {CONFIG} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{ckpt_dir}/{CONFIG} is not valid JSON ({exc})") from None


def read_evaluation(ckpt_dir: Path) -> dict[str, Any] | None:
    """The checkpoint's evaluation.json, or None when it has not been evaluated."""
    p = Path(ckpt_dir) / EVALUATION
    return json.loads(p.read_text()) if p.exists() else None
