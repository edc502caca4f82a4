"""Command line: `python -m upd_core list | train | evaluate | predict | benchmark | campaign | data | myth`."""
from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path

from .errors import UPDError
from .overrides import method_config


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
        for line in _scoring_lines(info):
            print(line)
    from .app.views import checkpoint_views, inventory

    inv = inventory(checkpoint_views(infos))  # the counts Home and the README state
    print(f"\n{len(inv.methods)} registered methods; {inv.checkpoints} checkpoints of {inv.methods_with_checkpoints} "
          f"of them, {inv.scorings} scorings counting each <checkpoint>@<variant>.")
    return 0


def _scoring_lines(info) -> list[str]:
    """One line per `@variant` of a checkpoint with several scorings (with its AUROC where
    evaluation.json has it, the numbers the app shows), the default scoring named first."""
    from .app.views import read_evaluation
    from .registry import get_method, list_methods

    ev = read_evaluation(Path(info.path))
    measured = {name: (var.get("image") or {}) for name, var in (ev.get("variants") or {}).items()}
    if ev.get("variant"):
        measured = {str(ev["variant"]): ev.get("image") or {}, **measured}
    names = list(measured)
    if not names and info.method in list_methods():  # not evaluated per scoring: the method's own list
        names = list(get_method(info.method)(image_size=32).variant_names())
    if len(names) < 2:
        return []
    lines = []
    for k, name in enumerate(names):
        met = measured.get(name) or {}
        auc = f"AUROC {met['auroc']:.3f}  AP {met['ap']:.3f}" if "auroc" in met and "ap" in met else "not evaluated"
        lines.append(f"    {info.id + '@' + name:44s} {auc}{'  (default scoring)' if k == 0 else ''}")
    return lines


def _refuse_to_overwrite(out: Path, resume: bool, force: bool) -> None:
    """What `train` refuses to do to `out` without --force: resume nothing, or replace work."""
    from .checkpoint import CONFIG
    from .training import has_state

    finished, interrupted = (out / CONFIG).exists(), has_state(out)
    if force:
        return
    if resume and not interrupted:
        if finished:
            raise UPDError(f"{out} holds a finished checkpoint: --resume has nothing to continue "
                           "(add --force to train it again from scratch)")
        raise UPDError(f"--resume: no training state in {out} (check --out, or drop --resume)")
    if not resume and interrupted:
        raise UPDError(f"{out} holds an interrupted training: add --resume to continue it, "
                       "or --force to start afresh")
    if not resume and finished:
        raise UPDError(f"{out} already holds a finished checkpoint: add --force to train it again "
                       "(its files are replaced only when the new training has finished)")


def cmd_train(args: argparse.Namespace) -> int:
    from .checkpoint_files import ensure_writable
    from .data import load_split
    from .distributed import check_supported, context
    from .paths import REPO_ROOT, dataset_name, resolve_dataset
    from .registry import get_method
    from .training import TrainConfig, check_resume, fit, has_state, seed_everything

    cfg = method_config(args.method, args.set or [])
    name = dataset_name(resolve_dataset(args.data))
    ckpt_id = args.id or f"{args.method}-{name.replace('cxr-', '')}-{args.size}"
    out = Path(args.out) if args.out else REPO_ROOT / "runs" / ckpt_id
    _refuse_to_overwrite(out, args.resume, args.force)
    ensure_writable(out)  # a read-only disk or an --out under a file: now, not after an epoch
    seed_everything(args.seed)  # before the model is built: reproducible initial weights
    det = get_method(args.method)(cfg, image_size=args.size)
    if context().enabled:  # under torchrun: a method DDP cannot train is refused before decoding data
        check_supported(det, det.configure_optimizers())
    if args.resume and has_state(out):
        check_resume(out, det, args.seed)  # a corrupt state or other settings: before decoding data
    root, x_train, y_train, _, _ = load_split(args.data, args.layout, "train", args.size, args.limit)
    _, x_val, _, _, _ = load_split(args.data, args.layout, "val", args.size, args.limit)
    _, x_calib, _, _, _ = load_split(args.data, args.layout, "calib", args.size, args.limit)
    x_train = x_train[y_train == 0]
    tc = TrainConfig(max_epochs=None, cap_epochs=args.epochs, patience=args.patience,
                     batch_size=args.batch_size, time_budget_min=args.time_budget, seed=args.seed,
                     device=args.device, amp=args.amp, channels_last=not args.no_channels_last,
                     progress=not args.quiet)
    main = context().is_main  # under torchrun only rank 0 reports (and writes)
    if main:
        print(f"Training {args.method} on {len(x_train)} normal images ({len(x_val)} for validation, "
              f"{len(x_calib)} for calibration) -> {out}")
    rec = fit(det, x_train, x_val, out, tc=tc, resume=args.resume, checkpoint_id=ckpt_id, calib_images=x_calib,
              dataset={"name": name, "split": "train (normal only) minus validation and calibration",
                       "layout": args.layout})
    if main:
        print(f"Done in {rec['seconds']:.0f} s, {rec['epochs']} epochs (best {rec['best_epoch']}, "
              f"{rec['stop_reason']}).")
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


