"""Model cards, generated from a checkpoint's config.json and evaluation.json.

Nothing in a card is typed by hand: training figures come from the training loop's record and
metrics from `python -m upd_core evaluate`, so rerunning those commands regenerates the card.
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

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


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def _table(rows: list[dict[str, Any]], cols: list[str]) -> str:
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    return head + "".join("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |\n" for r in rows)


def render_card(cfg: dict[str, Any], ev: dict[str, Any] | None, weights_bytes: int) -> str:
    from .registry import get_method

    cls = get_method(cfg["method"])
    ds = cfg.get("dataset", {})
    src = SOURCES.get(ds.get("name", ""), {})
    tr = cfg.get("training", {})
    out = [f"# Model card: `{cfg['id']}`\n\n",
           f"**Method:** {cls.title or cls.method} (`{cls.method}`). {cls.paper}\n\n",
           f"**Input:** {cfg['image_size']}x{cfg['image_size']} grey image in [0, 1]. "
           f"**Weights:** {weights_bytes / 1e6:.2f} MB (safetensors).\n\n"]
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
    if tr:
        out.append(f"- Wall-clock time: {tr.get('seconds', '?')} s ({float(tr.get('seconds', 0)) / 60:.1f} min) "
                   f"on {tr.get('device', '?')} ({tr.get('cpu', '?')}, {tr.get('threads', '?')} threads), "
                   f"torch {tr.get('torch', '?')}\n"
                   f"- Epochs: {tr.get('epochs')} (best {tr.get('best_epoch')}, stop: {tr.get('stop_reason')}); "
                   f"batch size {tr.get('batch_size')}; {tr.get('images_per_second')} training images/s\n"
                   f"- Numerics: {tr.get('amp')}; channels_last: {tr.get('channels_last')}; seed {tr.get('seed')}\n")
    else:
        out.append("- Not trained by the training loop (no record).\n")
    out.append("\n## Evaluation (`python -m upd_core evaluate`)\n\n")
    if ev:
        out.append(f"Split: {ev.get('split', '?')} — {ev.get('n_normal', '?')} normal, "
                   f"{ev.get('n_abnormal', '?')} abnormal images. Abnormal = positive class.\n\n")
        rows = [{"score": f"{cls.method} (this model)", **ev.get("image", {})}]
        for name, fl in ev.get("floors", {}).items():
            rows.append({"score": f"floor: {name} ({fl['sign']})", "auroc": fl["auroc"]})
        out.append(_table(rows, ["score", "auroc", "ap", "fpr95", "fpr99"]))
        out.append("\nRead every number against the floors: a trivial image statistic on the same split.\n")
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
            out.append(_table([{"variant": name, **v.get("image", {}), **{k: x for k, x in v.get("pixel", {}).items()
                                                                         if k in ("pixel_ap", "best_dice")}}
                               for name, v in ev["variants"].items()],
                              ["variant", "auroc", "ap", "fpr95", "fpr99", "pixel_ap", "best_dice"]))
    else:
        out.append("Not evaluated yet: run `python -m upd_core evaluate --checkpoint <this folder>`.\n")
    out.append("\n## Configuration\n\n```json\n" + json.dumps(cfg.get("config", {}), indent=2) + "\n```\n")
    out.append("\n## Intended use and limits\n\nResearch and teaching only; not a medical device. "
               "Scores are relative to the normal training distribution; percentiles refer to "
               "the normal validation images. Images far from the training domain get "
               "unreliable scores.\n")
    return "".join(out)


def write_card(ckpt_dir: Path) -> None:
    from .checkpoint import CARD, EVALUATION, WEIGHTS, read_config, write_atomic

    ckpt_dir = Path(ckpt_dir)
    cfg = read_config(ckpt_dir)
    ev = json.loads((ckpt_dir / EVALUATION).read_text()) if (ckpt_dir / EVALUATION).exists() else None
    size = (ckpt_dir / WEIGHTS).stat().st_size if (ckpt_dir / WEIGHTS).exists() else 0
    write_atomic(ckpt_dir / CARD, render_card(cfg, ev, size))
