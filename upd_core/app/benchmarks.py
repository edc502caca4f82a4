"""The Benchmarks page: every checkpoint's evaluation, intensity floors first, papers' numbers beside.

`benchmark_rows` lays out what `python -m upd_core evaluate` wrote next to each checkpoint (and its
scoring variants) in the columns of the papers' tables, one table per evaluated split, the
trivial intensity floors first; `floor_summary` says how many checkpoints beat them. `REPORTED`
holds the numbers the papers reported on their own data, shown only as context.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from ..checkpoint import CheckpointInfo, list_checkpoints
from ..registry import list_methods
from .views import PLANNED, method_title, read_evaluation

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


def load_evaluations(infos: Sequence[CheckpointInfo] | None = None) -> list[dict[str, Any]]:
    """The evaluation.json of every checkpoint that has one, with its id and method."""
    out = []
    for info in list_checkpoints() if infos is None else infos:
        ev = read_evaluation(Path(info.path))
        if not ev:
            continue
        out.append({"id": info.id, "method": info.method, **ev})
        for name, var in (ev.get("variants") or {}).items():  # scoring variants: rows of their own
            out.append({**{k: v for k, v in ev.items() if k not in ("variants", "image", "pixel", "reconstruction")},
                        "id": f"{info.id}@{name}", "method": info.method, "variant": name, **var})
    return out


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
        title = method_title(ev.get("method", "")) + (
            f" [{ev['variant']}]" if ev.get("variant") and "@" in str(ev.get("id")) else "")
        rows.append({"kind": "method", "method": title, "checkpoint": ev.get("id", ""),
                     "AUROC": img.get("auroc"), "AP": img.get("ap"), "FPR95": img.get("fpr95"),
                     "FPR99": img.get("fpr99"), "SSIM (healthy)": rec.get("ssim"),
                     "pixel AP": pix.get("pixel_ap"), "best Dice": pix.get("best_dice"),
                     "images/s": ev.get("inference_images_per_second"),
                     "perceptual loss": ev.get("perceptual_backend", "–"),
                     "reported elsewhere (other data)": reported_summary(ev.get("method", ""))})
    return tables


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
    the method is implemented here, planned, or only a baseline of a paper."""
    keep = None if methods is None else set(methods)
    names = {"auroc": "AUROC", "ap": "AP", "fpr95": "FPR95", "fpr99": "FPR99", "ssim": "SSIM (healthy)"}
    have, planned = set(list_methods()), {mid for mid, _, _ in PLANNED}

    def status(mid: str) -> str:
        return "implemented" if mid in have else "planned" if mid in planned else "not planned"

    return [{"method": method_title(r["method"]), "id": r["method"], "in this app": status(r["method"]),
             **{names.get(k, k): v for k, v in r.items() if k != "method"}}
            for r in REPORTED if keep is None or r["method"] in keep]
