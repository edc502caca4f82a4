"""`python -m upd_core data prepare SOURCE ARCHIVE_OR_FOLDER`: check a downloaded data set, record
checksums, build the decoded cache, and say how to use it.

Sources (`SOURCES`): ``kermany`` (Kermany / ZhangLab pediatric chest X-rays), ``covid19``
(COVID-19 Radiography Database), ``chexpert`` (CheXpert-v1.0-small) and ``brats`` (BraTS 2021 or
2023 NIfTI volumes). ``ARCHIVE_OR_FOLDER`` is the file as downloaded (.zip, .tar, .tar.gz,
.tgz) or a folder it was unpacked into.

1. An archive is unpacked (members with absolute paths, ``..``, links or devices are refused)
   into ``--out`` (default: ``<data root>/<source folder>``, the data root being
   ``$UPD_DATA_ROOT`` or ``../shared/data``), and the folder that holds the expected layout is
   moved there (download wrappers such as ``chest_xray/`` or ``__MACOSX/`` are dropped). A folder
   is used where it is; nothing is copied.
2. The layout is checked (`check_layout`); a DataError lists every folder / file that is missing.
3. Checksums: when the source publishes one for the archive (`Source.checksums`) or the user
   passes ``--sha256`` / ``--md5``, the archive is verified. None of the four sources publishes a
   checksum this tool knows of, so by default the sha256 of the archive and of every file found
   is recorded in a manifest (in the cache folder, ``prepared/``), and a later ``prepare`` of
   the same folder reports the files that changed since.
4. The decoded cache (`upd_core.data.cache`) is built for every split with the same layout
   argument and size that ``train`` / ``evaluate`` use, so they start from it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import DataError
from .base import SPLITS, child_dir, image_files, is_hidden, subdirs
from .chexpert import SMALL
from .folders import TEST_DIRS, TRAIN_DIRS
from .volumes import PRESETS, match_key, nifti_files, pattern_regex

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
SKIP_DIRS = {"__macosx"}
MAX_DEPTH = 4  # how deep inside an archive / folder the layout is looked for


@dataclass(frozen=True)
class Source:
    """One public data set: where it comes from, what it must look like, how train reads it."""

    key: str
    title: str
    folder: str          # default folder name under the data root
    layout: str          # the --layout argument train / evaluate need ("auto" = detected)
    url: str
    citation: str
    licence: str
    expected: str        # the layout, as shown in errors and the README
    checksums: dict[str, str] = field(default_factory=dict)  # archive name -> "sha256:<hex>" / "md5:<hex>"


SOURCES: dict[str, Source] = {s.key: s for s in (
    Source("kermany", "Kermany / ZhangLab pediatric chest X-rays (pneumonia)", "cxr-kermany", "auto",
           "https://data.mendeley.com/datasets/rscbjbr9sj/2",
           "Kermany DS et al., Cell 172(5):1122-1131.e9, 2018; Mendeley Data doi:10.17632/rscbjbr9sj.2",
           "CC BY 4.0",
           "train/NORMAL, train/PNEUMONIA, test/NORMAL, test/PNEUMONIA with .jpeg images "
           "(ChestXRay2017.zip unpacks to chest_xray/...; a val/ folder is ignored)"),
    Source("covid19", "COVID-19 Radiography Database", "covid19-radiography", "auto",
           "https://www.kaggle.com/datasets/tawsifurrahman/covid19-radiography-database",
           "Chowdhury MEH et al., IEEE Access 8:132665-132676, 2020; Rahman T et al., Comput Biol Med "
           "132:104319, 2021", "see the Kaggle page (images collected from several sources with their own terms)",
           "Normal/ and at least one of COVID/, Lung_Opacity/, Viral Pneumonia/, each with images "
           "(directly or in <class>/images/; <class>/masks/ are lung masks and are ignored)"),
    Source("chexpert", "CheXpert (small, downsampled version)", "chexpert", "auto",
           "https://stanfordmlgroup.github.io/competitions/chexpert/ (download from Stanford AIMI)",
           "Irvin J et al., AAAI 2019 (arXiv:1901.07031)",
           "Stanford University School of Medicine CheXpert Dataset Research Use Agreement",
           f"{SMALL}/ with train.csv, valid.csv, train/ and valid/ (optional: splits/ or the UPD "
           "study's normal_splits/ + anomal_splits/ lists)"),
    Source("brats", "BraTS brain tumour MRI (2021: *_t2/_seg; 2023: *-t2w/-seg)", "brats", "brats",
           "https://www.synapse.org (the BraTS challenge pages; registration; earlier editions on the CBICA "
           "Image Processing Portal)",
           "Baid U et al., arXiv:2107.02314 (BraTS 2021); Menze BH et al., IEEE TMI 34(10), 2015",
           "the challenge's data use terms (Synapse)",
           "one folder per subject with NIfTI volumes: BraTS2021_XXXXX_{t1,t1ce,t2,flair,seg}.nii.gz "
           "(2023: BraTS-GLI-XXXXX-XXX-{t1n,t1c,t2w,t2f,seg}.nii.gz); every T2 volume needs its seg mask"),
)}
ALIASES = {"zhanglab": "kermany", "cxr-kermany": "kermany", "covid": "covid19", "covid-19": "covid19",
           "covid19-radiography": "covid19", "brats2021": "brats", "brats2023": "brats"}


def get_source(name: str) -> Source:
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in SOURCES:
        raise DataError(f"unknown data source {name!r}: use one of {', '.join(SOURCES)}")
    return SOURCES[key]


# --------------------------------------------------------------------------- layout checks

def _class_images(split_dir: Path | None, names: tuple[str, ...], where: str) -> tuple[dict[str, int], list[str]]:
    counts: dict[str, int] = {}
    missing: list[str] = []
    for name in names:
        d = child_dir(split_dir, name) if split_dir is not None else None
        if d is None:
            missing.append(f"{where}{name}/ (folder missing)")
            continue
        n = len(image_files(d))
        if n == 0:
            missing.append(f"{where}{d.name}/ (no images)")
        counts[f"{where}{d.name}"] = n
    return counts, missing


def _check_kermany(root: Path) -> tuple[dict[str, Any], list[str]]:
    counts: dict[str, Any] = {}
    missing: list[str] = []
    for dirs, label in ((TRAIN_DIRS, "train"), (TEST_DIRS, "test")):
        split = child_dir(root, *dirs)
        if split is None:
            missing.append(f"{label}/ (folder missing)")
            continue
        c, m = _class_images(split, ("NORMAL", "PNEUMONIA"), f"{split.name}/")
        counts.update(c)
        missing += m
    return counts, missing


def _check_covid(root: Path) -> tuple[dict[str, Any], list[str]]:
    counts, missing = _class_images(root, ("Normal",), "")
    abnormal = [n for n in ("COVID", "Lung_Opacity", "Viral Pneumonia") if child_dir(root, n) is not None]
    if not abnormal:
        missing.append("COVID/, Lung_Opacity/ or Viral Pneumonia/ (no abnormal class folder)")
    c, m = _class_images(root, tuple(abnormal), "")
    counts.update(c)
    return counts, missing + m


def _check_chexpert(root: Path) -> tuple[dict[str, Any], list[str]]:
    base = root / SMALL if (root / SMALL).is_dir() else root
    where = f"{SMALL}/" if base != root else ""
    counts: dict[str, Any] = {}
    missing = [f"{where}{n}" for n in ("train.csv", "valid.csv") if not (base / n).is_file()]
    missing += [f"{where}{n}/ (folder missing)" for n in ("train", "valid") if not (base / n).is_dir()]
    csv_path = base / "train.csv"
    if csv_path.is_file():
        with open(csv_path, newline="", encoding="utf-8", errors="replace") as f:
            rows = f.read().splitlines()[1:]
        counts["train.csv rows"] = len(rows)
        first = rows[0].split(",")[0] if rows else ""
        if first and not any((b / first).is_file() for b in (root, base, base.parent)) \
                and not (base / Path(*Path(first).parts[1:])).is_file():
            missing.append(f"the images train.csv lists (first: {first})")
    return counts, missing


def brats_preset(root: Path) -> tuple[str | None, int, list[str]]:
    """(preset, number of T2 volumes, their ids without a seg mask) for the BraTS naming found."""
    files = nifti_files(root, max_depth=MAX_DEPTH)
    for preset in ("brats", "brats2023"):
        img_pat, mask_pat = PRESETS[preset]
        img_rx, mask_rx = pattern_regex(img_pat), pattern_regex(str(mask_pat))
        images = {match_key(img_rx, f, True): f for f in files if match_key(img_rx, f, True) is not None}
        if images:
            masks = {match_key(mask_rx, f, True) for f in files}
            lacking = sorted(images[k] for k in images if k not in masks)
            return preset, len(images), lacking
    return None, 0, []


def _check_brats(root: Path) -> tuple[dict[str, Any], list[str]]:
    preset, n, lacking = brats_preset(root)
    if preset is None:
        return {}, ["NIfTI T2 volumes named *_t2.nii.gz (BraTS 2021) or *-t2w.nii.gz (BraTS 2023)"]
    counts = {"volumes (T2)": n, "naming": f"BraTS {'2021' if preset == 'brats' else '2023'}"}
    missing = [f"{len(lacking)} seg mask(s), e.g. for {', '.join(lacking[:3])}"] if lacking else []
    return counts, missing


CHECKS: dict[str, Callable[[Path], tuple[dict[str, Any], list[str]]]] = {
    "kermany": _check_kermany, "covid19": _check_covid, "chexpert": _check_chexpert, "brats": _check_brats}


def _candidates(top: Path, depth: int = MAX_DEPTH) -> list[Path]:
    """`top` and its sub-folders, shallowest first (download wrappers, __MACOSX skipped)."""
    out, level = [top], [top]
    for _ in range(depth):
        level = [c for d in level for c in subdirs(d) if c.name.lower() not in SKIP_DIRS]
        out += level
    return out


def check_layout(source: Source, top: Path) -> tuple[Path, dict[str, Any]]:
    """The folder under `top` that holds the source's layout and its counts; otherwise a DataError
    listing what is missing (for the candidate folder that came closest)."""
    check = CHECKS[source.key]
    best: tuple[int, Path, list[str]] | None = None
    # volumes are found recursively, and one subject's folder must not pass for the whole set
    for cand in ([top] if source.key == "brats" else _candidates(top)):
        counts, missing = check(cand)
        if not missing:
            return cand, counts
        score = len(missing) - (1 if counts else 0)
        if best is None or score < best[0]:
            best = (score, cand, missing)
    where = best[1] if best else top
    lines = "\n  - ".join(best[2] if best else ["nothing readable"])
    raise DataError(f"{top} does not hold the {source.title} layout. Expected: {source.expected}.\n"
                    f"Missing (looked in {where}):\n  - {lines}")


# --------------------------------------------------------------------------- archives and checksums

def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def _safe_member(name: str) -> bool:
    parts = Path(name).parts
    return bool(parts) and not Path(name).is_absolute() and ".." not in parts and not name.startswith(("/", "\\"))


def extract(archive: Path, dest: Path) -> None:
    """Unpack a .zip / .tar(.gz|.bz2|.xz) into `dest`; unsafe members raise DataError."""
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as z:
                for info in z.infolist():
                    if not _safe_member(info.filename) or (info.external_attr >> 16) & 0o170000 == 0o120000:
                        raise DataError(f"{archive.name}: refusing the unsafe member {info.filename!r}")
                z.extractall(dest)
        else:
            with tarfile.open(archive) as t:
                for m in t.getmembers():
                    if not _safe_member(m.name) or not (m.isfile() or m.isdir()):
                        raise DataError(f"{archive.name}: refusing the unsafe member {m.name!r} "
                                        "(absolute path, '..', link or device)")
                t.extractall(dest, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
        raise DataError(f"{archive} is not a readable archive ({e}); download it again") from None


def verify_archive(source: Source, archive: Path, sha256: str | None, md5: str | None) -> dict[str, Any]:
    """The archive's sha256, and the result of checking it against a published or given checksum."""
    digest = file_hash(archive, "sha256")
    expected = []
    if sha256:
        expected.append(("sha256", sha256.lower(), "given with --sha256"))
    if md5:
        expected.append(("md5", md5.lower(), "given with --md5"))
    published = source.checksums.get(archive.name)
    if published:
        algo, _, hexd = published.partition(":")
        expected.append((algo, hexd.lower(), "published by the source"))
    checked = []
    for algo, hexd, why in expected:
        got = digest if algo == "sha256" else file_hash(archive, algo)
        if got != hexd:
            raise DataError(f"{archive.name}: {algo} {got} does not match {hexd} ({why}); the download is "
                            "incomplete or a different file; download it again")
        checked.append(f"{algo} matches ({why})")
    return {"file": archive.name, "size": archive.stat().st_size, "sha256": digest,
            "verified": checked or ["no published checksum known for this source; sha256 recorded"]}


