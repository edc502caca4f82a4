"""The files of a checkpoint folder and how they are written: names, sha256, atomic writes.

The layer under `checkpoint` (format, loading, manifests) and `model_card` (card text): the card
writer reads and writes through it, so it never imports `checkpoint`, which calls the card writer.

Every write is staged and committed: the bytes go to a temporary file next to the target
(`<name>.<random>.tmp`), which is fsynced and renamed over the target, and the folder is fsynced
after the rename, so neither a crash nor a power cut leaves half a file. `write_files_atomic`
stages several files before renaming any, so a full disk or a failing write leaves the previous
files all intact. A failed write is a one-line `StorageError` and leaves no temporary file;
temporary files of a killed process are removed by `remove_stray_temps`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import save as safetensors_bytes

from .errors import CheckpointError, StorageError, UPDError

FORMAT = "upd-checkpoint/1"
WEIGHTS, CONFIG, CARD, EVALUATION, MANIFEST = (
    "model.safetensors", "config.json", "MODEL_CARD.md", "evaluation.json", "manifest.json")
_TEMP_NAME = re.compile(r"^.+\.[a-z0-9_]{8}\.tmp$")  # what mkstemp(prefix=name + ".", suffix=".tmp") makes


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


def _reason(exc: OSError) -> str:
    """The human part of an OSError ("No space left on device"), without errno and path noise."""
    return exc.strerror or str(exc)


def _fsync_dir(folder: Path) -> None:
    """Make the renames in `folder` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a folder; the file itself is already synced
    finally:
        os.close(fd)


def _write_file(tmp: str, payload: bytes) -> None:
    """Write `payload` to `tmp` and fsync it, so the rename that follows publishes complete bytes."""
    with open(tmp, "wb") as f:
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())


def _stage(path: Path, payload: bytes) -> Path:
    """A temporary file next to `path` holding `payload` (fsynced); the caller renames or removes it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {_reason(exc)}") from None
    try:
        _write_file(tmp, payload)
        os.chmod(tmp, _umask_mode())
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise StorageError(f"cannot write {path}: {_reason(exc)}") from None
        raise
    return Path(tmp)


def write_files_atomic(files: Mapping[Path, bytes | str]) -> None:
    """Write several files, each atomically, all staged before any is renamed into place (in the
    given order; put the file that vouches for the others, e.g. a manifest, last).

    A write that fails (full disk, read-only folder) leaves every previous file untouched."""
    staged: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            payload = data.encode() if isinstance(data, str) else data
            staged.append((_stage(Path(path), payload), Path(path)))
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException as exc:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise StorageError(f"cannot write {path}: {_reason(exc)}") from None
        raise
    for folder in dict.fromkeys(path.parent for _, path in staged):
        _fsync_dir(folder)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file via a fsynced temporary file + rename, so a crash never leaves half a file."""
    write_files_atomic({Path(path): data})


def json_bytes(obj: Any) -> bytes:
    """The project's JSON file text (indented, a final newline)."""
    return (json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n").encode()


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json_bytes(obj))


def tensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> bytes:
    """A safetensors file's bytes (tensors moved to the CPU, made contiguous)."""
    return safetensors_bytes({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)


def save_tensors_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    """Write tensors as safetensors via a temporary file + rename."""
    write_atomic(path, tensors_bytes(tensors, metadata))


def remove_stray_temps(folder: Path) -> list[Path]:
    """Delete the temporary files a killed writer left in `folder` (only names this module makes)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stray = [p for p in folder.iterdir() if _TEMP_NAME.match(p.name) and p.is_file()]
    for p in stray:
        p.unlink(missing_ok=True)
    return stray


def ensure_writable(folder: Path, need_bytes: int = 0) -> None:
    """Create `folder` and write (then remove) a probe file in it, so a read-only disk, a path
    under a file or a nearly full disk is reported at once, not after the first epoch."""
    folder = Path(folder)
    for parent in (folder, *folder.parents):
        if parent.exists() or parent.is_symlink():
            if not parent.is_dir():
                raise StorageError(f"cannot write to {folder}: {parent} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
        free = shutil.disk_usage(folder).free
    except OSError as exc:
        raise StorageError(f"cannot write to {folder}: {_reason(exc)}") from None
    if free < need_bytes:
        raise StorageError(f"not enough space in {folder}: {free / 1e6:.0f} MB free, about "
                           f"{need_bytes / 1e6:.0f} MB needed")


def read_config(ckpt_dir: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((Path(ckpt_dir) / CONFIG).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt_dir} is not a checkpoint: {CONFIG} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{ckpt_dir}/{CONFIG} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise CheckpointError(f"{ckpt_dir}/{CONFIG} cannot be read ({_reason(exc)})") from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{ckpt_dir}/{CONFIG} is not a checkpoint config (a JSON object)")
    return cfg


def read_evaluation(ckpt_dir: Path) -> dict[str, Any] | None:
    """The checkpoint's evaluation.json, or None when it has not been evaluated."""
    p = Path(ckpt_dir) / EVALUATION
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{p} is not valid JSON ({exc})") from None


# Storage dtypes of checkpoint parameters (`python -m upd_core compact`, upd_core/storage.py).
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def stored_state(det: torch.nn.Module, dtype: str = "float32") -> dict[str, torch.Tensor]:
    """The state dict as it is written: floating-point parameters in `dtype`, buffers unchanged."""
    if dtype not in DTYPES:
        raise UPDError(f"unknown weights dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    state = det.state_dict()
    if dtype == "float32":
        return state
    params = {name for name, _ in det.named_parameters()}
    return {k: (v.to(DTYPES[dtype]) if k in params and v.is_floating_point() else v) for k, v in state.items()}
