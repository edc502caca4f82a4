"""Score every image of a folder with one or more checkpoints into a CSV or Parquet table.

`python -m upd_core predict --folder DIR --out results.csv`: images are found recursively (the
suffixes `upd_core.imaging` reads, plus files without a suffix or with a numeric one, as DICOM
files often are), decoded by a torch DataLoader with worker processes, and scored in batches with
`Detector.predict`, so the score and percentile of each image are those single-image `predict`
gives (the checkpoint's calibration percentiles). Columns, one row per file:

    path                  the file, relative to DIR (the key of a resume)
    error                 empty, or why the file could not be read (the row has no scores)
    score:<ckpt>          one pair per --checkpoint (`<id>` or `<id>@<variant>`)
    percentile:<ckpt>     vs the checkpoint's normal reference scores (empty when it has none)
    out_of_distribution   the level single-image predict warns with (ok / unusual / far / unknown)
    domain_probability    the domain classifier's P(chest X-ray) (empty when none is shipped)

Rows are appended and flushed after every batch, so a kill loses at most one batch; running the
same command again skips every path already in the table (rows with an error included: delete
them to retry) and appends the rest. A Parquet table is journaled in `<out>.partial.csv` and
written atomically when the run ends.
"""
from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from .data.base import IMAGE_EXTENSIONS, NIFTI_SUFFIXES
from .detector import Detector, Prediction
from .errors import DataError, ImageError, UPDError

SUFFIXES = frozenset(IMAGE_EXTENSIONS | {".npy", ".nii"})
FORMATS = (".csv", ".parquet")
OOD_COLUMNS = ("out_of_distribution", "domain_probability")


@dataclass
class FolderSummary:
    """What one run did: rows written now, of them unreadable files, and rows found from before."""

    out: Path
    scored: int = 0
    errors: int = 0
    skipped: int = 0


def default_workers() -> int:
    """Decoding processes: one per CPU core but one (kept for inference), at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(0, min(8, cores - 1))


def _looks_like_image(name: str) -> bool:
    """A suffix imaging reads, or none / a number (DICOM files are often named IM0001 or by UID)."""
    suffix = Path(name).suffix
    return suffix in SUFFIXES or name.endswith(NIFTI_SUFFIXES) or not suffix or suffix[1:].isdigit()


def image_paths(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively and sorted; hidden files and folders skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and _looks_like_image(name.lower()):
                out.append(Path(dirpath) / name)
    return out


def result_columns(labels: Sequence[str]) -> list[str]:
    """The table's columns for checkpoints labelled `labels`."""
    return ["path", "error", *(f"{kind}:{lab}" for lab in labels for kind in ("score", "percentile")), *OOD_COLUMNS]


def _is_float_column(name: str) -> bool:
    return name.startswith(("score:", "percentile:")) or name == "domain_probability"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, ImageError) and text else f"{type(exc).__name__}: {text}"


class FolderImages(Dataset):
    """Files decoded at each needed model size; a file that cannot be read yields its error."""

    def __init__(self, root: Path, paths: Sequence[Path], sizes: Sequence[int]) -> None:
        self.root, self.paths, self.sizes = root, list(paths), sorted(set(sizes))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[str, dict[int, np.ndarray] | None, str | None]:
        from .imaging import load_image

        path = self.paths[i]
        rel = path.relative_to(self.root).as_posix()
        try:
            return rel, {s: load_image(path, size=s) for s in self.sizes}, None
        except Exception as exc:  # noqa: BLE001 - a bad file is a row, never the end of the run
            return rel, None, _one_line(exc)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)  # decoding is numpy/PIL; the cores are the workers


def _one(pred: Prediction, j: int) -> Prediction:
    """Image j of a batch's Prediction, as a batch of one."""
    fields = {}
    for f in dataclasses.fields(pred):
        v = getattr(pred, f.name)
        fields[f.name] = ({k: a[j:j + 1] for k, a in v.items()} if isinstance(v, dict)
                          else None if v is None else v[j:j + 1])
    return Prediction(**fields)


# ------------------------------------------------------------------ the results table

def _journal(out: Path) -> Path:
    return out if out.suffix.lower() == ".csv" else out.with_name(out.name + ".partial.csv")


def _check_format(out: Path) -> None:
    if out.suffix.lower() not in FORMATS:
        raise UPDError(f"--out {out}: the results table must end in .csv or .parquet")
    if out.suffix.lower() == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UPDError(f"--out {out}: Parquet needs pyarrow (pip install pyarrow); or write a .csv") from None


def _repair_tail(path: Path) -> None:
    """Drop a half-written last line (a kill during a write)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def _read_csv(path: Path, columns: list[str]) -> list[dict[str, Any]]:
    if not path.is_file() or path.stat().st_size == 0:
        return []
    _repair_tail(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        _check_columns(path, reader.fieldnames or [], columns)
        return [{k: (None if v == "" else float(v) if _is_float_column(k) else v) for k, v in row.items()}
                for row in reader]


def _check_columns(path: Path, found: Sequence[str], columns: list[str]) -> None:
    if list(found) != columns:
        raise UPDError(f"{path} holds results of other checkpoints (columns {', '.join(found)}); give the same "
                       "--checkpoint list to resume it, or another --out")


def _read_parquet(path: Path, columns: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    _check_columns(path, table.column_names, columns)
    return table.to_pylist()


def _write_parquet(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """The whole table, atomically (a temporary file, then rename)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.float64() if _is_float_column(c) else pa.string()) for c in columns])
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
    os.replace(tmp, path)


