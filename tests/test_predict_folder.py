"""`python -m upd_core predict --folder DIR --out results.csv`: batch scoring into a table.

Generated images (PNG in sub-folders, NPY, NIfTI) and a tiny freshly trained checkpoint; the
scores and percentiles are those of single-image predict, a bad file is an error row, a killed or
repeated run resumes, several checkpoints give a column pair each, Parquet when pyarrow is there.
"""
from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.methods.test_contract import smooth_images
from upd_core import batch_predict
from upd_core.checkpoint import load_detector
from upd_core.cli import main
from upd_core.imaging import load_image
from upd_core.registry import get_method
from upd_core.training import TrainConfig, fit


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ck") / "tiny-ae"
    x = smooth_images(12)
    fit(get_method("spatial-ae")(image_size=32), x[:8], x[8:], out,
        tc=TrainConfig(max_epochs=1, batch_size=4, progress=False))
    return out


def _png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((img * 255).astype(np.uint8)).save(path)


def _folder(root: Path, n: int = 4, bad: bool = True) -> Path:
    """n PNGs in two sub-folders, an NPY, a NIfTI, a broken 'PNG' and a text file (not an image)."""
    import nibabel as nib

    imgs = smooth_images(n + 2, 48, seed=3)
    for i in range(n):
        _png(root / f"sub{i % 2}" / f"img{i}.png", imgs[i])
    np.save(root / "array.npy", imgs[n])
    nib.save(nib.Nifti1Image(imgs[n + 1][:, :, None], np.eye(4)), str(root / "scan.nii.gz"))
    if bad:
        (root / "broken.png").write_bytes(b"not an image at all")
    (root / "notes.txt").write_text("not scored")
    return root


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _run(folder: Path, out: Path, *ckpts: Path, extra: tuple[str, ...] = ()) -> int:
    args = ["predict", "--folder", str(folder), "--out", str(out), "--quiet", "--workers", "0", *extra]
    for c in ckpts:
        args += ["--checkpoint", str(c)]
    return main(args)


def test_every_image_is_scored_as_single_image_predict_scores_it(ckpt, tmp_path, capsys):
    folder = _folder(tmp_path / "images")
    out = tmp_path / "results.csv"
    assert _run(folder, out, ckpt, extra=("--workers", "1", "--batch-size", "3")) == 0
    assert "Scored 7 file(s) (1 unreadable, 0 already in the table)" in capsys.readouterr().out
    rows = {r["path"]: r for r in _rows(out)}
    assert sorted(rows) == ["array.npy", "broken.png", "scan.nii.gz", "sub0/img0.png", "sub0/img2.png",
                            "sub1/img1.png", "sub1/img3.png"]
    label = str(ckpt)
    assert list(_rows(out)[0]) == ["path", "error", f"score:{label}", f"percentile:{label}",
                                   "out_of_distribution", "domain_probability"]
    bad = rows.pop("broken.png")
    assert bad["error"] and bad[f"score:{label}"] == "" and bad["out_of_distribution"] == ""
    det = load_detector(ckpt)
    for rel, row in rows.items():
        pred = det.predict(load_image(folder / rel, size=det.image_size)[None])
        assert row["error"] == ""
        assert float(row[f"score:{label}"]) == pytest.approx(float(pred.score[0]), rel=1e-5)
        assert float(row[f"percentile:{label}"]) == pytest.approx(float(pred.percentile[0]), abs=1e-6)
    # the out-of-distribution level of single-image predict (--json), for one image
    assert main(["predict", str(folder / "sub0" / "img0.png"), "--checkpoint", str(ckpt), "--out",
                 str(tmp_path / "heat"), "--json"]) == 0
    single = json.loads(capsys.readouterr().out.split("\n", 1)[1])[0]["out_of_distribution"]
    assert rows["sub0/img0.png"]["out_of_distribution"] == single["level"]
    prob = single["domain_probability_chest_xray"]
    got = rows["sub0/img0.png"]["domain_probability"]
    assert (got == "") if prob is None else float(got) == pytest.approx(prob, abs=1e-3)


