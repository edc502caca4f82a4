#!/usr/bin/env python3
"""Does bf16 autocast + channels_last keep quality while speeding up CPU training?

Trains the same method twice from the same seed for a few epochs on the Kermany normal training
images, once in fp32 and once with bf16 autocast (channels_last in both), and prints validation
losses per epoch and training images/s side by side. Usage:
    python benchmarks/bench_training_numerics.py --methods spatial-ae vae --epochs 3
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from upd_core.data import load_split
from upd_core.registry import get_method
from upd_core.training import TrainConfig, fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", nargs="+", default=["spatial-ae", "vae"])
    ap.add_argument("--data", default="kermany")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--out", default="benchmarks/results/training_numerics.json")
    args = ap.parse_args()
    _, x_train, y_train, _, _ = load_split(args.data, "auto", "train", 128)
    _, x_val, _, _, _ = load_split(args.data, "auto", "val", 128)
    x_train = x_train[y_train == 0]
    rows = []
    for method in args.methods:
        for amp in ("off", "bf16"):
            det = get_method(method)()
            with tempfile.TemporaryDirectory() as tmp:
                rec = fit(det, x_train, x_val, tmp, tc=TrainConfig(max_epochs=args.epochs, patience=10 ** 6,
                                                                   amp=amp, progress=False))
            rows.append({"method": method, "amp": amp, "val_loss": [h["val_loss"] for h in rec["history"]],
                         "train_images_per_second": rec["images_per_second"]})
            print(f"{method:12s} amp={amp:4s} val loss per epoch "
                  + " ".join(f"{v:.5f}" for v in rows[-1]["val_loss"])
                  + f"   {rec['images_per_second']:.1f} img/s", flush=True)
    for method in args.methods:
        fp32, bf16 = (r for r in rows if r["method"] == method)
        print(f"{method}: bf16/fp32 speed ratio {bf16['train_images_per_second'] / fp32['train_images_per_second']:.2f}, "
              f"final val loss ratio {bf16['val_loss'][-1] / fp32['val_loss'][-1]:.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
