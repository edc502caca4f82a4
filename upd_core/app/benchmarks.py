"""The Benchmarks page: every checkpoint's evaluation, intensity floors first, papers' numbers beside.

`benchmark_rows` lays out what `python -m upd_core evaluate` wrote next to each checkpoint (and its
scoring variants) in the columns of the papers' tables, one table per evaluated split, the
trivial intensity floors first, with how each training stopped, bootstrap 95 % CIs and mean ± std
over seed replicas (`seed_summary`) where the files have them; `display_rows` formats those
cells. `floor_summary` says how many checkpoints beat the floors; `calibration_table` is the
decile chart of how normal test images fall on the calibration percentiles. `REPORTED` holds the
numbers the papers reported on their own data, shown only as context, with the selection regime
each paper states (`REPORTED_REGIME`).
"""
from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..checkpoint import CheckpointInfo, list_checkpoints
from ..registry import list_methods
from .views import PLANNED, REGIME, method_title, read_evaluation, training_status  # noqa: F401 (REGIME re-exported)

# Numbers reported in the papers, on THEIR data (other datasets, resolutions and protocols).
# Shown beside ours only as context, never as a comparison on the same split.
REPORTED: list[dict[str, Any]] = [
    *[{"source": "MorphAEus paper, Table 2", "data": "COVID-19 Radiography, COVID-19 vs normal (128 px)",
       "method": m, "auroc": a, "ap": p, "fpr95": f95, "fpr99": f99, "ssim": s}
      for m, s, f95, f99, p, a in (
          ("spatial-ae", 0.949, 0.949, 0.987, 0.840, 0.559), ("dense-ae", 0.735, 0.934, 0.972, 0.818, 0.550),
          ("vae", 0.752, 0.952, 0.985, 0.771, 0.448), ("beta-vae", 0.613, 0.789, 0.944, 0.920, 0.774),
          ("aae", 0.652, 0.861, 0.967, 0.882, 0.685), ("soft-intro-vae", 0.688, 0.937, 0.974, 0.856, 0.610),
          ("dae", 0.965, 0.228, 0.446, 0.984, 0.951), ("morphaeus", 0.839, 0.578, 0.828, 0.956, 0.868),
          ("morphaeus-no-warp", 0.711, 0.889, 0.957, 0.908, 0.734),
          ("morphaeus-no-warp-no-pl", 0.780, 0.897, 0.951, 0.884, 0.681))],
    *[{"source": "MorphAEus paper, Table 2", "data": "COVID-19 Radiography, lung opacity vs normal (128 px)",
       "method": m, "auroc": a, "ap": p, "fpr95": f95, "fpr99": f99}
      for m, f95, f99, p, a in (
          ("spatial-ae", 0.945, 0.990, 0.884, 0.562), ("dense-ae", 0.959, 0.984, 0.845, 0.446),
          ("vae", 0.974, 0.994, 0.827, 0.397), ("beta-vae", 0.850, 0.961, 0.924, 0.696),
          ("aae", 0.910, 0.983, 0.909, 0.649), ("soft-intro-vae", 0.957, 0.985, 0.881, 0.532),
          ("dae", 0.579, 0.879, 0.958, 0.826), ("morphaeus", 0.587, 0.843, 0.963, 0.839),
          ("morphaeus-no-warp", 0.918, 0.968, 0.918, 0.660),
          ("morphaeus-no-warp-no-pl", 0.937, 0.972, 0.900, 0.598))],
    *[{"source": "UPD study, Table III", "data": f"CheXpert, {task} (128 px)", "method": m, "ap": p, "auroc": a}
      for task, col in (("pleural effusion", 0), ("opacity", 1), ("enlarged cardiomediastinum", 2))
      for m, vals in (
          ("vae", (0.55, 0.57, 0.51, 0.54, 0.56, 0.56)), ("r-vae", (0.52, 0.57, 0.47, 0.50, 0.52, 0.56)),
          ("f-anogan", (0.59, 0.61, 0.49, 0.51, 0.57, 0.59)), ("h-tae-s", (0.51, 0.51, 0.50, 0.50, 0.53, 0.51)),
          ("fae", (0.73, 0.77, 0.57, 0.61, 0.63, 0.66)), ("padim", (0.61, 0.66, 0.50, 0.52, 0.60, 0.63)),
          ("cflow-ad", (0.67, 0.73, 0.52, 0.54, 0.62, 0.66)), ("rd", (0.65, 0.71, 0.54, 0.58, 0.61, 0.63)),
          ("expvae", (0.51, 0.52, 0.52, 0.51, 0.52, 0.52)), ("amcons", (0.39, 0.31, 0.49, 0.48, 0.41, 0.37)),
          ("pii", (0.64, 0.65, 0.53, 0.54, 0.56, 0.56)), ("dae", (0.63, 0.65, 0.52, 0.55, 0.58, 0.60)),
          ("cutpaste", (0.58, 0.59, 0.53, 0.54, 0.57, 0.58)))
      for p, a in [(vals[2 * col], vals[2 * col + 1])]],
    *[{"source": "PII paper, Table 1", "data": f"ChestX-ray14 {part} PA (256 px)", "method": m, "ap": p}
      for part, col in (("male", 0), ("female", 1))
      for m, vals in (("deep-svdd", (0.565, 0.556)), ("vq-vae2", (0.503, 0.516)), ("fpi", (0.533, 0.586)),
                      ("pii", (0.690, 0.703)))
      for p in [vals[col]]],
]

