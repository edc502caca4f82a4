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
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
from upd_core.bench import inference_benchmark, report  # noqa: E402

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
    report(rows, f"Inference at {args.size}x{args.size}, batch {args.batch_size} "
                 f"({'shipped checkpoints' if args.checkpoints else 'untrained weights'})", args.out,
           batch_size=args.batch_size, size=args.size, checkpoints=args.checkpoints)


if __name__ == "__main__":
    main()
