"""The manifold test of the Myth page (MorphAEus paper, Table 1): the numbers, computed once.

For each reconstruction checkpoint and each image domain (normal chest X-rays, the synthetic (DRR)
chest radiographs and every other domain of the embedded demo set): the SSIM and the L1 error of
the reconstructions to their inputs, a domain classifier's confidence that the reconstructions are
chest X-rays, and the Fréchet distance (FD) of the reconstructions' features to those of the chest
X-ray training images, each with a bootstrap 95 % interval.

`python -m upd_core myth precompute` computes them and stores them as `myth.json` next to the
weights (registered in the checkpoint's manifests; numbers only, no images); `load_numbers` reads
them back only when they belong to these weights and this domain classifier. The page's tables and
verdicts over these numbers live in `upd_core.app.myth`.

Sample sizes: every domain gets the same number of images N (by default the number of normal test
chest X-rays, 234 for Kermany): the normal test chest X-rays themselves, and for each demo domain
its few demo images plus random variants of them (crops, flips, small rotations, gamma), so the
FD of a demo domain describes those few sources, not the whole domain. The same N everywhere keeps
the small-sample bias of the FD the same for every domain. With fewer images than feature
dimensions the covariance is singular and the FD column is dropped, with the reason.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .demo_set import DemoItem, is_chest
from .views import CheckpointView

IN_DISTRIBUTION = "chest X-ray (in-distribution)"
MYTH_FILE = "myth.json"
FORMAT = "upd-myth/1"
KIND_IN, KIND_SYNTHETIC, KIND_OTHER = "in-distribution", "synthetic chest radiograph", "other domain"
N_BOOT = 200  # bootstrap resamples of each domain's images
P_CHEST = 0.5  # "classified as a chest X-ray": mean P(chest X-ray) of the reconstructions above this
CLOSER = 0.95  # "closer to chest X-rays": FD of the reconstructions <= 95 % of the inputs' FD (the paper's 5 %)
DEFAULT_IMAGES = 234  # images per domain without a chest split to take N from
MAX_IMAGES = 512
# The domains the page shows as pictures by default (the numbers always cover every domain).
DEFAULT_DOMAINS = ("chest-xray (DRR)", "brain-mri", "natural", "digits", "fashion", "retina", "texture", "document")
AUGMENTATION = ("random variants of the domain's demo images: crop 60-100 % of the side (aspect 0.8-1.25), "
                "horizontal flip (not for chest radiographs), rotation up to 15 degrees (30 %), gamma 0.7-1.4")


def ssim_per_image(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM of each image pair of two (N,H,W) stacks."""
    import torch

    from ..scoring import ssim

    return ssim(torch.as_tensor(np.asarray(x, np.float32)), torch.as_tensor(np.asarray(y, np.float32))).numpy()


def reconstruction_views(views: Sequence[CheckpointView]) -> list[CheckpointView]:
    """One view per set of weights with reconstructions (the checkpoint itself, titled without its
    scoring): a scoring variant changes the score, never the reconstruction."""
    import dataclasses

    out: dict[str, CheckpointView] = {}
    for v in views:
        if "reconstruction" not in v.outputs or v.weights in out:
            continue
        base = next((b for b in views if b.id == v.weights), v)
        out[v.weights] = dataclasses.replace(base, id=v.weights, title=base.title.split(" [")[0], variant="")
    return list(out.values())


# ---------------------------------------------------------------- (a) the image sets

@dataclass
class DomainSet:
    """The images of one domain of the manifold test."""

    name: str
    kind: str  # KIND_IN, KIND_SYNTHETIC or KIND_OTHER
    images: np.ndarray  # (N, H, W) in [0, 1]
    sources: int  # distinct source images (the rest are random variants of them)
    source: str  # where the images come from, for people


def variants(images: np.ndarray, n: int, rng: np.random.Generator, flip: bool = True) -> np.ndarray:
    """`n` random variants of `images` (N,H,W) in [0,1], at their size: crop, flip, rotation, gamma
    (see AUGMENTATION); the sources are used in turn."""
    import torch
    import torch.nn.functional as F
    from scipy import ndimage

    images = np.asarray(images, np.float32)
    size = images.shape[-1]
    out = np.empty((n, size, size), np.float32)
    for k in range(n):
        img = images[k % len(images)]
        h, w = img.shape
        s = rng.uniform(0.6, 1.0)
        ch = max(8, int(h * s))
        cw = min(w, max(8, int(w * s * rng.uniform(0.8, 1.25))))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        a = img[y:y + ch, x:x + cw]
        if flip and rng.random() < 0.5:
            a = a[:, ::-1]
        if rng.random() < 0.3:
            a = ndimage.rotate(a, rng.uniform(-15, 15), reshape=False, order=1, mode="nearest")
        t = torch.as_tensor(np.ascontiguousarray(a, np.float32))[None, None]
        a = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()
        out[k] = np.clip(a, 0, 1) ** rng.uniform(0.7, 1.4)
    return out