def cmd_predict_folder(args: argparse.Namespace) -> int:
    """`predict --folder DIR --out results.csv`: the whole folder into a table (upd_core.batch_predict)."""
    from .batch_predict import score_folder

    if args.images:
        raise UPDError("predict: give image files or --folder, not both")
    if not args.out:
        raise UPDError("predict --folder: give --out results.csv (or results.parquet) for the table")
    s = score_folder(args.folder, args.checkpoint, args.out, batch_size=args.batch_size, workers=args.workers,
                     device=args.device, progress=not args.quiet)
    print(f"Scored {s.scored} file(s) ({s.errors} unreadable, {s.skipped} already in the table) -> {s.out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if args.folder is not None:
        return cmd_predict_folder(args)
    import numpy as np

    from .app.analysis import domain_probability, ood_check, ood_heading, result_from_prediction
    from .checkpoint import load_detector, split_variant
    from .imaging import load_image
    from .visualize import overlay, save_png

    if not args.images:
        raise UPDError("predict: give image files, or --folder DIR --out results.csv")
    if len(args.checkpoint) > 1:
        raise UPDError("predict: one --checkpoint for image files (several are for --folder)")
    checkpoint = args.checkpoint[0]
    det = load_detector(checkpoint, device=args.device)
    variant = split_variant(checkpoint)[1]
    cid = f"{det.checkpoint_id}@{variant}" if variant else det.checkpoint_id  # as given, scoring included
    out_dir = Path(args.out or ".")
    results = []
    names = det.variant_names()
    tag = det.method + (f"-{det.variant}" if names and det.variant != names[0] else "")  # variants don't overwrite
    for src in args.images:
        img = load_image(src, size=det.image_size)
        pred = det.predict(img[None])
        heat = out_dir / f"{Path(src).stem}_{tag}_heatmap.png"
        save_png(overlay(img, pred.anomaly_map[0]), heat)
        pct = None if pred.percentile is None else float(pred.percentile[0])
        # the app's out-of-distribution check: domain classifier, else the score against normal references
        res = result_from_prediction(det, img, pred, cid)
        ood = ood_check([res], domain_probability(img))
        results.append({"image": str(src), "checkpoint": cid, "score": float(pred.score[0]),
                        "score_unit": res.units.score, "percentile": pct, "heatmap": str(heat),
                        "out_of_distribution": {"level": ood.level, "message": ood.message, **ood.details}})
        pct_txt = "n/a (no normal validation scores stored for this scoring)" if pct is None else f"{pct:.1f}"
        print(f"{src}: score {pred.score[0]:.6g}  percentile vs normal validation {pct_txt}  heatmap {heat}")
        if ood.level != "ok":
            print(f"{src}: " + " ".join(t for t in (ood_heading(ood.level), ood.message) if t), file=sys.stderr)
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


def cmd_compact(args: argparse.Namespace) -> int:
    from .storage import compact

    record = compact(args.checkpoint, args.data, args.dtype, args.tolerance, args.split, args.limit,
                     say=lambda s: print(s, file=sys.stderr))
    if args.json:
        print(json.dumps(record, indent=2))
    return 0 if record["passed"] else 1


def cmd_campaign(args: argparse.Namespace) -> int:
    from . import campaign, campaign_status

    if args.action == "run":
        done = campaign.run(args.data, args.only, device=args.device, nice=args.nice,
                            max_hours=args.max_hours, seeds=not args.no_seeds, do_stage=not args.no_stage,
                            retrain=args.retrain)
        print(f"campaign: {len(done)} job(s) finished")
    print(campaign_status.format_status(campaign_status.status_rows(args.data, args.only)))
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from .data import prepare

    if args.action == "sources":
        print(prepare.format_sources())
        return 0
    if not args.path:
        raise UPDError("usage: python -m upd_core data prepare SOURCE ARCHIVE_OR_FOLDER (see `data sources` for "
                       "where to download each source)")
    report = prepare.prepare(args.source, args.path, out=args.out, size=args.size, build_cache=not args.no_cache,
                             checksums=not args.no_checksums, sha256=args.sha256, md5=args.md5,
                             progress=not args.quiet)
    print(json.dumps(report, indent=2) if args.json else prepare.format_report(report))
    return 0


def cmd_myth(args: argparse.Namespace) -> int:
    """`myth precompute`: the Myth page's manifold-test numbers, stored as myth.json per checkpoint."""
    from .app.myth_command import precompute_command

    return precompute_command(args)


def _add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """`--debug` before or after the command: show the traceback of an error instead of one line."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parser.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    for s in sub.choices.values():
        if "--debug" not in s._option_string_actions:
            s.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help="on an error, show the full traceback")


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
    s.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a method config value "
                   "(with --resume: repeat the original values; a different one, e.g. another lr, is refused "
                   "because the optimizers resume with the recorded settings)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA when present)")
    s.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"], help="bf16 autocast (default auto)")
    s.add_argument("--no-channels-last", action="store_true")
    s.add_argument("--limit", type=int, help="use only the first N images (smoke tests)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted training in --out with "
                   "its recorded optimizer settings (at most the epoch in progress is lost); refuses when "
                   "there is no training state there, when it is corrupt, or when --method, --size, --seed, "
                   "--batch-size, the data or --set differ from the saved run (--epochs, --patience and "
                   "--time-budget may change)")
    s.add_argument("--force", action="store_true", help="train even though --out holds a finished checkpoint "
                   "(replaced only when the new training has finished) or an interrupted training (started "
                   "afresh unless --resume is given)")
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

    s = sub.add_parser("predict", help="score an image and write a heatmap PNG; or score a folder into a table",
                       description="Score images and write heatmap PNGs. As the app does, each image is checked "
                       "against the checkpoints' training domain (the domain classifier, else the score against "
                       "the normal reference scores); a warning goes to stderr when it looks out of distribution. "
                       "With --folder DIR --out results.csv (or .parquet) every image under DIR is scored into "
                       "a table instead (score and percentile per --checkpoint, the out-of-distribution level, an "
                       "error column for unreadable files); running it again resumes the table.")
    s.add_argument("images", nargs="*", help="image files (PNG, JPEG, TIFF, BMP, DICOM, NIfTI, NPY)")
    s.add_argument("--checkpoint", required=True, action="append",
                   help="checkpoint id or folder (`<id>@<variant>` for another scoring); repeat it with --folder "
                   "for one score and percentile column pair per checkpoint")
    s.add_argument("--out", help="folder for heatmap PNGs (default: current folder); with --folder: the "
                   "results table, .csv or .parquet (needs pyarrow)")
    s.add_argument("--folder", help="score every image under this folder (recursively) into the --out table")
    s.add_argument("--workers", type=int, help="with --folder: decoding processes (default: CPU cores - 1, at most 8)")
    s.add_argument("--batch-size", type=int, default=32, help="with --folder: images per batch (default 32)")
    s.add_argument("--quiet", action="store_true", help="with --folder: no progress bar")
    s.add_argument("--device")
    s.add_argument("--json", action="store_true", help="also print results as JSON (score unit and the "
                   "out-of-distribution check included)")
    s.add_argument("--save-maps", action="store_true", help="also save raw maps as .npy")
    s.set_defaults(func=cmd_predict)

    s = sub.add_parser("benchmark", help="inference images/s per method vs a plain PyTorch baseline")
    s.add_argument("--methods", nargs="*")
    s.add_argument("--checkpoints", action="store_true", help="benchmark the shipped checkpoints")
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--size", type=int, default=128)
    s.add_argument("--repeats", type=int, default=5)
    s.set_defaults(func=cmd_benchmark)

    s = sub.add_parser("compact", help="store a checkpoint's weights in float16/bfloat16 if AUROC/AP do not change",
                       description="Scores the test split with the fp32 weights and with the weights rounded to "
                       "--dtype; rewrites the checkpoint in that dtype only when AUROC and AP move by at most "
                       "--tolerance (exit 1 and no change otherwise). The check is recorded in config.json and "
                       "the model card.")
    s.add_argument("--checkpoint", required=True, help="checkpoint id or folder")
    s.add_argument("--data", default="kermany", help="labelled data set for the check (default: kermany)")
    s.add_argument("--split", default="test")
    s.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    s.add_argument("--tolerance", type=float, default=0.002, help="largest AUROC/AP change allowed (default 0.002)")
    s.add_argument("--limit", type=int, help="stratified subset of the split (quick checks)")
    s.add_argument("--json", action="store_true", help="print the check record")
    s.set_defaults(func=cmd_compact)

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
    s.add_argument("--retrain", nargs="+", metavar="METHOD", default=[],
                   help="train these recipes again although checkpoints/ already holds their campaign result "
                        "(by default a shipped campaign result counts as done, so a fresh machine resumes the queue)")
    s.set_defaults(func=cmd_campaign)

    s = sub.add_parser("data", help="prepare a downloaded data set: check its layout, record checksums, "
                       "build the decoded cache",
                       description="`prepare SOURCE ARCHIVE_OR_FOLDER` checks the layout of a downloaded data set "
                       "(kermany, covid19, chexpert, brats), unpacks an archive (.zip, .tar, .tar.gz) into --out "
                       "(default: the data root, $UPD_DATA_ROOT or ../shared/data), verifies or records sha256 "
                       "checksums, builds the decoded cache for every split and prints how to use it. "
                       "`sources` lists where to download each one.")
    s.add_argument("action", choices=["prepare", "sources"])
    s.add_argument("source", nargs="?", default="kermany", help="kermany, covid19, chexpert or brats (default kermany)")
    s.add_argument("path", nargs="?", help="the downloaded archive or the folder it was unpacked into")
    s.add_argument("--out", help="where to unpack an archive (default: <data root>/<source folder>, e.g. "
                   "../shared/data/cxr-kermany)")
    s.add_argument("--size", type=int, default=128, help="image size of the decoded cache (default 128)")
    s.add_argument("--sha256", help="check the archive against this published sha256")
    s.add_argument("--md5", help="check the archive against this published MD5 (e.g. from Synapse)")
    s.add_argument("--no-checksums", action="store_true", help="do not hash the files (no manifest)")
    s.add_argument("--no-cache", action="store_true", help="check only; do not build the decoded cache")
    s.add_argument("--json", action="store_true", help="print the report as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_data)

    s = sub.add_parser("myth", help="precompute the Myth page's manifold test (myth.json per checkpoint)",
                       description="`precompute` reconstructs, for each checkpoint with reconstructions, N normal "
                       "test chest X-rays and N images of every other domain of the embedded demo set (its demo "
                       "images plus random variants of them), and stores per domain the SSIM and L1 error of the "
                       "reconstructions, the domain classifier's P(chest X-ray) and the Fréchet distance to the "
                       "chest X-ray training features, each with a bootstrap 95 %% interval, as myth.json next to "
                       "the weights (numbers only; the checkpoint's manifests are refreshed). The Myth page reads "
                       "them instead of computing on every visit.")
    s.add_argument("action", choices=["precompute"])
    s.add_argument("--checkpoint", nargs="+", metavar="ID", help="checkpoint ids or folders (default: every "
                   "checkpoint with reconstructions)")
    s.add_argument("--data", default="kermany", help="chest X-ray data set, folder or short name (default kermany)")
    s.add_argument("--layout", default="auto")
    s.add_argument("--split", default="test", help="split whose normal images are the in-distribution set "
                   "(default test)")
    s.add_argument("--no-data", action="store_true", help="without real chest X-rays (no in-distribution row)")
    s.add_argument("--images", type=int, metavar="N", help="images per domain (default: the number of normal "
                   "images of the split, at most 512; 234 with --no-data)")
    s.add_argument("--bootstrap", type=int, default=200, metavar="B", help="bootstrap resamples (default 200)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=128, help="image size (default 128)")
    s.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    s.add_argument("--device", help="cpu, cuda (default: CUDA when present)")
    s.add_argument("--no-write", action="store_true", help="print only; write no myth.json")
    s.add_argument("--json", action="store_true", help="print the numbers as JSON")
    s.add_argument("--quiet", action="store_true", help="no progress lines")
    s.set_defaults(func=cmd_myth)
    _add_debug_flag(p)
    return p


def main(argv: typing.Sequence[str] | None = None) -> int:
    """Run a command; an expected error (UPDError, OSError: bad input, checkpoint, data, disk) is one
    line on stderr and exit status 2, with the traceback only under --debug."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UPDError, OSError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {' '.join(str(exc).split()) or type(exc).__name__}", file=sys.stderr)
        return 2
