"""upd_core.app.folders: the allow-list of data folders and labelled splits read from them."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tests.app_fixtures import env, make_dataset
from upd_core.app import folders
from upd_core.errors import DataError


def test_safe_folder_allows_data_root_and_refuses_elsewhere(tmp_path):
    data = tmp_path / "data"
    (data / "set").mkdir(parents=True)
    other = tmp_path / "other"
    other.mkdir()
    with env(UPD_DATA_ROOT=str(data), UPD_ALLOWED_DIRS=None):
        assert folders.safe_folder(data / "set") == (data / "set").resolve()
        assert folders.safe_folder("set") == (data / "set").resolve()  # relative = under the data root
        with pytest.raises(DataError, match="only reads folders under"):
            folders.safe_folder(other)
        with pytest.raises(DataError, match="only reads folders under"):
            folders.safe_folder(str(data / ".." / "other"))
        with pytest.raises(DataError, match="only reads folders under"):
            folders.safe_folder("/etc")
        os.symlink(other, data / "escape")  # a symlink out of the root is resolved first
        with pytest.raises(DataError, match="only reads folders under"):
            folders.safe_folder(data / "escape")
        with pytest.raises(DataError):
            folders.safe_folder("")
    with env(UPD_DATA_ROOT=str(data), UPD_ALLOWED_DIRS=str(other)):
        assert folders.safe_folder(other) == other.resolve()


def test_folder_listing_and_reading_stay_inside(tmp_path):
    base = make_dataset(tmp_path, n=3)
    with env(UPD_DATA_ROOT=str(tmp_path)):
        root = folders.safe_folder(base)
        files = folders.list_folder_images(root)
        assert len(files) == 9 and all(not f.startswith("/") for f in files)
        groups = folders.folder_groups(files)
        assert set(groups) == {"train/NORMAL", "test/NORMAL", "test/PNEUMONIA"}
        assert list(groups)[folders.default_group(list(groups))] == "test/NORMAL"
        assert folders.default_group(["a", "b"]) == 0
        img = folders.read_folder_image(root, files[0], size=32)
        assert img.shape == (32, 32) and img.dtype == np.float32
        with pytest.raises(DataError, match="outside"):
            folders.read_folder_image(root, "../../../etc/passwd")


def test_labelled_folder_counts_and_classes(tmp_path):
    base = make_dataset(tmp_path, n=4)
    with env(UPD_DATA_ROOT=str(tmp_path), UPD_CACHE_DIR=str(tmp_path / "cache")):
        s = folders.load_labelled_folder(base, "test", 32)
        assert s.images.shape == (8, 32, 32) and s.counts() == (4, 4)
        classes = s.by_class()
        assert set(classes) == {"normal", "abnormal"} and classes["abnormal"].shape == (4, 32, 32)
        s2 = folders.load_labelled_folder(base, "test", 32, max_per_class=2)
        assert len(s2.labels) == 4
        train = folders.load_labelled_folder(base, "train", 32)  # normal images only
        assert train.counts()[1] == 0 and set(train.by_class()) == {"normal"}
        with pytest.raises(DataError):
            folders.load_labelled_folder(tmp_path.parent, "test", 32)