# How each paper selected models and hyper-parameters, as far as it says so (never guessed).
UNSTATED_REGIME = "selection regime not stated by the paper"
REPORTED_REGIME: dict[str, str] = {
    "MorphAEus paper, Table 2": (
        "normal-only training, early stopping on a 10 % split of healthy images (Sec. 5, App. A.1); the "
        "baselines' settings were changed for 'better results' by a criterion the paper does not state"),
    "UPD study, Table III": (
        "labelled validation: 10 % of the test samples (normal and abnormal) kept for validation, "
        "hyper-parameters optimised for each data set where necessary (Sec. V-B, V-C, Table I); "
        "mean of three seeds"),
    "PII paper, Table 1": f"{UNSTATED_REGIME} (a fixed 50 epochs; no validation split described)",
}


def reported_regime(source: str) -> str:
    """The selection regime a source states, or UNSTATED_REGIME."""
    return REPORTED_REGIME.get(source, UNSTATED_REGIME)


def load_evaluations(infos: Sequence[CheckpointInfo] | None = None) -> list[dict[str, Any]]:
    """The evaluation.json of every checkpoint that has one, with its id and method."""
    out = []
    own = ("variants", "image", "pixel", "reconstruction", "calibration")  # what each scoring has for itself
    for info in list_checkpoints() if infos is None else infos:
        ev = read_evaluation(Path(info.path))
        if not ev:
            continue
        converged, _ = training_status(Path(info.path))
        seeds = seed_records(Path(info.path), ev)
        out.append({"id": info.id, "method": info.method, **ev, "converged": converged,
                    "over_seeds": seed_summary(seeds)})
        for name, var in (ev.get("variants") or {}).items():  # scoring variants: rows of their own
            out.append({**{k: v for k, v in ev.items() if k not in own},
                        "id": f"{info.id}@{name}", "method": info.method, "variant": name, **var,
                        "converged": converged, "over_seeds": seed_summary(seeds, name)})
    return out


