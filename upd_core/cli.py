"""Command line: `python -m upd_core list | train | evaluate | predict | benchmark | campaign`."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

from .errors import UPDError


def _parse_value(field: dataclasses.Field, text: str):
    """Convert a --set value to the config field's type (int, float, bool, str, tuple of int)."""
    default = field.default
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, tuple) or (field.default_factory is not dataclasses.MISSING):  # type: ignore[misc]
        return tuple(int(v) if v.strip().lstrip("-").isdigit() else float(v) for v in text.split(","))
    return text


def method_config(method: str, overrides: list[str]):
    """The method's paper-default config with `key=value` overrides applied."""
    from .registry import get_method

    cls = get_method(method)
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    kwargs = {}
    for item in overrides:
        key, sep, val = item.partition("=")
        if not sep or key not in fields:
            raise SystemExit(f"--set {item!r}: expected key=value with key in {sorted(fields)}")
        kwargs[key] = _parse_value(fields[key], val)
    return cls.Config(**kwargs)


def cmd_list(args: argparse.Namespace) -> int:
    from .checkpoint import list_checkpoints, read_config
    from .registry import get_method, list_methods
    from .stopping import stop_label

    print("Methods:")
    for m in list_methods():
        cls = get_method(m)
        print(f"  {m:24s} {cls.title}  [{', '.join(('score', 'anomaly_map') + cls.outputs)}]")
    print("\nCheckpoints (normal-only training, label-free model selection):")
    infos = list_checkpoints()
    if not infos:
        print("  (none)")
    for info in infos:
        met = info.metrics
        auc = f"AUROC {met['auroc']:.3f}  AP {met['ap']:.3f}" if "auroc" in met else "not evaluated"
        try:
            train = read_config(info.path).get("training", {})
            label = f"{train.get('epochs', '?')} epochs, {stop_label(train)}" if train else "no training record"
        except UPDError as exc:
            label = f"unreadable config ({exc})"
        print(f"  {info.id:36s} {info.method:18s} {info.dataset:12s} {auc}  [{label}]")
        variants = get_method(info.method)(image_size=32).variant_names() if info.method in list_methods() else ()
        if len(variants) > 1:
            print(f"  {'':36s} scorings: " + ", ".join(f"{info.id}@{v}" for v in variants[1:]))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .checkpoint import CONFIG
    from .data import load_split
    from .paths import REPO_ROOT, dataset_name
    from .registry import get_method
    from .training import STATE_DIR, TrainConfig, fit, seed_everything

    cfg = method_config(args.method, args.set or [])
    root, x_train, y_train, _, _ = load_split(args.data, args.layout, "train", args.size, args.limit)
    _, x_val, _, _, _ = load_split(args.data, args.layout, "val", args.size, args.limit)
    _, x_calib, _, _, _ = load_split(args.data, args.layout, "calib", args.size, args.limit)
    x_train = x_train[y_train == 0]
    name = dataset_name(root)
    ckpt_id = args.id or f"{args.method}-{name.replace('cxr-', '')}-{args.size}"
    out = Path(args.out) if args.out else REPO_ROOT / "runs" / ckpt_id
    if args.resume and not (out / STATE_DIR / "state.json").exists():
        if (out / CONFIG).exists() and not args.force:
            raise UPDError(f"{out} holds a finished checkpoint: --resume has nothing to continue "
                           "(add --force to train it again from scratch)")
        if not args.force:
            raise UPDError(f"--resume: no training state in {out} (check --out, or drop --resume)")
    seed_everything(args.seed)  # before the model is built: reproducible initial weights
    det = get_method(args.method)(cfg, image_size=args.size)
    tc = TrainConfig(max_epochs=None, cap_epochs=args.epochs, patience=args.patience,
                     batch_size=args.batch_size, time_budget_min=args.time_budget, seed=args.seed,
                     device=args.device, amp=args.amp, channels_last=not args.no_channels_last,
                     progress=not args.quiet)
    print(f"Training {args.method} on {len(x_train)} normal images ({len(x_val)} for validation, "
          f"{len(x_calib)} for calibration) -> {out}")
    rec = fit(det, x_train, x_val, out, tc=tc, resume=args.resume, checkpoint_id=ckpt_id, calib_images=x_calib,
              dataset={"name": name, "split": "train (normal only) minus validation and calibration",
                       "layout": args.layout})
    print(f"Done in {rec['seconds']:.0f} s, {rec['epochs']} epochs (best {rec['best_epoch']}, {rec['stop_reason']}).")
    print(f"Checkpoint: {out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import EVALUATION, is_shipped, load_detector, write_json
    from .data import load_split
    from .evaluate import evaluate, evaluate_checkpoint_dir
    from .paths import REPO_ROOT, dataset_name

    det = load_detector(args.checkpoint, device=args.device)
    root, images, labels, masks, _ = load_split(args.data, args.layout, args.split, det.image_size, args.limit,
                                                stratified=True)
    n_abn = int((labels == 1).sum())
    print(f"Evaluating {args.checkpoint} on {len(labels)} images ({len(labels) - n_abn} normal, {n_abn} "
          f"abnormal) of {dataset_name(root)}/{args.split}, {args.synthetic_lesions} synthetic-lesion images"
          f"{'' if len(det.variant_names()) < 2 else f', {len(det.variant_names())} scorings'} ...",
          file=sys.stderr, flush=True)
    if n_abn == 0 or n_abn == len(labels):
        raise UPDError(f"the {args.split} split{' (after --limit)' if args.limit else ''} has only "
                       f"{'normal' if n_abn == 0 else 'abnormal'} images: AUROC/AP need both")
    res = evaluate(det, images, labels, masks, split=f"{dataset_name(root)}/{args.split}",
                   synthetic_lesions=args.synthetic_lesions, seed=args.seed, progress=not args.quiet)
    if not args.no_write:
        if args.out:
            path = Path(args.out) / EVALUATION
            write_json(path, {**res, "dataset": dataset_name(root), "checkpoint": det.checkpoint_id})
        elif is_shipped(det.checkpoint_dir) and not args.update_shipped:
            path = REPO_ROOT / "runs" / "evaluations" / f"{det.checkpoint_id}-{dataset_name(root)}-{args.split}" / EVALUATION
            write_json(path, {**res, "dataset": dataset_name(root), "checkpoint": det.checkpoint_id})
        else:  # the user's own checkpoint folder, or --update-shipped: next to the weights, card refreshed
            path = evaluate_checkpoint_dir(det, det.checkpoint_dir, res, dataset_name(root))
        print(f"Wrote {path}", file=sys.stderr)
    im = res["image"]
    ci = im.get("ci95", {})
    print(json.dumps(res, indent=2) if args.json else
          f"{det.checkpoint_id}: AUROC {im['auroc']:.3f} {ci.get('auroc', '')}  AP {im['ap']:.3f} {ci.get('ap', '')}"
          f"  FPR95 {im['fpr95']:.3f}" + "".join(f"\n  floor {k}: AUROC {v['auroc']:.3f} ({v['sign']})"
                                              for k, v in res["floors"].items()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from .checkpoint import load_detector
    from .imaging import load_image
    from .visualize import overlay, save_png

    det = load_detector(args.checkpoint, device=args.device)
    out_dir = Path(args.out)
    results = []
    names = det.variant_names()
    tag = det.method + (f"-{det.variant}" if names and det.variant != names[0] else "")  # variants don't overwrite
    for src in args.images:
        img = load_image(src, size=det.image_size)
        pred = det.predict(img[None])
        heat = out_dir / f"{Path(src).stem}_{tag}_heatmap.png"
        save_png(overlay(img, pred.anomaly_map[0]), heat)
        pct = None if pred.percentile is None else float(pred.percentile[0])
        results.append({"image": str(src), "checkpoint": det.checkpoint_id, "score": float(pred.score[0]),
                        "percentile": pct, "heatmap": str(heat)})
        pct_txt = "n/a (no normal validation scores stored for this scoring)" if pct is None else f"{pct:.1f}"
        print(f"{src}: score {pred.score[0]:.6g}  percentile vs normal validation {pct_txt}  heatmap {heat}")
        if args.save_maps:
            np.save(out_dir / f"{Path(src).stem}_{tag}_map.npy", pred.anomaly_map[0])
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from .bench import inference_benchmark

    rows = inference_benchmark(methods=args.methods or None, batch_size=args.batch_size, size=args.size,
                               repeats=args.repeats, checkpoints=args.checkpoints)
    print(json.dumps(rows, indent=2))
    return 0


def cmd_campaign(args: argparse.Namespace) -> int:
    from . import campaign

    if args.action == "run":
        done = campaign.run(args.data, args.only, device=args.device, nice=args.nice,
                            max_hours=args.max_hours, seeds=not args.no_seeds, do_stage=not args.no_stage)
        print(f"campaign: {len(done)} job(s) finished")
    print(campaign.format_status(campaign.status_rows(args.data, args.only)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m upd_core", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("list", help="registered methods and shipped checkpoints")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("train", help="train a method on the normal images of a data set")
    s.add_argument("--method", required=True, help="method id (see `list`)")
    s.add_argument("--data", default="kermany", help="data set folder or short name (default: kermany)")
    s.add_argument("--layout", default="auto", help="data set layout (default: auto-detect)")
    s.add_argument("--size", type=int, default=128, help="image size (default 128)")
    s.add_argument("--out", help="checkpoint folder (default runs/<id>)")
    s.add_argument("--id", help="checkpoint id (default <method>-<data>-<size>)")
    s.add_argument("--epochs", type=int, help="stop after at most N epochs: a stated cap below the paper's "
                   "maximum (default: the paper's rule, early stopping up to its max epochs); a run that "
                   "hits the cap is labelled 'not converged'")
    s.add_argument("--patience", type=int, help="early-stopping patience in epochs")
    s.add_argument("--batch-size", type=int)
    s.add_argument("--time-budget", type=float, help="stop after this many minutes")
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a method config value")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when present)")
    s.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"], help="bf16 autocast (default auto)")
    s.add_argument("--no-channels-last", action="store_true")
    s.add_argument("--limit", type=int, help="use only the first N images (smoke tests)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted training in --out "
                   "(refuses when there is no training state there)")
    s.add_argument("--force", action="store_true", help="with --resume: train from scratch when there is "
                   "nothing to resume, even over a finished checkpoint")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("evaluate", help="AUROC/AP/FPR95/FPR99 (+ floors, pixel metrics) on a labelled split")
    s.add_argument("--checkpoint", required=True, help="checkpoint id or folder")
    s.add_argument("--data", default="kermany")
    s.add_argument("--layout", default="auto")
    s.add_argument("--split", default="test")
    s.add_argument("--synthetic-lesions", type=int, default=100, metavar="N",
                   help="also pixel-evaluate on N normal images with synthetic lesions (default 100, as shipped; 0: off)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--limit", type=int, help="at most N images, normal and abnormal in proportion")
    s.add_argument("--device")
    s.add_argument("--out", help="folder for evaluation.json (default: runs/evaluations/<id>-<data>-<split>/ for "
                   "shipped checkpoints, else next to the checkpoint)")
    s.add_argument("--update-shipped", action="store_true",
                   help="write evaluation.json into the shipped checkpoint folder and refresh its card and manifests")
    s.add_argument("--json", action="store_true", help="print the whole result as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--no-write", action="store_true", help="do not write evaluation.json")
    s.set_defaults(func=cmd_evaluate)

    s = sub.add_parser("predict", help="score an image and write a heatmap PNG")
    s.add_argument("images", nargs="+", help="image files (PNG, JPEG, TIFF, BMP, DICOM, NIfTI, NPY)")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--out", default=".", help="folder for heatmap PNGs (default: current folder)")
    s.add_argument("--device")
    s.add_argument("--json", action="store_true", help="also print results as JSON")
    s.add_argument("--save-maps", action="store_true", help="also save raw maps as .npy")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("benchmark", help="inference images/s per method vs a plain PyTorch baseline")
    s.add_argument("--methods", nargs="*")
    s.add_argument("--checkpoints", action="store_true", help="benchmark the shipped checkpoints")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--repeats", type=int, default=5)
    s.set_defaults(func=cmd_benchmark)

    s = sub.add_parser("campaign", help="train every shipped checkpoint's recipe, one at a time, resumable",
                       description="`run` works through the recipe queue (upd_core/campaign.py) under nice, "
                       "resuming interrupted trainings from runs/campaign/; finished trainings are evaluated "
                       "and, for Kermany, staged into checkpoints/. `status` prints the table.")
    s.add_argument("action", choices=["run", "status"])
    s.add_argument("--only", nargs="+", metavar="METHOD", help="only these recipes (method ids)")
    s.add_argument("--data", default="kermany", help="data set folder or short name (default: kermany)")
    s.add_argument("--device", help="cpu, cuda (default: CUDA when present)")
    s.add_argument("--nice", type=int, default=10, help="niceness of the trainings (default 10)")
    s.add_argument("--max-hours", type=float, help="start no new training after this many hours")
    s.add_argument("--no-seeds", action="store_true", help="seed 0 only (skip the extra seeds)")
    s.add_argument("--no-stage", action="store_true", help="do not copy finished runs into checkpoints/")
    s.set_defaults(func=cmd_campaign)
    return p


def main(argv: typing.Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UPDError as exc:  # ImageError, CheckpointError, DataError: a message, not a traceback
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
