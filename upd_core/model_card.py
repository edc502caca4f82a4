"""Model cards, generated from a checkpoint's config.json and evaluation.json.

Nothing in a card is typed by hand: training figures come from the training loop's record and
metrics from `python -m upd_core evaluate`, so rerunning those commands regenerates the card.
`render_card` / `render_domain_card` are pure (dicts in, Markdown out); `write_card` reads the
folder and writes MODEL_CARD.md (called by `checkpoint.refresh`).
"""
from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

from .checkpoint_files import CARD, WEIGHTS, read_config, read_evaluation, write_atomic
from .registry import get_method
from .stopping import stop_label

# Attribution of data sets a checkpoint may be trained on (shown in cards and in the app).
SOURCES: dict[str, dict[str, str]] = {
    "cxr-kermany": {
        "title": "Kermany pediatric chest X-rays (ZhangLab / Guangzhou Women and Children's Medical Center)",
        "licence": "CC BY 4.0",
        "citation": "Kermany DS et al., Cell 172(5):1122-1131.e9, 2018; Mendeley Data "
                    "doi:10.17632/rscbjbr9sj.2",
    },
    "brain-mri-kaggle": {
        "title": "Brain Tumor MRI Dataset (figshare, SARTAJ, Br35H compilation)",
        "licence": "upstream licence not verified: research use only, not shipped as default",
        "citation": "Kaggle 'Brain Tumor MRI Dataset' (Nickparvar), compiled from figshare, SARTAJ, Br35H",
    },
}
REGIME = ("Normal-only training, model selection on normal validation images only (no abnormal labels): "
          "the weights kept are those of the epoch with the lowest validation loss.")
SPARK = "▁▂▃▄▅▆▇█"
CURVE_ROWS = 10  # about this many evenly spaced epochs in the validation-loss table, plus best and last


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |\n" for r in rows)


def _ci(image: dict[str, Any]) -> dict[str, str]:
    """'[lo, hi]' strings of the bootstrap 95 % CIs of AUROC and AP, when the evaluation has them."""
    ci = image.get("ci95") or {}
    return {f"{k} 95% CI": f"[{ci[k][0]:.3f}, {ci[k][1]:.3f}]" for k in ("auroc", "ap") if k in ci}


def sparkline(values: list[float], width: int = 60, log: bool = False) -> str:
    """One block character per value (evenly subsampled to at most `width`), low = ▁, high = █.

    `log`: scale by the logarithm (positive values only), so the late epochs are not flattened."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if log:
        vals = [math.log(v) for v in vals if v > 0]
    if not vals:
        return ""
    if len(vals) > width:
        vals = [vals[round(i * (len(vals) - 1) / (width - 1))] for i in range(width)]
    lo, hi = min(vals), max(vals)
    span = (hi - lo) or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * len(SPARK)))] for v in vals)


def curve_rows(history: list[dict[str, Any]], best_epoch: int | None, rows: int = CURVE_ROWS) -> list[dict[str, Any]]:
    """Every k-th epoch of the history, plus the first, the best and the last, for the card's table."""
    if not history:
        return []
    k = max(1, math.ceil(len(history) / rows))
    last = history[-1]["epoch"]
    keep = {h["epoch"] for h in history[::k]} | {history[0]["epoch"], last}
    if best_epoch in {h["epoch"] for h in history}:
        keep.add(best_epoch)
    out = []
    for h in history:
        if h["epoch"] not in keep:
            continue
        note = ", ".join(n for n, e in (("best", best_epoch), ("last", last)) if h["epoch"] == e)
        out.append({"epoch": h["epoch"], "val loss": f"{h['val_loss']:.5g}",
                    "train loss": f"{h['loss']:.5g}" if "loss" in h else "", "note": note})
    return out


def _limits(cls: type, tr: dict[str, Any]) -> str:
    """The stopping rule the run was under: the paper's (the method's defaults), and what this run changed."""
    paper_max, paper_pat = getattr(cls.Config, "max_epochs", None), getattr(cls.Config, "patience", None)
    tc = tr.get("train_config", {}) or {}
    text = (f"paper's rule: up to {paper_max} epochs, early stopping after {paper_pat} epochs without "
            "improvement of the validation loss")
    run = []
    if tr.get("max_epochs") not in (None, paper_max):
        run.append(f"max epochs set to {tr['max_epochs']}")
    if tr.get("patience") not in (None, paper_pat):
        run.append(f"patience set to {tr['patience']}")
    if tc.get("cap_epochs") is not None:
        run.append(f"stated epoch cap of {tc['cap_epochs']} epochs")
    if tc.get("time_budget_min") is not None:
        run.append(f"time budget of {tc['time_budget_min']} min")
    return text + ("; this run: " + ", ".join(run) if run else "; no cap or budget added")


