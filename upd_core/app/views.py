"""Checkpoints as the app lists them, their order, and the app's setting.

One `CheckpointView` per shipped checkpoint and per scoring variant (`<checkpoint>@<variant>`), so
variants can be compared side by side like methods, each with how its training stopped
("converged" / "not converged", read once from config.json), listed best measured AUROC first;
the training regime every page states; the reason a method lacks an output (shown in empty
cells); the methods of the seed papers that are planned but not implemented, and the counts of
what exists (`inventory`, also behind the README's); the inference device and the torch thread
count for interactive use. Default selections are in `selection`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..checkpoint import CheckpointInfo, list_checkpoints
from ..checkpoint_files import read_config
from ..errors import CheckpointError
from ..registry import get_method, list_methods
from ..stopping import stop_label

# How every number measured here was obtained (DESIGN.md: stated in every table); shown on Home and
# Benchmarks next to the papers' numbers.
REGIME = ("Our numbers: normal-only training, model selection on normal validation images only (no abnormal "
          "labels), the paper's stopping rule or a stated cap (see 'converged'). Numbers reported by other "
          "papers were often selected on labelled data.")


@dataclass
class CheckpointView:
    """What the app shows about one checkpoint."""

    id: str
    method: str
    title: str
    dataset: str
    outputs: tuple[str, ...]
    needs_grad: bool
    metrics: dict[str, Any]
    paper: str
    training: str = ""  # stop label of its training record, e.g. "not converged (time budget)"; "" if none
    epochs: int | None = None  # epochs trained, when recorded
    family: str = ""  # the method's family module (upd_core/methods/<family>.py)
    variant: str = ""  # its scoring variant ('' for a checkpoint with a single scoring)

    @property
    def auroc(self) -> float | None:
        """The measured AUROC (evaluation.json, through the manifest), None when not evaluated."""
        v = self.metrics.get("auroc")
        return float(v) if isinstance(v, (int, float)) and v == v else None

    @property
    def weights(self) -> str:
        """The checkpoint id without its '@variant' (all scorings of one set of weights share it)."""
        return self.id.split("@", 1)[0]

    @property
    def converged(self) -> bool | None:
        """Whether training ran the paper's stopping rule to its end; None without a training record."""
        return self.training.startswith("converged") if self.training else None

    @property
    def flag(self) -> str:
        """' ⚠ not converged' for option labels, '' otherwise."""
        return " ⚠ not converged" if self.converged is False else ""

    @property
    def label(self) -> str:
        return f"{self.title} ({self.id}){self.flag}"


def training_status(folder: Path) -> tuple[str, int | None]:
    """(stop label, epochs) of the training record in a checkpoint's config.json; ("", None) without one.

    The one place the app reads it: every page shows this value (`stopping.stop_label` handles
    records written before stop kinds existed)."""
    try:
        record = read_config(Path(folder)).get("training") or {}
    except (CheckpointError, OSError):
        return "", None
    if not isinstance(record, dict) or not (record.get("stop_kind") or record.get("stop_reason")):
        return "", None
    epochs = record.get("epochs")
    return stop_label(record), int(epochs) if isinstance(epochs, (int, float)) else None


def convergence_note(chosen: Sequence[CheckpointView]) -> str:
    """One line naming the chosen checkpoints whose training did not converge, or ''."""
    bad = [f"{v.title} ({v.training.removeprefix('not converged ').strip('()')})"
           for v in chosen if v.converged is False]
    if not bad:
        return ""
    return ("⚠ Not converged: " + ", ".join(bad) + ". Their training stopped at a time budget or an epoch cap "
            "before the paper's stopping rule ended it, so they may understate what the method can do.")


