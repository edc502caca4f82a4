#!/usr/bin/env python3
"""Inference speed of the feature-modeling family (PaDiM, RD; optionally FAE, CFLOW-AD, CCD) on
this CPU: images/s of `Detector.predict` at batch 32 and 128x128 (freshly built models with their
default config, random backbone: the weights do not change the speed), against the 100 img/s
target and against a plain torchvision ResNet-18 forward pass (3 x 128 x 128, fp32, no_grad,
the whole network with layer4 and fc) measured in the same run, before and after each method.
Writes JSON to benchmarks/results/ (git-ignored).
    python benchmarks/bench_features.py [--methods padim rd fae cflow-ad ccd] [--repeats 5]
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
from upd_core.bench import time_call  # noqa: E402
from upd_core.registry import get_method  # noqa: E402

TARGET = 100.0  # images/s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["padim", "rd"])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/bench_features.json")
    args = ap.parse_args()
    from torchvision.models import resnet18

    x = torch.rand(args.batch, 1, args.size, args.size)
    x3 = x.expand(-1, 3, -1, -1).contiguous()
    plain = resnet18(weights=None).eval()

    def run_plain() -> None:
        with torch.no_grad():
            plain(x3)

    def plain_ips() -> float:
        return args.batch / time_call(run_plain, args.repeats)

    rows = [{"name": "torchvision ResNet-18 forward (plain, fp32)", "images_per_second": round(plain_ips(), 1)}]
    xs = x[:, 0].numpy()
    for m in args.methods:
        cls = get_method(m)
        cfg = cls.Config() if m == "ccd" else cls.Config(backbone="random")
        det = cls(cfg, image_size=args.size).eval()
        ips = args.batch / time_call(lambda: det.predict(xs, batch_size=args.batch), args.repeats)
        base = plain_ips()  # re-measured next to each method: the machine is shared
        rows.append({"name": f"{m} predict (default config)", "images_per_second": round(ips, 1),
                     "vs_target": round(ips / TARGET, 3), "plain_resnet18_images_per_second": round(base, 1),
                     "vs_plain_resnet18": round(ips / base, 3)})
    print(f"\nFeature methods, batch {args.batch}, {args.size}x{args.size}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, target {TARGET:.0f} img/s\n")
    print(f"{'what':46s} {'img/s':>8s} {'/target':>8s} {'ResNet-18 img/s':>16s} {'/ResNet-18':>11s}")
    for r in rows:
        print(f"{r['name']:46s} {r['images_per_second']:8.1f} {r.get('vs_target', float('nan')):8.3f} "
              f"{r.get('plain_resnet18_images_per_second', r['images_per_second']):16.1f} "
              f"{r.get('vs_plain_resnet18', 1.0):11.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.machine(),
                               "cpu": platform.processor(), "threads": torch.get_num_threads(),
                               "torch": torch.__version__, "batch": args.batch, "size": args.size,
                               "target_images_per_second": TARGET, "rows": rows}, indent=2) + "\n")
    print(f"\nWrote {out}")


if __name__ == "__main__":
    main()
