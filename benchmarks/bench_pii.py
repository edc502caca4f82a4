#!/usr/bin/env python3
"""PII / FPI self-supervised sample generation speed on ONE core (torch.set_num_threads(1)):
milliseconds per 128x128 sample for Poisson blending (DST solver, PII) and the convex
combination (FPI), plus the DST Poisson solve alone for the largest patch (0.4 N).
Target: < 20 ms per PII sample.
Writes JSON to benchmarks/results/ (git-ignored).
    python benchmarks/bench_pii.py [--size 128] [--n 256]
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
from upd_core.poisson import make_samples, solve_dirichlet  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--n", type=int, default=256, help="samples per timing run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results/bench_pii.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.rand(args.n, 1, args.size, args.size)
    rows = []
    for mode, name in (("poisson", "PII sample (Poisson blend, Eq. 8 mixing)"), ("linear", "FPI sample (convex)")):
        sec = time_call(lambda: make_samples(x, mode, torch.Generator().manual_seed(0)), args.repeats)
        rows.append({"name": name, "ms_per_sample": round(1000 * sec / args.n, 4)})
    side = int(0.4 * args.size) - 2
    rhs = torch.rand(side, side, dtype=torch.float64)
    sec = time_call(lambda: solve_dirichlet(rhs), max(20, args.repeats))
    rows.append({"name": f"DST Poisson solve alone ({side}x{side} interior)", "ms_per_sample": round(1000 * sec, 4)})
    print(f"\nSample generation at {args.size}x{args.size}, 1 thread, torch {torch.__version__}\n")
    print(f"{'what':52s} {'ms/sample':>10s}")
    for r in rows:
        print(f"{r['name']:52s} {r['ms_per_sample']:10.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.machine(),
                               "cpu": platform.processor(), "threads": 1, "torch": torch.__version__,
                               "size": args.size, "n": args.n, "rows": rows}, indent=2) + "\n")
    print(f"\nWrote {out}")


if __name__ == "__main__":
    main()
