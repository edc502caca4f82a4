"""A small image-domain classifier: is this a chest X-ray, a brain MRI, a photo, a digit...?

Used by the app for two things: the out-of-distribution warning on uploads, and the Myth page's
manifold test (MorphAEus paper, Table 1 idea): how confident is a classifier that a method's
*reconstruction* of a brain MRI or a cat is a chest X-ray, and how far (Fréchet distance) are the
reconstructions from the training images in a feature space. The paper used Inception features
(FID) and a MedNIST classifier; neither can be downloaded here, so the feature space is the
project's own: the CRADL SimCLR encoder when its checkpoint exists at training time, else this
classifier's penultimate layer. Every number says which ("FD (CRADL encoder)", never FID).

Training data: the Kermany normal training chest X-rays (class "chest-xray") and heavily augmented
variants of the embedded demo images of every other domain (slices of the Colin27 brain volume,
photos, textures, documents, retina, digits, Fashion-MNIST, CT/MR DICOM, phantom, microscopy).
The checkpoint (`checkpoints/domain-classifier/`) has the one checkpoint format of every detector:
model.safetensors (network + feature statistics), config.json (`"kind": "domain-classifier"`,
classes, recipe, training record), MODEL_CARD.md and manifest.json with sha256; it is listed under
"auxiliary" in checkpoints/manifest.json and verified against it on load. It is not a detection
method: not in the method registry, not among `list_checkpoints()`.

    python -m upd_core.domain train --out checkpoints/domain-classifier   # ~2 min on 2 CPU cores
"""
from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import (CONFIG, FORMAT, WEIGHTS, checkpoints_root, expected_sha256, read_verified, refresh,
                         save_tensors_atomic, sha256_file, write_json)
from .errors import CheckpointError

SIZE = 64  # classifier input side; images are resized to it
CHEST = "chest-xray"
FOLDER = KIND = "domain-classifier"  # folder, id and `kind` of the checkpoint
WIDTH = 16
# The training recipe, recorded in config.json and the card.
RECIPE = {"optimizer": "Adam", "lr": 2e-3, "weight_decay": 1e-4, "schedule": "cosine", "batch_size": 64,
          "loss": "class-weighted cross-entropy", "held_out_fraction": 0.1, "per_domain": 240}
OTHER_DOMAINS = ("embedded demo set (upd_core.demo: scikit-image, scikit-learn, pydicom, nibabel, "
                 "Debian dataset-fashion-mnist / mricron-data), augmented (random crops, flips, rotations, "
                 "gamma, noise)")


class DomainNet(nn.Module):
    """Four strided conv blocks, global average pooling, a linear head; 128-d features."""

    def __init__(self, n_classes: int, width: int = WIDTH) -> None:
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(a, b, 3, 2, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.1),
                       nn.Conv2d(b, b, 3, 1, 1, bias=False), nn.BatchNorm2d(b), nn.LeakyReLU(0.1)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1], n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _prep(images: Any) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim == 2:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]
    if x.shape[-1] != SIZE or x.shape[-2] != SIZE:
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0, 1)


def _cradl_features_fn():
    """(fn images->(N,D) features, sha256 of the CRADL weights) or (None, None)."""
    from .perceptual import _load_ssl_detector, ssl_feature_fn

    det = _load_ssl_detector()
    if det is None:
        return None, None
    feats = ssl_feature_fn(det)
    size = int(det.image_size)

    @torch.no_grad()
    def fn(images: Any) -> np.ndarray:
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        x = x[:, None] if x.ndim == 3 else x
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        out = []
        for i in range(0, len(x), 64):
            f = feats(x[i:i + 64])[-1]
            out.append(f.float().mean((2, 3)))
        return torch.cat(out).numpy().astype(np.float64)

    return fn, sha256_file(Path(det.checkpoint_dir) / "model.safetensors")


