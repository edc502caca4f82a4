"""Tiny checkpoints and a generated labelled dataset for the app tests (no real data, no downloads).

`make_checkpoints(root)` trains spatial-ae, morphaeus and the 1x1-latent AE at 32x32 for one epoch
on smooth random images and evaluates them (so Benchmarks has rows): the 1x1-latent AE under a
stated epoch cap below its maximum ("not converged"), the others to their maximum ("converged"),
and spatial-ae once more with seed 1, whose evaluation is stored as a seed replica
(`<checkpoint>/seeds/seed1.json`, as the campaign does); `make_dataset(root)` writes a
small Kermany-like folder tree (train|test/NORMAL|PNEUMONIA) of generated PNGs.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

SIZE = 32
METHODS = ("spatial-ae", "morphaeus", "ae-latent-1")
CAPPED = ("ae-latent-1",)  # trained under an epoch cap below max_epochs: "not converged (epoch cap)"
SEED_REPLICAS = ("spatial-ae",)  # also trained with seed 1, its evaluation in seeds/seed1.json


def smooth_images(n: int, size: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth random 'anatomy' in [0, 1], (n, size, size) float32."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    low = rng.random((n, 5, 5))
    x = np.stack([ndimage.zoom(a, size / 5, order=3)[:size, :size] for a in low])
    x -= x.min(axis=(1, 2), keepdims=True)
    x /= x.max(axis=(1, 2), keepdims=True) + 1e-6
    return x.astype(np.float32)


def with_blob(img: np.ndarray, seed: int) -> np.ndarray:
    """A bright disc somewhere in the image (an 'abnormal' case)."""
    rng = np.random.default_rng(seed)
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.integers(h // 4, 3 * h // 4, size=2)
    r = h // 6
    out = img.copy()
    out[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1.0
    return out


def png_bytes(img: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


_MADE: dict[tuple[str, ...], Path] = {}


def shared_checkpoints(methods: tuple[str, ...] = METHODS) -> Path:
    """`make_checkpoints` once per test process (the tests only read them)."""
    if methods not in _MADE or not (_MADE[methods] / "manifest.json").exists():
        import tempfile

        _MADE[methods] = make_checkpoints(Path(tempfile.mkdtemp(prefix="upd-app-ckpts-")), methods)
    return _MADE[methods]


def make_checkpoints(root: Path, methods: tuple[str, ...] = METHODS) -> Path:
    """Train and evaluate tiny checkpoints in `root` and write its manifest (1 torch thread: these
    models are tiny, and on a shared CPU more threads only wait for each other)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _make_checkpoints(Path(root), methods)
    finally:
        torch.set_num_threads(threads)


def _make_checkpoints(root: Path, methods: tuple[str, ...]) -> Path:
    from upd_core.checkpoint import update_global_manifest
    from upd_core.evaluate import evaluate, evaluate_checkpoint_dir
    from upd_core.registry import get_method
    from upd_core.training import TrainConfig, fit, seed_everything

    x = smooth_images(24, SIZE, seed=1)
    test = smooth_images(8, SIZE, seed=2)
    test_x = np.concatenate([test, np.stack([with_blob(t, i) for i, t in enumerate(test)])])
    test_y = np.r_[np.zeros(8, int), np.ones(8, int)]
    for m in methods:
        cid = f"{m}-tiny-{SIZE}"
        det = get_method(m)(image_size=SIZE)
        out = root / cid
        tc = (TrainConfig(max_epochs=2, cap_epochs=1, batch_size=6, progress=False) if m in CAPPED
              else TrainConfig(max_epochs=1, batch_size=6, progress=False))
        fit(det, x[:18], x[18:], out, tc=tc, checkpoint_id=cid, dataset={"name": "generated", "split": "train"})
        det.checkpoint_id = cid
        res = evaluate(det, test_x, test_y, split="generated/test", synthetic_lesions=4)
        evaluate_checkpoint_dir(det, out, res, "generated")
        if m in SEED_REPLICAS:  # another seed of the same recipe: only its evaluation record is kept
            import json
            import tempfile

            seed_everything(1)
            seed_det = get_method(m)(image_size=SIZE)
            with tempfile.TemporaryDirectory() as tmp:
                fit(seed_det, x[:18], x[18:], Path(tmp) / cid, checkpoint_id=cid,
                    tc=TrainConfig(max_epochs=1, batch_size=6, progress=False, seed=1))
            seed_res = evaluate(seed_det, test_x, test_y, split="generated/test", synthetic_lesions=4)
            (out / "seeds").mkdir(exist_ok=True)
            (out / "seeds" / "seed1.json").write_text(json.dumps({**seed_res, "dataset": "generated"}, default=str))
    update_global_manifest(root)
    return root


def make_dataset(root: Path, n: int = 6) -> Path:
    """A folder-per-class dataset of generated 64x64 PNGs: <root>/cxr-kermany/{train,test}/{NORMAL,PNEUMONIA}."""
    base = Path(root) / "cxr-kermany"
    imgs = smooth_images(3 * n, 64, seed=5)
    for split, part in (("train", imgs[:n]), ("test", imgs[n:2 * n])):
        for i, im in enumerate(part):
            d = base / split / "NORMAL"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"n{i:03d}.png").write_bytes(png_bytes(im))
    for i, im in enumerate(imgs[2 * n:]):
        d = base / "test" / "PNEUMONIA"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"p{i:03d}.png").write_bytes(png_bytes(with_blob(im, i)))
    return base


@contextlib.contextmanager
def env(**values: str | None) -> Iterator[None]:
    """Temporarily set (or, with None, unset) environment variables."""
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = str(v)
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def tiny_domain_model(seed: int = 0):
    """A domain classifier with 16-d features and statistics of generated 'training' images."""
    import torch

    from upd_core.domain import CHEST, DomainClassifier, DomainNet
    from upd_core.metrics import feature_stats

    torch.manual_seed(seed)
    clf = DomainClassifier(DomainNet(3, width=2), [CHEST, "photo", "noise"], {}, {"split": "generated"})
    mu, sig = feature_stats(clf.cnn_features(smooth_images(80, 32, seed=11)))
    clf.stats = {"cnn": {"mu": mu, "sigma": sig}}
    return clf
