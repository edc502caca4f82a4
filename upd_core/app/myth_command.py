"""`python -m upd_core myth precompute`: the Myth page's manifold test, computed once per checkpoint.

Kept out of cli.py (which only parses) so that the command's imports (torch, the domain classifier,
the data loader) load only when it runs."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import UPDError


def precompute_command(args: argparse.Namespace) -> int:
    """Compute and store the numbers for the checkpoints `args` names (all with reconstructions by
    default), print one summary line per checkpoint (or JSON); an error names every failed one."""
    import torch

    from . import manifold, myth
    from .formatting import table_value
    from .views import checkpoint_views
    from ..domain import load_domain_classifier

    torch.set_num_threads(max(1, args.threads))
    ids = list(dict.fromkeys(args.checkpoint or [v.weights for v in checkpoint_views() if "reconstruction" in v.outputs]))
    if not ids:
        raise UPDError("no checkpoint with reconstructions to compute the manifold test for")
    dom = load_domain_classifier()
    if dom is None:
        print("note: no domain classifier (checkpoints/domain-classifier): only SSIM and L1 error, no P(chest X-ray) "
              "and no FD", file=sys.stderr)
    chest, source = None, ""
    if not args.no_data:
        from ..data import load_split
        from ..paths import dataset_name

        root, images, labels, _, _ = load_split(args.data, args.layout, args.split, args.size)
        chest = images[labels == 0]
        if not len(chest):
            raise UPDError(f"the {args.split} split of {dataset_name(root)} has no normal images")
        source = f"normal images of {dataset_name(root)}/{args.split}"
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:  # numpy's BLAS threads too (a shared CPU makes many threads wait for each other)
        from threadpoolctl import threadpool_limits
    except ImportError:
        import contextlib

        threadpool_limits = lambda n: contextlib.nullcontext()  # noqa: E731
    with threadpool_limits(max(1, args.threads)):
        done = manifold.precompute(ids, chest, source, dom, args.images, args.bootstrap, args.seed,
                                   write=not args.no_write, device=args.device, log=log)
    failed = [d for d in done if d.get("error")]
    done = [d for d in done if not d.get("error")]
    if args.json:
        print(json.dumps(done, indent=2))
    else:
        for row, num in zip(myth.summary_rows({n["checkpoint"]: n for n in done}, {}), done):
            print(f"{num['checkpoint']}: " + "  ".join(f"{k} {table_value(v)}" for k, v in row.items()
                                                        if k != "method"))
    if failed:
        raise UPDError("; ".join(f"{d['checkpoint']}: {d['error']}" for d in failed))
    return 0
