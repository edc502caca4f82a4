#!/usr/bin/env python3
"""Regenerate the results table, the campaign table and the inventory in README.md from checkpoints/.

Nothing in the table is typed by hand: run `python scripts/results_table.py` after
`python -m upd_core evaluate ...` and commit the README. `--check` exits 1 if the README is stale.
The inventory (what is implemented, the counts of methods, checkpoints and scorings, what is only
planned) is the text the app's Home page shows, from the same function (upd_core.app.views).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
CBEGIN, CEND = "<!-- campaign:begin -->", "<!-- campaign:end -->"
IBEGIN, IEND = "<!-- inventory:begin -->", "<!-- inventory:end -->"


def fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "–"


def with_ci(im: dict, key: str) -> str:
    """'0.712 [0.671–0.752]' when the evaluation has a bootstrap CI, else the point value."""
    ci = im.get("ci95", {}).get(key)
    return f"{fmt(im.get(key))} [{ci[0]:.3f}–{ci[1]:.3f}]" if ci else fmt(im.get(key))


def seeds_cell(folder: Path, ev: dict) -> str:
    """Mean ± std AUROC over seed 0 (the shipped weights) and checkpoints/<id>/seeds/seed<k>.json."""
    import statistics

    aucs = [ev.get("image", {}).get("auroc")]
    aucs += [json.loads(p.read_text()).get("image", {}).get("auroc") for p in sorted(folder.glob("seeds/seed*.json"))]
    aucs = [a for a in aucs if a is not None]
    if len(aucs) < 2:
        return "1"
    return f"{len(aucs)}: {statistics.mean(aucs):.3f} ± {statistics.stdev(aucs):.3f}"


def training_cell(train: dict) -> str:
    sys.path.insert(0, str(ROOT))
    from upd_core.stopping import stop_label

    label = stop_label(train).replace("not converged", "**not converged**")
    return f"{train.get('epochs', '?')} ep, {label}"


def build_table(ckpt_root: Path) -> str:
    rows, floors = [], {}
    for ev_path in sorted(ckpt_root.glob("*/evaluation.json")):
        ev = json.loads(ev_path.read_text())
        cfg = json.loads((ev_path.parent / "config.json").read_text())
        im, rec, pix = ev.get("image", {}), ev.get("reconstruction", {}), ev.get("pixel", {})
        train = cfg.get("training", {})
        minutes = train.get("seconds", 0) / 60
        rows.append(f"| `{cfg['id']}` | {cfg['method']} | {with_ci(im, 'auroc')} | {with_ci(im, 'ap')} | "
                    f"{seeds_cell(ev_path.parent, ev)} | {fmt(im.get('fpr95'))} | {fmt(rec.get('ssim'))} | "
                    f"{fmt(pix.get('pixel_ap'))} | {fmt(pix.get('best_dice'))} | {ev.get('perceptual_backend', '–')} | "
                    f"{training_cell(train)} | {minutes:.1f} |")
        for name, var in ev.get("variants", {}).items():  # other scoring variants of the same weights
            vim, vpix = var.get("image", {}), var.get("pixel", {})
            rows.append(f"| `{cfg['id']}@{name}` | {cfg['method']} ({name}) | {with_ci(vim, 'auroc')} | "
                        f"{with_ci(vim, 'ap')} | – | {fmt(vim.get('fpr95'))} | – | "
                        f"{fmt(vpix.get('pixel_ap'))} | {fmt(vpix.get('best_dice'))} | – | (same weights) | – |")
        for name, fl in ev.get("floors", {}).items():
            floors[(ev.get("split", "?"), name)] = fl
    if not rows:
        return "_No evaluated checkpoints yet._\n"
    head = ("Regime of every row: normal-only training, model selection (early stopping) on normal "
            "validation images only, no abnormal labels anywhere before the test split; the paper's "
            "stopping rule or a stated epoch cap (**not converged** when the cap or a time budget ended the "
            "run). AUROC/AP with stratified bootstrap 95 % CIs (1000 resamples of the test split) where "
            "the evaluation has them; \"seeds\": mean ± std AUROC over independently trained seeds.\n\n"
            "| checkpoint | method | AUROC [95 % CI] | AP [95 % CI] | seeds | FPR95 | SSIM (normal test) "
            "| pixel AP (synthetic) | best Dice (synthetic) | perceptual loss | training | train min |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    fl = "".join(f"| floor: {name} ({v['sign']}) on {split} | – | {fmt(v['auroc'])} | – | – | – | – | – | – | – | – | – |\n"
                 for (split, name), v in sorted(floors.items()))
    return head + fl + "\n".join(rows) + "\n" + reading(ckpt_root)


def campaign_block() -> str:
    """`python -m upd_core campaign status` for what is shipped (the runs/ folder is not in git)."""
    sys.path.insert(0, str(ROOT))
    from upd_core import campaign_status

    return ("State of the campaign's queue for the shipped Kermany checkpoints (`python -m upd_core "
            "campaign status` prints the same table, plus live progress from `runs/`):\n\n"
            + campaign_status.format_status(campaign_status.status_rows("kermany", use_runs=False)) + "\n")


def inventory_block(ckpt_root: Path) -> str:
    """What exists and what is planned, with the counts, as the app's Home page states it."""
    sys.path.insert(0, str(ROOT))
    old = os.environ.get("UPD_CHECKPOINTS")
    os.environ["UPD_CHECKPOINTS"] = str(ckpt_root)  # the shipped checkpoints, whatever the caller's setting
    try:
        from upd_core.app import views

        return views.inventory_text(views.inventory()) + "\n"
    finally:
        if old is None:
            os.environ.pop("UPD_CHECKPOINTS", None)
        else:
            os.environ["UPD_CHECKPOINTS"] = old


