"""Dataset adapters: folder trees, CheXpert, NIfTI volumes and DDR fundus as 2D samples.

    ds = open_dataset("../shared/data/cxr-kermany", split="train", size=128)
    image, label, mask, id = ds[0]
    images, labels, masks, ids = load_arrays(ds)     # decoded once, then cached

See `base` (Sample, splits), `folders`, `chexpert`, `volumes`, `ddr` (layouts) and `cache`
(the on-disk array cache).
"""
from __future__ import annotations

from .base import SPLITS, BaseDataset, FileDataset, Record, Sample, hash_unit, is_test, is_val
from .cache import cache_key, default_cache_dir, load_arrays
from .chexpert import CheXpertDataset
from .datasets import LAYOUTS, detect_layout, load_split, open_dataset
from .ddr import DDRDataset
from .folders import FolderDataset
from .volumes import PRESETS, VolumeSliceDataset

__all__ = [
    "BaseDataset", "CheXpertDataset", "DDRDataset", "FileDataset", "FolderDataset", "LAYOUTS",
    "PRESETS", "Record", "SPLITS", "Sample", "VolumeSliceDataset", "cache_key",
    "default_cache_dir", "detect_layout", "hash_unit", "is_test", "is_val", "load_arrays", "load_split",
    "open_dataset",
]
