"""DDR retinal fundus photographs (Li et al., 2019): grading lists and lesion segmentations.

Accepted layouts under `root` (folder names case-insensitive)::

    DR_grading/ (or root itself)          train.txt, valid.txt, test.txt  +  train/, valid/, test/
        lines "007-0004-000.jpg 0": file name and DR grade 0-4 (0 = normal, 1-4 = abnormal,
        5 = ungradable, dropped)
    lesion_segmentation/ (or root itself) [train|valid|test/]image/*.jpg and
        [train|valid|test/]label/{EX,HE,MA,SE}/<stem>.tif (or label/<stem>.png): every image is
        abnormal; its mask is the union of the lesion masks
    healthy/*.jpg + unhealthy/images/*.png + unhealthy/segmentations/*.png
        the UPD study's preprocessed folder (test = hashed `test_fraction` of healthy + all
        unhealthy)

Splits: ``train``/``val``/``calib`` are the grade-0 images of ``train.txt`` (val and calib =
hashed 10 % each, see `upd_core.data.base`);
``valid.txt`` is not used. ``test`` is: the grade-0 images of ``test.txt`` plus the lesion-
segmentation test images with masks when both folders exist; otherwise all of ``test.txt``
(grades 1-4 abnormal, no masks) or all lesion-segmentation test images.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import DataError
from .base import (FileDataset, Record, check_fraction, child_dir, image_files, is_test, rel_id,
                   take_split)

UNGRADABLE = 5


def read_grading(txt: Path) -> list[tuple[str, int]]:
    """(file name, grade) pairs of a DDR grading list; DataError on malformed lines."""
    out = []
    try:
        lines = txt.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {txt}: {e}") from e
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            name, grade = " ".join(parts[:-1]), int(parts[-1])
            if not name:
                raise ValueError
        except ValueError:
            raise DataError(f"{txt}, line {n}: expected 'file_name grade', got {line.strip()!r}") from None
        out.append((name, grade))
    return out


class DDRDataset(FileDataset):
    """DDR fundus images (see the module docstring for layouts and splits)."""

    layout = "ddr"

    def __init__(self, root: str | os.PathLike, split: str = "train", size: int = 128, *,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0) -> None:
        super().__init__(root, split, size)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.test_fraction = check_fraction("test_fraction", test_fraction)
        self.seed = int(seed)
        self._index_files: list[Path] = []

    def cache_params(self) -> dict[str, Any]:
        return {"val": self.val_fraction, "test": self.test_fraction, "seed": self.seed}

    def extra_files(self) -> list[Path]:
        _ = self.records
        return list(self._index_files)

    # -- locating the parts
    def grading_dir(self) -> Path | None:
        if (self.root / "train.txt").is_file() or (self.root / "test.txt").is_file():
            return self.root
        d = child_dir(self.root, "DR_grading", "grading")
        return d if d is not None and any((d / f).is_file() for f in ("train.txt", "test.txt")) else None

    def lesion_dir(self) -> Path | None:
        for d in (self.root, child_dir(self.root, "lesion_segmentation", "segmentation")):
            if d is None:
                continue
            if child_dir(d, "image", "images") and child_dir(d, "label", "labels"):
                return d
            for s in ("test", "train", "valid"):
                sd = child_dir(d, s)
                if sd is not None and child_dir(sd, "image", "images"):
                    return d
        return None

    # -- readers
    def _grading(self, gdir: Path, name: str) -> list[Record]:
        txt = gdir / f"{name}.txt"
        if not txt.is_file():
            raise DataError(f"DDR grading list {txt} not found (lines 'file_name grade')")
        self._index_files.append(txt)
        folder = child_dir(gdir, name) or gdir
        recs = []
        for fname, grade in read_grading(txt):
            if grade == UNGRADABLE:
                continue
            p = folder / fname
            recs.append(Record(rel_id(p, self.root), p, int(grade > 0)))
        return recs

    def _lesions(self, ldir: Path, name: str) -> list[Record]:
        base = child_dir(ldir, name) if child_dir(ldir, "image", "images") is None else ldir
        if base is None:
            return []
        img_dir = child_dir(base, "image", "images")
        lab_dir = child_dir(base, "label", "labels")
        if img_dir is None:
            return []
        masks: dict[str, list[Path]] = {}
        if lab_dir is not None:
            for p in image_files(lab_dir, exclude_dirs=()):
                masks.setdefault(p.stem, []).append(p)
        return [Record(rel_id(p, self.root), p, 1, tuple(sorted(masks.get(p.stem, []))) or None)
                for p in image_files(img_dir)]

    def _upd(self) -> list[Record]:
        healthy = [Record(rel_id(p, self.root), p, 0) for p in image_files(self.root / "healthy")]
        if self.split != "test":
            rest = [r for r in healthy if not is_test(r.id, self.test_fraction, self.seed)]
            return take_split(rest, self.split, val_fraction=self.val_fraction, seed=self.seed)
        self.has_masks = True
        seg_dir = child_dir(self.root / "unhealthy", "segmentations", "masks", "labels")
        segs = {p.stem: p for p in image_files(seg_dir, exclude_dirs=())} if seg_dir else {}
        img_dir = child_dir(self.root / "unhealthy", "images") or self.root / "unhealthy"
        sick = [Record(rel_id(p, self.root), p, 1, segs.get(p.stem)) for p in image_files(img_dir)]
        return [r for r in healthy if is_test(r.id, self.test_fraction, self.seed)] + sick

    def _build(self) -> list[Record]:
        if (self.root / "healthy").is_dir() and (self.root / "unhealthy").is_dir():
            return self._upd()
        gdir, ldir = self.grading_dir(), self.lesion_dir()
        if gdir is None and ldir is None:
            raise DataError(f"no DDR layout in {self.root}: expected DR_grading/ (train.txt + "
                            "train/), lesion_segmentation/ (image/ + label/), or healthy/ + "
                            "unhealthy/")
        if self.split != "test":
            if gdir is None:
                raise DataError(f"no normal training images in {self.root}: the DDR lesion "
                                "segmentation set has only abnormal images; add DR_grading/ "
                                "(train.txt + train/) for training")
            return take_split(self._grading(gdir, "train"), self.split,
                              val_fraction=self.val_fraction, seed=self.seed)
        if ldir is not None:
            self.has_masks = True
            lesions = self._lesions(ldir, "test")
            if gdir is not None and (gdir / "test.txt").is_file():
                return [r for r in self._grading(gdir, "test") if r.label == 0] + lesions
            return lesions
        return self._grading(gdir, "test")  # type: ignore[arg-type]
