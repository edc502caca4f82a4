#!/usr/bin/env python3
"""Inference speed of the MorphAEus family next to a plain PyTorch baseline (same run).

Images/s of `Detector.predict` at 128x128, batch 32 (untrained weights by default, or the shipped
checkpoints with --checkpoints), each with the ratio to a plain conv AE called directly in fp32,
re-measured after every method so drifting machine load does not skew the ratios. Prints a
table and writes JSON to benchmarks/results/ (git-ignored). Usage:
    python benchmarks/bench_morphaeus.py [--checkpoints] [--methods morphaeus dae] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
from upd_core.bench import inference_benchmark  # noqa: E402

METHODS = ["morphaeus", "morphaeus-no-warp", "morphaeus-no-warp-no-pl", "beta-vae", "aae", "soft-intro-vae",
           "dae", "ae-latent-32", "ae-latent-16", "ae-latent-8", "ae-latent-4", "ae-latent-1"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=METHODS)
    ap.add_argument("--checkpoints", action="store_true", help="benchmark the shipped checkpoints of these methods")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/bench_morphaeus.json")
    args = ap.parse_args()
    rows = inference_benchmark(methods=args.methods, batch_size=args.batch_size, size=args.size,
                               repeats=args.repeats, checkpoints=args.checkpoints)
    print(f"\nInference at {args.size}x{args.size}, batch {args.batch_size}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__} ({'shipped checkpoints' if args.checkpoints else 'untrained weights'})\n")
    print(f"{'model':34s} {'images/s':>10s} {'baseline img/s':>15s} {'ratio':>7s}")
    for r in rows:
        print(f"{r['name']:34s} {r['images_per_second']:10.1f} "
              f"{r.get('baseline_images_per_second', r['images_per_second']):15.1f} {r['ratio']:7.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.machine(),
                               "cpu": platform.processor(), "threads": torch.get_num_threads(),
                               "torch": torch.__version__, "batch_size": args.batch_size, "size": args.size,
                               "checkpoints": args.checkpoints, "rows": rows}, indent=2) + "\n")
    print(f"\nWrote {out}")


if __name__ == "__main__":
    main()
