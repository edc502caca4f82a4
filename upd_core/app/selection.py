"""Which checkpoints a page selects by default, and the 'best N' / 'select all' shortcuts.

Everything ranks by the measured AUROC that every page and the README show (evaluation.json, read
once by `views.checkpoint_views`, which lists the checkpoints best first). The default selection
of a page is the best few of each method family (`upd_core/methods/<family>.py`), one scoring per
set of weights, without the curse-of-resolution AEs (a teaching series shown on the Myth page),
plus methods a page is about (MorphAEus on Compare: its prior and deformation). `PAGE_DEFAULTS`
holds each page's numbers, so the pages, the Gradio demo and the benchmarks use the same ones.

The AUROC is measured on the labelled test split, so this order is for browsing: it is not a
model or scoring selection (docs/fidelity.md: every method's default scoring is fixed a priori,
and a checkpoint's own numbers stay those of that default).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .views import CheckpointView, auroc_order

TEACHING_PREFIX = "ae-latent-"  # the curse-of-resolution series: never a default


@dataclass(frozen=True)
class Defaults:
    """A page's default selection: at most `n` checkpoints, `per_family` of each family, and the
    best checkpoint of each method in `include` even when its family has better ones."""

    n: int
    per_family: int = 1
    include: tuple[str, ...] = ()


PAGE_DEFAULTS = {
    "compare": Defaults(n=7, per_family=1, include=("morphaeus",)),
    "upload": Defaults(n=10, per_family=2),
    "tails": Defaults(n=4),
    "lesion_lab": Defaults(n=4),
    "myth": Defaults(n=6),
}
BEST_N = 3  # the 'best N' shortcut's starting value


def ranked(views: Sequence[CheckpointView]) -> list[CheckpointView]:
    """The views best measured AUROC first (unevaluated ones last)."""
    return sorted(views, key=auroc_order)


def _one_per_weights(views: Sequence[CheckpointView]) -> list[CheckpointView]:
    """The best scoring of each set of weights, in rank order."""
    seen: set[str] = set()
    out = []
    for v in ranked(views):
        if v.weights not in seen:
            seen.add(v.weights)
            out.append(v)
    return out


def best(views: Sequence[CheckpointView], n: int = BEST_N) -> list[str]:
    """The `n` best checkpoints by AUROC, one scoring per set of weights (so 'best 3' is not three
    scorings of one model)."""
    return [v.id for v in _one_per_weights(views)][:max(0, int(n))]


def best_checkpoint(views: Sequence[CheckpointView]) -> str | None:
    """The single best checkpoint (the Gradio demo's default), None without any."""
    top = best([v for v in views if not v.method.startswith(TEACHING_PREFIX)] or views, 1)
    return top[0] if top else None


def select_all(views: Sequence[CheckpointView]) -> list[str]:
    """Every checkpoint, in rank order."""
    return [v.id for v in ranked(views)]


def default_selection(views: Sequence[CheckpointView], defaults: Defaults = Defaults(n=6)) -> list[str]:
    """The best `per_family` checkpoints of each family (one scoring per set of weights, no
    curse-of-resolution AEs), plus the best of each `include`d method, at most `n`, best first.

    Methods in `include` are kept when the list is cut to `n`; the rest are cut from the bottom."""
    pool = [v for v in views if not v.method.startswith(TEACHING_PREFIX)] or list(views)
    candidates = _one_per_weights(pool)
    picked: list[CheckpointView] = []
    per_family: dict[str, int] = {}
    for v in candidates:
        fam = v.family or v.method
        if per_family.get(fam, 0) < defaults.per_family:
            per_family[fam] = per_family.get(fam, 0) + 1
            picked.append(v)
    must = []
    for method in defaults.include:
        top = next((v for v in candidates if v.method == method), None)
        if top is not None:
            must.append(top)
            if top not in picked:
                picked.append(top)
    picked = ranked(picked)
    room = max(0, defaults.n - len(must))
    kept = [v for v in picked if v not in must][:room]
    return [v.id for v in ranked(kept + must)][:max(defaults.n, len(must))]


def page_default(views: Sequence[CheckpointView], page: str) -> list[str]:
    """The default selection of one page (`PAGE_DEFAULTS`; 6 of the best for an unknown page)."""
    return default_selection(views, PAGE_DEFAULTS.get(page, Defaults(n=6)))
