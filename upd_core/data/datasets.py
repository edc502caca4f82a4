"""`open_dataset`: one entry point for every supported layout, with auto-detection.

Layouts (``layout=``):
    kermany    train|test/NORMAL|PNEUMONIA (Kermany / ZhangLab chest X-rays)
    covid19    Normal|COVID|Lung_Opacity|Viral Pneumonia[/images] (COVID-19 Radiography)
    mednist    AbdomenCT|BreastMRI|CXR|ChestCT|Hand|HeadCT (normal class: ``normal_classes=``)
    brain-mri  train|Training/notumor + test|Testing/notumor|glioma|meningioma|pituitary
    folders    any other folder-per-class tree (normal: normal/notumor/healthy/...)
    chexpert   CheXpert CSV + split lists (see `upd_core.data.chexpert`)
    volumes    NIfTI volumes (+ masks) as axial slices (BraTS, ATLAS, CamCAN, IXI; see
               `upd_core.data.volumes`); aliases brats, brats2023, atlas, camcan, ixi pick a preset
    ddr        DDR fundus grading lists / lesion segmentations (see `upd_core.data.ddr`)
    auto       detect from the folder's contents (the default)
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .base import BaseDataset, child_dir, has_image_files, require_dir, subdirs
from .chexpert import SMALL, CheXpertDataset
from .ddr import DDRDataset
from .folders import (COVID_CLASSES, KERMANY_CLASSES, MEDNIST_CLASSES, TEST_DIRS, TRAIN_DIRS,
                      FolderDataset, class_names)
from .volumes import PRESETS, VolumeSliceDataset, nifti_files

FOLDER_LAYOUTS = ("kermany", "covid19", "mednist", "brain-mri", "folders")
LAYOUTS = ("auto",) + FOLDER_LAYOUTS + ("chexpert", "volumes", "ddr")
ALIASES = {"zhanglab": "kermany", "chest-xray": "kermany", "covid": "covid19",
           "covid-19": "covid19", "brain-mri-kaggle": "brain-mri", "brain": "brain-mri",
           "nifti": "volumes", "fundus": "ddr"}
EXPECTED = ("expected one of: train/ + test/ with a folder per class (kermany: NORMAL, PNEUMONIA; "
            "brain-mri: notumor, glioma, ...), class folders at the top (covid19: Normal, COVID, "
            "Lung_Opacity; mednist: AbdomenCT, CXR, ...), a CheXpert folder (train.csv / splits/), "
            "NIfTI volumes (.nii/.nii.gz), or DDR fundus folders (DR_grading/, "
            "lesion_segmentation/)")


def _is_chexpert(root: Path) -> bool:
    for base in (root, root / SMALL):
        if any((base / n).exists() for n in ("train.csv", "valid.csv", "normal_splits")):
            return True
    splits = root / "splits"
    return splits.is_dir() and any((splits / n).exists() for n in ("train.txt", "test_normal.txt"))


def _is_ddr(root: Path) -> bool:
    if child_dir(root, "DR_grading", "lesion_segmentation") is not None:
        return True
    if (root / "healthy").is_dir() and (root / "unhealthy").is_dir():
        return True
    if (root / "train.txt").is_file() and child_dir(root, "train") is not None:
        return True
    return child_dir(root, "image") is not None and child_dir(root, "label") is not None


def _folder_layout(root: Path) -> str | None:
    split_dirs = [d for d in (child_dir(root, *TRAIN_DIRS), child_dir(root, *TEST_DIRS)) if d]
    if split_dirs:
        classes = set().union(*(class_names(d) for d in split_dirs))
        if KERMANY_CLASSES <= classes:
            return "kermany"
        if "notumor" in classes or "no_tumor" in classes:
            return "brain-mri"
        return "folders" if classes else None
    classes = class_names(root)
    if len(classes & MEDNIST_CLASSES) >= 3:
        return "mednist"
    if "normal" in classes and classes & (COVID_CLASSES - {"normal"}):
        return "covid19"
    if classes & {"normal", "notumor", "healthy"}:
        return "folders"
    return None


def detect_layout(root: str | os.PathLike) -> str:
    """The layout name of a dataset folder, or DataError saying what was expected."""
    root = require_dir(root)
    if _is_chexpert(root):
        return "chexpert"
    if _is_ddr(root):
        return "ddr"
    found = _folder_layout(root)
    if found is not None and (found != "folders" or has_image_files(root)):
        return found
    if nifti_files(root, max_depth=4):
        return "volumes"
    if found is not None:
        return found
    raise DataError(f"cannot tell the layout of {root}: {EXPECTED}. Pass layout=... "
                    f"({', '.join(LAYOUTS[1:])}) if it is one of them.")


def _unwrap(root: Path) -> Path:
    """Zip extractions often add one wrapping folder: descend when it is the only entry."""
    try:
        entries = [c for c in root.iterdir() if not c.name.startswith(".") and c.name != "__MACOSX"]
    except OSError:
        return root
    inner = subdirs(root)
    if len(entries) == 1 and len(inner) == 1:
        try:
            detect_layout(inner[0])
            return inner[0]
        except DataError:
            return root
    return root


def open_dataset(root: str | os.PathLike, layout: str = "auto", split: str = "train",
                 size: int = 128, **options: Any) -> BaseDataset:
    """Open a dataset folder as a `Sample` sequence (see module docstring for the layouts).

    `options` go to the adapter (e.g. ``normal_classes=("HeadCT",)`` for MedNIST,
    ``val_fraction=``, ``seed=``, ``slice_range=`` for volumes, ``lists=`` for CheXpert).
    Raises DataError for a missing folder, an unknown or undetectable layout, or no images.
    """
    root_path = require_dir(root)
    layout = ALIASES.get(str(layout).lower(), str(layout).lower())
    if layout in PRESETS and layout not in LAYOUTS:
        options.setdefault("preset", layout)
        layout = "volumes"
    if layout not in LAYOUTS:
        raise DataError(f"unknown dataset layout {layout!r}: use one of {', '.join(LAYOUTS)} "
                        f"(or a volume preset: {', '.join(PRESETS)})")
    if layout == "auto":
        try:
            layout = detect_layout(root_path)
        except DataError:
            inner = _unwrap(root_path)
            if inner == root_path:
                raise
            root_path, layout = inner, detect_layout(inner)
    if layout in FOLDER_LAYOUTS:
        cls: type[BaseDataset] = FolderDataset
        options["layout"] = layout
    else:
        cls = {"chexpert": CheXpertDataset, "ddr": DDRDataset}.get(layout, VolumeSliceDataset)
    try:
        return cls(root_path, split, size=size, **options)  # type: ignore[call-arg]
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise DataError(f"layout {layout!r} does not take that option ({e})") from None
        raise


def load_split(data: str | os.PathLike, layout: str = "auto", split: str = "train", size: int = 128,
               limit: int | None = None, stratified: bool = False):
    """Decode one split of a data set (folder path or short name) into arrays, once (cached).

    Returns ``(root, images (N,S,S), labels (N,), masks (N,S,S) or None, ids)``. `limit` keeps the
    first N images; with `stratified=True` it keeps the same share of normal and abnormal images.
    """
    from ..paths import resolve_dataset
    from .cache import load_arrays

    root = resolve_dataset(data)
    ds = open_dataset(root, layout=layout, split=split, size=size)
    images, labels, masks, ids = load_arrays(ds)
    if limit:
        if stratified and len(np.unique(labels)) > 1:
            keep = _stratified_indices(labels, limit)
        else:
            keep = np.arange(min(limit, len(labels)))
        images, labels, ids = images[keep], labels[keep], [ids[i] for i in keep]
        masks = None if masks is None else masks[keep]
    return root, images, labels, masks, ids


def _stratified_indices(labels: np.ndarray, limit: int) -> np.ndarray:
    """The first images of each class in proportion to the class sizes (at least one each)."""
    classes, counts = np.unique(labels, return_counts=True)
    share = np.maximum(1, np.round(limit * counts / counts.sum()).astype(int))
    keep = [np.flatnonzero(labels == c)[:k] for c, k in zip(classes, share)]
    return np.sort(np.concatenate(keep))