class DomainClassifier:
    """The trained classifier plus the feature statistics of the chest X-ray training images.

    `meta`: the checkpoint's config and training record in one flat dict (classes,
    held_out_accuracy, cradl_sha256, ...)."""

    def __init__(self, net: DomainNet, classes: list[str], stats: dict[str, dict[str, np.ndarray]],
                 meta: dict[str, Any]) -> None:
        self.net = net.eval()
        self.classes = classes
        self.stats = stats
        self.meta = meta
        self._cradl = None

    @torch.no_grad()
    def probabilities(self, images: Any) -> np.ndarray:
        """(N, n_classes) softmax probabilities."""
        x = _prep(images)
        return torch.cat([F.softmax(self.net(x[i:i + 256]), 1) for i in range(0, len(x), 256)]).numpy()

    def chest_probability(self, images: Any) -> np.ndarray:
        """P(chest X-ray) per image."""
        return self.probabilities(images)[:, self.classes.index(CHEST)]

    @torch.no_grad()
    def cnn_features(self, images: Any) -> np.ndarray:
        x = _prep(images)
        return torch.cat([self.net.features(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy().astype(np.float64)

    def feature_space(self) -> str:
        """Which features the Fréchet distance uses, as shown to people."""
        if "cradl" in self.stats and self._cradl_fn() is not None:
            return "FD (CRADL encoder features)"
        return "FD (domain-classifier features)"

    def _cradl_fn(self):
        if self._cradl is None:
            fn, sha = _cradl_features_fn() if "cradl" in self.stats else (None, None)
            ok = fn is not None and sha == self.meta.get("cradl_sha256")
            self._cradl = (fn if ok else False)
        return self._cradl or None

    def frechet_to_training(self, images: Any) -> float | None:
        """Fréchet distance of the images' features to those of the chest X-ray training images."""
        from .metrics import feature_stats, frechet_distance

        images = np.asarray(images, np.float32)
        if len(images) < 2:
            return None
        fn = self._cradl_fn()
        key = "cradl" if fn is not None else "cnn"
        feats = fn(images) if fn is not None else self.cnn_features(images)
        mu, sig = feature_stats(feats)
        ref = self.stats[key]
        return frechet_distance(mu, sig, ref["mu"], ref["sigma"])


def domain_dir(root: Path | None = None) -> Path:
    return Path(root or checkpoints_root()) / FOLDER


def _flat_meta(cfg: dict[str, Any]) -> dict[str, Any]:
    return {**cfg.get("config", {}), **cfg.get("training", {})}


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, root: str, mtimes: tuple[int, int]) -> DomainClassifier:
    d = Path(path)
    cfg, state = read_verified(d, expected_sha256(d, Path(root)))
    if cfg.get("kind") != KIND:
        raise CheckpointError(f"{d} does not hold a domain classifier (kind {cfg.get('kind')!r})")
    classes = list(cfg["config"]["classes"])
    net = DomainNet(len(classes), cfg["config"].get("width", WIDTH))
    net.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("net.")})
    stats = {}
    for key in ("cnn", "cradl"):
        if f"stats.{key}.mu" in state:
            stats[key] = {"mu": state[f"stats.{key}.mu"].double().numpy(),
                          "sigma": state[f"stats.{key}.sigma"].double().numpy()}
    return DomainClassifier(net, classes, stats, _flat_meta(cfg))


def load_domain_classifier(root: Path | None = None) -> DomainClassifier | None:
    """The shipped domain classifier, or None when it is absent or does not verify.

    Verified like a detector: against the "auxiliary" entry of `root`'s manifest.json when it is
    listed there, else against the folder's own manifest.json."""
    root = Path(root or checkpoints_root())
    d = domain_dir(root)
    if not (d / CONFIG).is_file() or not (d / WEIGHTS).is_file():
        return None
    try:
        mtimes = ((d / WEIGHTS).stat().st_mtime_ns, (d / CONFIG).stat().st_mtime_ns)
        return _load_cached(str(d), str(root), mtimes)
    except (CheckpointError, OSError, ValueError, KeyError, RuntimeError):
        return None


# ---------------------------------------------------------------- training

