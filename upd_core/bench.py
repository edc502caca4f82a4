"""Inference speed measurement shared by `python -m upd_core benchmark` and benchmarks/.

Every figure is reported next to a plain PyTorch baseline measured in the same run (a small
conv auto-encoder called directly, fp32, no wrapper), so noisy machines still give usable ratios.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn


def baseline_net() -> nn.Module:
    """Plain conv AE, 4 strided convs down and 4 up: the yardstick for the ratios."""
    enc = [nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
           nn.Conv2d(64, 128, 3, 2, 1), nn.ReLU(), nn.Conv2d(128, 128, 3, 2, 1), nn.ReLU()]
    dec = [nn.ConvTranspose2d(128, 128, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(),
           nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1), nn.Sigmoid()]
    return nn.Sequential(*enc, *dec).eval()


def time_call(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds of `fn()` over `repeats` runs after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def inference_benchmark(methods: list[str] | None = None, batch_size: int = 32, size: int = 128,
                        repeats: int = 5, checkpoints: bool = False) -> list[dict]:
    """images/s of `Detector.predict` per method (untrained weights, or shipped checkpoints)."""
    from .checkpoint import list_checkpoints, load_detector
    from .registry import get_method, list_methods

    x = torch.rand(batch_size, 1, size, size)
    base = baseline_net()

    def run_base() -> None:
        with torch.no_grad():
            base(x)

    base_ips = batch_size / time_call(run_base, repeats)
    rows = [{"name": "baseline (plain conv AE, fp32)", "images_per_second": round(base_ips, 1), "ratio": 1.0}]
    if checkpoints:
        targets = [(c.id, lambda c=c: load_detector(c.id)) for c in list_checkpoints()
                   if not methods or c.method in methods]
    else:
        targets = [(m, lambda m=m: get_method(m)(image_size=size)) for m in (methods or list_methods())]
    xs = x[:, 0].numpy()
    for name, make in targets:
        det = make().eval()
        ips = batch_size / time_call(lambda: det.predict(xs, batch_size=batch_size), repeats)
        base_ips_now = batch_size / time_call(run_base, max(1, repeats // 2))  # re-measure: drift
        rows.append({"name": name, "images_per_second": round(ips, 1),
                     "ratio": round(ips / base_ips_now, 3), "baseline_images_per_second": round(base_ips_now, 1)})
    return rows


def report(rows: list[dict], title: str, out: str | Path, first_col: str = "model", **meta: object) -> None:
    """Print a speed table (images/s, baseline of the same run, ratio) and write it as JSON to `out`."""
    width = max([len(first_col)] + [len(r["name"]) for r in rows]) + 1
    print(f"\n{title}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print(f"{first_col:{width}s} {'images/s':>10s} {'baseline img/s':>15s} {'ratio':>7s}")
    for r in rows:
        print(f"{r['name']:{width}s} {r['images_per_second']:10.1f} "
              f"{r.get('baseline_images_per_second', r['images_per_second']):15.1f} {r['ratio']:7.3f}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.machine(),
                               "cpu": platform.processor(), "threads": torch.get_num_threads(),
                               "torch": torch.__version__, **meta, "rows": rows}, indent=2) + "\n")
    print(f"\nWrote {out}")
