"""Folder-per-class datasets: Kermany/ZhangLab, COVID-19 Radiography, MedNIST, brain-MRI, generic.

Accepted layouts (folder names are matched case-insensitively)::

    root/train|Training/<class>/*.jpeg          with split folders (Kermany, brain-mri-kaggle)
    root/test|Testing/<class>/*.jpeg
    root/<class>/*.jpeg                         flat (MedNIST); test = hashed 20 % of all files
    root/<class>/images/*.png                   COVID-19 Radiography (its <class>/masks/ are
                                                lung masks, not lesion masks: ignored)

Classes named in `normal_classes` are label 0; every other class (or only those named in
`abnormal_classes`) is label 1. Kermany's tiny ``val/`` folder is ignored: the validation split is
always the hashed 10 % of the normal training images (see `upd_core.data.base`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..errors import DataError
from .base import (FileDataset, Record, check_fraction, child_dir, image_files, is_test, rel_id,
                   subdirs, take_split)

TRAIN_DIRS = ("train", "training")
TEST_DIRS = ("test", "testing")
IGNORED_DIRS = frozenset({"val", "valid", "validation", "masks", "mask", "__macosx"})

# Default normal classes per layout (case-insensitive).
NORMAL_CLASSES: dict[str, tuple[str, ...]] = {
    "kermany": ("NORMAL",),
    "covid19": ("Normal",),
    "mednist": ("CXR",),
    "brain-mri": ("notumor",),
    "folders": ("normal", "notumor", "no_tumor", "healthy", "no finding", "no_finding"),
}
KERMANY_CLASSES = frozenset({"normal", "pneumonia"})
COVID_CLASSES = frozenset({"normal", "covid", "lung_opacity", "viral pneumonia"})
MEDNIST_CLASSES = frozenset({"abdomenct", "breastmri", "cxr", "chestct", "hand", "headct"})


class FolderDataset(FileDataset):
    """Images sorted into one folder per class, with or without train/test folders.

    `normal_classes` defaults to the layout's (``NORMAL`` for Kermany, ``Normal`` for COVID-19
    Radiography, ``CXR`` for MedNIST, ``notumor`` for brain MRI). `use_masks=True` returns
    ``<class>/masks/<same stem>.*`` as lesion masks (only sensible when they are lesion masks).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 normal_classes: Sequence[str] | None = None, size: int = 128, *,
                 layout: str = "folders", abnormal_classes: Sequence[str] | None = None,
                 val_fraction: float = 0.1, test_fraction: float = 0.2, seed: int = 0,
                 train_abnormal: bool = False, use_masks: bool = False) -> None:
        super().__init__(root, split, size)
        if layout not in NORMAL_CLASSES:
            raise DataError(f"unknown folder layout {layout!r}: use one of {', '.join(NORMAL_CLASSES)}")
        self.layout = layout
        if isinstance(normal_classes, str):
            normal_classes = (normal_classes,)
        if isinstance(abnormal_classes, str):
            abnormal_classes = (abnormal_classes,)
        self.normal_classes = tuple(normal_classes or NORMAL_CLASSES[layout])
        self.abnormal_classes = tuple(abnormal_classes) if abnormal_classes else None
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.test_fraction = check_fraction("test_fraction", test_fraction)
        self.seed = int(seed)
        self.train_abnormal = bool(train_abnormal)
        self.use_masks = bool(use_masks)
        self.has_masks = self.use_masks

    def cache_params(self) -> dict[str, Any]:
        return {"normal": sorted(c.lower() for c in self.normal_classes),
                "abnormal": sorted(c.lower() for c in self.abnormal_classes or ()),
                "val": self.val_fraction, "test": self.test_fraction, "seed": self.seed,
                "train_abnormal": self.train_abnormal, "masks": self.use_masks}

    # -- discovery
    def _label(self, class_name: str) -> int | None:
        c = class_name.lower()
        if c in {n.lower() for n in self.normal_classes}:
            return 0
        if self.abnormal_classes is None or c in {a.lower() for a in self.abnormal_classes}:
            return 1
        return None

    def _class_records(self, split_dir: Path) -> list[Record]:
        recs: list[Record] = []
        classes = [d for d in subdirs(split_dir) if d.name.lower() not in IGNORED_DIRS]
        if not classes:
            raise DataError(f"no class folders in {split_dir}: expected one folder per class, "
                            f"e.g. {self.normal_classes[0]}/ with the normal images")
        names = [d.name for d in classes]
        if not any(self._label(n) == 0 for n in names):
            raise DataError(f"no normal class folder in {split_dir}: expected one of "
                            f"{', '.join(self.normal_classes)} (found {', '.join(names)}); "
                            "pass normal_classes=... to say which class is normal")
        for d in classes:
            label = self._label(d.name)
            if label is None:
                continue
            images_dir = child_dir(d, "images") or d
            masks_dir = child_dir(d, "masks", "mask") if self.use_masks else None
            masks = {p.stem: p for p in image_files(masks_dir, exclude_dirs=())} if masks_dir else {}
            for p in image_files(images_dir):
                recs.append(Record(rel_id(p, self.root), p, label, masks.get(p.stem)))
        return recs

    def _build(self) -> list[Record]:
        train_dir = child_dir(self.root, *TRAIN_DIRS)
        test_dir = child_dir(self.root, *TEST_DIRS)
        if train_dir is None and test_dir is None:  # flat: root/<class>/...
            recs = self._class_records(self.root)
            if self.split == "test":
                return [r for r in recs if is_test(r.id, self.test_fraction, self.seed)]
            rest = [r for r in recs if not is_test(r.id, self.test_fraction, self.seed)]
            return take_split(rest, self.split, val_fraction=self.val_fraction, seed=self.seed,
                              train_abnormal=self.train_abnormal)
        if self.split == "test":
            if test_dir is None:
                raise DataError(f"no test folder in {self.root}: expected test/ (or Testing/) "
                                "next to train/")
            return self._class_records(test_dir)
        if train_dir is None:
            raise DataError(f"no training folder in {self.root}: expected train/ (or Training/) "
                            "with a folder per class")
        return take_split(self._class_records(train_dir), self.split,
                          val_fraction=self.val_fraction, seed=self.seed,
                          train_abnormal=self.train_abnormal)

    def _empty_message(self) -> str:
        where = f"split {self.split!r} of {self.root}"
        if self.split == "val":
            return (f"the validation split of {self.root} is empty: too few normal training "
                    f"images for val_fraction={self.val_fraction}")
        return (f"no images found for {where}: expected PNG/JPEG/TIFF/BMP/DICOM files in "
                f"class folders ({', '.join(self.normal_classes)} = normal)")


def class_names(folder: Path) -> set[str]:
    """Lower-case names of the visible sub-folders (for layout detection)."""
    return {d.name.lower() for d in subdirs(folder)}