def seed_records(folder: Path, seed0: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Seed 0's evaluation (the shipped weights) and the seed replicas in `<folder>/seeds/seed<k>.json`
    in seed order; unreadable files and records of another split than seed 0's are left out."""
    seed0 = read_evaluation(Path(folder)) if seed0 is None else seed0
    if not seed0:
        return []
    found = []
    for p in (Path(folder) / "seeds").glob("seed*.json"):
        m = re.fullmatch(r"seed(\d+)\.json", p.name)
        if not m or int(m.group(1)) == 0:
            continue
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("split") == seed0.get("split"):
            found.append((int(m.group(1)), rec))
    return [seed0, *(rec for _, rec in sorted(found, key=lambda t: t[0]))]


def _scoring_image(record: dict[str, Any], variant: str | None) -> dict[str, Any]:
    """The image metrics of one scoring in an evaluation record (the default one when `variant` is None)."""
    if variant is None or variant == record.get("variant"):
        return record.get("image") or {}
    return ((record.get("variants") or {}).get(variant) or {}).get("image") or {}


def seed_summary(records: Sequence[dict[str, Any]], variant: str | None = None) -> dict[str, Any] | None:
    """Mean and sample standard deviation of AUROC and AP over seed evaluation records.

    Returns {"n": seeds with an AUROC, "auroc": (mean, std), "ap": (mean, std) or None}, or None when
    fewer than two records score `variant`."""
    def finite(v: Any) -> bool:
        return isinstance(v, (int, float)) and math.isfinite(v)

    images = [_scoring_image(r, variant) for r in records]
    aurocs = [float(i["auroc"]) for i in images if finite(i.get("auroc"))]
    aps = [float(i["ap"]) for i in images if finite(i.get("ap"))]
    if len(aurocs) < 2:
        return None
    return {"n": len(aurocs), "auroc": (statistics.mean(aurocs), statistics.stdev(aurocs)),
            "ap": (statistics.mean(aps), statistics.stdev(aps)) if len(aps) == len(aurocs) else None}


def benchmark_rows(evals: Sequence[dict[str, Any]] | None = None) -> dict[str, list[dict[str, Any]]]:
    """Tables per evaluated split: the trivial intensity floors first, then one row per checkpoint.

    Columns follow the papers' tables: AUROC, AP, FPR95, FPR99 (image level), SSIM of healthy
    reconstructions, pixel AP and best Dice (synthetic lesions or masks).
    """
    evals = load_evaluations() if evals is None else evals
    tables: dict[str, list[dict[str, Any]]] = {}
    floors_done: set[str] = set()
    for ev in evals:
        split = str(ev.get("split") or ev.get("dataset") or "unknown split")
        n = f"{ev.get('n_normal', '?')} normal / {ev.get('n_abnormal', '?')} abnormal"
        rows = tables.setdefault(f"{split} ({n})", [])
        key = f"{split} ({n})"
        if key not in floors_done:
            floors_done.add(key)
            for name, fl in (ev.get("floors") or {}).items():
                rows.insert(len([r for r in rows if r["kind"] == "floor"]), {
                    "kind": "floor", "method": f"floor: {name.replace('_', ' ')} ({fl.get('sign', '')})",
                    "checkpoint": "", "AUROC": fl.get("auroc")})
        img, rec, pix = ev.get("image") or {}, ev.get("reconstruction") or {}, ev.get("pixel") or {}
        several = "@" in str(ev.get("id")) or bool(ev.get("variants"))  # rows of one model, titled by scoring
        title = method_title(ev.get("method", "")) + (f" [{ev['variant']}]" if ev.get("variant") and several else "")
        ci, seeds = img.get("ci95") or {}, ev.get("over_seeds") or {}
        rows.append({"kind": "method", "method": title, "checkpoint": ev.get("id", ""),
                     "converged": ev.get("converged") or "not recorded",
                     "AUROC": img.get("auroc"), "AP": img.get("ap"),
                     "AUROC 95% CI": ci.get("auroc"), "AP 95% CI": ci.get("ap"),
                     "AUROC over seeds": seeds.get("auroc"), "AP over seeds": seeds.get("ap"),
                     "seeds": seeds.get("n"), "FPR95": img.get("fpr95"),
                     "FPR99": img.get("fpr99"), "SSIM (healthy)": rec.get("ssim"),
                     "pixel AP": pix.get("pixel_ap"), "best Dice": pix.get("best_dice"),
                     "images/s": ev.get("inference_images_per_second"),
                     "perceptual loss": ev.get("perceptual_backend", "–"),
                     "reported elsewhere (other data)": reported_summary(ev.get("method", ""))})
    return tables


def with_ci(value: Any, ci: Any) -> str | None:
    """'0.712 [0.671, 0.752]', or '0.712' without an interval, or None without a value."""
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci):
        return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
    return f"{value:.3f}"


