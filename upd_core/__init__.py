"""UPD explorer core: unsupervised pathology detection methods, checkpoints and evaluation.

Public contract (see DESIGN.md): `load_image`, `load_volume`, `ImageError`, `list_methods`,
`list_checkpoints`, `load_detector`, `Detector`, `Prediction`, `CheckpointInfo`.
"""
from __future__ import annotations

from .checkpoint import CheckpointInfo, list_checkpoints, load_detector
from .detector import Detector, DetectorConfig, Prediction
from .errors import CheckpointError, DataError, ImageError, UPDError
from .imaging import load_image, load_volume
from .registry import get_method, list_methods

__version__ = "0.1.0"
__all__ = [
    "CheckpointError", "CheckpointInfo", "DataError", "Detector", "DetectorConfig", "ImageError",
    "Prediction", "UPDError", "get_method", "list_checkpoints", "list_methods", "load_detector",
    "load_image", "load_volume", "__version__",
]