def _evenly(images: np.ndarray, n: int) -> np.ndarray:
    """At most n images, evenly spaced (deterministic)."""
    if len(images) <= n:
        return images
    return images[np.linspace(0, len(images) - 1, n).astype(int)]


def domain_sets(chest_normal: np.ndarray | None, groups: dict[str, list[DemoItem]],
                image_of: Callable[[str], np.ndarray], n_images: int | None = None, seed: int = 0,
                chest_source: str = "normal chest X-rays of the data folder") -> list[DomainSet]:
    """The image sets of the manifold test: normal chest X-rays (when given), then each demo domain
    (its chest radiographs, i.e. the DRRs, first).

    `n_images`: images per domain (the chest X-rays are subsampled evenly to it, each demo domain is
    filled up with `variants` of its demo images); None: the images as they are (the live page)."""
    sets: list[DomainSet] = []
    if chest_normal is not None and len(chest_normal):
        imgs = np.asarray(chest_normal if n_images is None else _evenly(chest_normal, n_images), np.float32)
        sets.append(DomainSet(IN_DISTRIBUTION, KIND_IN, imgs, len(imgs), chest_source))
    names = sorted(groups, key=lambda d: (not any(is_chest(it) for it in groups[d]), d))
    for k, name in enumerate(names):
        items = groups[name]
        chest = any(is_chest(it) for it in items)
        originals = np.stack([np.asarray(image_of(it.id), np.float32) for it in items])
        ids = ", ".join(it.id for it in items)
        imgs, source = originals, f"{len(items)} demo image{'s' * (len(items) != 1)} ({ids})"
        if n_images is not None and n_images > len(originals):
            rng = np.random.default_rng([seed, k])
            imgs = np.concatenate([originals, variants(originals, n_images - len(originals), rng, flip=not chest)])
            source += f" and {n_images - len(originals)} random variants of them"
        elif n_images is not None:
            imgs = originals[:n_images]
        sets.append(DomainSet(name, KIND_SYNTHETIC if chest else KIND_OTHER, imgs, len(items), source))
    return sets


def example_images(chest_normal: np.ndarray | None, groups: dict[str, list[DemoItem]], domains: Sequence[str],
                   image_of: Callable[[str], np.ndarray]) -> dict[str, np.ndarray]:
    """One image per domain for the page's pictures: a normal chest X-ray (when given), then the
    first demo image of each domain in `domains`."""
    out: dict[str, np.ndarray] = {}
    if chest_normal is not None and len(chest_normal):
        out[IN_DISTRIBUTION] = np.asarray(chest_normal[0], np.float32)
    for d in domains:
        if d in groups and groups[d]:
            out[d] = np.asarray(image_of(groups[d][0].id), np.float32)
    return out


# ---------------------------------------------------------------- (a) the numbers

def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


class Reference:
    """The chest X-ray training features' mean and covariance, with what a fast FD needs:
    tr sqrt(S R) = tr sqrt(R^1/2 S R^1/2), so one eigendecomposition of a symmetric matrix per FD."""

    def __init__(self, mu: np.ndarray, sigma: np.ndarray) -> None:
        self.mu = np.asarray(mu, np.float64)
        self.sigma = np.asarray(sigma, np.float64)
        self.root = _sqrt_psd(self.sigma)
        self.trace = float(np.trace(self.sigma))

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def frechet(self, feats: np.ndarray) -> float:
        """Fréchet distance of the Gaussian fitted to `feats` (N, D) to the reference."""
        from ..metrics import feature_stats

        mu, sig = feature_stats(feats)
        m = self.root @ sig @ self.root
        tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
        d = mu - self.mu
        return float(max(0.0, d @ d + np.trace(sig) + self.trace - 2 * tr_covmean))


