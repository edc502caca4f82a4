"""Checkpoints derived from trained ones without retraining, and reference scores added afterwards.

    python -m upd_core.derived derive --source checkpoints/cevae-kermany-128 --method radl \\
        --out checkpoints/radl-kermany-128 --id radl-kermany-128 --data kermany
    python -m upd_core.derived calibrate --checkpoint checkpoints/cradl-kermany-128 --data kermany

`derive` writes a checkpoint of another method id that reuses all weights of a trained one with
other scoring settings (RADL from a ceVAE; `--set density=gmm4` for another default head).
Another scoring of the same checkpoint needs no new checkpoint: use `<checkpoint>@<variant>`.

Reference scores (percentiles): checkpoints trained with a calibration split keep one row per
scoring variant in `calib_scores` (`Detector.calibrate_percentiles`), which takes precedence;
CRADL/RADL checkpoints also keep the validation NLL of every density head in `val_scores_all`
(`calibrate_heads`), the reference for checkpoints without `calib_scores`.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from .checkpoint import load_detector, load_state, read_config, save_checkpoint
from .data import load_split
from .detector import Detector
from .methods.density_heads import RepresentationDensityMixin
from .registry import get_method

SCORING_KEYS = ("density", "score_kind", "image_score")  # settings a derived method brings itself


def _split(det: Detector, data: str, layout: str, split: str):
    return load_split(data, layout, split, det.image_size)[1]


def derive(source: str, method: str, out: str, checkpoint_id: str | None = None, overrides: dict | None = None,
           data: str = "kermany", layout: str = "auto", calibrate: bool = True) -> str:
    """Write a checkpoint of `method` with all weights of the trained `source` and the scoring
    settings of `method` (plus `overrides`). The validation scores, the heads' validation NLLs and,
    when the source has them, the calibration scores of every variant are recomputed on the
    splits of `data`, so percentiles stay honest."""
    src = load_detector(source, device="cpu")
    src_cfg = read_config(src.checkpoint_dir)
    cls = get_method(method)
    names = {f.name for f in dataclasses.fields(cls.Config)}
    values = {k: v for k, v in dataclasses.asdict(src.config).items() if k in names}
    if method != src.method:  # the target's own scoring defaults (e.g. radl's NLL score)
        for key in SCORING_KEYS:
            values.pop(key, None)
    values.update(overrides or {})
    det = cls(cls.Config(**values), image_size=src.image_size)
    load_state(det, src.state_dict())
    recalibrate = det.calib_scores.numel() > 0  # the source's rows belong to the source's variants
    det.calib_scores = torch.zeros(0, 0)
    x_val = _split(det, data, layout, "val")
    if calibrate and isinstance(det, RepresentationDensityMixin):
        det.calibrate_heads(x_val)
    det.val_scores = torch.as_tensor(det.predict(x_val).score, dtype=torch.float32)
    if recalibrate:
        det.calibrate_percentiles(_split(det, data, layout, "calib"))
    training = dict(src_cfg.get("training", {}), derived_from=src_cfg.get("id"),
                    derived_note=f"weights of {src_cfg.get('id')} ({src.method}); scoring settings of {method}")
    save_checkpoint(det, out, checkpoint_id=checkpoint_id, dataset=src_cfg.get("dataset"), training=training)
    return out


def calibrate_checkpoint(checkpoint: str, data: str = "kermany", layout: str = "auto",
                         percentiles: bool = False) -> None:
    """Add reference scores to a trained checkpoint (re-saved in place): the validation NLL of
    every density head; with `percentiles`, the calibration-split scores of every variant."""
    det = load_detector(checkpoint, device="cpu")
    heads = isinstance(det, RepresentationDensityMixin)
    if not heads and not percentiles:
        raise SystemExit(f"{det.method} has no density heads to calibrate (use --percentiles)")
    if heads:
        det.calibrate_heads(_split(det, data, layout, "val"))
    if percentiles:
        det.calibrate_percentiles(_split(det, data, layout, "calib"))
    save_checkpoint(det, det.checkpoint_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m upd_core.derived",
                                description="Derived checkpoints and reference scores of trained ones.")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("calibrate", help="store reference scores (percentiles) in a trained checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--percentiles", action="store_true",
                   help="also (re)compute the calibration-split scores of every scoring variant")
    s.add_argument("--data", default="kermany")
    s.add_argument("--layout", default="auto")
    s = sub.add_parser("derive", help="new checkpoint of another method id from a trained one's weights")
    s.add_argument("--source", required=True, help="trained checkpoint id or folder")
    s.add_argument("--method", required=True, help="target method id, e.g. radl")
    s.add_argument("--out", required=True)
    s.add_argument("--id")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--data", default="kermany")
    s.add_argument("--layout", default="auto")
    args = p.parse_args(argv)
    if args.cmd == "calibrate":
        calibrate_checkpoint(args.checkpoint, args.data, args.layout, args.percentiles)
        print(f"calibrated {args.checkpoint}")
        return 0
    from .overrides import method_config  # `--set` parsing, typed by the config's fields

    cfg = method_config(args.method, args.set)
    overrides = {k.partition("=")[0]: getattr(cfg, k.partition("=")[0]) for k in args.set}
    print(derive(args.source, args.method, args.out, args.id, overrides, args.data, args.layout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