def _training_section(cls: type, tr: dict[str, Any]) -> str:
    secs = float(tr.get("seconds", 0) or 0)
    n_calib = int(tr.get("n_calib") or 0)
    percentiles = (f"from {n_calib} normal calibration images (used neither for training nor for model "
                   "selection)" if n_calib else
                   f"from the {tr.get('n_val', '?')} normal validation images (no calibration split: older checkpoint)")
    best_loss = tr.get("best_val_loss")
    best = f"best epoch {tr.get('best_epoch')}" + (f", validation loss {best_loss:.5g}"
                                                     if isinstance(best_loss, (int, float)) else "")
    return (f"- Regime: {REGIME}\n"
            f"- Stopped: **{stop_label(tr)}**: {tr.get('stop_reason', 'reason not recorded')}\n"
            f"- Epochs trained: {tr.get('epochs')} ({best})\n"
            f"- Limit: {_limits(cls, tr)}\n"
            f"- Wall-clock time: {tr.get('seconds', '?')} s ({secs / 60:.1f} min) on {tr.get('device', '?')} "
            f"({tr.get('cpu', '?')}, {tr.get('threads', '?')} threads), torch {tr.get('torch', '?')}\n"
            f"- Seed: {tr.get('seed', 'not recorded')}; batch size {tr.get('batch_size')}; "
            f"{tr.get('images_per_second')} training images/s; numerics: {tr.get('amp')}; "
            f"channels_last: {tr.get('channels_last')}\n"
            f"- Splits (all normal): {tr.get('n_train', '?')} training, {tr.get('n_val', '?')} validation, "
            f"{n_calib} calibration images; score percentiles come {percentiles}\n")


def _curve_section(tr: dict[str, Any]) -> str:
    hist = [h for h in tr.get("history", []) if "val_loss" in h]
    if not hist:
        return ""
    losses = [h["val_loss"] for h in hist]
    log = min(losses) > 0
    out = ["\n### Validation loss per epoch\n\n",
           f"`{sparkline(losses, log=log)}` (epochs 1 to {hist[-1]['epoch']}{', log scale' if log else ''}, "
           f"min {min(losses):.5g}, max {max(losses):.5g})\n\n"]
    out.append(_table(curve_rows(hist, tr.get("best_epoch")), ["epoch", "val loss", "train loss", "note"]))
    return "".join(out)


def _calibration_line(cal: dict[str, Any]) -> str:
    shares = " ".join(f"{100 * s:.0f}" for s in cal.get("bin_shares", []))
    return (f"\nCalibration transfer: percentiles of the {cal.get('n', '?')} normal test images against the "
            f"{cal.get('reference', 'reference')}; ideally 10 % fall in each decile. Share per decile (%): "
            f"{shares}; Kolmogorov-Smirnov distance to uniform {_fmt(cal.get('ks'))}; median percentile "
            f"{_fmt(cal.get('median_percentile'))}.\n")


def _evaluation_section(cls: type, ev: dict[str, Any]) -> str:
    out = [f"Split: {ev.get('split', '?')} — {ev.get('n_normal', '?')} normal, "
           f"{ev.get('n_abnormal', '?')} abnormal images. Abnormal = positive class.\n\n"]
    image = ev.get("image", {})
    ci = _ci(image)
    rows = [{"score": f"{cls.method} (this model)", **image, **ci}]
    for name, fl in ev.get("floors", {}).items():
        rows.append({"score": f"floor: {name} ({fl['sign']})", "auroc": fl["auroc"]})
    out.append(_table(rows, ["score", "auroc", "ap", "fpr95", "fpr99", *ci]))
    if ci:
        n_boot = image["ci95"].get("n_boot", "?")
        out.append(f"\n95 % confidence intervals: stratified bootstrap ({n_boot} resamplings of the test images).\n")
    out.append("\nRead every number against the floors: a trivial image statistic on the same split.\n")
    if ev.get("calibration"):
        out.append(_calibration_line(ev["calibration"]))
    if ev.get("reconstruction"):
        rec = ev["reconstruction"]
        out.append("\nReconstruction quality on the normal test images: "
                   + ", ".join(f"{k} {_fmt(v)}" for k, v in rec.items()) + "\n")
    if ev.get("pixel"):
        out.append("\nPixel level (" + ev["pixel"].get("protocol", "") + "):\n\n")
        out.append(_table([ev["pixel"]], ["pixel_ap", "best_dice"]))
    if ev.get("variants"):
        out.append(f"\nScoring variants of the same weights (same split and protocol; this model's default "
                   f"is `{ev.get('variant')}`; load one as `<id>@<variant>`):\n\n")
        rows = []
        for name, v in ev["variants"].items():
            row = {"variant": name, **v.get("image", {}), **_ci(v.get("image", {})),
                   **{k: x for k, x in v.get("pixel", {}).items() if k in ("pixel_ap", "best_dice")}}
            if v.get("calibration"):
                row["calibration KS"] = v["calibration"].get("ks")
            rows.append(row)
        extra = [c for c in ("auroc 95% CI", "ap 95% CI", "calibration KS") if any(c in r for r in rows)]
        out.append(_table(rows, ["variant", "auroc", "ap", "fpr95", "fpr99", "pixel_ap", "best_dice", *extra]))
    return "".join(out)


