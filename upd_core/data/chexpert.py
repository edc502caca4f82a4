"""CheXpert chest X-rays: the UPD study's split lists, simple split lists, or the CSV alone.

`root` is the folder holding ``CheXpert-v1.0-small/`` (or that folder itself). Image paths in
lists and CSVs are relative, as CheXpert writes them (``CheXpert-v1.0-small/train/patient00001/
study1/view1_frontal.jpg``); they are resolved against `root`, its parent, or `root` with the
first path component dropped, whichever holds the first listed file.

Accepted sources, tried in this order:

1. Simple split lists, in ``<root>/splits/`` (or the folder passed as ``lists=``): plain text,
   one relative image path per line, blank lines and lines starting with ``#`` ignored::

       train.txt           normal training images (validation is a hashed 10 % of them,
                           unless val.txt exists)
       val.txt             optional: normal validation images
       test_normal.txt     normal test images
       test_abnormal.txt   abnormal test images

2. The UPD study's lists (Lagogiannis et al., github.com/iolag/UPD_study): folders
   ``normal_splits/`` and ``anomal_splits/`` (under root or root/CheXpert-v1.0-small) with
   ``{sex}_normal_train_{AP_}{no_sup_|sup_}<n>.txt`` and
   ``{sex}_anomal_{pathology}_{AP_}{no_sup_|sup_}<n>.txt``. As in the study, the first `n_test`
   (200) lines of the normal list are the normal test images and the rest are training images;
   the first `n_test` lines of the abnormal list are the abnormal test images. ``sex="both"``
   uses the male and female lists, cut to the same length.

3. The CSVs alone (``train.csv`` for train/val, ``valid.csv`` for test): frontal views only;
   normal = "No Finding" is 1; abnormal (test only) = any finding other than "Support Devices"
   is 1 while "No Finding" is not. Uncertain (-1) and blank labels count as absent. `sex`,
   `ap_only` and `support_devices` filter rows only when given.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from ..errors import DataError
from .base import FileDataset, Record, check_fraction, normal_part

SMALL = "CheXpert-v1.0-small"
_NON_FINDINGS = {"path", "sex", "age", "frontal/lateral", "ap/pa", "no finding", "support devices"}


def read_list(path: Path) -> list[str]:
    """Relative paths from a split-list file (one per line; blanks and # comments skipped)."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read split list {path}: {e}") from e
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def read_csv(path: Path) -> list[dict[str, str]]:
    """Rows of a CheXpert CSV; DataError when it lacks the Path / No Finding columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in reader.fieldnames or []]
            if "Path" not in fields or "No Finding" not in fields:
                raise DataError(f"{path} is not a CheXpert CSV: it needs the columns 'Path' and "
                                f"'No Finding' (found: {', '.join(fields[:8]) or 'none'})")
            return [{(k or "").strip(): (v or "").strip() for k, v in row.items()} for row in reader]
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from e


def _is_one(value: str) -> bool:
    try:
        return float(value) == 1.0
    except ValueError:
        return False


class CheXpertDataset(FileDataset):
    """CheXpert via split lists or CSV (see the module docstring for the accepted formats)."""

    layout = "chexpert"

    def __init__(self, root: str | os.PathLike, split: str = "train", size: int = 128, *,
                 lists: str | os.PathLike | None = None, sex: str | None = None,
                 ap_only: bool | None = None, support_devices: bool | None = None,
                 pathology: str = "enlarged", n_test: int = 200,
                 val_fraction: float = 0.1, seed: int = 0) -> None:
        super().__init__(root, split, size)
        if sex not in (None, "male", "female", "both"):
            raise DataError(f"sex must be 'male', 'female' or 'both', got {sex!r}")
        self.lists = Path(lists) if lists is not None else None
        # None = the source's default: the UPD study's lists use male / AP / no support devices;
        # the CSV source does not filter on these unless they are given.
        self.sex, self.ap_only, self.support_devices = sex, ap_only, support_devices
        self.pathology, self.n_test = pathology, int(n_test)
        self.val_fraction = check_fraction("val_fraction", val_fraction)
        self.seed = int(seed)
        self._index_files: list[Path] = []
        self._base: Path | None = None
        self._strip = False

    def cache_params(self) -> dict[str, Any]:
        return {"lists": str(self.lists), "sex": self.sex, "ap": self.ap_only,
                "sup": self.support_devices, "pathology": self.pathology, "n_test": self.n_test,
                "val": self.val_fraction, "seed": self.seed}

    def extra_files(self) -> list[Path]:
        _ = self.records
        return list(self._index_files)

    # -- path resolution
    def _find_base(self, rels: list[str]) -> None:
        """Where listed paths are relative to: root, its parent, or root minus the first part."""
        for rel in rels[:50]:
            parts = Path(rel).parts
            candidates = [(self.root, rel, False), (self.root.parent, rel, False)]
            if len(parts) > 1:
                candidates.append((self.root, str(Path(*parts[1:])), True))
            for base, r, strip in candidates:
                if (base / r).is_file():
                    self._base, self._strip = base, strip
                    return
        raise DataError(f"listed images such as {rels[0]!r} were not found under {self.root} "
                        f"(nor its parent): point root at the folder that contains {SMALL}/")

    def _resolve(self, rel: str) -> Path:
        assert self._base is not None
        return self._base / (str(Path(*Path(rel).parts[1:])) if self._strip else rel)

    def _make(self, rels: list[str], label: int) -> list[Record]:
        rels = list(dict.fromkeys(rels))
        if rels and self._base is None:
            self._find_base(rels)
        return [Record(rel, self._resolve(rel), label) for rel in rels]

    def _train_val(self, train: list[str], val: list[str] | None) -> list[str]:
        if val is not None:
            if self.split == "val":
                return val
            vs = set(val)
            rest = [r for r in train if r not in vs]
            chosen = normal_part(rest, self.split, 0.0, self.seed)  # calib from the rest
            return [r for r in rest if r in chosen]
        chosen = normal_part(train, self.split, self.val_fraction, self.seed)
        return [r for r in train if r in chosen]

    # -- sources
    def _find(self, *names: str) -> Path | None:
        for base in (self.root, self.root / SMALL):
            for n in names:
                if (base / n).exists():
                    return base / n
        return None

    def _build(self) -> list[Record]:
        simple = self.lists if self.lists is not None else self._find("splits")
        if simple is not None and any((simple / n).exists() for n in ("train.txt", "test_normal.txt")):
            return self._from_simple(simple)
        if self.lists is not None:
            raise DataError(f"no split lists in {self.lists}: expected train.txt, test_normal.txt "
                            "and test_abnormal.txt (one relative image path per line)")
        normal_dir = self._find("normal_splits")
        if normal_dir is not None:
            return self._from_upd(normal_dir, self._find("anomal_splits"))
        csv_name = "valid.csv" if self.split == "test" else "train.csv"
        csv_path = self._find(csv_name)
        if csv_path is not None:
            return self._from_csv(csv_path)
        raise DataError(f"no CheXpert index in {self.root}: expected splits/train.txt (+ "
                        "test_normal.txt, test_abnormal.txt), the UPD study's normal_splits/ and "
                        f"anomal_splits/ folders, or {csv_name}")

    def _list(self, folder: Path, name: str, required: bool = True) -> list[str] | None:
        p = folder / name
        if not p.exists():
            if required:
                raise DataError(f"split list {p} not found (one relative image path per line)")
            return None
        self._index_files.append(p)
        return read_list(p)

    def _from_simple(self, folder: Path) -> list[Record]:
        if self.split == "test":
            return (self._make(self._list(folder, "test_normal.txt") or [], 0)
                    + self._make(self._list(folder, "test_abnormal.txt") or [], 1))
        train = self._list(folder, "train.txt") or []
        val = self._list(folder, "val.txt", required=False)
        return self._make(self._train_val(train, val), 0)

    def _upd_files(self, folder: Path, kind: str) -> list[Path]:
        ap = "AP_" if self.ap_only in (None, True) else ""
        sup = "sup_" if self.support_devices else "no_sup_"
        sex = self.sex or "male"
        sexes = ("male", "female") if sex == "both" else (sex,)
        out = []
        for s in sexes:
            pattern = f"{s}_{kind}_{ap}{sup}*.txt"
            found = sorted(folder.glob(pattern))
            if not found:
                raise DataError(f"no UPD split list matching {pattern} in {folder}")
            out.append(found[0])
        return out

    def _upd_lines(self, files: list[Path]) -> list[list[str]]:
        self._index_files.extend(files)
        lists = [read_list(f) for f in files]
        n = min(len(x) for x in lists)
        return [x[:n] for x in lists] if len(lists) > 1 else lists

    def _from_upd(self, normal_dir: Path, anomal_dir: Path | None) -> list[Record]:
        normal = self._upd_lines(self._upd_files(normal_dir, "normal_train"))
        if self.split != "test":
            train = [r for lst in normal for r in lst[self.n_test:]]
            return self._make(self._train_val(train, None), 0)
        if anomal_dir is None:
            raise DataError(f"no anomal_splits/ folder next to {normal_dir}: the test split needs "
                            "the UPD study's abnormal lists")
        abnormal = self._upd_lines(self._upd_files(anomal_dir, f"anomal_{self.pathology}"))
        return (self._make([r for lst in normal for r in lst[:self.n_test]], 0)
                + self._make([r for lst in abnormal for r in lst[:self.n_test]], 1))

    def _from_csv(self, path: Path) -> list[Record]:
        self._index_files.append(path)
        rows = read_csv(path)
        normal, abnormal = [], []
        for row in rows:
            if row.get("Frontal/Lateral", "Frontal").lower() != "frontal":
                continue
            if self.sex in ("male", "female") and row.get("Sex", "").lower() != self.sex:
                continue
            if self.ap_only and row.get("AP/PA", "").upper() != "AP":
                continue
            if self.support_devices is not None and \
                    _is_one(row.get("Support Devices", "")) != self.support_devices:
                continue
            if _is_one(row.get("No Finding", "")):
                normal.append(row["Path"])
            elif any(_is_one(v) for k, v in row.items() if k.lower() not in _NON_FINDINGS):
                abnormal.append(row["Path"])
        if self.split == "test":
            return self._make(normal, 0) + self._make(abnormal, 1)
        return self._make(self._train_val(normal, None), 0)