def _replace_block(text: str, begin: str, end: str, body: str) -> str:
    """`text` with what lies between the markers replaced by `body` (unchanged without the markers)."""
    if begin not in text or end not in text:
        return text
    pre, rest = text.split(begin, 1)
    _, post = rest.split(end, 1)
    return pre + begin + "\n" + body + end + post


def reading(ckpt_root: Path) -> str:
    """Generated sentences: who beats the intensity floors, and the MorphAEus paper's ordering vs ours."""
    sys.path.insert(0, str(ROOT))
    from upd_core.app.benchmarks import REPORTED

    ours, best_floor = {}, None
    for ev_path in sorted(ckpt_root.glob("*/evaluation.json")):
        ev = json.loads(ev_path.read_text())
        ours[ev.get("method", ev_path.parent.name)] = ev.get("image", {}).get("auroc")
        for fl in ev.get("floors", {}).values():
            best_floor = max(best_floor or 0.0, fl["auroc"])
    if not ours or best_floor is None:
        return ""
    above = sorted((m for m, a in ours.items() if a is not None and a > best_floor), key=lambda m: -ours[m])
    below = sorted((m for m, a in ours.items() if a is not None and a <= best_floor), key=lambda m: -ours[m])
    out = [f"\n**Against the floors.** Above the best trivial floor (AUROC {best_floor:.3f}): "
           f"{', '.join(above) or 'none'}. At or below it: {', '.join(below) or 'none'}.\n"]
    paper = {r["method"]: r["auroc"] for r in REPORTED
             if r["source"] == "MorphAEus paper, Table 2" and r["data"].startswith("COVID-19 Radiography, COVID")}
    common = [m for m in paper if ours.get(m) is not None]
    if len(common) >= 3:
        p_order = sorted(common, key=lambda m: -paper[m])
        o_order = sorted(common, key=lambda m: -ours[m])
        rank_p = {m: i for i, m in enumerate(p_order)}
        rank_o = {m: i for i, m in enumerate(o_order)}
        n = len(common)
        rho = 1 - 6 * sum((rank_p[m] - rank_o[m]) ** 2 for m in common) / (n * (n * n - 1))
        out.append(f"\n**Against the MorphAEus paper's ordering** (its Table 2, COVID-19 vs normal AUROC, other "
                   f"data and far longer training): paper {' > '.join(p_order)}; here on Kermany "
                   f"{' > '.join(o_order)} (Spearman rank correlation {rho:.2f} over {n} methods"
                   f"{'; the paper ordering is reproduced' if p_order == o_order else '; the paper ordering is not reproduced'}).\n")
    return "".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="fail if README.md is not up to date")
    args = ap.parse_args()
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"README.md lacks the {BEGIN} / {END} markers", file=sys.stderr)
        return 2
    pre, rest = text.split(BEGIN, 1)
    _, post = rest.split(END, 1)
    new = pre + BEGIN + "\n" + build_table(ROOT / "checkpoints") + END + post
    if CBEGIN in new and CEND in new:
        cpre, crest = new.split(CBEGIN, 1)
        _, cpost = crest.split(CEND, 1)
        new = cpre + CBEGIN + "\n" + campaign_block() + CEND + cpost
    new = _replace_block(new, IBEGIN, IEND, inventory_block(ROOT / "checkpoints"))
    if args.check:
        return 0 if new == text else 1
    readme.write_text(new)
    print("README.md results table updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