def _storage_note(cfg: dict[str, Any]) -> str:
    """How the weights are stored, when not in fp32 (`python -m upd_core compact`)."""
    st = cfg.get("storage") or {}
    if not st.get("weights_dtype"):
        return ""
    d = st.get("delta", {})
    return (f", parameters stored in {st['weights_dtype']}: scores on {st.get('split', '?')} moved AUROC by "
            f"{d.get('auroc', 0):+.4f} and AP by {d.get('ap', 0):+.4f} against fp32 (tolerance "
            f"{st.get('tolerance')}); the model runs in fp32")


def render_card(cfg: dict[str, Any], ev: dict[str, Any] | None, weights_bytes: int) -> str:
    """The Markdown card of a detector checkpoint."""
    cls = get_method(cfg["method"])
    ds = cfg.get("dataset", {})
    src = SOURCES.get(ds.get("name", ""), {})
    tr = cfg.get("training", {})
    out = [f"# Model card: `{cfg['id']}`\n\n",
           f"**Method:** {cls.title or cls.method} (`{cls.method}`). {cls.paper}\n\n",
           f"**Input:** {cfg['image_size']}x{cfg['image_size']} grey image in [0, 1]. "
           f"**Weights:** {weights_bytes / 1e6:.2f} MB (safetensors){_storage_note(cfg)}.\n\n"]
    conf = cfg.get("config", {})
    if conf.get("backbone_used"):  # feature-modeling methods: where the frozen backbone comes from
        out.append(f"**Backbone:** frozen ResNet-18, {conf['backbone_used']} (requested: "
                   f"`{conf.get('backbone', '?')}`).\n\n")
    if conf.get("init_used"):  # CCD pre-training: its starting weights
        out.append(f"**Initialisation:** {conf['init_used']}.\n\n")
    doc = inspect.cleandoc(cls.__doc__ or "")
    if doc:
        out.append(doc + "\n\n")
    out.append("## Training data\n\n")
    if ds:
        out.append(f"- Data set: {src.get('title', ds.get('name', 'unknown'))}\n"
                   f"- Split: {ds.get('split', 'normal training images')}; "
                   f"{tr.get('n_train', '?')} training / {tr.get('n_val', '?')} validation images "
                   "(validation: normal training images only)\n")
        if src:
            out.append(f"- Licence: {src['licence']}. Cite: {src['citation']}\n"
                       "- The images themselves are not part of this repository; the weights and "
                       "numeric statistics derived from them are.\n")
    else:
        out.append("- Not recorded.\n")
    out.append("\n## Training (measured by the training loop)\n\n")
    out.append(_training_section(cls, tr) + _curve_section(tr) if tr else
               "- Not trained by the training loop (no record).\n")
    out.append("\n## Evaluation (`python -m upd_core evaluate`)\n\n")
    out.append(_evaluation_section(cls, ev) if ev else
               "Not evaluated yet: run `python -m upd_core evaluate --checkpoint <this folder>`.\n")
    out.append("\n## Configuration\n\n```json\n" + json.dumps(cfg.get("config", {}), indent=2) + "\n```\n")
    reference = ("the normal calibration images" if tr.get("n_calib") else "the normal validation images")
    out.append("\n## Intended use and limits\n\nResearch and teaching only; not a medical device. "
               "Scores are relative to the normal training distribution; percentiles refer to "
               f"{reference}. Images far from the training domain get unreliable scores.\n")
    return "".join(out)


