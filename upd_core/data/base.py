"""Shared pieces of the dataset adapters: `Sample`, the base classes, splits, file discovery.

Every adapter turns some on-disk layout into a list of 2D samples
``Sample(image float32 (S, S) in [0, 1], label 0 normal / 1 abnormal, mask (S, S) {0, 1} or
None, id)``. Images are decoded lazily, one `__getitem__` at a time, with
`upd_core.imaging.load_image`; `upd_core.data.cache.load_arrays` turns a whole dataset into
arrays once and caches them.

Splits (the same rule for every adapter)
* ``split="val"`` is a fixed fraction (default 10 %) of the NORMAL training images, chosen by a
  seeded hash of each sample's id (its path relative to the dataset root). Membership of a file
  never changes when other files are added or removed, and no abnormal image is ever in it.
* ``split="calib"`` is another fixed 10 % of the normal training images (a second seeded hash,
  disjoint from "val"). It is used neither for gradient steps nor for early stopping: the
  normal reference scores behind every percentile come from it, so percentiles are not biased
  by model selection.
* ``split="train"`` is the normal training images minus the validation and calibration ones
  (unsupervised methods never see abnormal training images; ``train_abnormal=True`` adds them,
  labelled 1).
* ``split="test"`` is the labelled test set (normal and abnormal).
Layouts without a test folder take a hashed fraction (default 20 %) of all files as test set.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple, Sequence

import numpy as np
from PIL import Image

from ..errors import DataError
from ..imaging import load_image

SPLITS = ("train", "val", "calib", "test")
CALIB_FRACTION = 0.1  # share of the normal training images held out for percentiles
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm",
                              ".dicom", ".gif", ".webp"})
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# Folder names that hold segmentation masks, never training images.
MASK_DIR_NAMES = frozenset({"mask", "masks", "label", "labels", "segmentation",
                            "segmentations", "groundtruth", "ground_truth", "gt"})
MASK_THRESHOLD = 0.1  # on the min-max normalised mask file: tolerates JPEG noise, keeps labels 1,2,4


class Sample(NamedTuple):
    """One 2D sample; unpacks as ``image, label, mask, id``."""

    image: np.ndarray          # float32 (S, S) in [0, 1]
    label: int                 # 0 normal, 1 abnormal
    mask: np.ndarray | None    # float32 (S, S) in {0, 1}, or None when the layout has no masks
    id: str                    # stable id: path relative to the dataset root (+ slice for volumes)


@dataclass(frozen=True)
class Record:
    """One 2D sample before decoding: where its pixels and (optional) mask come from."""

    id: str
    path: Path
    label: int
    mask_path: Path | tuple[Path, ...] | None = None  # several files (e.g. DDR EX/HE/MA/SE): union

    @property
    def mask_files(self) -> tuple[Path, ...]:
        if self.mask_path is None:
            return ()
        return self.mask_path if isinstance(self.mask_path, tuple) else (self.mask_path,)


# --------------------------------------------------------------------------- splits

def hash_unit(key: str, salt: str) -> float:
    """A number in [0, 1) fixed by (salt, key): the basis of every split decision."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def is_val(key: str, fraction: float = 0.1, seed: int = 0) -> bool:
    """True when `key` (a normal training id) belongs to the validation part."""
    return hash_unit(key, f"upd-val-{seed}") < fraction


def val_members(keys: Sequence[str], fraction: float = 0.1, seed: int = 0) -> set[str]:
    """The validation keys among `keys` (normal training ids): those with `is_val`.

    Tiny sets where the hash picks none still get one (the key with the smallest hash), so
    `split="val"` is never empty when there are at least two normal training images.
    """
    chosen = {k for k in keys if is_val(k, fraction, seed)}
    if not chosen and fraction > 0 and len(set(keys)) >= 2:
        chosen = {min(keys, key=lambda k: hash_unit(k, f"upd-val-{seed}"))}
    return chosen