def feature_space(domain_model) -> tuple[Callable[[np.ndarray], np.ndarray], Reference, str]:
    """(features fn, training-image reference, label) of the domain classifier's FD feature space:
    the CRADL encoder's when its statistics match the shipped CRADL weights, else the classifier's
    own penultimate layer (as `DomainClassifier.frechet_to_training` chooses)."""
    fn = domain_model._cradl_fn() if hasattr(domain_model, "_cradl_fn") else None
    key = "cradl" if fn is not None else "cnn"
    stats = domain_model.stats[key]
    return (fn or domain_model.cnn_features), Reference(stats["mu"], stats["sigma"]), domain_model.feature_space()


def _stat(values: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    """Mean of per-image values with its bootstrap 95 % interval and standard error."""
    v = np.asarray(values, np.float64)
    boot = v[idx].mean(1)
    return {"value": float(v.mean()), "lo": float(np.percentile(boot, 2.5)), "hi": float(np.percentile(boot, 97.5)),
            "se": float(boot.std(ddof=1)) if len(boot) > 1 else 0.0}


def _fd_stat(feats: np.ndarray, ref: Reference, idx: np.ndarray) -> dict[str, float]:
    """FD of all images with the bootstrap 95 % interval and standard error of resampled sets."""
    boot = np.array([ref.frechet(feats[i]) for i in idx])
    return {"value": ref.frechet(feats), "lo": float(np.percentile(boot, 2.5)), "hi": float(np.percentile(boot, 97.5)),
            "se": float(boot.std(ddof=1)) if len(boot) > 1 else 0.0}


def fd_note(n: int, dim: int) -> str:
    """Why a domain has no FD."""
    return (f"no FD: {n} image{'s' * (n != 1)} for {dim} feature dimensions (an FD needs more images than "
            "dimensions, else the covariance is singular); `python -m upd_core myth precompute` computes it on "
            f"{DEFAULT_IMAGES} images per domain")


def bootstrap_indices(n: int, n_boot: int, seed: int, k: int) -> np.ndarray:
    """(n_boot, n) resampling indices of domain number k (the same for inputs and every checkpoint)."""
    return np.random.default_rng([seed, 1000 + k]).integers(0, n, size=(max(1, n_boot), n))


def input_numbers(sets: Sequence[DomainSet], domain_model=None, n_boot: int = N_BOOT, seed: int = 0) -> dict[str, dict]:
    """What does not depend on the checkpoint, per domain: P(chest X-ray) and FD of the inputs
    (plus their features, kept for the checkpoints' own FDs; key '_feats', not written)."""
    out: dict[str, dict] = {}
    space = feature_space(domain_model) if domain_model is not None else None
    for k, s in enumerate(sets):
        n = len(s.images)
        idx = bootstrap_indices(n, n_boot, seed, k)
        rec: dict[str, Any] = {"_idx": idx}
        if domain_model is not None:
            fn, ref, _ = space
            rec["p_chest_inputs"] = _stat(domain_model.chest_probability(s.images), idx)
            if n > ref.dim:
                rec["_feats"] = feats = fn(s.images)
                rec["fd_inputs"] = _fd_stat(feats, ref, idx)
        out[s.name] = rec
    return out


def reconstruct(det, images: np.ndarray, batch: int = 64) -> np.ndarray | None:
    """Reconstructions (N,H,W) in [0,1] of images (N,H,W), None for a method without them.

    Through the method's `reconstruct` hook (what `predict` reports as `reconstruction`, without the
    anomaly maps: the gradient maps of the ceVAE and RADL cost ten times the reconstruction), else
    through `predict`."""
    import torch
    import torch.nn.functional as F

    images = np.asarray(images, np.float32)
    fn = getattr(det, "reconstruct", None)
    if not callable(fn):
        parts = []
        for i in range(0, len(images), batch):
            rec = det.predict(images[i:i + batch]).reconstruction
            if rec is None:
                return None
            parts.append(np.clip(np.asarray(rec, np.float32), 0, 1))
        return np.concatenate(parts) if parts else images[:0]
    size, (h, w) = int(det.image_size), images.shape[-2:]
    was_training = det.training
    det.eval()
    parts = []
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch):
                x = torch.as_tensor(images[i:i + batch])[:, None].to(det.device)
                if (h, w) != (size, size):
                    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                    x = x.clamp(0, 1)
                r = fn(x)["reconstruction"].float()
                if r.shape[-2:] != (h, w):
                    r = F.interpolate(r, size=(h, w), mode="bilinear")
                parts.append(r[:, 0].clamp(0, 1).cpu().numpy())
    finally:
        det.train(was_training)
    return np.concatenate(parts) if parts else images[:0]


