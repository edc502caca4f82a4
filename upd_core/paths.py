"""Where things are: the repository, the shared data folder, named data sets."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Short names for the data sets of ../shared/data (a user may pass any folder instead).
NAMED_DATASETS = {"kermany": "cxr-kermany", "cxr-kermany": "cxr-kermany",
                  "brain-mri": "brain-mri-kaggle", "brain-mri-kaggle": "brain-mri-kaggle"}


def data_root() -> Path:
    """$UPD_DATA_ROOT, else ../shared/data next to the repository."""
    env = os.environ.get("UPD_DATA_ROOT")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


def resolve_dataset(name_or_path: str | os.PathLike) -> Path:
    """A data set folder from a path or a short name ('kermany', 'brain-mri')."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    key = str(name_or_path)
    if key in NAMED_DATASETS and (data_root() / NAMED_DATASETS[key]).is_dir():
        return data_root() / NAMED_DATASETS[key]
    from .errors import DataError

    raise DataError(f"data set {key!r} not found: give a folder path, or one of {sorted(set(NAMED_DATASETS))} "
                    f"with the data under {data_root()} (set UPD_DATA_ROOT to change it)")


def dataset_name(root: Path) -> str:
    """A stable name for cards: the known folder name, else the folder's own name."""
    return Path(root).resolve().name
