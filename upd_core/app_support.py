"""Computations behind the Streamlit app and the Gradio demo (no UI code, no Streamlit import).

The pages only lay out what these functions return: running checkpoints on one image, the
out-of-distribution check, deformation-grid pictures, allow-listed data folders, disk-cached
dataset scores (Tails), ROC/PR curves and densities, the synthetic-lesion sweep (Lesion lab),
the manifold test (Myth) and the benchmark tables with the papers' reported numbers.

Security decisions (documented in the app's Home page):
* Data folders typed by a user are read only when they lie under an allowed root: the data root
  (`$UPD_DATA_ROOT`, default ../shared/data) or a folder listed in `$UPD_ALLOWED_DIRS`
  (os.pathsep-separated). Symlinks are resolved before the check. URL parameters never name paths.
* Checkpoints come only from `upd_core.list_checkpoints()` (checkpoints/ or $UPD_CHECKPOINTS).
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .checkpoint import WEIGHTS, CheckpointInfo, checkpoints_root, list_checkpoints, sha256_file, split_variant
from .errors import DataError
from .paths import REPO_ROOT, data_root
from .registry import get_method

OUTPUT_LABELS = {"reconstruction": "Reconstruction", "prior": "Global prior", "warped": "Warped prior",
                 "deformation": "Deformation field"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom", ".nii", ".gz", ".npy")
MAX_FOLDER_FILES = 20000  # a folder listing stops here (keeps the UI responsive on huge trees)


# ---------------------------------------------------------------- methods and checkpoints

@dataclass
class CheckpointView:
    """What the app shows about one checkpoint."""

    id: str
    method: str
    title: str
    dataset: str
    outputs: tuple[str, ...]
    needs_grad: bool
    metrics: dict[str, Any]
    paper: str

    @property
    def label(self) -> str:
        return f"{self.title} ({self.id})"


def checkpoint_views(infos: Sequence[CheckpointInfo] | None = None) -> list[CheckpointView]:
    """Checkpoints of registered methods, with titles and declared outputs (unknown methods skipped)."""
    out = []
    for info in list_checkpoints() if infos is None else infos:
        try:
            cls = get_method(info.method)
        except ValueError:
            continue
        out.append(CheckpointView(info.id, info.method, cls.title or info.method, info.dataset, tuple(cls.outputs),
                                  bool(cls.needs_grad), dict(info.metrics), cls.paper))
        # Scoring variants of the same weights (CRADL's density heads, ceVAE's scores, ...) as their
        # own entries "<id>@<variant>", so they can be compared side by side.
        ev = _read_evaluation(Path(info.path))
        for name, var in (ev.get("variants") or {}).items():
            # every shipped variant is a gradient-based scoring (KL- or NLL-gradient maps)
            out.append(CheckpointView(f"{info.id}@{name}", info.method, f"{cls.title or info.method} [{name}]",
                                      info.dataset, tuple(cls.outputs), True,
                                      dict(var.get("image") or {}), cls.paper))
    return sorted(out, key=lambda v: (method_rank(v.method), v.id))


def _read_evaluation(folder: Path) -> dict[str, Any]:
    """A checkpoint folder's evaluation.json, or {} when absent or unreadable."""
    try:
        return json.loads((folder / "evaluation.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


# Default selection and order of methods in the pages: the papers' main methods first, the
# curse-of-resolution series (a teaching device) last.
PREFERRED = ("spatial-ae", "dense-ae", "vae", "beta-vae", "aae", "soft-intro-vae", "dae", "morphaeus", "cradl",
             "pii", "fpi", "padim", "fae", "rd", "cflow-ad", "f-anogan", "r-vae", "cevae", "adm")


def method_rank(method: str) -> tuple[int, str]:
    if method in PREFERRED:
        return PREFERRED.index(method), method
    return (len(PREFERRED) + (50 if method.startswith("ae-latent-") else 0)), method


def default_selection(views: Sequence[CheckpointView], n: int = 6, single_pass_only: bool = True) -> list[str]:
    """A sensible default set of checkpoints: main methods first, no curse-of-resolution AEs."""
    pool = [v for v in views if not v.method.startswith("ae-latent-") and "@" not in v.id] or list(views)
    if single_pass_only and any(not v.needs_grad for v in pool):
        pool = [v for v in pool if not v.needs_grad]
    return [v.id for v in sorted(pool, key=lambda v: method_rank(v.method))][:n]


def missing_reason(method: str, output: str) -> str:
    """One line saying why a method has no `output` (shown in an empty grid cell)."""
    cls = get_method(method)
    title = cls.title or method
    if output == "reconstruction":
        return f"{title} scores without reconstructing the image."
    if output == "prior":
        return f"{title} learns no global prior (only MorphAEus-type models do)."
    if output in ("warped", "deformation"):
        if "prior" in cls.outputs:
            return f"{title} has no deformation branch, so its prior is not warped."
        return f"{title} estimates no deformation (only MorphAEus does)."
    if output == "residual":
        return f"{title} has no reconstruction, so there is no residual |x - x̂|."
    return f"{title} does not produce '{output}'."


def configure_threads() -> int:
    """Set torch's CPU threads for interactive use: $UPD_APP_THREADS, default 1.

    Measured on the 2-core development machine while another process trains: one 128x128 image
    takes ~11 ms per method with 1 thread but 250-650 ms with 2 (the threads wait for each other
    when a core is busy), and 64-image batches are faster with 1 thread too. On an idle
    many-core machine set UPD_APP_THREADS higher for the batch pages (Tails, sweep).
    """
    import torch

    try:
        n = max(1, int(os.environ.get("UPD_APP_THREADS", "1")))
    except ValueError:
        n = 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def device_summary() -> str:
    """Human description of the inference device."""
    import torch

    from .device import resolve_device

    dev = resolve_device(None)
    if dev.type == "cuda":
        return f"CUDA GPU ({torch.cuda.get_device_name(0)})"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"


# ---------------------------------------------------------------- running checkpoints on one image

@dataclass
class MethodResult:
    """One checkpoint's view of one image (maps at the input's size)."""

    checkpoint: str
    method: str
    title: str
    score: float = float("nan")
    percentile: float | None = None
    robust_z: float | None = None  # (score - median of normal val scores) / robust spread
    anomaly_map: np.ndarray | None = None
    reconstruction: np.ndarray | None = None
    prior: np.ndarray | None = None
    warped: np.ndarray | None = None
    deformation: np.ndarray | None = None
    residual: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        """JSON-able numbers (no maps)."""
        return {"checkpoint": self.checkpoint, "method": self.method, "title": self.title,
                "score": None if not np.isfinite(self.score) else float(self.score),
                "percentile_vs_normal_validation": None if self.percentile is None else round(float(self.percentile), 2),
                "robust_z_vs_normal_validation": None if self.robust_z is None else round(float(self.robust_z), 2),
                "seconds": round(self.seconds, 3), "error": self.error}


def robust_z(score: float, ref: np.ndarray) -> float | None:
    """How many robust standard deviations (IQR / 1.349) a score lies above the normal median."""
    ref = np.asarray(ref, dtype=np.float64)
    if ref.size < 4:
        return None
    q1, med, q3 = np.percentile(ref, [25, 50, 75])
    spread = max((q3 - q1) / 1.349, 1e-12, 1e-6 * abs(med))
    return float((score - med) / spread)


def run_detector(det, image: np.ndarray, checkpoint_id: str = "") -> MethodResult:
    """Predict one (H,W) image in [0,1] with a loaded detector; errors become `result.error`."""
    res = MethodResult(checkpoint_id or getattr(det, "checkpoint_id", det.method), det.method,
                       type(det).title or det.method)
    t0 = time.perf_counter()
    try:
        pred = det.predict(np.asarray(image, dtype=np.float32)[None])
    except Exception as exc:  # shown as one line in the app, never a traceback
        res.error = f"{type(exc).__name__}: {exc}"
        res.seconds = time.perf_counter() - t0
        return res
    res.seconds = time.perf_counter() - t0
    res.score = float(pred.score[0])
    res.percentile = None if pred.percentile is None else float(pred.percentile[0])
    res.robust_z = robust_z(res.score, det.val_scores.detach().cpu().numpy())
    res.anomaly_map = pred.anomaly_map[0]
    for name in ("reconstruction", "prior", "warped", "deformation"):
        v = getattr(pred, name)
        setattr(res, name, None if v is None else v[0])
    if res.reconstruction is not None:
        res.residual = np.abs(np.asarray(image, dtype=np.float32) - res.reconstruction)
    res.extras = {k: v[0] for k, v in pred.extras.items()}
    return res


def run_checkpoints(image: np.ndarray, checkpoint_ids: Iterable[str], load: Callable[[str], Any],
                    progress: Callable[[int, int, str], None] | None = None) -> list[MethodResult]:
    """Run several checkpoints on one image; `load(id)` returns a detector (cached by the caller)."""
    ids = list(checkpoint_ids)
    results = []
    for i, cid in enumerate(ids):
        if progress:
            progress(i, len(ids), cid)
        try:
            det = load(cid)
        except Exception as exc:
            results.append(MethodResult(cid, "?", cid, error=f"could not load checkpoint: {exc}"))
            continue
        results.append(run_detector(det, image, cid))
    if progress:
        progress(len(ids), len(ids), "")
    return results


def results_json(results: Sequence[MethodResult], source: str = "", ood: "OODReport | None" = None) -> str:
    """The downloadable JSON report of an analysis."""
    from . import __version__

    doc = {"tool": f"UPD explorer {__version__}", "input": source,
           "note": "research / teaching software, not a medical device",
           "results": [r.summary() for r in results]}
    if ood is not None:
        doc["out_of_distribution"] = {"level": ood.level, "message": ood.message, **ood.details}
    return json.dumps(doc, indent=2)


def heatmap_png(image: np.ndarray, amap: np.ndarray) -> bytes:
    """Heatmap overlay of `amap` on the grey `image`, as PNG bytes."""
    from .visualize import overlay, to_png

    return to_png(overlay(image, amap))


def map_png(amap: np.ndarray, cmap: str = "inferno") -> bytes:
    from .visualize import colorize, to_png

    return to_png(colorize(amap, cmap))


def deformation_grid(deformation: np.ndarray, spacing: int = 8, image: np.ndarray | None = None) -> np.ndarray:
    """A regular grid warped by a (2,H,W) displacement field (pixels; channel 0 = x, 1 = y).

    Grid lines are coloured by the local displacement magnitude (blue small, red large), drawn over
    the optional grey `image`. Returns (H,W,3) uint8. Each output pixel p shows the grid at p - u(p)
    (backward warping), which is how the method samples the prior.
    """
    from scipy.ndimage import map_coordinates

    d = np.asarray(deformation, dtype=np.float32)
    _, h, w = d.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    sx, sy = xs + d[0], ys + d[1]
    line = np.zeros((h, w), np.float32)
    step = max(2, int(spacing))
    line[::step, :] = 1
    line[:, ::step] = 1
    line[-1, :] = line[:, -1] = 1
    warped = map_coordinates(line, [sy, sx], order=1, mode="nearest")
    mag = np.hypot(d[0], d[1])
    m = mag / max(float(np.percentile(mag, 99)), 1e-6)
    colour = np.stack([np.clip(m, 0, 1), 0.25 + 0 * m, np.clip(1 - m, 0, 1)], -1) * 255
    base = np.zeros((h, w, 3), np.float32) + 255 if image is None else np.repeat(
        np.clip(np.asarray(image, np.float32), 0, 1)[..., None] * 180, 3, -1)
    a = np.clip(warped, 0, 1)[..., None]
    return (base * (1 - a) + colour * a).astype(np.uint8)


def deformation_stats(deformation: np.ndarray) -> str:
    mag = np.hypot(deformation[0], deformation[1])
    return f"mean |u| {mag.mean():.2f} px, max {mag.max():.2f} px"


# ---------------------------------------------------------------- out-of-distribution check

@dataclass
class OODReport:
    level: str  # "ok", "unusual" or "far"
    message: str
    details: dict[str, Any] = field(default_factory=dict)


Z_UNUSUAL, Z_FAR = 6.0, 20.0
# Calibrated on the Kermany test split (robust z vs each checkpoint's normal validation scores):
# normal images reach z ~ 4 (MorphAEus) / 12 (CRADL) at their 99th percentile, pneumonia 10 / 18,
# while the embedded demo images of other domains reach 5-21 (MorphAEus) / 25-200 (CRADL).
# Scores alone therefore cannot separate severe pathology from another domain: without the domain
# classifier only a median z above Z_FAR is called "far"; with it, the classifier decides.


def ood_check(results: Sequence[MethodResult], domain_probability: float | None = None,
              training_data: str = "chest X-rays") -> OODReport:
    """Plain-language warning when an image is far from the checkpoints' training data.

    Signals: the domain classifier's probability that the image is a chest X-ray (when shipped;
    it decides "far"), and how far from the normal validation scores the methods place the image
    (median robust z over methods). Pathology raises scores too, so high scores alone make an image
    "unusual", and "far" only when extreme and no classifier is available.
    """
    zs = [r.robust_z for r in results if r.robust_z is not None and r.error is None]
    med_z = float(np.median(zs)) if zs else None
    details: dict[str, Any] = {"median_robust_z": None if med_z is None else round(med_z, 2),
                               "domain_probability_chest_xray": None if domain_probability is None
                               else round(float(domain_probability), 3)}
    far_msg = ("The heatmaps and scores below are not meaningful for it: the models only know what normal "
               "training images look like, so everything about a different kind of image looks 'abnormal'.")
    if domain_probability is not None:
        if domain_probability < 0.2:
            return OODReport("far", f"This image does not look like one of the {training_data} the models were "
                                    f"trained on (a classifier of image domains gives {100 * domain_probability:.0f} % "
                                    f"that it is one). {far_msg}", details)
        if domain_probability < 0.5:
            return OODReport("unusual", f"This image may not be one of the {training_data} the models were "
                                        f"trained on (domain classifier: {100 * domain_probability:.0f} %). "
                                        "Read the maps with care.", details)
    elif med_z is not None and med_z > Z_FAR:
        return OODReport("far", f"This image looks very different from the {training_data} the models were "
                                f"trained on (the methods score it {med_z:.0f} spreads above typical normal "
                                f"images). {far_msg}", details)
    if med_z is not None and abs(med_z) > Z_UNUSUAL:
        side = "above" if med_z > 0 else "below"
        return OODReport("unusual", f"The methods score this image far {side} typical normal {training_data} "
                                    f"({abs(med_z):.0f} spreads). That can be pathology, but also a different view, "
                                    "device, crop or image type. Read the maps with care.", details)
    return OODReport("ok", f"The image is within the range of the {training_data} the models were trained on.",
                     details)


# ---------------------------------------------------------------- data folders (allow-listed)

def allowed_roots() -> list[Path]:
    """Folders a user may point the app at: the data root and $UPD_ALLOWED_DIRS entries."""
    roots = [data_root()]
    roots += [Path(p) for p in os.environ.get("UPD_ALLOWED_DIRS", "").split(os.pathsep) if p.strip()]
    out = []
    for r in roots:
        try:
            out.append(r.expanduser().resolve())
        except OSError:
            continue
    return out


def safe_folder(path: str | os.PathLike) -> Path:
    """Resolve a user-typed folder and check it lies under an allowed root (DataError otherwise)."""
    text = str(path).strip()
    if not text:
        raise DataError("Please type a folder path.")
    p = Path(text).expanduser()
    if not p.is_absolute():  # relative paths are taken relative to the data root
        p = data_root() / p
    try:
        p = p.resolve()
    except OSError as exc:
        raise DataError(f"The folder {text!r} cannot be opened ({exc}).") from None
    roots = allowed_roots()
    if not any(p == r or r in p.parents for r in roots):
        shown = ", ".join(str(r) for r in roots)
        raise DataError(f"For safety the app only reads folders under {shown}. Set UPD_DATA_ROOT or "
                        "UPD_ALLOWED_DIRS (folders separated by ':') before starting the app to allow others.")
    if not p.is_dir():
        raise DataError(f"The folder {p} does not exist.")
    return p


def list_folder_images(root: Path, limit: int = MAX_FOLDER_FILES) -> list[str]:
    """Image files below an (already checked) folder, as sorted relative paths."""
    root = Path(root)
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for f in sorted(filenames):
            if f.lower().endswith(IMAGE_SUFFIXES) and not f.startswith("."):
                out.append(str(Path(dirpath, f).relative_to(root)))
                if len(out) >= limit:
                    return out
    return out


def folder_groups(files: Sequence[str]) -> dict[str, list[str]]:
    """Files grouped by their parent folder (e.g. 'test/NORMAL'), for a two-level picker."""
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault(str(Path(f).parent), []).append(f)
    return groups


def read_folder_image(root: Path, rel: str, size: int = 128) -> np.ndarray:
    """Load one image of an allowed folder; `rel` must stay inside `root`."""
    from .imaging import load_image

    p = (Path(root) / rel).resolve()
    if Path(root).resolve() not in p.parents:
        raise DataError("That file lies outside the chosen folder.")
    return load_image(p, size=size)


def default_dataset_folder() -> Path | None:
    """The Kermany test split under the data root when present, else the data root, else None."""
    root = data_root()
    for cand in (root / "cxr-kermany", root):
        if cand.is_dir():
            return cand
    return None


# ---------------------------------------------------------------- embedded demo set

@dataclass
class DemoItem:
    id: str
    title: str
    domain: str
    provenance: str


def demo_items() -> list[DemoItem]:
    """The embedded demo set (upd_core.demo), or [] when that module is unavailable."""
    try:
        from . import demo
    except ImportError:
        return []
    items = []
    for d in demo.list_demo_images():
        if isinstance(d, str):
            items.append(DemoItem(d, d, "", ""))
        else:
            items.append(DemoItem(str(d.id), str(getattr(d, "title", d.id)), str(getattr(d, "domain", "")),
                                  str(getattr(d, "provenance", ""))))
    return items


def demo_image(demo_id: str, size: int = 128) -> np.ndarray:
    """One demo image as float32 (size,size) in [0,1]."""
    from . import demo
    from .imaging import load_image

    try:
        img = demo.load_demo(demo_id, size=size)
    except TypeError:  # a loader without a size argument
        img = demo.load_demo(demo_id)
    img = getattr(img, "image", img)
    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim != 2 or arr.shape != (size, size) or arr.min() < 0 or arr.max() > 1:
        arr = load_image(arr, size=size)
    return arr


def demo_by_domain(items: Sequence[DemoItem] | None = None) -> dict[str, list[DemoItem]]:
    groups: dict[str, list[DemoItem]] = {}
    for it in demo_items() if items is None else items:
        groups.setdefault(it.domain or "other", []).append(it)
    return groups


CHEST_DOMAINS = ("chest x-ray", "chest-xray", "cxr", "chest radiograph", "drr", "chest")


def is_chest(item: DemoItem) -> bool:
    text = f"{item.domain} {item.title}".lower()
    return any(k in text for k in CHEST_DOMAINS) and "ct" not in item.domain.lower().split()


# ---------------------------------------------------------------- Tails: cached dataset scores

def cache_dir() -> Path:
    """The project's cache folder (upd_core.data's: $UPD_CACHE_DIR, else ~/.cache/upd)."""
    try:
        from .data.cache import default_cache_dir
    except ImportError:
        env = os.environ.get("UPD_CACHE_DIR")
        return Path(env) if env else REPO_ROOT / ".cache"
    return default_cache_dir()


@dataclass
class LabelledSet:
    """Images (N,H,W) in [0,1], labels (0 normal / 1 abnormal), ids and a description."""

    images: np.ndarray
    labels: np.ndarray
    ids: list[str]
    name: str
    key: str  # identifies the set in score caches


def load_labelled_folder(root: str | os.PathLike, split: str = "test", size: int = 128, layout: str = "auto",
                         max_per_class: int | None = None) -> LabelledSet:
    """A labelled split of an allowed dataset folder via upd_core.data (decoded once, disk-cached).

    `max_per_class` keeps an evenly spaced, deterministic subset of each class.
    """
    from .data import load_arrays, open_dataset

    root = safe_folder(root)
    ds = open_dataset(root, layout=layout, split=split, size=size)
    images, labels, _, ids = load_arrays(ds, progress=False)
    labels = np.asarray(labels).astype(int)
    keep = np.arange(len(labels))
    if max_per_class:
        keep = np.concatenate([idx[np.linspace(0, len(idx) - 1, min(len(idx), max_per_class)).astype(int)]
                               for idx in (np.nonzero(labels == c)[0] for c in np.unique(labels)) if len(idx)])
        keep.sort()
    ids = [str(ids[i]) for i in keep]
    return LabelledSet(np.asarray(images)[keep], labels[keep], ids, f"{root.name}/{split}",
                       f"{root}|{layout}|{split}|{size}")


@dataclass
class ScoreSet:
    """Scores of one checkpoint on a labelled image set (0 normal, 1 abnormal)."""

    checkpoint: str
    dataset: str
    scores: np.ndarray
    labels: np.ndarray
    ids: list[str]
    from_cache: bool = False


def _weights_digest(checkpoint_id: str) -> str:
    base, _ = split_variant(checkpoint_id)  # a scoring variant shares its checkpoint's weights
    info = {c.id: c for c in list_checkpoints()}.get(str(base))
    p = (info.path if info else Path(base)) / WEIGHTS
    return sha256_file(p)[:16] if p.is_file() else "unknown"


def scores_cache_file(checkpoint_id: str, dataset_key: str, ids: Sequence[str]) -> Path:
    h = hashlib.sha256()
    h.update(_weights_digest(checkpoint_id).encode())
    h.update(dataset_key.encode())
    for i in ids:
        h.update(str(i).encode() + b"\0")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in checkpoint_id)
    return cache_dir() / "scores" / f"{safe}-{h.hexdigest()[:20]}.json"


def dataset_scores(checkpoint_id: str, dataset_key: str, images: np.ndarray, labels: np.ndarray,
                   ids: Sequence[str], load: Callable[[str], Any]) -> ScoreSet:
    """Scores of a checkpoint on a labelled set, cached on disk per (weights, dataset, image ids)."""
    from .checkpoint import write_json

    ids = [str(i) for i in ids]
    f = scores_cache_file(checkpoint_id, dataset_key, ids)
    if f.is_file():
        try:
            doc = json.loads(f.read_text())
            if doc.get("ids") == ids:
                return ScoreSet(checkpoint_id, dataset_key, np.asarray(doc["scores"], np.float64),
                                np.asarray(doc["labels"], int), ids, from_cache=True)
        except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
            pass  # a corrupt cache file is recomputed
    det = load(checkpoint_id)
    scores = det.predict(np.asarray(images, np.float32)).score
    labels = np.asarray(labels).astype(int)
    write_json(f, {"checkpoint": checkpoint_id, "dataset": dataset_key, "ids": ids,
                   "labels": labels.tolist(), "scores": [float(s) for s in scores]})
    return ScoreSet(checkpoint_id, dataset_key, np.asarray(scores, np.float64), labels, ids)


def curves(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """ROC and precision-recall curves (abnormal = positive) with AUROC and AP."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    labels = np.asarray(labels).astype(int)
    scores = np.asarray(scores, np.float64)
    if len(np.unique(labels)) < 2:
        return {}
    fpr, tpr, _ = roc_curve(labels, scores)
    prec, rec, _ = precision_recall_curve(labels, scores)
    return {"fpr": fpr, "tpr": tpr, "auroc": float(roc_auc_score(labels, scores)),
            "precision": prec, "recall": rec, "ap": float(average_precision_score(labels, scores)),
            "prevalence": float(labels.mean())}


def densities(scores: np.ndarray, labels: np.ndarray, n: int = 200) -> dict[str, Any]:
    """Gaussian kernel densities of the scores per class on a shared grid (for the Tails plot)."""
    from scipy.stats import gaussian_kde

    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(int)
    lo, hi = float(scores.min()), float(scores.max())
    pad = 0.05 * (hi - lo or abs(hi) or 1.0)
    grid = np.linspace(lo - pad, hi + pad, n)
    out: dict[str, Any] = {"grid": grid}
    for lab, name in ((0, "normal"), (1, "abnormal")):
        s = scores[labels == lab]
        if s.size >= 2 and np.ptp(s) > 0:
            out[name] = gaussian_kde(s)(grid)
    return out


def tail_cases(scores: np.ndarray, labels: np.ndarray, quantile: float | None = None) -> dict[str, dict[str, int]]:
    """Indices of the best, average (median) and worst cases of each class (MorphAEus Fig. 6b).

    Normal: best = lowest score, worst = highest. Abnormal: best = highest, worst = lowest.
    With `quantile` (0..100), also the case nearest to that quantile of each class's scores.
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels).astype(int)
    out: dict[str, dict[str, int]] = {}
    for lab, name in ((0, "normal"), (1, "abnormal")):
        idx = np.nonzero(labels == lab)[0]
        if idx.size == 0:
            continue
        order = idx[np.argsort(scores[idx], kind="stable")]
        low, high, mid = int(order[0]), int(order[-1]), int(order[len(order) // 2])
        cases = {"best": low, "average": mid, "worst": high} if lab == 0 else \
            {"best": high, "average": mid, "worst": low}
        if quantile is not None:
            cases[f"q{quantile:g}"] = int(order[min(len(order) - 1, int(round(quantile / 100 * (len(order) - 1))))])
        out[name] = cases
    return out


def _augment(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible variant of an image: small shift, zoom, gamma and optional mirror."""
    from scipy import ndimage

    h, w = img.shape
    zoom = rng.uniform(1.0, 1.12)
    z = ndimage.zoom(img, zoom, order=1)
    oy, ox = (z.shape[0] - h) // 2, (z.shape[1] - w) // 2
    z = z[oy:oy + h, ox:ox + w]
    z = ndimage.shift(z, rng.uniform(-3, 3, size=2), order=1, mode="nearest")
    z = np.clip(z, 0, 1) ** rng.uniform(0.85, 1.15)
    return np.ascontiguousarray(z[:, ::-1] if rng.random() < 0.5 else z, dtype=np.float32)


def demo_labelled_set(size: int = 128, n_per_class: int = 24, seed: int = 0) -> LabelledSet:
    """A small labelled set without any dataset folder: variants of the embedded chest images
    (normal) and further variants with one synthetic lesion each (abnormal). For teaching only."""
    from .lesions import lesion_dataset

    items = demo_items()
    base_items = [it for it in items if is_chest(it)] or items
    if not base_items:
        raise DataError("the embedded demo set is not available, so no demo labelled set can be built")
    bases = [demo_image(it.id, size) for it in base_items]
    rng = np.random.default_rng(seed)
    normal = np.stack([_augment(bases[k % len(bases)], rng) for k in range(n_per_class)])
    other = np.stack([_augment(bases[k % len(bases)], rng) for k in range(n_per_class)])
    abnormal, _ = lesion_dataset(other, seed=seed)
    ids = [f"demo:{base_items[k % len(bases)].id}#{k}" for k in range(n_per_class)]
    ids += [f"demo:{base_items[k % len(bases)].id}#{k}+lesion" for k in range(n_per_class)]
    kind = "chest images" if base_items is not items else "images"
    return LabelledSet(np.concatenate([normal, abnormal]).astype(np.float32),
                       np.r_[np.zeros(n_per_class, int), np.ones(n_per_class, int)], ids,
                       f"demo set: {len(bases)} embedded {kind}, varied, half with synthetic lesions",
                       f"demo-lesions|{size}|{n_per_class}|{seed}|{','.join(it.id for it in base_items)}")


# ---------------------------------------------------------------- Lesion lab

def add_lesion(image: np.ndarray, *, size: float, contrast: float, shape: str = "ellipse",
               center: tuple[float, float] = (0.5, 0.5), blend: str = "add", texture: float = 0.0,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic lesion on `image` (upd_core.lesions); returns (image, mask).

    `size`: radius as a fraction of the image side; `contrast`: signed strength (> 0 brighter /
    hyper-intense, < 0 darker / hypo-intense, 0 = iso-intense, texture only); `center` (row, col)
    as fractions of the image; `blend` "add" keeps the anatomy visible under the lesion (an
    opacity on a radiograph), "replace" replaces the tissue (a tumour-like mass).
    """
    from . import lesions

    img = np.asarray(image, np.float32)
    h, w = img.shape
    loc = (int(np.clip(round(center[0] * (h - 1)), 0, h - 1)), int(np.clip(round(center[1] * (w - 1)), 0, w - 1)))
    kind = "hyper" if contrast > 0 else "hypo" if contrast < 0 else "iso"
    return lesions.add_lesion(img, shape=shape, size=float(size), intensity=kind, strength=abs(float(contrast)),
                              texture=float(texture) if texture > 0 else None, location=loc, blend=blend,
                              seed=seed)


def lesion_shapes() -> list[str]:
    try:
        from . import lesions
    except ImportError:
        return []
    return list(lesions.SHAPES)


def image_dice(mask: np.ndarray, amap: np.ndarray) -> float:
    """Best Dice over thresholds of one map against one lesion mask (UPD study Fig. 2)."""
    from .metrics import best_dice

    return best_dice(mask, amap)[0]


def lesion_sweep(dets: dict[str, Any], image: np.ndarray, sizes: Sequence[float], contrasts: Sequence[float],
                 shape: str = "ellipse", center: tuple[float, float] = (0.5, 0.5), blend: str = "add",
                 seed: int = 0, progress: Callable[[float], None] | None = None) -> list[dict[str, Any]]:
    """Dice of each detector's map for every (size, contrast) lesion on one normal image (UPD Fig. 2).

    All lesion images of the grid are predicted in one batch per detector. Rows: checkpoint, size,
    contrast, lesion_area (fraction of pixels), dice (best over thresholds), score, percentile.
    """
    grid = [(r, i) for r in sizes for i in contrasts]
    imgs, masks = [], []
    for k, (r, i) in enumerate(grid):
        im, mk = add_lesion(image, size=r, contrast=i, shape=shape, center=center, blend=blend, seed=seed)
        imgs.append(im)
        masks.append(mk)
    x = np.stack(imgs).astype(np.float32)
    rows = []
    for j, (cid, det) in enumerate(dets.items()):
        pred = det.predict(x)
        for k, (r, i) in enumerate(grid):
            dice = image_dice(masks[k], pred.anomaly_map[k]) if masks[k].any() else float("nan")
            rows.append({"checkpoint": cid, "size": float(r), "contrast": float(i),
                         "lesion_area": float(np.mean(masks[k] > 0.5)), "dice": dice,
                         "score": float(pred.score[k]),
                         "percentile": None if pred.percentile is None else float(pred.percentile[k])})
        if progress:
            progress((j + 1) / max(1, len(dets)))
    return rows


# ---------------------------------------------------------------- Myth: manifold test

def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet distance between two Gaussians (the formula of FID, in whatever feature space)."""
    from scipy import linalg

    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(covmean).all():
        eps = 1e-6 * np.eye(s1.shape[0])
        covmean = linalg.sqrtm((s1 + eps) @ (s2 + eps))
    covmean = np.real(covmean)
    return float(max(0.0, diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)))


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(feats, np.float64)
    return f.mean(0), np.cov(f, rowvar=False) if len(f) > 1 else np.zeros((f.shape[1], f.shape[1]))


def ssim_per_image(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    import torch

    from .scoring import ssim

    return ssim(torch.as_tensor(np.asarray(x, np.float32)), torch.as_tensor(np.asarray(y, np.float32))).numpy()


@dataclass
class ManifoldRow:
    checkpoint: str
    domain: str
    n: int
    ssim: float  # reconstruction vs its input
    fd: float | None  # Fréchet distance of reconstructions to the training features
    fd_inputs: float | None  # the same for the inputs themselves (reference)
    confidence: float | None  # mean domain-classifier P(chest X-ray) of the reconstructions
    confidence_inputs: float | None


def manifold_test(det, sets: dict[str, np.ndarray], domain_model=None) -> list[ManifoldRow]:
    """Per domain: SSIM of reconstructions, FD of reconstructions to the training images and the
    domain classifier's chest-X-ray confidence (MorphAEus paper, Table 1 idea).

    `domain_model` (upd_core.domain.DomainClassifier) supplies features, training statistics and
    probabilities; without it FD and confidence are None.
    """
    rows = []
    for name, imgs in sets.items():
        imgs = np.asarray(imgs, np.float32)
        if imgs.size == 0:
            continue
        pred = det.predict(imgs)
        rec = pred.reconstruction
        if rec is None:
            continue
        s = float(ssim_per_image(imgs, rec).mean())
        fd = fd_in = conf = conf_in = None
        if domain_model is not None:
            fd = domain_model.frechet_to_training(rec)
            fd_in = domain_model.frechet_to_training(imgs)
            conf = float(domain_model.chest_probability(rec).mean())
            conf_in = float(domain_model.chest_probability(imgs).mean())
        rows.append(ManifoldRow(getattr(det, "checkpoint_id", det.method), name, len(imgs), s, fd, fd_in, conf,
                                conf_in))
    return rows


# ---------------------------------------------------------------- Benchmarks

# Numbers reported in the papers, on THEIR data (other datasets, resolutions and protocols).
# Shown beside ours only as context, never as a comparison on the same split.
REPORTED: list[dict[str, Any]] = [
    *[{"source": "MorphAEus paper, Table 2", "data": "COVID-19 Radiography, COVID-19 vs normal (128 px)",
       "method": m, "auroc": a, "ap": p, "fpr95": f95, "fpr99": f99, "ssim": s}
      for m, s, f95, f99, p, a in (
          ("spatial-ae", 0.949, 0.949, 0.987, 0.840, 0.559), ("dense-ae", 0.735, 0.934, 0.972, 0.818, 0.550),
          ("vae", 0.752, 0.952, 0.985, 0.771, 0.448), ("beta-vae", 0.613, 0.789, 0.944, 0.920, 0.774),
          ("aae", 0.652, 0.861, 0.967, 0.882, 0.685), ("soft-intro-vae", 0.688, 0.937, 0.974, 0.856, 0.610),
          ("dae", 0.965, 0.228, 0.446, 0.984, 0.951), ("morphaeus", 0.839, 0.578, 0.828, 0.956, 0.868),
          ("morphaeus-no-warp", 0.711, 0.889, 0.957, 0.908, 0.734),
          ("morphaeus-no-warp-no-pl", 0.780, 0.897, 0.951, 0.884, 0.681))],
    *[{"source": "MorphAEus paper, Table 2", "data": "COVID-19 Radiography, lung opacity vs normal (128 px)",
       "method": m, "auroc": a, "ap": p, "fpr95": f95, "fpr99": f99}
      for m, f95, f99, p, a in (
          ("spatial-ae", 0.945, 0.990, 0.884, 0.562), ("dense-ae", 0.959, 0.984, 0.845, 0.446),
          ("vae", 0.974, 0.994, 0.827, 0.397), ("beta-vae", 0.850, 0.961, 0.924, 0.696),
          ("aae", 0.910, 0.983, 0.909, 0.649), ("soft-intro-vae", 0.957, 0.985, 0.881, 0.532),
          ("dae", 0.579, 0.879, 0.958, 0.826), ("morphaeus", 0.587, 0.843, 0.963, 0.839),
          ("morphaeus-no-warp", 0.918, 0.968, 0.918, 0.660),
          ("morphaeus-no-warp-no-pl", 0.937, 0.972, 0.900, 0.598))],
    *[{"source": "UPD study, Table III", "data": f"CheXpert, {task} (128 px)", "method": m, "ap": p, "auroc": a}
      for task, col in (("pleural effusion", 0), ("opacity", 1), ("enlarged cardiomediastinum", 2))
      for m, vals in (
          ("vae", (0.55, 0.57, 0.51, 0.54, 0.56, 0.56)), ("r-vae", (0.52, 0.57, 0.47, 0.50, 0.52, 0.56)),
          ("f-anogan", (0.59, 0.61, 0.49, 0.51, 0.57, 0.59)), ("h-tae-s", (0.51, 0.51, 0.50, 0.50, 0.53, 0.51)),
          ("fae", (0.73, 0.77, 0.57, 0.61, 0.63, 0.66)), ("padim", (0.61, 0.66, 0.50, 0.52, 0.60, 0.63)),
          ("cflow-ad", (0.67, 0.73, 0.52, 0.54, 0.62, 0.66)), ("rd", (0.65, 0.71, 0.54, 0.58, 0.61, 0.63)),
          ("expvae", (0.51, 0.52, 0.52, 0.51, 0.52, 0.52)), ("amcons", (0.39, 0.31, 0.49, 0.48, 0.41, 0.37)),
          ("pii", (0.64, 0.65, 0.53, 0.54, 0.56, 0.56)), ("dae", (0.63, 0.65, 0.52, 0.55, 0.58, 0.60)),
          ("cutpaste", (0.58, 0.59, 0.53, 0.54, 0.57, 0.58)))
      for p, a in [(vals[2 * col], vals[2 * col + 1])]],
    *[{"source": "PII paper, Table 1", "data": f"ChestX-ray14 {part} PA (256 px)", "method": m, "ap": p}
      for part, col in (("male", 0), ("female", 1))
      for m, vals in (("deep-svdd", (0.565, 0.556)), ("vq-vae2", (0.503, 0.516)), ("fpi", (0.533, 0.586)),
                      ("pii", (0.690, 0.703)))
      for p in [vals[col]]],
]


def load_evaluations(infos: Sequence[CheckpointInfo] | None = None) -> list[dict[str, Any]]:
    """The evaluation.json of every checkpoint that has one, with its id and method."""
    out = []
    for info in list_checkpoints() if infos is None else infos:
        ev = _read_evaluation(Path(info.path))
        if not ev:
            continue
        out.append({"id": info.id, "method": info.method, **ev})
        for name, var in (ev.get("variants") or {}).items():  # scoring variants: rows of their own
            out.append({**{k: v for k, v in ev.items() if k not in ("variants", "image", "pixel", "reconstruction")},
                        "id": f"{info.id}@{name}", "method": info.method, "variant": name, **var})
    return out


def _title(method: str) -> str:
    try:
        return get_method(method).title or method
    except ValueError:
        return method


def benchmark_rows(evals: Sequence[dict[str, Any]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Tables per evaluated split: the trivial intensity floors first, then one row per checkpoint.

    Columns follow the papers' tables: AUROC, AP, FPR95, FPR99 (image level), SSIM of healthy
    reconstructions, pixel AP and best Dice (synthetic lesions or masks).
    """
    evals = load_evaluations() if evals is None else evals
    tables: dict[str, list[dict[str, Any]]] = {}
    floors_done: set[str] = set()
    for ev in evals:
        split = str(ev.get("split") or ev.get("dataset") or "unknown split")
        n = f"{ev.get('n_normal', '?')} normal / {ev.get('n_abnormal', '?')} abnormal"
        rows = tables.setdefault(f"{split} ({n})", [])
        key = f"{split} ({n})"
        if key not in floors_done:
            floors_done.add(key)
            for name, fl in (ev.get("floors") or {}).items():
                rows.insert(len([r for r in rows if r["kind"] == "floor"]), {
                    "kind": "floor", "method": f"floor: {name.replace('_', ' ')} ({fl.get('sign', '')})",
                    "checkpoint": "", "AUROC": fl.get("auroc")})
        img, rec, pix = ev.get("image") or {}, ev.get("reconstruction") or {}, ev.get("pixel") or {}
        title = _title(ev.get("method", "")) + (f" [{ev['variant']}]" if ev.get("variant") and "@" in str(ev.get("id")) else "")
        rows.append({"kind": "method", "method": title, "checkpoint": ev.get("id", ""),
                     "AUROC": img.get("auroc"), "AP": img.get("ap"), "FPR95": img.get("fpr95"),
                     "FPR99": img.get("fpr99"), "SSIM (healthy)": rec.get("ssim"),
                     "pixel AP": pix.get("pixel_ap"), "best Dice": pix.get("best_dice"),
                     "images/s": ev.get("inference_images_per_second"),
                     "perceptual loss": ev.get("perceptual_backend", "–"),
                     "reported elsewhere (other data)": reported_summary(ev.get("method", ""))})
    return tables


def reported_summary(method: str) -> str:
    """One line of a method's AUROC (or AP) as reported in the papers on their data, or ''."""
    parts = []
    for r in REPORTED:
        if r["method"] != method:
            continue
        metric, v = ("AUROC", r["auroc"]) if r.get("auroc") is not None else ("AP", r.get("ap"))
        task = r["data"].split(", ", 1)[-1].replace(" (128 px)", "").replace(" (256 px)", "")
        parts.append(f"{metric} {v:.3f} {task} [{r['source'].split(',')[0]}]")
    return "; ".join(parts)


def reported_rows(methods: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The papers' reported numbers, optionally only for the given method ids."""
    keep = None if methods is None else set(methods)
    names = {"auroc": "AUROC", "ap": "AP", "fpr95": "FPR95", "fpr99": "FPR99", "ssim": "SSIM (healthy)"}
    return [{"method": _title(r["method"]), "id": r["method"],
             **{names.get(k, k): v for k, v in r.items() if k != "method"}}
            for r in REPORTED if keep is None or r["method"] in keep]


def checkpoints_folder() -> Path:
    return checkpoints_root()


def domain_probability(image: np.ndarray) -> float | None:
    """P(chest X-ray) of one image from the shipped domain classifier, or None when there is none."""
    try:
        from .domain import load_domain_classifier
    except ImportError:
        return None
    clf = load_domain_classifier()
    if clf is None:
        return None
    return float(clf.chest_probability(np.asarray(image, np.float32)[None])[0])


def heatmap_overlay(image: np.ndarray, amap: np.ndarray) -> np.ndarray:
    """Heatmap overlay as an (H,W,3) uint8 array."""
    from .visualize import overlay

    return overlay(image, amap)