def file_manifest(root: Path, progress: bool = True) -> list[dict[str, Any]]:
    """Relative path, size and sha256 of every visible file under `root` (sorted)."""
    files = sorted(p for p in root.rglob("*") if p.is_file() and not any(is_hidden(Path(q)) for q in p.relative_to(root).parts))
    it: Any = files
    if progress and len(files) > 200:
        from tqdm.auto import tqdm

        it = tqdm(files, desc="sha256", unit="file")
    return [{"path": p.relative_to(root).as_posix(), "size": p.stat().st_size, "sha256": file_hash(p)} for p in it]


def manifest_path(root: Path) -> Path:
    from .cache import default_cache_dir

    tag = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:12]
    return default_cache_dir() / "prepared" / f"{root.name}-{tag}.json"


def _changes(old: dict[str, Any] | None, files: list[dict[str, Any]]) -> dict[str, int] | None:
    if not old or "files" not in old:
        return None
    before = {f["path"]: f["sha256"] for f in old["files"]}
    now = {f["path"]: f["sha256"] for f in files}
    return {"added": len(now.keys() - before.keys()), "removed": len(before.keys() - now.keys()),
            "changed": sum(1 for k in now.keys() & before.keys() if now[k] != before[k])}


# --------------------------------------------------------------------------- the command