class _Appender:
    """Appends rows to the CSV journal, flushed and synced after every batch."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        new = not path.is_file() or path.stat().st_size == 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        self.columns = columns
        if new:
            self.writer.writerow(columns)

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.writer.writerow(["" if row.get(c) is None else repr(row[c]) if isinstance(row[c], float) else row[c]
                                  for c in self.columns])
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()


# ------------------------------------------------------------------ scoring

def _label(det: Detector, checkpoint: str) -> str:
    """The checkpoint as single-image predict names it (`<id>` or `<id>@<variant>`)."""
    from .checkpoint import split_variant

    variant = split_variant(checkpoint)[1]
    return f"{det.checkpoint_id}@{variant}" if variant else det.checkpoint_id


def _score_batch(dets: list[tuple[str, Detector]], items: list, domain: Any, batch_size: int) -> list[dict]:
    """Rows of one DataLoader batch: scores and percentiles per checkpoint, the OOD check of
    single-image predict (domain classifier, else the scores against the normal references)."""
    from .app.analysis import ood_check, result_from_prediction

    rows = [{"path": rel, "error": err} for rel, _, err in items]
    ok = [(row, imgs) for row, (_, imgs, err) in zip(rows, items) if err is None]
    if not ok:
        return rows
    results: list[list] = [[] for _ in ok]
    for label, det in dets:
        x = np.stack([imgs[det.image_size] for _, imgs in ok])
        pred = det.predict(x, batch_size=batch_size)
        for j, (row, _) in enumerate(ok):
            row[f"score:{label}"] = float(pred.score[j])
            row[f"percentile:{label}"] = None if pred.percentile is None else float(pred.percentile[j])
            results[j].append(result_from_prediction(det, x[j], _one(pred, j), label))
    first = dets[0][1].image_size  # the image single-image predict gives the domain classifier
    probs = None if domain is None else domain.chest_probability(np.stack([imgs[first] for _, imgs in ok]))
    for j, (row, _) in enumerate(ok):
        p = None if probs is None else float(probs[j])
        row["out_of_distribution"] = ood_check(results[j], p).level
        row["domain_probability"] = p
    return rows


def score_folder(folder: str | Path, checkpoints: Sequence[str], out: str | Path, *, batch_size: int = 32,
                 workers: int | None = None, device: str | None = None, progress: bool = True) -> FolderSummary:
    """Score every image under `folder` with each checkpoint into the table `out` (.csv or
    .parquet), resuming a table left by an earlier (or killed) run; see the module doc."""
    from .checkpoint import load_detector
    from .domain import load_domain_classifier

    folder, out = Path(folder), Path(out)
    _check_format(out)
    if not folder.is_dir():
        raise DataError(f"--folder {folder} is not a folder")
    if batch_size < 1:
        raise UPDError(f"--batch-size must be at least 1, got {batch_size}")
    if not checkpoints:
        raise UPDError("give at least one --checkpoint")
    dets: list[tuple[str, Detector]] = []
    for cid in dict.fromkeys(checkpoints):
        det = load_detector(cid, device=device)
        dets.append((_label(det, cid), det))
    labels = [lab for lab, _ in dets]
    if len(set(labels)) < len(labels):
        raise UPDError(f"--checkpoint: two checkpoints share a name ({', '.join(labels)})")
    columns = result_columns(labels)
    journal = _journal(out)
    done_rows = (_read_parquet(out, columns) if journal != out else []) + _read_csv(journal, columns)
    done = {r["path"] for r in done_rows}
    paths = image_paths(folder)
    if not paths:
        raise DataError(f"--folder {folder}: no image files in it (PNG, JPEG, TIFF, BMP, DICOM, NIfTI, NPY)")
    todo = [p for p in paths if p.relative_to(folder).as_posix() not in done]
    summary = FolderSummary(out, skipped=len(paths) - len(todo))
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise UPDError(f"--workers must be 0 or more, got {workers}")
    if todo:
        loader = DataLoader(FolderImages(folder, todo, [d.image_size for _, d in dets]), batch_size=batch_size,
                            num_workers=workers, collate_fn=list, worker_init_fn=_worker_init if workers else None)
        domain = load_domain_classifier()
        writer = _Appender(journal, columns)
        bar = tqdm(total=len(todo), unit="img", desc="scoring", disable=not progress)
        try:
            for items in loader:
                rows = _score_batch(dets, items, domain, batch_size)
                writer.write(rows)
                summary.scored += len(rows)
                summary.errors += sum(r["error"] is not None for r in rows)
                bar.update(len(rows))
        finally:
            bar.close()
            writer.close()
    if journal != out and journal.exists():  # Parquet: the earlier table and the journal, as one file
        _write_parquet(out, _read_parquet(out, columns) + _read_csv(journal, columns), columns)
        journal.unlink(missing_ok=True)
    return summary
