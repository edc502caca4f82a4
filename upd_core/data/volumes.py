"""3D NIfTI volumes (BraTS, ATLAS, CamCAN, IXI, nnU-Net style) as 2D axial slices with masks.

Each volume is read with `upd_core.imaging.load_volume` (oriented to RAS, axial slices from
inferior to superior, displayed like DICOM; one intensity mapping for the whole volume), so all
slices of a scan share the same brightness scale. Slices are resized to (size, size) with
antialiased bilinear interpolation, masks with nearest neighbour.

* Pairing images with masks: `image_pattern` and `mask_pattern` are glob patterns (``*``, ``?``,
  ``**/``) matched against paths relative to `root` (or, without a ``/``, against file names in
  any folder). A mask belongs to the image whose wildcards captured the same text, e.g.
  ``*_t2.nii*`` and ``*_seg.nii*`` pair ``BraTS2021_00000_t2.nii.gz`` with
  ``BraTS2021_00000_seg.nii.gz``; ``images/*.nii*`` and ``masks/*.nii*`` pair equal names.
  `preset` names common layouts (``brats``, ``brats2023``, ``atlas``, ``camcan``, ``ixi``,
  ``nnunet``, ``images-masks``); without patterns or preset the layout is guessed from the
  file names.
* Labels: a slice is abnormal (1) when its mask has at least `min_lesion_pixels` positive
  voxels at native resolution (so a tiny lesion may vanish from the resized mask).
* Brain mask / empty slices: with `skip_empty` a slice is dropped when fewer than
  `min_foreground` (fraction) of its pixels are brain (image > 0 after normalisation).
* `slice_range=(lo, hi)`: keep slices lo <= k < hi; floats in [0, 1] are fractions of the depth.
* Splits are made per volume (never per slice, so no subject is in two splits): ``test`` is every
  volume (or a hashed `test_fraction` of them); ``train`` / ``val`` / ``calib`` are the normal
  slices of the remaining volumes, with hashed shares of the volumes for validation
  (`val_fraction`) and calibration (see `upd_core.data.base`).
"""
from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError, ImageError
from ..imaging import load_volume
from .base import (BaseDataset, Sample, check_fraction, is_nifti, is_test, normal_part, rel_id,
                   resize_mask, resize_plane)

# (image pattern, mask pattern or None)
PRESETS: dict[str, tuple[str, str | None]] = {
    "brats": ("*_t2.nii*", "*_seg.nii*"),
    "brats2023": ("*-t2w.nii*", "*-seg.nii*"),
    "atlas": ("*_T1w.nii*", "*_label-L_desc-T1lesion_mask.nii*"),
    "camcan": ("*T2w.nii*", None),
    "ixi": ("*-T2.nii*", None),
    "nnunet": ("imagesTr/*_0000.nii*", "labelsTr/*.nii*"),
    "images-masks": ("images/*.nii*", "masks/*.nii*"),
    "images-labels": ("images/*.nii*", "labels/*.nii*"),
}
_MASK_WORDS = re.compile(r"(seg|mask|label|lesion)", re.IGNORECASE)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Glob -> regex whose groups capture what each ``*`` / ``?`` matched (``**/`` not captured)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern[i] == "*":
            out.append("([^/]*)")
            i += 1
        elif pattern[i] == "?":
            out.append("([^/])")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def match_key(pattern: re.Pattern[str], rel: str, by_name: bool) -> tuple[str, ...] | None:
    """The pairing key of a file for a pattern, or None when it does not match."""
    target = rel.rsplit("/", 1)[-1] if by_name else rel
    m = pattern.match(target)
    if m is None:
        return None
    caps = tuple(g for g in m.groups() if g not in ("", ".gz"))  # ignore .nii vs .nii.gz
    if by_name:
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        return (parent,) + caps
    return caps


def nifti_files(root: Path, max_depth: int = 6) -> list[str]:
    """Relative posix paths of all NIfTI files under root (sorted)."""
    out = []
    root_depth = len(root.parts)
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        if len(Path(dirpath).parts) - root_depth >= max_depth:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if is_nifti(p):
                out.append(rel_id(p, root))
    return out