def test_a_rerun_resumes_after_a_kill_and_skips_what_is_scored(ckpt, tmp_path, monkeypatch, capsys):
    folder = _folder(tmp_path / "images", bad=False)
    out = tmp_path / "r.csv"
    real = batch_predict._score_batch
    calls = {"n": 0}

    def killed_on_the_third_batch(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(batch_predict, "_score_batch", killed_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        _run(folder, out, ckpt, extra=("--batch-size", "2"))
    first = _rows(out)
    assert len(first) == 4  # two batches written before the kill
    with out.open("a") as f:
        f.write("sub9/half-written.png,,0.1")  # a kill in the middle of a row
    monkeypatch.setattr(batch_predict, "_score_batch", real)
    assert _run(folder, out, ckpt, extra=("--batch-size", "2")) == 0
    assert "Scored 2 file(s) (0 unreadable, 4 already in the table)" in capsys.readouterr().out
    rows = _rows(out)
    assert rows[:4] == first and len(rows) == 6 and len({r["path"] for r in rows}) == 6
    _png(folder / "sub0" / "new.png", smooth_images(1, 48, seed=9)[0])  # a new image: only it is scored
    assert _run(folder, out, ckpt) == 0
    assert "Scored 1 file(s) (0 unreadable, 6 already in the table)" in capsys.readouterr().out
    assert _rows(out)[-1]["path"] == "sub0/new.png"


def test_several_checkpoints_give_a_column_pair_each(ckpt, tmp_path, capsys):
    other = tmp_path / "copy-of-tiny-ae"
    shutil.copytree(ckpt, other)
    folder = _folder(tmp_path / "images", n=2, bad=False)
    out = tmp_path / "two.csv"
    assert _run(folder, out, ckpt, other) == 0
    rows = _rows(out)
    for label in (str(ckpt), str(other)):
        assert all(r[f"score:{label}"] and r[f"percentile:{label}"] for r in rows)
    assert rows[0][f"score:{ckpt}"] == rows[0][f"score:{other}"]  # the same weights
    capsys.readouterr()
    assert _run(folder, out, ckpt) == 2  # resuming with other checkpoints is refused in one line
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "other checkpoints" in err


def test_parquet_tables_resume_too(ckpt, tmp_path, capsys):
    pq = pytest.importorskip("pyarrow.parquet")
    folder = _folder(tmp_path / "images", n=2)
    out = tmp_path / "results.parquet"
    assert _run(folder, out, ckpt) == 0
    assert not (tmp_path / "results.parquet.partial.csv").exists()
    table = pq.read_table(out).to_pylist()
    assert len(table) == 5 and sum(r["error"] is not None for r in table) == 1
    assert all(isinstance(r[f"score:{ckpt}"], float) for r in table if r["error"] is None)
    _png(folder / "late.png", smooth_images(1, 48, seed=4)[0])
    assert _run(folder, out, ckpt) == 0
    assert "Scored 1 file(s)" in capsys.readouterr().out
    assert [r["path"] for r in pq.read_table(out).to_pylist()][:5] == [r["path"] for r in table]


def test_clear_one_line_errors(ckpt, tmp_path, capsys, monkeypatch):
    folder = _folder(tmp_path / "images", n=1)
    cases = [(["--out", str(tmp_path / "r.xlsx")], ".csv or .parquet"),
             (["--out", str(tmp_path / "r.csv"), str(folder / "array.npy")], "not both"),
             ([], "--out results.csv")]
    for extra, text in cases:
        assert main(["predict", "--folder", str(folder), "--checkpoint", str(ckpt), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and text in err, err
    assert main(["predict", "--folder", str(tmp_path / "empty"), "--checkpoint", str(ckpt), "--out",
                 str(tmp_path / "r.csv")]) == 2
    assert "not a folder" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if pyarrow were not installed
    assert main(["predict", "--folder", str(folder), "--checkpoint", str(ckpt), "--out",
                 str(tmp_path / "r.parquet")]) == 2
    assert "needs pyarrow" in capsys.readouterr().err
    assert main(["predict", str(folder / "array.npy"), "--checkpoint", str(ckpt), "--checkpoint", str(ckpt)]) == 2
    assert "one --checkpoint for image files" in capsys.readouterr().err


def test_image_files_are_found_recursively(tmp_path):
    _folder(tmp_path)
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "x.png").write_bytes(b"")
    (tmp_path / "DICOMFILE").write_bytes(b"")  # suffix-less or numeric-suffix files are DICOM candidates
    (tmp_path / "1.2.840.10008.5").write_bytes(b"")
    names = [p.relative_to(tmp_path).as_posix() for p in batch_predict.image_paths(tmp_path)]
    assert names == ["1.2.840.10008.5", "DICOMFILE", "array.npy", "broken.png", "scan.nii.gz", "sub0/img0.png", "sub0/img2.png",
                     "sub1/img1.png", "sub1/img3.png"]
    assert batch_predict.default_workers() >= 0