def _place(source: Source, archive: Path, out: Path | None) -> Path:
    """Unpack `archive` and move the folder holding the layout to `out` (default under the data root)."""
    from ..paths import data_root

    dest = Path(out).expanduser() if out else data_root() / source.folder
    if dest.exists() and any(dest.iterdir()):
        raise DataError(f"{dest} already exists and is not empty: remove it, pass --out DIR, or check "
                        f"and cache that folder as it is with `python -m upd_core data prepare {source.key} {dest}`")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".upd-extract-", dir=dest.parent))
    try:
        print(f"Unpacking {archive.name} ...", flush=True)
        extract(archive, work)
        root, _ = check_layout(source, work)
        if dest.exists():
            dest.rmdir()
        shutil.move(str(root), str(dest))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def prepare(source_name: str, path: str | os.PathLike, *, out: str | os.PathLike | None = None, size: int = 128,
            build_cache: bool = True, checksums: bool = True, sha256: str | None = None, md5: str | None = None,
            progress: bool = True) -> dict[str, Any]:
    """Check, checksum, unpack (archives) and cache one data set; returns the report `format_report` prints."""
    from .cache import load_arrays
    from .datasets import open_dataset

    source = get_source(source_name)
    src = Path(path).expanduser()
    if not src.exists():
        raise DataError(f"{src} does not exist: give the downloaded archive ({', '.join(ARCHIVE_SUFFIXES)}) "
                        f"or the folder it was unpacked into. {source.title}: {source.url}")
    archive = None
    if src.is_file():
        if not is_archive(src):
            raise DataError(f"{src} is neither a folder nor a .zip / .tar(.gz) archive")
        archive = verify_archive(source, src, sha256, md5) if (checksums or sha256 or md5) else None
        root = _place(source, src, Path(out) if out else None)
    else:
        if out:
            raise DataError("--out is for archives; a folder is used where it is (nothing is copied)")
        if sha256 or md5:
            raise DataError("--sha256 / --md5 check a downloaded archive, not a folder")
        root = src
    root, counts = check_layout(source, root)
    root = root.resolve()
    report: dict[str, Any] = {"source": source.key, "title": source.title, "url": source.url,
                              "citation": source.citation, "licence": source.licence, "data": str(root),
                              "layout": source.layout, "counts": counts, "archive": archive, "size": size,
                              "manifest": None, "changes": None, "splits": {}}
    if source.key == "brats":
        report["layout"] = brats_preset(root)[0] or "brats"
    if checksums:
        mpath = manifest_path(root)
        old = None
        if mpath.is_file():
            try:
                old = json.loads(mpath.read_text())
            except (OSError, ValueError):
                old = None
        files = file_manifest(root, progress=progress)
        report["changes"] = _changes(old, files)
        doc = {"source": source.key, "title": source.title, "url": source.url, "data": str(root),
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "archive": archive,
               "note": "sha256 of what was found: the source publishes no checksum this tool knows of",
               "files": files}
        mpath.parent.mkdir(parents=True, exist_ok=True)
        tmp = mpath.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, mpath)
        report["manifest"] = str(mpath)
        report["n_files"] = len(files)
    if build_cache:
        for split in SPLITS:
            try:
                ds = open_dataset(root, layout=report["layout"], split=split, size=size)
                _, labels, _, _ = load_arrays(ds, progress=progress)
            except DataError as e:
                report["splits"][split] = f"not built: {e}"
                continue
            report["splits"][split] = {"images": int(len(labels)), "abnormal": int(labels.sum())}
    return report


