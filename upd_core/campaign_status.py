"""`campaign status`: one row per job of the queue — what runs/ holds on this machine, else what
checkpoints/ ships (so a fresh clone reports the state of the shipped models) — and its table."""
from __future__ import annotations

import json
from typing import Any

from . import campaign
from .campaign import Job


def _record(job: Job) -> dict[str, Any]:
    """Training record of a job: the finished config's, else the live training state's."""
    for path, key in ((job.out / "config.json", "training"), (job.out / "train_state" / "state.json", "record")):
        try:
            return json.loads(path.read_text()).get(key, {})
        except (OSError, ValueError):
            continue
    return {}


def _shipped_row(job: Job) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """State, training record and evaluation of what checkpoints/ holds for a job."""
    from .checkpoint import checkpoints_root

    base = checkpoints_root() / campaign.run_id(job.recipe.method, job.data_name, 0)
    record = campaign.read_json(base / "config.json")
    stale = bool(record) and bool(campaign.recipe_changes(job.recipe, record.get("config", {}))
                                  or job.stale_needs(record.get("training", {})))
    if job.seed != 0:
        ev = campaign.read_json(base / "seeds" / f"seed{job.seed}.json")
        if not ev:
            return "queued", {}, {}
        return ("shipped (evaluation; recipe changed, to retrain)" if stale else "shipped (evaluation)"), {}, ev
    train = record.get("training", {})
    if not train:
        return "queued", {}, {}
    if not train.get("n_calib"):  # trained before the campaign (time-budget scripts)
        state = "shipped (pre-campaign, to retrain)"
    else:
        state = "shipped (recipe changed, to retrain)" if stale else "shipped"
    return state, train, campaign.read_json(base / "evaluation.json")


def status_rows(data: str = "kermany", only: list[str] | None = None,
                use_runs: bool = True) -> list[dict[str, Any]]:
    """One row per job. With `use_runs=False` (or for jobs with nothing under runs/) the row shows
    what is shipped in checkpoints/, so a fresh clone reports the state of the shipped models."""
    from .stopping import stop_label

    rows = []
    for job in campaign.jobs(data, only):
        st = job.state() if use_runs else "queued"
        if st == "queued" and job.data_name == campaign.SHIPPED_DATA:
            st, rec, ev = _shipped_row(job)
        else:
            rec, ev = _record(job), campaign.read_json(job.out / "evaluation.json")
        cap = job.recipe.cap_epochs
        finished = st in ("trained", "done") or st.startswith("shipped")
        rows.append({
            "checkpoint": job.id, "state": st, "epochs": rec.get("epochs", 0),
            "limit": f"cap {cap}" if cap else "paper's max",
            "best_val_loss": rec.get("best_val_loss"),
            "converged": stop_label(rec) if finished and rec else "–",
            "minutes": round(rec.get("seconds", 0.0) / 60, 1),
            "auroc": ev.get("image", {}).get("auroc")})
    return rows


def format_status(rows: list[dict[str, Any]]) -> str:
    head = ("checkpoint", "state", "epochs", "campaign limit", "best val loss", "converged?", "min", "AUROC")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        bvl = "–" if r["best_val_loss"] in (None, float("inf")) else f"{r['best_val_loss']:.5g}"
        auc = "–" if r["auroc"] is None else f"{r['auroc']:.3f}"
        lines.append(f"| `{r['checkpoint']}` | {r['state']} | {r['epochs']} | {r['limit']} | {bvl} | "
                     f"{r['converged']} | {r['minutes']} | {auc} |")
    return "\n".join(lines)