def normal_part(keys: Sequence[str], split: str, val_fraction: float = 0.1, seed: int = 0) -> set[str]:
    """The normal training ids of `split` ("train", "val" or "calib") among `keys`.

    "val" is `val_members`; "calib" is a hashed `CALIB_FRACTION` of the rest (at least one key
    when three or more remain); "train" is what is left.
    """
    keys = list(dict.fromkeys(keys))
    val = val_members(keys, val_fraction, seed)
    rest = [k for k in keys if k not in val]
    calib = {k for k in rest if hash_unit(k, f"upd-calib-{seed}") < CALIB_FRACTION}
    if not calib and len(rest) >= 3:
        calib = {min(rest, key=lambda k: hash_unit(k, f"upd-calib-{seed}"))}
    if split == "val":
        return val
    if split == "calib":
        return calib
    return {k for k in rest if k not in calib}


def is_test(key: str, fraction: float = 0.2, seed: int = 0) -> bool:
    """True when `key` belongs to the hashed test part of layouts without a test folder."""
    return hash_unit(key, f"upd-test-{seed}") < fraction


def check_split(split: str) -> str:
    """Validate a split name; DataError otherwise."""
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: use one of {', '.join(SPLITS)}")
    return split


def check_size(size: int) -> int:
    """Validate the output side length."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 4096:
        raise DataError(f"image size must be a whole number between 8 and 4096, got {size!r}")
    return int(size)


def check_fraction(name: str, value: float) -> float:
    if not 0.0 <= float(value) < 1.0:
        raise DataError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


# --------------------------------------------------------------------------- files

def is_hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name.startswith("._")


def has_image_files(folder: Path) -> bool:
    """True as soon as one image file is found under `folder` (stops early)."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(Path(n).suffix.lower() in IMAGE_EXTENSIONS and not n.startswith(".") for n in filenames):
            return True
    return False


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES) and not is_hidden(path)


def image_files(folder: Path, *, exclude_dirs: Iterable[str] = MASK_DIR_NAMES) -> list[Path]:
    """Image files under `folder` (recursive, sorted), skipping hidden and mask folders."""
    skip = {d.lower() for d in exclude_dirs}
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d.lower() not in skip)
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if p.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden(p):
                out.append(p)
    return out


def child_dir(parent: Path, *names: str) -> Path | None:
    """The sub-folder of `parent` whose name matches one of `names` (case-insensitive)."""
    wanted = [n.lower() for n in names]
    try:
        children = {c.name.lower(): c for c in sorted(parent.iterdir()) if c.is_dir()}
    except OSError:
        return None
    for n in wanted:
        if n in children:
            return children[n]
    return None


def subdirs(parent: Path) -> list[Path]:
    """Visible sub-folders, sorted by name."""
    try:
        return sorted(c for c in parent.iterdir() if c.is_dir() and not is_hidden(c))
    except OSError:
        return []


def rel_id(path: Path, root: Path) -> str:
    """Posix path relative to the root: the sample id used for hashing and caching."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def file_stat(path: Path) -> tuple[int, int]:
    """(size, mtime_ns), or (-1, -1) for a missing file: part of the cache key."""
    try:
        st = path.stat()
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def require_dir(root: str | os.PathLike, what: str = "dataset folder") -> Path:
    """The folder as an absolute Path, or a DataError saying it is missing."""
    p = Path(os.fspath(root)).expanduser()
    if not p.exists():
        raise DataError(f"{what} not found: {p}")
    if not p.is_dir():
        raise DataError(f"{what} must be a folder, but {p} is a file")
    return p


# --------------------------------------------------------------------------- pixels

def resize_plane(a: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear resize of a float image to (size, size), like `load_image`."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    if a.shape != (size, size):
        im = Image.fromarray(a).resize((size, size), Image.Resampling.BILINEAR)
        a = np.asarray(im, dtype=np.float32)
    return np.clip(a, 0.0, 1.0).astype(np.float32, copy=True)


def resize_mask(m: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a binary mask to float32 (size, size) in {0, 1}."""
    m = np.ascontiguousarray(m > 0, dtype=np.uint8)
    if m.shape != (size, size):
        m = np.asarray(Image.fromarray(m).resize((size, size), Image.Resampling.NEAREST))
    return (m > 0).astype(np.float32)


