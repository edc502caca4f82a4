"""Data folders a user may type into the app, and the labelled splits read from them.

Security decision (documented on the app's Home page): a typed folder is read only when it lies
under an allowed root, the data root (`$UPD_DATA_ROOT`, default ../shared/data) or a folder
listed in `$UPD_ALLOWED_DIRS` (os.pathsep-separated). Symlinks are resolved before the check, a
file must stay inside its chosen folder, and URL parameters never name paths.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import DataError
from ..paths import data_root

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom", ".nii", ".gz", ".npy")
MAX_FOLDER_FILES = 20000  # a folder listing stops here (keeps the UI responsive on huge trees)


def allowed_roots() -> list[Path]:
    """Folders a user may point the app at: the data root and $UPD_ALLOWED_DIRS entries."""
    roots = [data_root()]
    roots += [Path(p) for p in os.environ.get("UPD_ALLOWED_DIRS", "").split(os.pathsep) if p.strip()]
    out = []
    for r in roots:
        try:
            out.append(r.expanduser().resolve())
        except OSError:
            continue
    return out


def safe_folder(path: str | os.PathLike) -> Path:
    """Resolve a user-typed folder and check it lies under an allowed root (DataError otherwise)."""
    text = str(path).strip()
    if not text:
        raise DataError("Please type a folder path.")
    p = Path(text).expanduser()
    if not p.is_absolute():  # relative paths are taken relative to the data root
        p = data_root() / p
    try:
        p = p.resolve()
    except OSError as exc:
        raise DataError(f"The folder {text!r} cannot be opened ({exc}).") from None
    roots = allowed_roots()
    if not any(p == r or r in p.parents for r in roots):
        shown = ", ".join(str(r) for r in roots)
        raise DataError(f"For safety the app only reads folders under {shown}. Set UPD_DATA_ROOT or "
                        "UPD_ALLOWED_DIRS (folders separated by ':') before starting the app to allow others.")
    if not p.is_dir():
        raise DataError(f"The folder {p} does not exist.")
    return p


def list_folder_images(root: Path, limit: int = MAX_FOLDER_FILES) -> list[str]:
    """Image files below an (already checked) folder, as sorted relative paths."""
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for f in sorted(filenames):
            if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."):
                out.append(str(Path(dirpath, f).relative_to(root)))
                if len(out) >= limit:
                    return out
    return out


def folder_groups(files: Sequence[str]) -> dict[str, list[str]]:
    """Files grouped by their parent folder (e.g. 'test/NORMAL'), for a two-level picker."""
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault(str(Path(f).parent), []).append(f)
    return groups


def default_group(groups: Sequence[str]) -> int:
    """Index of the sub-folder a picker preselects: the first '…test/normal', else the first."""
    return next((i for i, g in enumerate(groups) if g.lower().endswith("test/normal")), 0)


def read_folder_image(root: Path, rel: str, size: int = 128) -> np.ndarray:
    """Load one image of an allowed folder; `rel` must stay inside `root`."""
    from ..imaging import load_image

    p = (Path(root) / rel).resolve()
    if Path(root).resolve() not in p.parents:
        raise DataError("That file lies outside the chosen folder.")
    return load_image(p, size=size)


def default_dataset_folder() -> Path | None:
    """The Kermany test split under the data root when present, else the data root, else None."""
    root = data_root()
    for cand in (root / "cxr-kermany", root):
        if cand.is_dir():
            return cand
    return None


@dataclass
class LabelledSet:
    """Images (N,H,W) in [0,1], labels (0 normal / 1 abnormal), ids and a description."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    name: str
    key: str  # identifies the set in score caches

    def counts(self) -> tuple[int, int]:
        """(number of normal, number of abnormal) images."""
        return int((self.labels == 0).sum()), int((self.labels == 1).sum())

    def by_class(self) -> dict[str, np.ndarray]:
        """The images of each class present, as {'normal': ..., 'abnormal': ...}."""
        return {name: self.images[self.labels == lab] for lab, name in ((0, "normal"), (1, "abnormal"))
                if (self.labels == lab).any()}


def load_labelled_folder(root: str | os.PathLike, split: str = "test", size: int = 128, layout: str = "auto",
                         max_per_class: int | None = None) -> LabelledSet:
    """A labelled split of an allowed dataset folder via upd_core.data (decoded once, disk-cached).

    `max_per_class` keeps an evenly spaced, deterministic subset of each class.
    """
    from ..data import load_arrays, open_dataset

    root = safe_folder(root)
    ds = open_dataset(root, layout=layout, split=split, size=size)
    images, labels, _, ids = load_arrays(ds, progress=False)
    labels = np.asarray(labels).astype(int)
    keep = np.arange(len(labels))
    if max_per_class:
        keep = np.concatenate([idx[np.linspace(0, len(idx) - 1, min(len(idx), max_per_class)).astype(int)]
                               for idx in (np.nonzero(labels == c)[0] for c in np.unique(labels)) if len(idx)])
        keep.sort()
    ids = [str(ids[i]) for i in keep]
    return LabelledSet(np.asarray(images)[keep], labels[keep], ids, f"{root.name}/{split}",
                       f"{root}|{layout}|{split}|{size}")