def manifold_numbers(det, sets: Sequence[DomainSet], domain_model=None, checkpoint_id: str = "",
                     n_boot: int = N_BOOT, seed: int = 0, inputs: dict[str, dict] | None = None,
                     progress: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """The manifold-test numbers of one checkpoint (the content of myth.json, JSON-ready).

    Per domain: n, its sources, SSIM and L1 error of the reconstructions to the inputs, mean
    P(chest X-ray) of reconstructions and inputs (with a domain classifier), and the FD of the
    reconstructions' and the inputs' features to the chest X-ray training images where a domain has
    more images than feature dimensions (else `fd_note` says why); every number with its bootstrap
    95 % interval ('lo', 'hi') and standard error ('se') over `n_boot` resamples of the images.
    `inputs`: `input_numbers` of the same sets (computed here when None)."""
    t0 = time.perf_counter()
    cid = checkpoint_id or getattr(det, "checkpoint_id", det.method)
    inputs = inputs if inputs is not None else input_numbers(sets, domain_model, n_boot, seed)
    space = feature_space(domain_model) if domain_model is not None else None
    domains = []
    for k, s in enumerate(sets):
        if progress:
            progress(k, len(sets), s.name)
        if not len(s.images):
            continue
        rec = reconstruct(det, s.images)
        if rec is None:
            return {"format": FORMAT, "checkpoint": cid, "error": "this checkpoint has no reconstruction",
                    "domains": []}
        inp = inputs[s.name]
        idx = inp["_idx"]
        n = len(s.images)
        row: dict[str, Any] = {"domain": s.name, "kind": s.kind, "n": n, "sources": s.sources, "source": s.source,
                               "ssim": _stat(ssim_per_image(s.images, rec), idx),
                               "l1": _stat(np.abs(rec - s.images).mean((1, 2)), idx)}
        if space is not None:
            fn, ref, _ = space
            row["p_chest"] = _stat(domain_model.chest_probability(rec), idx)
            row["p_chest_inputs"] = inp["p_chest_inputs"]
            if "_feats" in inp:
                row["fd"] = _fd_stat(fn(rec), ref, idx)
                row["fd_inputs"] = inp["fd_inputs"]
            else:
                row["fd_note"] = fd_note(n, ref.dim)
        domains.append(row)
    out: dict[str, Any] = {"format": FORMAT, "checkpoint": cid, "n_boot": int(n_boot), "seed": int(seed),
                           "domains": domains, "seconds": round(time.perf_counter() - t0, 1)}
    if space is not None:
        out["feature_space"] = space[2]
        out["feature_dim"] = space[1].dim
    return out


# ---------------------------------------------------------------- precomputed numbers on disk

def _round(obj: Any) -> Any:
    if isinstance(obj, float):
        return float(f"{obj:.6g}")
    if isinstance(obj, dict):
        return {k: _round(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_round(v) for v in obj]
    return obj


def domain_classifier_sha256() -> str | None:
    """sha256 of the domain classifier's weights as its manifest records them (None when absent)."""
    from ..checkpoint import WEIGHTS, expected_sha256
    from ..domain import domain_dir
    from ..errors import CheckpointError

    try:
        return expected_sha256(domain_dir()).get(WEIGHTS)
    except (CheckpointError, OSError):
        return None


def write_numbers(ckpt_dir: Path, numbers: dict[str, Any]) -> Path:
    """Write myth.json into a checkpoint folder and refresh its manifests (so the folder, and the
    shipped manifest when it is a shipped checkpoint, still verify)."""
    from ..checkpoint import refresh
    from ..checkpoint_files import write_json

    path = Path(ckpt_dir) / MYTH_FILE
    write_json(path, _round(numbers))
    refresh(Path(ckpt_dir))
    return path


def load_numbers(checkpoint_id: str, domain_sha256: str | None = None,
                 feature_label: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """(numbers, '') from a checkpoint's myth.json, or (None, why not): absent, unreadable, not
    matching its manifest, or computed for other weights, another domain classifier or another
    feature space than the current ones. `<checkpoint>@<variant>` reads the checkpoint's file
    (reconstructions do not depend on the scoring)."""
    from ..checkpoint import WEIGHTS, resolve, sha256_file, split_variant
    from ..errors import CheckpointError

    base = str(split_variant(checkpoint_id)[0])
    try:
        folder, expected = resolve(base)
    except CheckpointError as exc:
        return None, str(exc)
    path = Path(folder) / MYTH_FILE
    if not path.is_file():
        return None, "not precomputed"
    if MYTH_FILE in expected and sha256_file(path) != expected[MYTH_FILE]:
        return None, f"{MYTH_FILE} does not match its sha256 in the manifest"
    try:
        numbers = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, f"{MYTH_FILE} is unreadable ({exc})"
    if not isinstance(numbers, dict) or numbers.get("format") != FORMAT or not isinstance(numbers.get("domains"), list):
        return None, f"{MYTH_FILE} has an unknown format"
    if numbers.get("weights_sha256") != expected.get(WEIGHTS):
        return None, "precomputed for other weights"
    if domain_sha256 is not None and numbers.get("domain_classifier_sha256") != domain_sha256:
        return None, "precomputed with another domain classifier"
    if feature_label is not None and numbers.get("feature_space") != feature_label:
        return None, f"precomputed in another feature space ({numbers.get('feature_space')})"
    return numbers, ""


def precompute(checkpoint_ids: Sequence[str], chest_normal: np.ndarray | None, chest_source: str,
               domain_model, n_images: int | None = None, n_boot: int = N_BOOT, seed: int = 0,
               write: bool = True, device: str | None = None,
               log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Compute (and with `write`, store) the manifold-test numbers of each checkpoint.

    The image sets and the input-side numbers are built once and shared by every checkpoint;
    `n_images` defaults to the number of normal chest X-rays (at most MAX_IMAGES), DEFAULT_IMAGES
    without them. Returns the numbers written, with their paths, and {'checkpoint', 'error'} for each
    checkpoint that could not be loaded or has no reconstruction (the others are still computed)."""
    from ..checkpoint import WEIGHTS, load_detector, resolve, split_variant
    from ..errors import CheckpointError
    from .demo_set import demo_by_domain, demo_image, demo_items

    if n_images is None:
        have = 0 if chest_normal is None else len(chest_normal)
        n_images = min(MAX_IMAGES, have) if have else DEFAULT_IMAGES
    t0 = time.perf_counter()
    sets = domain_sets(chest_normal, demo_by_domain(demo_items()), demo_image, n_images, seed, chest_source)
    inputs = input_numbers(sets, domain_model, n_boot, seed)
    log(f"{len(sets)} domains of {n_images} images each (input side: {time.perf_counter() - t0:.0f} s)")
    dom_sha = domain_classifier_sha256() if domain_model is not None else None
    done = []
    for cid in checkpoint_ids:
        t1 = time.perf_counter()
        base = str(split_variant(cid)[0])
        try:  # one checkpoint that cannot be loaded does not stop the others
            det = load_detector(base, device=device)
            folder, expected = resolve(base)
        except CheckpointError as exc:
            numbers = {"checkpoint": base, "error": str(exc)}
        else:
            numbers = manifold_numbers(det, sets, domain_model, det.checkpoint_id, n_boot, seed, inputs)
        if numbers.get("error"):
            log(f"{base}: skipped ({numbers['error']})")
            done.append({"checkpoint": base, "error": numbers["error"]})
            continue
        numbers.update({"weights_sha256": expected.get(WEIGHTS), "domain_classifier_sha256": dom_sha,
                        "images_per_domain": n_images, "augmentation": AUGMENTATION,
                        "reference": _reference_text(domain_model)})
        numbers["seconds"] = round(time.perf_counter() - t1, 1)
        if write:
            numbers["path"] = str(write_numbers(folder, numbers))
        done.append(numbers)
        log(f"{base}: {numbers['seconds']:.0f} s" + (f" -> {numbers['path']}" if write else ""))
    return done


def _reference_text(domain_model) -> str | None:
    if domain_model is None:
        return None
    meta = domain_model.meta
    n = meta.get("cradl_stats_images") if "CRADL" in domain_model.feature_space() else None
    split = str(meta.get("split", "the chest X-ray training images"))
    return (f"feature statistics of the normal training chest X-rays stored in the domain classifier "
            f"({n} images)" if n else f"feature statistics stored in the domain classifier ({split})")
