"""Decode a dataset once into arrays and keep them in an on-disk cache.

`load_arrays(dataset)` returns ``(images float32 (N, S, S), labels int64 (N,), masks float32
(N, S, S) or None, ids list[str])``. Repeated training runs then read one .npz file instead of
decoding thousands of JPEGs.

Cache format (one uncompressed ``.npz`` per dataset split and size, loaded with
``allow_pickle=False``)::

    images   float16 (N, S, S)   values in [0, 1]; float16 keeps ~3 decimal digits (abs. error
                                 <= 2.5e-4), finer than 8-bit sources, at half the float32 size
    labels   int64 (N,)
    masks    uint8 (N, S, S)     only when the dataset has masks
    ids      unicode (N,)
    skipped  unicode (K,)        "id: reason" of files that could not be decoded
    key      unicode ()          the full cache key, re-checked on load
    format   int ()              CACHE_FORMAT

Location: ``$UPD_CACHE_DIR``, else ``$XDG_CACHE_HOME/upd``, else ``~/.cache/upd``; file name
``<dataset folder>-<layout>-<split>-<size>-<hash>.npz``. The hash covers the dataset's real
path, layout, split, size, its options and the sorted list of every source file with its size
and modification time, so adding, removing or editing a file makes a new cache entry. Files are
written to a temporary name and renamed (os.replace), so a crash never leaves a half-written
cache; a cache that cannot be read or does not match is rebuilt with a warning.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, ImageError
from .base import BaseDataset, file_stat

CACHE_FORMAT = 1
PROGRESS_MIN = 100  # show a progress bar when decoding more images than this


def default_cache_dir() -> Path:
    """$UPD_CACHE_DIR, else $XDG_CACHE_HOME/upd, else ~/.cache/upd."""
    env = os.environ.get("UPD_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "upd"


def cache_key(dataset: BaseDataset) -> str:
    """sha256 over everything that determines the decoded arrays (see module docstring)."""
    root = os.path.realpath(dataset.root)
    files = sorted({os.path.realpath(p) for p in dataset.source_files()})
    h = hashlib.sha256()
    head = {"format": CACHE_FORMAT, "root": root, "class": type(dataset).__name__,
            "layout": dataset.layout, "split": dataset.split, "size": dataset.size,
            "params": dataset.cache_params()}
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    for f in files:
        size, mtime = file_stat(Path(f))
        h.update(f"\n{os.path.relpath(f, root)}\t{size}\t{mtime}".encode())
    return h.hexdigest()


def cache_path(dataset: BaseDataset, key: str, cache_dir: str | os.PathLike | None = None) -> Path:
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(dataset.root).resolve().name)
    return folder / f"{name or 'data'}-{dataset.layout}-{dataset.split}-{dataset.size}-{key[:16]}.npz"


Arrays = tuple[np.ndarray, np.ndarray, "np.ndarray | None", list[str]]


def _read(path: Path, key: str) -> tuple[Arrays, list[str]]:
    """Load a cache file; ValueError/OSError when it is unreadable or does not match."""
    with np.load(path, allow_pickle=False) as z:
        if int(z["format"]) != CACHE_FORMAT or str(z["key"]) != key:
            raise ValueError("cache key mismatch")
        images = z["images"].astype(np.float32)
        labels = z["labels"].astype(np.int64)
        masks = z["masks"].astype(np.float32) if "masks" in z.files else None
        ids = [str(s) for s in z["ids"]]
        skipped = [str(s) for s in z["skipped"]]
    n = len(ids)
    if images.ndim != 3 or len(images) != n or len(labels) != n or \
            (masks is not None and masks.shape != images.shape):
        raise ValueError("inconsistent array shapes")
    return (images, labels, masks, ids), skipped


def _write(path: Path, key: str, arrays: Arrays, skipped: list[str]) -> None:
    """Write atomically: temporary file in the same folder, fsync, os.replace."""
    images, labels, masks, ids = arrays
    path.parent.mkdir(parents=True, exist_ok=True)
    payload: dict[str, Any] = {
        "images": images.astype(np.float16), "labels": labels.astype(np.int64),
        "ids": np.array(ids, dtype=str), "skipped": np.array(skipped, dtype=str),
        "key": np.array(key), "format": np.array(CACHE_FORMAT)}
    if masks is not None:
        payload["masks"] = (masks > 0.5).astype(np.uint8)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **payload)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; use the usual file mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def decode_all(dataset: BaseDataset, *, progress: bool | None = None) -> tuple[Arrays, list[str]]:
    """Decode every sample; unreadable ones are skipped (returned as "id: reason")."""
    n = len(dataset)
    size = dataset.size
    ids_all = dataset.ids
    images = np.empty((n, size, size), np.float32)
    labels = np.empty(n, np.int64)
    masks: list[np.ndarray | None] = []
    ids: list[str] = []
    skipped: list[str] = []
    show = n > PROGRESS_MIN if progress is None else progress
    it: Any = range(n)
    if show:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"Decoding {Path(dataset.root).name}/{dataset.split}", unit="img")
    k = 0
    for i in it:
        try:
            s = dataset[i]
        except (ImageError, DataError, OSError, ValueError) as e:
            skipped.append(f"{ids_all[i]}: {e}")
            continue
        images[k], labels[k] = s.image, s.label
        masks.append(s.mask)
        ids.append(s.id)
        k += 1
    if k == 0:
        raise DataError(f"none of the {n} images of {dataset.root} ({dataset.split}) could be "
                        "decoded; first problems:\n  " + "\n  ".join(skipped[:5]))
    images, labels = images[:k], labels[:k]
    mask_arr = None
    if any(m is not None for m in masks):
        mask_arr = np.stack([m if m is not None else np.zeros((size, size), np.float32)
                             for m in masks]).astype(np.float32)
    return (images, labels, mask_arr, ids), skipped


def _warn_skipped(dataset: BaseDataset, skipped: list[str]) -> None:
    if skipped:
        more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        warnings.warn(f"skipped {len(skipped)} unreadable file(s) in {dataset.root} "
                      f"({dataset.split}):\n  " + "\n  ".join(skipped[:20]) + more, stacklevel=3)


def load_arrays(dataset: BaseDataset, cache_dir: str | os.PathLike | None = None, *,
                use_cache: bool = True, progress: bool | None = None) -> Arrays:
    """All samples of `dataset` as arrays, from the cache when it is current (see module doc).

    Returns ``(images float32 (N,S,S), labels int64 (N,), masks float32 (N,S,S) or None, ids)``.
    Unreadable files are skipped with one warning listing them; DataError if none can be read.
    `use_cache=False` neither reads nor writes the cache.
    """
    if not use_cache:
        arrays, skipped = decode_all(dataset, progress=progress)
        _warn_skipped(dataset, skipped)
        return arrays
    key = cache_key(dataset)
    path = cache_path(dataset, key, cache_dir)
    if path.exists():
        try:
            arrays, skipped = _read(path, key)
            _warn_skipped(dataset, skipped)
            return arrays
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            warnings.warn(f"rebuilding unreadable cache {path} ({type(e).__name__}: {e})", stacklevel=2)
    arrays, skipped = decode_all(dataset, progress=progress)
    _warn_skipped(dataset, skipped)
    # Return what a later cache hit returns (float16-rounded images), so the first run on a data
    # set trains on exactly the same numbers as every later one (bit-identical reruns).
    arrays = (arrays[0].astype(np.float16).astype(np.float32),) + tuple(arrays[1:])
    try:
        _write(path, key, arrays, skipped)
    except OSError as e:
        warnings.warn(f"could not write the cache {path}: {e}", stacklevel=2)
    return arrays