def guess_patterns(files: list[str], root: Path) -> tuple[str, str | None]:
    """Pick a preset from the file names (see module docstring)."""
    names = [f.rsplit("/", 1)[-1] for f in files]
    if (root / "imagesTr").is_dir() and (root / "labelsTr").is_dir():
        return PRESETS["nnunet"]
    for folder in ("masks", "labels"):
        if (root / "images").is_dir() and (root / folder).is_dir():
            return PRESETS[f"images-{folder}"]
    for preset in ("brats", "brats2023", "atlas", "camcan", "ixi"):
        img, _ = PRESETS[preset]
        rx = pattern_regex(img)
        if any(rx.match(n) for n in names):
            return PRESETS[preset]
    return "*.nii*", None


@dataclass(frozen=True)
class Volume:
    """One scan: its key, image file and optional mask file."""

    id: str
    image: Path
    mask: Path | None


class VolumeSliceDataset(BaseDataset):
    """Axial 2D slices of NIfTI volumes, labelled by their lesion masks (see module docstring)."""

    layout = "volumes"

    def __init__(self, root: str | os.PathLike, split: str = "test", size: int = 128, *,
                 image_pattern: str | None = None, mask_pattern: str | None = None,
                 preset: str | None = None, slice_range: tuple[float, float] | None = None,
                 skip_empty: bool = True, min_foreground: float = 0.01,
                 min_lesion_pixels: int = 1, val_fraction: float = 0.1,
                 test_fraction: float | None = None, seed: int = 0) -> None:
        super().__init__(root, split, size)
        if preset is not None:
            if preset not in PRESETS:
                raise DataError(f"unknown volume preset {preset!r}: use one of {', '.join(PRESETS)}")
            image_pattern = image_pattern or PRESETS[preset][0]
            mask_pattern = mask_pattern if mask_pattern is not None else PRESETS[preset][1]
        self.image_pattern, self.mask_pattern = image_pattern, mask_pattern
        self.slice_range = slice_range
        self.skip_empty = bool(skip_empty)
        self.min_foreground = check_fraction("min_foreground", min_foreground)
        self.min_lesion_pixels = max(1, int(min_lesion_pixels))
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.test_fraction = None if test_fraction is None else check_fraction("test_fraction", test_fraction)
        self.seed = int(seed)
        self._volumes: list[Volume] | None = None
        self._slices: list[tuple[int, int, int]] | None = None  # (volume, slice, label)
        self._cached: tuple[int, np.ndarray, np.ndarray | None] | None = None

    def cache_params(self) -> dict[str, Any]:
        _ = self.volumes
        return {"image": self.image_pattern, "mask": self.mask_pattern,
                "range": list(self.slice_range) if self.slice_range else None,
                "skip_empty": self.skip_empty, "min_fg": self.min_foreground,
                "min_lesion": self.min_lesion_pixels, "val": self.val_fraction,
                "test": self.test_fraction, "seed": self.seed}

    @property
    def has_masks(self) -> bool:  # type: ignore[override]
        return any(v.mask is not None for v in self.volumes)

    # -- volumes (cheap: file names only)
    @property
    def volumes(self) -> list[Volume]:
        """The scans of this split (found from file names; nothing is decoded)."""
        if self._volumes is None:
            self._volumes = self._select(self._pair())
            if not self._volumes:
                raise DataError(f"no volumes for split {self.split!r} in {self.root}")
        return self._volumes

    def _pair(self) -> list[Volume]:
        files = nifti_files(self.root)
        if not files:
            raise DataError(f"no NIfTI volumes (.nii / .nii.gz) found in {self.root}")
        if self.image_pattern is None:
            self.image_pattern, guessed_mask = guess_patterns(files, self.root)
            if self.mask_pattern is None:
                self.mask_pattern = guessed_mask
        img_rx = pattern_regex(self.image_pattern)
        img_by_name = "/" not in self.image_pattern
        masks: dict[tuple[str, ...], Path] = {}
        if self.mask_pattern:
            mask_rx = pattern_regex(self.mask_pattern)
            mask_by_name = "/" not in self.mask_pattern
            for f in files:
                key = match_key(mask_rx, f, mask_by_name)
                if key is not None:
                    masks[key] = self.root / f
        mask_files = set(masks.values())
        vols = []
        for f in files:
            key = match_key(img_rx, f, img_by_name)
            if key is None or self.root / f in mask_files:
                continue
            if self.mask_pattern is None and _MASK_WORDS.search(f.rsplit("/", 1)[-1]):
                continue  # "*.nii*" guess: do not treat segmentation files as images
            vols.append(Volume(f, self.root / f, masks.get(key)))
        if not vols:
            raise DataError(f"no NIfTI file in {self.root} matches the image pattern "
                            f"{self.image_pattern!r} (found e.g. {files[0]!r})")
        if self.mask_pattern and not any(v.mask for v in vols):
            raise DataError(f"no mask matches {self.mask_pattern!r} for the images "
                            f"{self.image_pattern!r} in {self.root}")
        return vols

    def _select(self, vols: list[Volume]) -> list[Volume]:
        if self.test_fraction is not None:
            test = [v for v in vols if is_test(v.id, self.test_fraction, self.seed)]
            if self.split == "test":
                return test
            vols = [v for v in vols if v not in test]
        elif self.split == "test":
            return vols
        chosen = normal_part([v.id for v in vols], self.split, self.val_fraction, self.seed)
        return [v for v in vols if v.id in chosen]

    # -- slices (needs decoding every volume once)
    def _load(self, vi: int) -> tuple[np.ndarray, np.ndarray | None]:
        if self._cached is not None and self._cached[0] == vi:
            return self._cached[1], self._cached[2]
        vol = self.volumes[vi]
        img = load_volume(vol.image)
        mask = None
        if vol.mask is not None:
            mask = load_volume(vol.mask, normalize="minmax") > 0
            if mask.shape != img.shape:
                raise DataError(f"mask {vol.mask.name} has shape {mask.shape}, but image "
                                f"{vol.image.name} has {img.shape}")
        self._cached = (vi, img, mask)
        return img, mask

    def _range(self, depth: int) -> range:
        if self.slice_range is None:
            return range(depth)
        lo, hi = self.slice_range
        if isinstance(lo, float) and isinstance(hi, float) and 0 <= lo <= 1 and 0 <= hi <= 1:
            lo, hi = int(round(lo * depth)), int(round(hi * depth))
        return range(max(0, int(lo)), min(depth, int(hi)))

    @property
    def slices(self) -> list[tuple[int, int, int]]:
        """(volume index, slice index, label) of every kept slice (decodes each volume once)."""
        if self._slices is None:
            out: list[tuple[int, int, int]] = []
            bad: list[str] = []
            for vi in range(len(self.volumes)):
                try:
                    img, mask = self._load(vi)
                except (ImageError, DataError) as e:
                    bad.append(f"{self.volumes[vi].id}: {e}")
                    continue
                area = img.shape[1] * img.shape[2]
                for k in self._range(img.shape[0]):
                    if self.skip_empty and \
                            np.count_nonzero(img[k] > 0) < max(1.0, self.min_foreground * area):
                        continue
                    label = int(mask is not None and np.count_nonzero(mask[k]) >= self.min_lesion_pixels)
                    if self.split != "test" and label:
                        continue
                    out.append((vi, k, label))
            if bad:
                if len(bad) == len(self.volumes):
                    raise DataError(f"none of the {len(bad)} volumes in {self.root} could be read; "
                                    "first problems:\n  " + "\n  ".join(bad[:5]))
                warnings.warn(f"skipped {len(bad)} unreadable volume(s) in {self.root}:\n  "
                              + "\n  ".join(bad[:20]), stacklevel=2)
            if not out:
                raise DataError(f"no slices left for split {self.split!r} in {self.root} "
                                "(check slice_range / skip_empty)")
            self._slices = out
        return self._slices

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> Sample:
        vi, k, label = self.slices[self._index(i)]
        img, mask = self._load(vi)
        m = resize_mask(mask[k], self.size) if mask is not None else (
            np.zeros((self.size, self.size), np.float32) if self.has_masks else None)
        return Sample(resize_plane(img[k], self.size), label, m, f"{self.volumes[vi].id}#{k:03d}")

    @property
    def labels(self) -> np.ndarray:
        return np.array([s[2] for s in self.slices], dtype=np.int64)

    @property
    def ids(self) -> list[str]:
        return [f"{self.volumes[vi].id}#{k:03d}" for vi, k, _ in self.slices]

    def source_files(self) -> list[Path]:
        return [v.image for v in self.volumes] + [v.mask for v in self.volumes if v.mask]

    def foreground(self, i: int) -> np.ndarray:
        """Brain mask (image > 0) of sample i at (size, size): where synthetic lesions may go."""
        vi, k, _ = self.slices[self._index(i)]
        img, _ = self._load(vi)
        return resize_mask(img[k] > 0, self.size)