def display_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A table's rows as the page shows them: AUROC and AP as 'value [95 % CI]' text, 'mean ± std'
    over seeds, the other cells unchanged; every row has all columns, in a checkpoint row's order."""
    out = []
    for r in rows:
        d = {k: v for k, v in r.items() if k not in ("AUROC 95% CI", "AP 95% CI")}
        for metric in ("AUROC", "AP"):
            if metric in r:
                d[metric] = with_ci(r.get(metric), r.get(f"{metric} 95% CI"))
            if f"{metric} over seeds" in r:
                stats = r[f"{metric} over seeds"]
                d[f"{metric} over seeds"] = f"{stats[0]:.3f} ± {stats[1]:.3f}" if stats else None
        out.append(d)
    columns = list(dict.fromkeys(k for d in sorted(out, key=lambda d: d.get("kind") != "method") for k in d))
    return [{k: d.get(k) for k in columns} for d in out]


def calibration_entries(evals: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{checkpoint id (or id@variant): its calibration record} for every evaluation that has one."""
    return {str(ev.get("id")): ev["calibration"] for ev in evals
            if isinstance(ev.get("calibration"), dict) and ev["calibration"].get("bin_shares")}


def calibration_table(cal: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per percentile bin: its range, the share of normal test images in it, the uniform share."""
    shares = [float(s) for s in cal.get("bin_shares") or []]
    k = len(shares)
    return [{"percentile bin": f"{100 * i // k}–{100 * (i + 1) // k}", "share": s, "uniform": 1 / k}
            for i, s in enumerate(shares)]


def calibration_summary(cal: dict[str, Any]) -> str:
    """KS distance, median percentile and reference of one calibration record, in one line."""
    def num(key: str, fmt: str) -> str:
        v = cal.get(key)
        return format(v, fmt) if isinstance(v, (int, float)) else "?"

    return (f"Kolmogorov-Smirnov distance to uniform: {num('ks', '.3f')} (0 = perfectly uniform); median "
            f"percentile {num('median_percentile', '.1f')} (ideal 50); {cal.get('n', '?')} normal test images "
            f"against the {cal.get('reference', 'reference images')}.")


CALIBRATION_HELP = (
    "A percentile says where an image's score falls among the scores of normal reference images (the "
    "calibration split). If that calibration transfers, healthy test images are spread evenly: each tenth "
    "of the percentile range holds 10 % of them (the line). Bars piling up on the right mean healthy test "
    "images look more abnormal than the calibration set, so percentiles overstate abnormality; bars piling "
    "up on the left mean the opposite.")


def floor_summary(rows: Sequence[dict[str, Any]]) -> tuple[int, int, float] | None:
    """(checkpoints beating the best floor's AUROC, checkpoints, that AUROC) of one table, or None
    when the table has no floor or no checkpoint with an AUROC to compare."""
    def known(v: Any) -> bool:
        return v is not None and v == v  # not None, not NaN

    floors = [r["AUROC"] for r in rows if r["kind"] == "floor" and known(r.get("AUROC"))]
    methods = [r for r in rows if r["kind"] == "method"]
    if not floors or not methods:
        return None
    best = max(floors)
    return sum(1 for r in methods if known(r.get("AUROC")) and r["AUROC"] > best), len(methods), best


def reported_summary(method: str) -> str:
    """One line of a method's AUROC (or AP) as reported in the papers on their data, or ''."""
    parts = []
    for r in REPORTED:
        if r["method"] != method:
            continue
        metric, v = ("AUROC", r["auroc"]) if r.get("auroc") is not None else ("AP", r.get("ap"))
        task = r["data"].split(", ", 1)[-1].replace(" (128 px)", "").replace(" (256 px)", "")
        parts.append(f"{metric} {v:.3f} {task} [{r['source'].split(',')[0]}]")
    return "; ".join(parts)


def reported_rows(methods: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The papers' reported numbers, optionally only for the given method ids, each saying whether
    the method is implemented here, planned, or only a baseline of a paper, and the selection
    regime its paper states."""
    keep = None if methods is None else set(methods)
    names = {"auroc": "AUROC", "ap": "AP", "fpr95": "FPR95", "fpr99": "FPR99", "ssim": "SSIM (healthy)"}
    have, planned = set(list_methods()), {mid for mid, _, _ in PLANNED}

    def status(mid: str) -> str:
        return "implemented" if mid in have else "planned" if mid in planned else "not planned"

    return [{"method": method_title(r["method"]), "id": r["method"], "in this app": status(r["method"]),
             **{names.get(k, k): v for k, v in r.items() if k != "method"}, "regime": reported_regime(r["source"])}
            for r in REPORTED if keep is None or r["method"] in keep]
