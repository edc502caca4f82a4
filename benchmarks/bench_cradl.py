#!/usr/bin/env python3
"""CRADL inference speed: score only (encoder + density NLL, no backward) vs score + NLL-gradient
heatmap (`predict`, one backward pass through the encoder, then median + Gaussian post-processing),
next to the plain PyTorch baseline of upd_core.bench measured in the same run.

Also the ceVAE (KL-gradient + reconstruction maps) for comparison. 128x128, batch 32 by default;
untrained weights (speed does not depend on training) or the shipped checkpoint with
--checkpoint cradl-kermany-128. Prints a table, writes JSON to benchmarks/results/ (git-ignored).
    python benchmarks/bench_cradl.py [--checkpoint cradl-kermany-128] [--repeats 5]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing
from upd_core.bench import baseline_net, report, time_call  # noqa: E402
from upd_core.checkpoint import load_detector  # noqa: E402
from upd_core.registry import get_method  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="shipped CRADL checkpoint id (default: untrained weights)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/bench_cradl.json")
    args = ap.parse_args()
    n, s = args.batch_size, args.size
    x = torch.rand(n, 1, s, s)
    xs = x[:, 0].numpy()
    base = baseline_net()

    def base_ips() -> float:
        def run() -> None:
            with torch.no_grad():
                base(x)
        return n / time_call(run, args.repeats)

    if args.checkpoint:
        det = load_detector(args.checkpoint, device="cpu")
    else:
        det = get_method("cradl")(image_size=s).eval()
        det.fit_extra(torch.rand(64, 1, s, s), progress=False)  # heads on random features: same cost
    rows = [{"name": "baseline (plain conv AE, fp32)", "images_per_second": round(base_ips(), 1), "ratio": 1.0}]

    def add(name: str, fn) -> None:
        ips = n / time_call(fn, args.repeats)
        b = base_ips()
        rows.append({"name": name, "images_per_second": round(ips, 1), "ratio": round(ips / b, 3),
                     "baseline_images_per_second": round(b, 1)})

    add("cradl score only (NLL, no backward)", lambda: det.score_all(xs, batch_size=n))
    for d in ("gmm1", "gmm8", "flow"):  # density heads = scoring variants (`cradl-kermany-128@gmm8`)
        det.set_variant(d)
        add(f"cradl score + heatmap ({d}, predict)", lambda: det.predict(xs, batch_size=n))
    det.set_variant(None)
    det.config.all_maps = True
    add("cradl score + heatmaps of all 5 heads", lambda: det.predict(xs, batch_size=n))
    det.config.all_maps = False
    cevae = get_method("cevae")(image_size=s).eval()
    cevae.fit_extra(torch.rand(64, 1, s, s), progress=False)
    add("cevae (rec, KL-grad, combi, NLL-grad maps)", lambda: cevae.predict(xs, batch_size=n))

    report(rows, f"CRADL inference at {s}x{s}, batch {n} ({args.checkpoint or 'untrained weights'})", args.out,
           first_col="what", batch_size=n, size=s, checkpoint=args.checkpoint)


if __name__ == "__main__":
    main()