def read_evaluation(folder: Path) -> dict[str, Any]:
    """A checkpoint folder's evaluation.json, or {} when absent or unreadable."""
    try:
        return json.loads((Path(folder) / "evaluation.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def checkpoint_views(infos: Sequence[CheckpointInfo] | None = None) -> list[CheckpointView]:
    """Checkpoints of registered methods, with titles and declared outputs (unknown methods skipped),
    best measured AUROC first (`auroc_order`).

    A checkpoint with several scorings is listed once per scoring: "<id>" under its default scoring
    and "<id>@<variant>" for each other one, each titled with its scoring ("CRADL [gmm1]", "CRADL
    [gmm4]"), so that rows and options never share a title."""
    out = []
    for info in list_checkpoints() if infos is None else infos:
        try:
            cls = get_method(info.method)
        except ValueError:
            continue
        training, epochs = training_status(Path(info.path))
        title, family = cls.title or info.method, cls.__module__.rsplit(".", 1)[-1]
        ev = read_evaluation(Path(info.path))
        variants = ev.get("variants") or {}
        default = str(ev.get("variant") or "") if variants else ""
        out.append(CheckpointView(info.id, info.method, f"{title} [{default}]" if default else title, info.dataset,
                                  tuple(cls.outputs), bool(cls.needs_grad), dict(info.metrics), cls.paper, training,
                                  epochs, family, default))
        # Scoring variants of the same weights (CRADL's density heads, ceVAE's scores, ...) as their
        # own entries "<id>@<variant>", so they can be compared side by side.
        for name, var in variants.items():
            # every shipped variant is a gradient-based scoring (KL- or NLL-gradient maps)
            out.append(CheckpointView(f"{info.id}@{name}", info.method, f"{title} [{name}]",
                                      info.dataset, tuple(cls.outputs), True,
                                      dict(var.get("image") or {}), cls.paper, training, epochs, family, name))
    return sorted(out, key=auroc_order)


def auroc_order(v: CheckpointView) -> tuple[Any, ...]:
    """Sort key: the best measured AUROC first, checkpoints without one last (then in PREFERRED order).

    The AUROC is the one every page and the README show: evaluation.json's, read through the
    manifest (`CheckpointInfo.metrics`) and, for a variant, from evaluation.json's `variants`."""
    auroc = v.auroc
    return (auroc is None, -(auroc or 0.0), method_rank(v.method), v.id)


# Order of methods with equal (or no) AUROC: the papers' main methods first, the curse-of-resolution
# series (a teaching device) last. Planned ids are listed so that a method takes its place as soon
# as it is registered. Default selections: upd_core.app.selection.
PREFERRED = ("spatial-ae", "dense-ae", "vae", "beta-vae", "aae", "soft-intro-vae", "dae", "morphaeus", "cradl",
             "pii", "fpi", "padim", "fae", "rd", "cflow-ad", "f-anogan", "r-vae", "cevae", "adm")

# Methods of the seed papers (DESIGN.md) that are not implemented yet: (id, title, paper). The
# app lists them as planned; each drops out of that list once its id is registered.
PLANNED = (
    ("r-vae", "r-VAE", "UPD study"), ("f-anogan", "f-AnoGAN", "UPD study"), ("h-tae-s", "H-TAE-S", "UPD study"),
    ("fae", "FAE", "UPD study"), ("padim", "PaDiM", "UPD study"), ("cflow-ad", "CFLOW-AD", "UPD study"),
    ("rd", "RD", "UPD study"), ("expvae", "ExpVAE", "UPD study"), ("amcons", "AMCons", "UPD study"),
    ("cutpaste", "CutPaste", "UPD study"), ("ccd", "CCD pre-training", "UPD study"),
    ("adm", "ADM", "multi-contrast MRI paper"), ("dagmm", "DAGMM", "multi-contrast MRI paper"),
)


def method_rank(method: str) -> tuple[int, str]:
    """Sort key of a method id: PREFERRED order, then the rest, the curse-of-resolution AEs last."""
    if method in PREFERRED:
        return PREFERRED.index(method), method
    return (len(PREFERRED) + (50 if method.startswith("ae-latent-") else 0)), method


def method_title(method: str) -> str:
    """The registered title of a method id, or the id itself for methods not implemented here."""
    try:
        return get_method(method).title or method
    except ValueError:
        return method


def planned_methods() -> dict[str, list[str]]:
    """Titles of the planned (not yet implemented) methods, per paper."""
    have = set(list_methods())
    out: dict[str, list[str]] = {}
    for mid, title, paper in PLANNED:
        if mid not in have:
            out.setdefault(paper, []).append(title)
    return out


@dataclass(frozen=True)
class Inventory:
    """What exists, counted from the registry and the checkpoint folder (never typed by hand)."""

    methods: tuple[str, ...]  # titles of the registered methods
    checkpoints: int  # shipped sets of weights
    scorings: int  # checkpoints and their scoring variants (<checkpoint>@<variant>)
    methods_with_checkpoints: int
    planned: dict[str, list[str]]


def inventory(found: Sequence[CheckpointView] | None = None) -> Inventory:
    """Counts of the methods, checkpoints and scorings that Home and the README state."""
    found = checkpoint_views() if found is None else found
    ids = list_methods()
    return Inventory(tuple(method_title(m) for m in sorted(ids, key=method_rank)), len({v.weights for v in found}),
                     len(found), len({v.method for v in found}), planned_methods())


def inventory_text(inv: Inventory) -> str:
    """Markdown: what is implemented (with the counts) and what is only planned."""
    text = (f"**Implemented:** {len(inv.methods)} registered methods ({' · '.join(inv.methods)}); "
            f"{inv.checkpoints} trained checkpoints of {inv.methods_with_checkpoints} of them, {inv.scorings} "
            "scorings counting each `<checkpoint>@<variant>`.")
    if inv.planned:
        text += " **Planned, not implemented yet:** " + "; ".join(
            f"{', '.join(titles)} ({paper})" for paper, titles in inv.planned.items()) + "."
    return text


def missing_reason(method: str, output: str) -> str:
    """One line saying why a method has no `output` (shown in an empty grid cell)."""
    cls = get_method(method)
    title = cls.title or method
    if output == "reconstruction":
        return f"{title} scores without reconstructing the image."
    if output == "prior":
        return f"{title} learns no global prior (only MorphAEus-type models do)."
    if output in ("warped", "deformation"):
        if "prior" in cls.outputs:
            return f"{title} has no deformation branch, so its prior is not warped."
        return f"{title} estimates no deformation (only MorphAEus does)."
    if output == "residual":
        return f"{title} has no reconstruction, so there is no residual |x - x̂|."
    return f"{title} does not produce '{output}'."


def checkpoint_table(views: Sequence[CheckpointView]) -> list[dict[str, Any]]:
    """Home's table of available checkpoints: one row each."""
    return [{"checkpoint": v.id, "method": v.title, "trained on": v.dataset,
             "outputs": ", ".join(("score", "anomaly map") + v.outputs),
             "AUROC": v.metrics.get("auroc"), "AP": v.metrics.get("ap"),
             "converged": v.training or "not recorded", "epochs": v.epochs} for v in views]


def configure_threads() -> int:
    """Set torch's CPU threads for interactive use: $UPD_APP_THREADS, default 1.

    Measured on the 2-core development machine while another process trains: one 128x128 image
    takes ~11 ms per method with 1 thread but 250-650 ms with 2 (the threads wait for each other
    when a core is busy), and 64-image batches are faster with 1 thread too. On an idle
    many-core machine set UPD_APP_THREADS higher for the batch pages (Tails, sweep).
    """
    import torch

    try:
        n = max(1, int(os.environ.get("UPD_APP_THREADS", "1")))
    except ValueError:
        n = 1
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def device_summary() -> str:
    """Human description of the inference device."""
    import torch

    from ..device import resolve_device

    dev = resolve_device(None)
    if dev.type == "cuda":
        return f"CUDA GPU ({torch.cuda.get_device_name(0)})"
    n = torch.get_num_threads()
    return f"CPU ({n} thread{'s' if n != 1 else ''})"
