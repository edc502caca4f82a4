#!/usr/bin/env python3
"""Folder scoring speed: `predict --folder` (upd_core.batch_predict: DataLoader workers, robust
decoding, score + percentile + out-of-distribution check, rows written per batch) vs a plain
PyTorch loop over the same files (PIL decode, resize, the checkpoint's network under no_grad,
mean residual), measured interleaved in the same run (medians of --repeats) so the ratio holds on
a noisy machine. The folder figure includes loading the checkpoint and the domain classifier.

Generated images (smooth random PNGs, 256x256 by default) are written to a temporary folder;
the checkpoint is a shipped one (read-only). Prints a table, writes JSON to benchmarks/results/.
    python benchmarks/bench_predict_folder.py [--checkpoint spatial-ae-kermany-128] [--images 128]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
from upd_core.batch_predict import default_workers, score_folder  # noqa: E402
from upd_core.bench import report  # noqa: E402
from upd_core.checkpoint import load_detector  # noqa: E402


def write_images(folder: Path, n: int, size: int) -> list[Path]:
    """n smooth random 8-bit PNGs (a cheap stand-in for radiographs)."""
    g = torch.Generator().manual_seed(0)
    x = F.interpolate(torch.rand(n, 1, 6, 6, generator=g), size=(size, size), mode="bicubic", align_corners=False)
    x = (x - x.amin((2, 3), keepdim=True)) / (x.amax((2, 3), keepdim=True) - x.amin((2, 3), keepdim=True) + 1e-6)
    paths = []
    for i, im in enumerate(x[:, 0].numpy()):
        p = folder / f"d{i % 4}" / f"img{i:04d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((im * 255).astype(np.uint8)).save(p)
        paths.append(p)
    return paths


def plain_loop(det, paths: list[Path], batch_size: int) -> float:
    """Seconds for the plain PyTorch loop: decode, resize, forward, mean |x - x_hat|."""
    t0 = time.perf_counter()
    s = det.image_size
    scores = []
    for i in range(0, len(paths), batch_size):
        arrs = [np.asarray(Image.open(p).convert("L").resize((s, s), Image.BILINEAR), np.float32) / 255.0
                for p in paths[i:i + batch_size]]
        x = torch.from_numpy(np.stack(arrs))[:, None].to(det.device)
        with torch.no_grad():
            amap = det.forward_maps(x)["anomaly_map"]
        scores.append(amap.float().mean((1, 2)).cpu())
    torch.cat(scores)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="spatial-ae-kermany-128", help="shipped checkpoint id")
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=256, help="side of the generated PNGs")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="*", help="DataLoader workers to try (default: 0 and the default)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are reported")
    ap.add_argument("--out", default="benchmarks/results/bench_predict_folder.json")
    args = ap.parse_args()
    det = load_detector(args.checkpoint, device="cpu")
    workers = args.workers if args.workers else sorted({0, default_workers()})
    n = args.images
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        paths = write_images(folder, n, args.image_size)
        plain_loop(det, paths[:args.batch_size], args.batch_size)  # warm-up (threads, allocator)

        def folder_ips(w: int, r: int) -> float:
            t0 = time.perf_counter()  # includes loading the checkpoint and the domain classifier
            score_folder(folder, [args.checkpoint], Path(tmp) / f"results-{w}-{r}.csv", batch_size=args.batch_size,
                         workers=w, device="cpu", progress=False)
            return n / (time.perf_counter() - t0)

        base, runs = [], {w: [] for w in workers}
        for r in range(args.repeats):  # interleaved, so a busy machine slows both alike
            base.append(n / plain_loop(det, paths, args.batch_size))
            for w in workers:
                runs[w].append(folder_ips(w, r))
    b = float(np.median(base))
    rows = [{"name": "plain PyTorch loop (PIL decode + network)", "images_per_second": round(b, 1), "ratio": 1.0}]
    for w in workers:
        ips = float(np.median(runs[w]))
        rows.append({"name": f"predict --folder, {w} worker(s)", "images_per_second": round(ips, 1),
                     "ratio": round(ips / b, 3), "baseline_images_per_second": round(b, 1)})
    report(rows, f"Folder scoring, {args.images} PNGs {args.image_size}px, {args.checkpoint}, batch {args.batch_size}",
           args.out, first_col="what", checkpoint=args.checkpoint, images=args.images, batch_size=args.batch_size,
           repeats=args.repeats)


if __name__ == "__main__":
    main()