def _augment_batch(img: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n random crops / flips / rotations / gamma / noise variants of one image, at SIZE."""
    from scipy import ndimage

    from .imaging import load_image

    out = []
    h, w = img.shape
    for _ in range(n):
        s = rng.uniform(0.55, 1.0)
        ch, cw = max(8, int(h * s)), max(8, int(w * s * rng.uniform(0.8, 1.25)))
        cw = min(cw, w)
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        a = img[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            a = a[:, ::-1]
        if rng.random() < 0.3:
            a = ndimage.rotate(a, rng.uniform(-25, 25), reshape=False, order=1, mode="nearest")
        a = load_image(np.ascontiguousarray(a, np.float32), size=SIZE, normalize="minmax")
        a = np.clip(a, 0, 1) ** rng.uniform(0.7, 1.4)
        if rng.random() < 0.3:
            a = np.clip(a + rng.normal(0, rng.uniform(0.01, 0.05), a.shape), 0, 1)
        out.append(a.astype(np.float32))
    return np.stack(out)


def build_training_set(chest: np.ndarray, per_domain: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Chest X-rays (given) + augmented demo images of every other domain, with class labels."""
    from . import demo
    from .imaging import load_volume

    rng = np.random.default_rng(seed)
    by_domain: dict[str, list[np.ndarray]] = {}
    for item in demo.list_demo_images():
        if item.domain == demo.DRR_DOMAIN:  # synthetic chest radiographs are not an "other domain"
            continue
        try:
            by_domain.setdefault(item.domain, []).append(demo.load_demo(item.id, size=128))
        except Exception:  # an unreadable optional item is skipped
            continue
    # Brain volumes give many distinct slices: add them to the brain-mri domain.
    for item in demo.list_demo_images("brain-mri"):
        try:
            src = item.loader()
            vol = load_volume(src) if not isinstance(src, np.ndarray) or src.ndim == 3 else None
        except Exception:
            vol = None
        if vol is not None and vol.ndim == 3 and len(vol) > 8:
            for k in np.linspace(len(vol) * 0.25, len(vol) * 0.8, 12).astype(int):
                by_domain["brain-mri"].append(vol[k])
    classes = [CHEST] + sorted(by_domain) + ["noise"]
    xs = [np.asarray(chest, np.float32)]
    ys = [np.zeros(len(chest), int)]
    for ci, name in enumerate(classes[1:-1], start=1):
        imgs = by_domain[name]
        per = max(1, per_domain // len(imgs))
        xs.append(np.concatenate([_augment_batch(im, per, rng) for im in imgs]))
        ys.append(np.full(len(xs[-1]), ci))
    noise = [np.clip(F.interpolate(torch.rand(1, 1, k, k), size=(SIZE, SIZE), mode="bilinear")[0, 0].numpy(), 0, 1)
             for k in rng.integers(2, 64, size=per_domain)]
    xs.append(np.stack(noise).astype(np.float32))
    ys.append(np.full(per_domain, len(classes) - 1))
    return np.concatenate([_prep(x).numpy()[:, 0] for x in xs]), np.concatenate(ys), classes


def train(chest_images: np.ndarray, out: Path, epochs: int = 12, seed: int = 0,
          per_domain: int = RECIPE["per_domain"], progress: bool = True, extra_chest: np.ndarray | None = None,
          dataset_name: str = "cxr-kermany") -> dict[str, Any]:
    """Train the classifier and store it with the chest-X-ray feature statistics in `out`.

    `chest_images`: the detectors' (normal) training chest X-rays, also used for the feature
    statistics; `extra_chest`: further chest X-rays (e.g. with pneumonia) that only widen the
    classifier's chest class, so that pathology is not mistaken for another domain. Writes a
    checkpoint folder (weights, config, card, manifests); returns its flat `meta` dict.
    """
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    all_chest = chest_images if extra_chest is None else np.concatenate([chest_images, extra_chest])
    x, y, classes = build_training_set(all_chest, per_domain, seed)
    net = DomainNet(len(classes))
    opt = torch.optim.Adam(net.parameters(), lr=RECIPE["lr"], weight_decay=RECIPE["weight_decay"])
    counts = np.bincount(y, minlength=len(classes)).astype(np.float32)
    weight = torch.as_tensor(counts.sum() / (len(classes) * np.maximum(counts, 1)))
    xt, yt = torch.as_tensor(x)[:, None], torch.as_tensor(y)
    rng = np.random.default_rng(seed)
    val = rng.random(len(y)) < RECIPE["held_out_fraction"]
    tr_idx, va_idx = np.nonzero(~val)[0], np.nonzero(val)[0]
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    best, best_acc, acc, best_epoch = None, -1.0, 0.0, 0
    for epoch in range(epochs):
        net.train()
        perm = rng.permutation(tr_idx)
        bs = RECIPE["batch_size"]
        for i in range(0, len(perm), bs):
            b = perm[i:i + bs]
            if len(b) < 2:  # BatchNorm needs two samples
                continue
            loss = F.cross_entropy(net(xt[b]), yt[b], weight=weight)
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        net.eval()
        with torch.no_grad():
            acc = float((net(xt[va_idx]).argmax(1) == yt[va_idx]).float().mean()) if len(va_idx) else 0.0
        if acc >= best_acc:  # keep the best held-out epoch
            best_acc, best_epoch = acc, epoch + 1
            best = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if progress:
            print(f"epoch {epoch + 1}/{epochs}: loss {float(loss):.4f}  held-out accuracy {acc:.3f}", flush=True)
    if best is not None:
        net.load_state_dict(best)
        acc = best_acc
    net.eval()
    clf = DomainClassifier(net, classes, {}, {})
    chest = np.asarray(chest_images, np.float32)
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    from .metrics import feature_stats

    mu, sig = feature_stats(clf.cnn_features(chest))
    tensors["stats.cnn.mu"], tensors["stats.cnn.sigma"] = torch.as_tensor(mu), torch.as_tensor(sig)
    fn, cradl_sha = _cradl_features_fn()
    if fn is not None:
        mu, sig = feature_stats(fn(chest))
        tensors["stats.cradl.mu"], tensors["stats.cradl.sigma"] = torch.as_tensor(mu), torch.as_tensor(sig)
    out = Path(out)
    n_extra = 0 if extra_chest is None else len(extra_chest)
    split = f"train split: {len(chest)} normal images (class and feature statistics)" + (
        f" and {n_extra} abnormal images (class only)" if n_extra else "")
    cfg = {"format": FORMAT, "id": FOLDER, "kind": KIND, "image_size": SIZE,
           "config": {"classes": classes, "width": WIDTH, **{k: v for k, v in RECIPE.items() if k != "per_domain"}},
           "dataset": {"name": dataset_name, "split": split, "n_abnormal_chest": n_extra,
                       "other_domains": OTHER_DOMAINS, "per_domain": per_domain},
           "training": {"epochs": epochs, "best_epoch": best_epoch, "held_out_accuracy": round(acc, 4),
                        "seconds": round(time.perf_counter() - t0, 1), "n_train": int(len(tr_idx)),
                        "n_per_class": np.bincount(y).tolist(), "seed": seed, "device": "cpu",
                        "torch": torch.__version__, "feature_spaces": ["cnn"] + (["cradl"] if fn is not None else []),
                        "cradl_sha256": cradl_sha}}
    save_tensors_atomic(out / WEIGHTS, tensors)
    write_json(out / CONFIG, cfg)
    refresh(out)
    return _flat_meta(cfg)


def refresh_ssl_stats(chest_images: np.ndarray, out: Path | None = None) -> str | None:
    """Recompute the chest X-ray statistics in the CRADL encoder's feature space after CRADL was
    retrained, without retraining the classifier (its network weights stay byte-identical).
    Returns the new CRADL sha256, or None when no CRADL checkpoint can be loaded."""
    from safetensors.torch import load_file

    from .metrics import feature_stats

    out = Path(out or domain_dir())
    fn, cradl_sha = _cradl_features_fn()
    if fn is None:
        return None
    tensors = load_file(str(out / WEIGHTS))
    mu, sig = feature_stats(fn(np.asarray(chest_images, np.float32)))
    tensors["stats.cradl.mu"], tensors["stats.cradl.sigma"] = torch.as_tensor(mu), torch.as_tensor(sig)
    cfg = json.loads((out / CONFIG).read_text())
    cfg["training"]["cradl_sha256"] = cradl_sha
    cfg["training"]["feature_spaces"] = sorted(set(cfg["training"].get("feature_spaces", ["cnn"])) | {"cradl"})
    cfg["training"]["cradl_stats_images"] = int(len(chest_images))
    save_tensors_atomic(out / WEIGHTS, tensors)
    write_json(out / CONFIG, cfg)
    refresh(out)
    return cradl_sha


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m upd_core.domain", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train the domain classifier on Kermany normals + the demo set")
    t.add_argument("--data", default="kermany", help="chest X-ray data set (folder or short name)")
    t.add_argument("--out", default=str(domain_dir()), help="output folder")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--limit", type=int, default=None, help="use at most this many chest X-rays per class")
    t.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("refresh-ssl-stats", help="recompute the CRADL feature statistics after CRADL was "
                       "retrained (the classifier itself is not retrained)")
    r.add_argument("--data", default="kermany", help="chest X-ray data set (folder or short name)")
    r.add_argument("--out", default=str(domain_dir()), help="domain classifier folder")
    args = p.parse_args(argv)
    if args.cmd == "refresh-ssl-stats":
        from .data import load_split

        _, chest, labels, _, _ = load_split(args.data, "auto", "train", SIZE)
        sha = refresh_ssl_stats(chest[labels == 0], Path(args.out))
        print("no CRADL checkpoint to compute statistics with" if sha is None else f"CRADL statistics for {sha[:12]}")
        return 0 if sha else 2
    from .data import load_arrays, open_dataset
    from .paths import dataset_name, resolve_dataset

    root = resolve_dataset(args.data)
    try:  # folder layouts can also return the abnormal training images (they widen the chest class)
        ds = open_dataset(root, split="train", size=128, train_abnormal=True)
    except TypeError:
        ds = open_dataset(root, split="train", size=128)
    images, labels, _, _ = load_arrays(ds)
    labels = np.asarray(labels)
    chest = images[labels == 0][: args.limit]
    sick = images[labels == 1]  # abnormal chest X-rays widen the chest class (never used for statistics)
    sick = sick[np.linspace(0, len(sick) - 1, min(len(sick), len(chest))).astype(int)] if len(sick) else None
    meta = train(chest, Path(args.out), epochs=args.epochs, seed=args.seed, extra_chest=sick,
                 dataset_name=dataset_name(root))
    print(json.dumps({k: v for k, v in meta.items() if k != "n_per_class"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