def format_report(r: dict[str, Any]) -> str:
    """What `data prepare` prints: the checks, where the data went and how to use it."""
    from .cache import default_cache_dir
    from ..paths import NAMED_DATASETS, data_root

    lines = [f"{r['title']}: layout OK ({', '.join(f'{k}: {v}' for k, v in r['counts'].items())})",
             f"  source: {r['url']}", f"  cite: {r['citation']}", f"  licence: {r['licence']}"]
    if r["archive"]:
        lines.append(f"Archive {r['archive']['file']}: sha256 {r['archive']['sha256']}; "
                     + "; ".join(r["archive"]["verified"]))
    if r["manifest"]:
        ch = r["changes"]
        since = "" if ch is None else (" (no change since the last prepare)" if not any(ch.values()) else
                                       f" (since the last prepare: {ch['added']} added, {ch['removed']} removed, "
                                       f"{ch['changed']} changed)")
        lines.append(f"Checksums: the source publishes none that this tool knows of, so the sha256 of all "
                     f"{r['n_files']} files was recorded in {r['manifest']}{since}")
    else:
        lines.append("Checksums: skipped (--no-checksums)")
    lines.append(f"Data: {r['data']}")
    if r["splits"]:
        parts = [f"{s} {v['images']} ({v['abnormal']} abnormal)" if isinstance(v, dict) else f"{s} {v}"
                 for s, v in r["splits"].items()]
        lines.append(f"Decoded cache ({r['size']} px) in {default_cache_dir()}: " + ", ".join(parts))
    data = r["data"]
    short = next((k for k, v in NAMED_DATASETS.items() if k == r["source"]
                  and Path(data) == (data_root() / v).resolve()), None)
    arg = f"--data {short or data}" + ("" if r["layout"] == "auto" else f" --layout {r['layout']}")
    lines += ["Use it:",
              f"  python -m upd_core train --method vae {arg} --size {r['size']}",
              f"  python -m upd_core evaluate --checkpoint <id> {arg}"]
    if Path(data).parent.resolve() == data_root().resolve():
        lines.append(f"  the app reads it from the data root {data_root()} (Dataset folder)")
    else:
        lines.append(f"  the app: UPD_DATA_ROOT={Path(data).parent} make run   (or add it to UPD_ALLOWED_DIRS)")
    return "\n".join(lines)


def format_sources() -> str:
    """The public sources, their expected layouts and licences (`data sources`)."""
    return "\n\n".join(f"{s.key}: {s.title}\n  download: {s.url}\n  cite: {s.citation}\n  licence: {s.licence}\n"
                       f"  layout: {s.expected}" for s in SOURCES.values())
