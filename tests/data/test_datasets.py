"""Tests of upd_core.data: every layout on small generated trees, splits, the array cache.

All images are generated here (tiny PNG/JPEG/NIfTI files in tmp_path); the only real data used
is ../shared/data, read-only, in the last test (skipped when absent).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

import upd_core.data.base as data_base
from upd_core.data import (CheXpertDataset, DDRDataset, FolderDataset, VolumeSliceDataset,
                           detect_layout, load_arrays, open_dataset)
from upd_core.data.cache import cache_key, cache_path
from upd_core.errors import DataError

S = 32  # output size used throughout: small is fast


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path_factory, monkeypatch):
    """Never touch the user's ~/.cache/upd."""
    monkeypatch.setenv("UPD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def write_image(path: Path, seed: int = 0, side: int = 24, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    a = (rng.random((side, side)) * 200 + 20).astype(np.uint8)
    Image.fromarray(a).save(path, format=fmt)
    return path


def write_mask(path: Path, box: tuple[int, int, int, int], side: int = 24) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((side, side), np.uint8)
    y0, y1, x0, x1 = box
    m[y0:y1, x0:x1] = 255
    Image.fromarray(m).save(path)
    return path


def make_tree(root: Path, spec: dict[str, int], ext: str = ".png") -> Path:
    """spec: {"train/NORMAL": 30, ...} -> that many images per folder."""
    k = 0
    for folder, n in spec.items():
        for i in range(n):
            write_image(root / folder / f"img{i:03d}{ext}", seed=k)
            k += 1
    return root


@pytest.fixture
def kermany(tmp_path) -> Path:
    return make_tree(tmp_path / "cxr", {"train/NORMAL": 40, "train/PNEUMONIA": 6,
                                        "test/NORMAL": 4, "test/PNEUMONIA": 6}, ".jpeg")


# --------------------------------------------------------------------------- folder layouts

def test_kermany_counts_labels_and_splits(kermany):
    assert detect_layout(kermany) == "kermany"
    train = open_dataset(kermany, split="train", size=S)
    val = open_dataset(kermany, split="val", size=S)
    test = open_dataset(kermany, split="test", size=S)
    assert train.layout == "kermany" and isinstance(train, FolderDataset)
    calib = open_dataset(kermany, split="calib", size=S)
    assert len(train) + len(val) + len(calib) == 40 and len(val) >= 1 and len(calib) >= 1
    assert set(train.ids).isdisjoint(val.ids) and set(calib.ids).isdisjoint(set(train.ids) | set(val.ids))
    assert (calib.labels == 0).all()
    assert all(i.startswith("train/NORMAL/") for i in train.ids + val.ids)
    assert (train.labels == 0).all() and (val.labels == 0).all()
    assert len(test) == 10 and test.labels.sum() == 6 and test.labels.dtype == np.int64
    image, label, mask, sid = test[-1]  # unpacks as a 4-tuple
    assert image.shape == (S, S) and image.dtype == np.float32
    assert 0 <= image.min() and image.max() <= 1 and label == 1 and mask is None
    assert sid == "test/PNEUMONIA/img005.jpeg"
    with_abnormal = open_dataset(kermany, split="train", size=S, train_abnormal=True)
    assert len(with_abnormal) == len(train) + 6


def test_val_split_is_deterministic_and_stable_when_files_are_added(kermany):
    val1 = open_dataset(kermany, split="val", size=S).ids
    assert open_dataset(kermany, split="val", size=S).ids == val1
    make_tree(kermany, {"train/NORMAL": 0})
    for i in range(40, 80):
        write_image(kermany / "train/NORMAL" / f"img{i:03d}.jpeg", seed=i)
    val2 = open_dataset(kermany, split="val", size=S).ids
    assert set(val1) <= set(val2)  # old members stay, new files may join
    other_seed = open_dataset(kermany, split="val", size=S, seed=1).ids
    assert other_seed != val2


def test_covid19_radiography_flat_layout_ignores_lung_masks(tmp_path):
    root = tmp_path / "COVID-19_Radiography_Dataset"
    for cls, n in (("Normal", 30), ("COVID", 10), ("Lung_Opacity", 8), ("Viral Pneumonia", 4)):
        for i in range(n):
            write_image(root / cls / "images" / f"{cls}-{i}.png", seed=i)
            write_mask(root / cls / "masks" / f"{cls}-{i}.png", (2, 20, 2, 10))
    assert detect_layout(root) == "covid19"
    parts = {s: open_dataset(root, split=s, size=S) for s in ("train", "val", "calib", "test")}
    ids = {s: set(d.ids) for s, d in parts.items()}
    names = list(ids)
    assert all(not (ids[a] & ids[b]) for i, a in enumerate(names) for b in names[i + 1:])
    n_normal = sum(int((d.labels == 0).sum()) for d in parts.values())
    assert n_normal == 30  # every normal image is in exactly one split
    assert all("/masks/" not in i for s in ids.values() for i in s)
    test = parts["test"]
    assert test.labels.sum() == sum(1 for i in test.ids if not i.startswith("Normal/"))
    assert test[0].mask is None
    only_covid = open_dataset(root, split="test", size=S, abnormal_classes=("COVID",))
    assert all(i.split("/")[0] in ("Normal", "COVID") for i in only_covid.ids)


def test_zip_wrapper_folder_is_unwrapped(tmp_path):
    inner = make_tree(tmp_path / "outer" / "chest_xray", {"train/NORMAL": 12, "test/NORMAL": 2,
                                                          "test/PNEUMONIA": 2})
    ds = open_dataset(tmp_path / "outer", split="test", size=S)
    assert ds.root == inner and len(ds) == 4


def test_mednist_normal_class_is_chosen(tmp_path):
    classes = ("AbdomenCT", "BreastMRI", "CXR", "ChestCT", "Hand", "HeadCT")
    root = make_tree(tmp_path / "MedNIST", {c: 20 for c in classes}, ".jpeg")
    assert detect_layout(root) == "mednist"
    test = open_dataset(root, split="test", size=S)
    assert set(test.labels) <= {0, 1}
    assert all((lab == 0) == i.startswith("CXR/") for i, lab in zip(test.ids, test.labels))
    train = open_dataset(root, split="train", size=S, normal_classes=("HeadCT",))
    assert len(train) > 0 and all(i.startswith("HeadCT/") for i in train.ids)


def test_brain_mri_kaggle_layout(tmp_path):
    root = make_tree(tmp_path / "brain", {"Training/notumor": 20, "Testing/notumor": 3,
                                          "Testing/glioma": 4, "Testing/pituitary": 2})
    assert detect_layout(root) == "brain-mri"
    train, val, calib = (open_dataset(root, split=s, size=S) for s in ("train", "val", "calib"))
    assert len(train) + len(val) + len(calib) == 20
    test = open_dataset(root, split="test", size=S)
    assert len(test) == 9 and test.labels.sum() == 6


def test_folder_masks_can_be_used(tmp_path):
    root = tmp_path / "lesions"
    for i in range(3):
        write_image(root / "test" / "tumor" / "images" / f"t{i}.png", seed=i)
        write_mask(root / "test" / "tumor" / "masks" / f"t{i}.png", (0, 12, 0, 24))
        write_image(root / "test" / "normal" / f"n{i}.png", seed=10 + i)
    write_image(root / "train" / "normal" / "x.png")
    ds = FolderDataset(root, "test", size=S, use_masks=True)
    image, label, mask, sid = ds[ds.ids.index("test/tumor/images/t0.png")]
    assert label == 1 and mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
    assert mask[: S // 2].all() and not mask[S // 2:].any()
    assert not ds[ds.ids.index("test/normal/n0.png")].mask.any()


# --------------------------------------------------------------------------- CheXpert

CSV_HEAD = "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Cardiomegaly,Pleural Effusion,Support Devices\n"


@pytest.fixture
def chexpert(tmp_path) -> Path:
    root = tmp_path / "chest"
    base = root / "CheXpert-v1.0-small"
    rows_train, rows_valid = [], []
    for i in range(24):
        rel = f"CheXpert-v1.0-small/train/patient{i:05d}/study1/view1_frontal.jpg"
        write_image(root / rel, seed=i, fmt="JPEG")
        sex = "Male" if i % 2 else "Female"
        finding = "1.0,," if i < 16 else ",1.0,"
        rows_train.append(f"{rel},{sex},50,Frontal,AP,{finding},\n")
    lateral = "CheXpert-v1.0-small/train/patient00000/study1/view2_lateral.jpg"
    write_image(root / lateral, fmt="JPEG")
    rows_train.append(f"{lateral},Male,50,Lateral,,1.0,,,\n")
    for i in range(6):
        rel = f"CheXpert-v1.0-small/valid/patient{60000 + i}/study1/view1_frontal.jpg"
        write_image(root / rel, seed=100 + i, fmt="JPEG")
        finding = "1.0,0.0,0.0" if i < 2 else "0.0,1.0,0.0" if i < 5 else "0.0,0.0,-1.0"
        rows_valid.append(f"{rel},Female,60,Frontal,PA,{finding},0.0\n")
    (base / "train.csv").write_text(CSV_HEAD + "".join(rows_train))
    (base / "valid.csv").write_text(CSV_HEAD + "".join(rows_valid))
    return root


def test_chexpert_csv_mode(chexpert):
    assert detect_layout(chexpert) == "chexpert"
    train = open_dataset(chexpert, split="train", size=S)
    val = open_dataset(chexpert, split="val", size=S)
    calib = open_dataset(chexpert, split="calib", size=S)
    assert isinstance(train, CheXpertDataset)
    assert len(train) + len(val) + len(calib) == 16  # frontal "No Finding" rows; the lateral view is dropped
    assert all("lateral" not in i for i in train.ids + val.ids)
    test = open_dataset(chexpert, split="test", size=S)
    assert len(test) == 5 and test.labels.tolist().count(1) == 3  # uncertain-only row excluded
    assert test[0].image.shape == (S, S)
    # the CheXpert-v1.0-small folder itself also works as root
    inner = CheXpertDataset(chexpert / "CheXpert-v1.0-small", "test", S)
    assert inner.ids == test.ids and inner[0].image.shape == (S, S)
    males = [CheXpertDataset(chexpert, s, S, sex="male", val_fraction=0.0) for s in ("train", "calib")]
    assert len(males[0]) + len(males[1]) == 8


def test_chexpert_simple_split_lists(chexpert):
    d = chexpert / "splits"
    d.mkdir()
    rel = [f"CheXpert-v1.0-small/train/patient{i:05d}/study1/view1_frontal.jpg" for i in range(24)]
    (d / "train.txt").write_text("# normal training images\n" + "\n".join(rel[:12]) + "\n\n")
    (d / "test_normal.txt").write_text("\n".join(rel[12:16]))
    (d / "test_abnormal.txt").write_text("\n".join(rel[16:21]))
    train, val, calib = (open_dataset(chexpert, split=s, size=S) for s in ("train", "val", "calib"))
    assert len(train) + len(val) + len(calib) == 12 and set(train.ids).isdisjoint(val.ids)
    test = open_dataset(chexpert, split="test", size=S)
    assert len(test) == 9 and test.labels.sum() == 5
    (d / "val.txt").write_text("\n".join(rel[10:12]))
    assert open_dataset(chexpert, split="val", size=S).ids == rel[10:12]
    calib = open_dataset(chexpert, split="calib", size=S).ids
    assert len(open_dataset(chexpert, split="train", size=S)) == 10 - len(calib)
    assert not set(calib) & set(rel[10:12])
    (d / "val.txt").unlink()
    (d / "train.txt").write_text("elsewhere/patient1/view1_frontal.jpg\nelsewhere/patient2/view1_frontal.jpg\n")
    with pytest.raises(DataError, match="were not found under"):
        len(open_dataset(chexpert, split="val", size=S))


def test_chexpert_upd_study_lists(chexpert):
    base = chexpert / "CheXpert-v1.0-small"
    rel = [f"CheXpert-v1.0-small/train/patient{i:05d}/study1/view1_frontal.jpg" for i in range(24)]
    (base / "normal_splits").mkdir()
    (base / "anomal_splits").mkdir()
    (base / "normal_splits" / "male_normal_train_AP_no_sup_14.txt").write_text("\n".join(rel[:14]))
    (base / "normal_splits" / "female_normal_train_AP_no_sup_3.txt").write_text("\n".join(rel[14:17]))
    (base / "anomal_splits" / "male_anomal_enlarged_AP_no_sup_5.txt").write_text("\n".join(rel[17:22]))
    test = CheXpertDataset(chexpert, "test", S, n_test=4)
    assert sorted(test.ids) == sorted(rel[:4] + rel[17:21]) and test.labels.sum() == 4
    train, calib = (CheXpertDataset(chexpert, s, S, n_test=4, val_fraction=0.0) for s in ("train", "calib"))
    assert sorted(train.ids + calib.ids) == sorted(rel[4:14]) and not set(train.ids) & set(calib.ids)
    both = [CheXpertDataset(chexpert, s, S, n_test=1, sex="both", val_fraction=0.0) for s in ("train", "calib")]
    assert len(both[0]) + len(both[1]) == 4  # both lists cut to 3 lines, minus 1 test line each
    with pytest.raises(DataError, match="no UPD split list matching"):
        _ = CheXpertDataset(chexpert, "train", S, support_devices=True).records


# --------------------------------------------------------------------------- volumes

def write_volume(folder: Path, name: str, lesion: bool, depth: int = 10,
                 modalities: tuple[str, ...] = ("_t2", "_t1")) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    x = np.zeros((24, 24, depth), np.float32)
    yy, xx = np.mgrid[0:24, 0:24]
    brain = (yy - 12) ** 2 + (xx - 12) ** 2 < 81
    rng = np.random.default_rng(len(name))
    for z in range(1, depth - 1):  # first and last slice are empty
        x[..., z][brain] = 100 + 20 * rng.random(brain.sum())
    seg = np.zeros(x.shape, np.uint8)
    if lesion:
        seg[8:14, 8:14, 4:7] = 2  # BraTS-style label value
        x[8:14, 8:14, 4:7] = 300
    for k, mod in enumerate(modalities):
        nib.save(nib.Nifti1Image(x * (1 + k), np.eye(4)), folder / f"{name}{mod}.nii.gz")
    if lesion:
        nib.save(nib.Nifti1Image(seg, np.eye(4)), folder / f"{name}_seg.nii.gz")


def test_brats_like_volumes_to_slices(tmp_path):
    root = tmp_path / "brats"
    for k in range(3):
        write_volume(root / f"BraTS_{k:03d}", f"BraTS_{k:03d}", lesion=True)
    assert detect_layout(root) == "volumes"
    ds = open_dataset(root, split="test", size=S)
    assert isinstance(ds, VolumeSliceDataset)
    assert len(ds.volumes) == 3 and ds.image_pattern == "*_t2.nii*"
    assert all(v.mask is not None for v in ds.volumes)
    assert len(ds) == 3 * 8  # empty first/last slices skipped
    assert ds.labels.sum() == 3 * 3
    sample = ds[ds.labels.tolist().index(1)]
    assert sample.image.shape == (S, S) and sample.mask.shape == (S, S)
    assert set(np.unique(sample.mask)) == {0.0, 1.0}
    assert sample.image[sample.mask > 0].mean() > sample.image[sample.mask == 0].mean()
    assert sample.id.endswith("#004") and "_t2.nii.gz" in sample.id
    assert not ds[0].mask.any() and ds[0].label == 0
    limited = open_dataset(root, split="test", size=S, slice_range=(3, 6), skip_empty=False)
    assert len(limited) == 3 * 3 and limited.labels.sum() == 3 * 2
    assert len(open_dataset(root, split="test", size=S, skip_empty=False)) == 30
    x, y, m, ids = load_arrays(ds, progress=False)
    assert x.shape == (24, S, S) and m.shape == x.shape and (m.reshape(24, -1).any(1) == y).all()


def test_normal_volumes_split_by_subject(tmp_path):
    root = tmp_path / "camcan"
    for k in range(12):
        write_volume(root / f"sub-CC{k:04d}" / "anat", f"sub-CC{k:04d}", lesion=False,
                     modalities=("_T2w", "_T1w"))
    ds = {s: VolumeSliceDataset(root, s, S, preset="camcan", val_fraction=0.3)
          for s in ("train", "val", "calib")}
    vols = {s: {v.id for v in d.volumes} for s, d in ds.items()}
    assert vols["train"].isdisjoint(vols["val"]) and vols["calib"].isdisjoint(vols["train"] | vols["val"])
    assert len(vols["train"] | vols["val"] | vols["calib"]) == 12
    assert not ds["train"].has_masks and ds["train"][0].mask is None
    assert all(i.split("#")[0] in vols["val"] for i in ds["val"].ids)


def test_volume_pattern_errors(tmp_path):
    root = tmp_path / "v"
    write_volume(root / "s1", "s1", lesion=True)
    with pytest.raises(DataError, match="matches the image pattern"):
        _ = VolumeSliceDataset(root, "test", S, image_pattern="*_flair.nii*").volumes
    with pytest.raises(DataError, match="no mask matches"):
        _ = VolumeSliceDataset(root, "test", S, image_pattern="*_t2.nii*",
                               mask_pattern="*_mask.nii*").volumes
    with pytest.raises(DataError, match="unknown volume preset"):
        VolumeSliceDataset(root, "test", S, preset="nope")


# --------------------------------------------------------------------------- DDR

def test_ddr_grading_and_lesion_segmentation(tmp_path):
    root = tmp_path / "DDR-dataset"
    g = root / "DR_grading"
    lines = []
    for i in range(20):
        name = f"007-{i:04d}-000.jpg"
        write_image(g / "train" / name, seed=i, fmt="JPEG")
        lines.append(f"{name} {0 if i < 15 else 2 if i < 19 else 5}")
    (g / "train.txt").write_text("\n".join(lines) + "\n")
    test_lines = []
    for i in range(6):
        name = f"t{i}.jpg"
        write_image(g / "test" / name, seed=50 + i, fmt="JPEG")
        test_lines.append(f"{name} {0 if i < 4 else 3}")
    (g / "test.txt").write_text("\n".join(test_lines))
    les = root / "lesion_segmentation" / "test"
    for i in range(3):
        write_image(les / "image" / f"l{i}.jpg", seed=80 + i, fmt="JPEG")
        write_mask(les / "label" / "EX" / f"l{i}.tif", (0, 6, 0, 24))
        write_mask(les / "label" / "HE" / f"l{i}.tif", (18, 24, 0, 24))
    assert detect_layout(root) == "ddr"
    train, val, calib = (open_dataset(root, split=s, size=S) for s in ("train", "val", "calib"))
    assert isinstance(train, DDRDataset)
    assert len(train) + len(val) + len(calib) == 15 and (train.labels == 0).all()
    test = open_dataset(root, split="test", size=S)
    assert len(test) == 4 + 3 and test.labels.sum() == 3
    s = test[test.ids.index("lesion_segmentation/test/image/l1.jpg")]
    assert s.label == 1 and s.mask[:4].all() and s.mask[-4:].all() and not s.mask[10:20].any()
    assert not test[test.ids.index("DR_grading/test/t0.jpg")].mask.any()
    grading_only = DDRDataset(g, "test", S)
    assert len(grading_only) == 6 and grading_only.labels.sum() == 2
    assert grading_only[0].mask is None


def test_ddr_lesion_only_has_no_training_images(tmp_path):
    root = tmp_path / "seg"
    write_image(root / "image" / "a.jpg", fmt="JPEG")
    write_mask(root / "label" / "a.png", (0, 4, 0, 4))
    assert detect_layout(root) == "ddr"
    assert len(open_dataset(root, split="test", size=S)) == 1
    with pytest.raises(DataError, match="only abnormal images"):
        _ = open_dataset(root, split="train", size=S).records


# --------------------------------------------------------------------------- errors

def test_clear_data_errors(tmp_path, kermany):
    with pytest.raises(DataError, match="not found"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(DataError, match="unknown dataset layout 'xray'.*kermany"):
        open_dataset(kermany, layout="xray")
    with pytest.raises(DataError, match="unknown split"):
        open_dataset(kermany, split="training")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="cannot tell the layout.*expected one of"):
        open_dataset(tmp_path / "empty")
    no_test = make_tree(tmp_path / "nt", {"train/NORMAL": 3, "train/PNEUMONIA": 1})
    with pytest.raises(DataError, match="no test folder"):
        _ = open_dataset(no_test, split="test", layout="kermany").records
    odd = make_tree(tmp_path / "odd", {"train/cats": 3, "test/cats": 1})
    with pytest.raises(DataError, match="no normal class folder.*normal_classes"):
        _ = open_dataset(odd, layout="folders").records
    empty_classes = tmp_path / "ec"
    (empty_classes / "train" / "NORMAL").mkdir(parents=True)
    (empty_classes / "train" / "PNEUMONIA").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        len(open_dataset(empty_classes, layout="kermany"))
    with pytest.raises(DataError, match="does not take that option"):
        open_dataset(kermany, preset="brats")


# --------------------------------------------------------------------------- cache

def _count_decodes(monkeypatch) -> list[int]:
    calls = [0]
    real = data_base.load_image

    def counting(*a, **k):
        calls[0] += 1
        return real(*a, **k)

    monkeypatch.setattr(data_base, "load_image", counting)
    return calls


def test_cache_hit_does_not_decode_again(kermany, monkeypatch, tmp_path):
    calls = _count_decodes(monkeypatch)
    ds = open_dataset(kermany, split="test", size=S)
    x1, y1, m1, ids1 = load_arrays(ds, progress=False)
    assert calls[0] == len(ds) == 10
    assert x1.dtype == np.float32 and x1.shape == (10, S, S) and y1.dtype == np.int64 and m1 is None
    assert ids1 == ds.ids and (y1 == ds.labels).all()
    x2, y2, m2, ids2 = load_arrays(open_dataset(kermany, split="test", size=S), progress=False)
    assert calls[0] == 10  # served from the cache
    assert np.abs(x1 - x2).max() <= 2.5e-4 and (y1 == y2).all() and ids1 == ids2
    files = list(Path(os.environ["UPD_CACHE_DIR"]).glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith("cxr-kermany-test-32-")
    assert not list(Path(os.environ["UPD_CACHE_DIR"]).glob("*.tmp"))
    # a new file changes the key: decoded again
    write_image(kermany / "test" / "NORMAL" / "new.jpeg", seed=99)
    x3, *_ = load_arrays(open_dataset(kermany, split="test", size=S), progress=False)
    assert len(x3) == 11 and calls[0] == 10 + 11
    # explicit cache_dir, and use_cache=False
    load_arrays(ds, cache_dir=tmp_path / "c2", progress=False)
    assert len(list((tmp_path / "c2").glob("*.npz"))) == 1
    before = calls[0]
    load_arrays(ds, use_cache=False, progress=False)
    assert calls[0] == before + len(ds)
    assert x1[0] == pytest.approx(ds[0].image, abs=2.5e-4)  # per-sample decoding, float16-rounded
    assert (x1 == x2).all()  # first decode and cache hit give the very same numbers (reproducible runs)


def test_corrupt_cache_is_rebuilt(kermany, monkeypatch):
    ds = open_dataset(kermany, split="test", size=S)
    x1, *_ = load_arrays(ds, progress=False)
    path = cache_path(ds, cache_key(ds))
    assert path.exists()
    path.write_bytes(b"this is not an npz file")
    calls = _count_decodes(monkeypatch)
    with pytest.warns(UserWarning, match="rebuilding unreadable cache"):
        x2, *_ = load_arrays(ds, progress=False)
    assert calls[0] == len(ds) and np.abs(x1 - x2).max() <= 2.5e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_arrays(ds, progress=False)  # the rebuilt cache is valid again
    assert calls[0] == len(ds)


def test_bad_files_are_skipped_with_a_warning(kermany):
    (kermany / "test" / "NORMAL" / "broken.png").write_text("<html>not an image</html>")
    ds = open_dataset(kermany, split="test", size=S)
    assert len(ds) == 11
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 unreadable file.*broken\.png"):
        x, y, _, ids = load_arrays(ds, progress=False)
    assert len(x) == 10 and "test/NORMAL/broken.png" not in ids
    with pytest.warns(UserWarning, match="broken.png"):  # still reported on a cache hit
        load_arrays(ds, progress=False)
    all_bad = tmp_tree = kermany.parent / "bad"
    for cls in ("NORMAL", "PNEUMONIA"):
        (tmp_tree / "test" / cls).mkdir(parents=True)
        (tmp_tree / "test" / cls / "x.jpeg").write_bytes(b"")
    (tmp_tree / "train" / "NORMAL").mkdir(parents=True)
    with pytest.raises(DataError, match="none of the 2 images"):
        load_arrays(open_dataset(all_bad, split="test", size=S), progress=False)


# --------------------------------------------------------------------------- real data

def shared_data() -> Path | None:
    from upd_core.paths import data_root

    root = data_root()  # $UPD_DATA_ROOT, else ../shared/data, as everywhere else
    return root if (root / "cxr-kermany").is_dir() else None


@pytest.mark.skipif(shared_data() is None, reason="../shared/data not present "
                    "(set UPD_DATA_ROOT to the folder that holds cxr-kermany/)")
def test_shared_kermany_is_auto_detected():
    root = shared_data() / "cxr-kermany"  # type: ignore[operator]
    assert detect_layout(root) == "kermany"
    train = open_dataset(root, split="train", size=64)
    val = open_dataset(root, split="val", size=64)
    calib = open_dataset(root, split="calib", size=64)
    test = open_dataset(root, split="test", size=64)
    n_normal = len([p for p in (root / "train" / "NORMAL").iterdir() if not p.name.startswith(".")])
    assert len(train) + len(val) + len(calib) == n_normal and set(train.ids).isdisjoint(val.ids)
    assert 0.05 < len(calib) / n_normal < 0.15 and set(calib.ids).isdisjoint(set(train.ids) | set(val.ids))
    assert 0.05 < len(val) / n_normal < 0.15 and (val.labels == 0).all()
    assert (train.labels == 0).all()
    assert int((test.labels == 0).sum()) == 234 and int((test.labels == 1).sum()) == 390
    image, label, mask, sid = test[0]
    assert image.shape == (64, 64) and label == 0 and mask is None and sid.startswith("test/NORMAL/")