def read_mask(path: Path, size: int) -> np.ndarray:
    """A 2D mask file (PNG/TIFF/...; any value above ~10 % of its range is lesion) -> {0, 1}."""
    m = load_image(path, size=None, normalize="minmax")
    return resize_mask(m > MASK_THRESHOLD, size)


# --------------------------------------------------------------------------- base classes

class BaseDataset:
    """Common interface: ``len(ds)``, ``ds[i] -> Sample``, ``ds.labels``, ``ds.ids``.

    Subclasses set `layout` and implement `_build` (list the samples), `__getitem__`,
    `source_files` (every file whose content affects the arrays; for the cache key) and
    `cache_params` (every option that affects the arrays).
    """

    layout = "base"
    has_masks = False  # True when samples carry pixel masks (load_arrays then returns masks)

    def __init__(self, root: str | os.PathLike, split: str = "train", size: int = 128) -> None:
        self.root = require_dir(root)
        self.split = check_split(split)
        self.size = check_size(size)

    # -- to implement
    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def labels(self) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def ids(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def source_files(self) -> list[Path]:  # pragma: no cover - abstract
        raise NotImplementedError

    def cache_params(self) -> dict[str, Any]:
        return {}

    # -- shared
    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def _index(self, i: int) -> int:
        n = len(self)
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"dataset index must be an integer, got {type(i).__name__}")
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} samples")
        return int(i)

    def summary(self) -> str:
        y = self.labels
        return (f"{type(self).__name__}({self.layout}, split={self.split}, size={self.size}): "
                f"{len(y)} samples, {int((y == 0).sum())} normal, {int((y == 1).sum())} abnormal")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, size={self.size})"


class FileDataset(BaseDataset):
    """A dataset whose samples are single 2D image files (plus optional 2D mask files)."""

    def __init__(self, root: str | os.PathLike, split: str = "train", size: int = 128) -> None:
        super().__init__(root, split, size)
        self._records: list[Record] | None = None

    def _build(self) -> list[Record]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def records(self) -> list[Record]:
        """The samples (built on first use, sorted by id)."""
        if self._records is None:
            recs = sorted(self._build(), key=lambda r: r.id)
            if not recs:
                raise DataError(self._empty_message())
            self._records = recs
        return self._records

    def _empty_message(self) -> str:
        return f"no images found for split {self.split!r} in {self.root}"

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:
        rec = self.records[self._index(i)]
        image = load_image(rec.path, size=self.size)
        mask = None
        if self.has_masks:
            mask = np.zeros((self.size, self.size), np.float32)
            for p in rec.mask_files:
                np.maximum(mask, read_mask(p, self.size), out=mask)
        return Sample(image, int(rec.label), mask, rec.id)

    @property
    def labels(self) -> np.ndarray:
        return np.array([r.label for r in self.records], dtype=np.int64)

    @property
    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def source_files(self) -> list[Path]:
        files = [r.path for r in self.records]
        files += [p for r in self.records for p in r.mask_files]
        return files + self.extra_files()

    def extra_files(self) -> list[Path]:
        """Index files (CSV, split lists) whose content defines the dataset."""
        return []


def take_split(records: Sequence[Record], split: str, *, val_fraction: float, seed: int,
               train_abnormal: bool = False) -> list[Record]:
    """Train/val/calib selection among TRAINING records (test records are chosen by the caller)."""
    part = normal_part([r.id for r in records if r.label == 0], split, val_fraction, seed)
    return [r for r in records
            if (r.label == 0 and r.id in part) or (split == "train" and train_abnormal and r.label == 1)]