def render_domain_card(cfg: dict[str, Any], weights_bytes: int) -> str:
    """The Markdown card of the domain classifier (`upd_core.domain`; not a detector)."""
    ds, tr, conf = cfg.get("dataset", {}), cfg.get("training", {}), cfg.get("config", {})
    src = SOURCES.get(ds.get("name", ""), {})
    classes = list(conf.get("classes", []))
    counts = dict(zip(classes, tr.get("n_per_class", [])))
    out = [f"# Model card: `{cfg['id']}`\n\n",
           "**Model:** image-domain classifier (`upd_core.domain`): four strided conv blocks, global average "
           f"pooling, a linear head over {len(classes)} domains. Not a detection method and not in the method "
           "registry.\n\n",
           f"**Input:** {cfg.get('image_size')}x{cfg.get('image_size')} grey image in [0, 1] (resized). "
           f"**Weights:** {weights_bytes / 1e6:.2f} MB (safetensors), with the mean and covariance of the "
           "chest X-ray training features for Fréchet distances.\n\n",
           "## Purpose\n\n"
           "- The app's out-of-distribution warning: P(chest X-ray) of an uploaded image.\n"
           "- The Myth page's manifold test (MorphAEus paper, Table 1 idea): how confidently a method's "
           "reconstruction of a brain MRI or a photo is called a chest X-ray, and the Fréchet distance of "
           "reconstructions to the chest X-ray training images, in the CRADL encoder's feature space when the "
           f"CRADL weights with sha256 `{tr.get('cradl_sha256')}` are present (\"FD (CRADL encoder features)\"), "
           "else in this classifier's penultimate layer (\"FD (domain-classifier features)\"). Never FID: no "
           "Inception weights are used.\n\n",
           "## Training data\n\n",
           f"- Class `{classes[0] if classes else '?'}`: {src.get('title', ds.get('name', 'unknown'))}, "
           f"{ds.get('split', 'not recorded')}.\n"]
    if src:
        out.append(f"- Licence: {src['licence']}. Cite: {src['citation']}\n"
                   "- The images themselves are not part of this repository; the weights and numeric "
                   "statistics derived from them are.\n")
    out.append(f"- Other classes: {ds.get('other_domains', 'not recorded')}; `noise`: generated smooth "
               "random noise. The domains: " + ", ".join(f"`{c}`" for c in classes[1:]) + ".\n\n")
    if counts:
        out.append(_table([{"class": c, "images": n} for c, n in counts.items()], ["class", "images"]))
    out.append("\n## Training\n\n"
               f"- Recipe: `scripts/train_domain.sh` (`python -m upd_core.domain train`); "
               f"{tr.get('epochs', '?')} epochs, seed {tr.get('seed', 'not recorded')}\n"
               f"- Optimiser: {conf.get('optimizer', '?')}, learning rate {conf.get('lr', '?')}, weight decay "
               f"{conf.get('weight_decay', '?')}, {conf.get('schedule', '?')} schedule, batch size "
               f"{conf.get('batch_size', '?')}, {conf.get('loss', '?')}\n"
               f"- Model selection: a random {100 * float(conf.get('held_out_fraction', 0)):.0f} % of the images "
               f"held out; the epoch with the best held-out accuracy is kept "
               f"(accuracy {_fmt(tr.get('held_out_accuracy'))}"
               + (f", epoch {tr['best_epoch']}" if tr.get("best_epoch") else "") + ")\n"
               f"- {tr.get('n_train', '?')} training images; wall-clock time {tr.get('seconds', '?')} s on "
               f"{tr.get('device') or 'a device not recorded'}"
               + (f", torch {tr['torch']}" if tr.get("torch") else "") + "\n"
               f"- Feature statistics stored: {', '.join(tr.get('feature_spaces', [])) or 'none'}\n")
    if tr.get("note"):
        out.append(f"- {tr['note']}\n")
    widened = (f" {ds['n_abnormal_chest']} abnormal chest X-rays were part of its chest X-ray class (never of "
               "the feature statistics), so that pathology is not mistaken for another domain."
               if ds.get("n_abnormal_chest") else "")
    out.append("\n## Intended use and limits\n\nResearch and teaching only; not a medical device. It tells "
               "apart kinds of images (chest X-ray, brain MRI, photo, digit, ...), not healthy from diseased."
               f"{widened} Chest X-rays unlike its training images (adults, other scanners) were not part of "
               "its training data.\n")
    return "".join(out)


def card_text(cfg: dict[str, Any], ev: dict[str, Any] | None, weights_bytes: int) -> str:
    """The card of a detector or of the domain classifier (its config names a `kind`)."""
    return (render_domain_card(cfg, weights_bytes) if cfg.get("kind") == "domain-classifier"
            else render_card(cfg, ev, weights_bytes))


def write_card(ckpt_dir: Path) -> None:
    """Regenerate MODEL_CARD.md of a checkpoint folder from its config.json and evaluation.json."""
    ckpt_dir = Path(ckpt_dir)
    cfg = read_config(ckpt_dir)
    size = (ckpt_dir / WEIGHTS).stat().st_size if (ckpt_dir / WEIGHTS).exists() else 0
    write_atomic(ckpt_dir / CARD, card_text(cfg, read_evaluation(ckpt_dir), size))
