"""The training campaign: every shipped checkpoint's recipe, trained one at a time, resumable.

    python -m upd_core campaign run [--only ID ...] [--data kermany] [--device cuda]
    python -m upd_core campaign status [--data ...]

The recipes below are data, not scripts: method, config overrides, a stated epoch cap when the
paper's maximum cannot be afforded, seeds, and what a recipe needs first (MorphAEus' perceptual
backend is the CRADL encoder trained on the *same* data). `run` works through the queue: each
training runs as `python -m upd_core train ... --resume` in a subprocess under `nice`, with its
state in `runs/campaign/<data>/<id>/` (an ignored folder), so a kill or a machine change loses at
most the current epoch. A finished training is evaluated (test split + synthetic lesions) and,
for the Kermany data and seed 0, staged into `checkpoints/` (intermediate weights never are).
Other seeds are evaluated and their evaluation records staged beside the shipped seed
(`checkpoints/<id>/seeds/seed<k>.json`), so tables can give mean ± std over seeds.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UPDError
from .paths import REPO_ROOT, dataset_name, resolve_dataset

# The papers train "up to 1000 epochs" with early stopping after 25 epochs without improvement
# (MorphAEus appendix A.1). This machine cannot afford 1000 CPU epochs per method, so the campaign
# states a cap of 100 epochs where the paper's maximum is higher; a run
# that hits it is labelled "not converged" everywhere.
EPOCH_CAP = 100
SHIPPED_DATA = "cxr-kermany"  # only trainings on this data set are staged into checkpoints/
SIZE = 128  # image size of every shipped checkpoint
PIXEL_LESIONS = 100  # synthetic-lesion images for the pixel metrics of every evaluation
# MorphAEus Eq. 1 weighs its perceptual loss with alpha = 0.05 for ImageNet features. The project's
# own SSL encoder (used where no ImageNet weights exist) gives per-image feature distances ~1.0,
# about 100x the pixel MSE (~0.009 on Kermany; shipped MorphAEus w/o L_warp, last epoch), so
# alpha = 0.05 made the perceptual term ~5.7x the MSE term. 0.009 brings alpha * PL to the size of
# the MSE term. A label-free choice (training losses only); recorded in every card's config.
ALPHA_DOMAIN_SSL = 0.009


@dataclass(frozen=True)
class Recipe:
    """How one shipped checkpoint is trained. `sets` are `--set key=value` config overrides."""

    method: str
    sets: tuple[str, ...] = ()
    cap_epochs: int | None = EPOCH_CAP
    batch_size: int | None = None
    seeds: tuple[int, ...] = (0,)
    needs: tuple[str, ...] = ()  # methods whose seed-0 checkpoint must exist first
    derive: str | None = None  # a derived checkpoint made from this one (RADL from the ceVAE)
    why: str = ""  # the reason for every departure from the paper (shown in `status --long`)


# Three seeds for every compared method (CRADL Sec. 4 and the UPD study Sec. VI report means over
# three runs; docs/fidelity.md item 5). The queue trains every seed 0 before any other seed.
SEEDS3 = (0, 1, 2)
# CRADL's views with the ranges of the authors' code (the paper names the transformations but no
# ranges; docs/fidelity.md item 16): scale U(0.9, 1.2), rotation +-0.1 rad, brightness x(1 +- 0.075),
# noise sigma up to 0.05 z-units x 0.27 (the Kermany per-image std). Mirroring stays on.
CRADL_VIEWS = ("crop_scale=0.9,1.2", "rotate_deg=5.73", "brightness=0.075", "noise_std=0.0135")

# Order: what the comparisons need most first (the encoder MorphAEus depends on, then the
# MorphAEus paper's Table 2, then the other families).
RECIPES: tuple[Recipe, ...] = (
    Recipe("cradl", sets=("patience=100",) + CRADL_VIEWS, cap_epochs=None, seeds=SEEDS3,
           why="CRADL Sec. 4.3: a fixed 100 epochs, cosine schedule with 10 warm-up epochs (early stopping off); "
           "views with the authors' code's ranges (the paper gives none; docs/fidelity.md item 16)"),
    Recipe("vae", seeds=SEEDS3),
    Recipe("morphaeus", sets=("beta_ramp_epochs=50", f"alpha={ALPHA_DOMAIN_SSL}"), needs=("cradl",),
           seeds=SEEDS3, why="beta ramp over 50 epochs (from the start of L_warp) instead of the "
           "authors' 200, so that it completes under the cap; alpha rescaled for the domain-SSL "
           "perceptual backend (see ALPHA_DOMAIN_SSL)"),
    Recipe("spatial-ae", seeds=SEEDS3),
    Recipe("dae", seeds=SEEDS3),
    Recipe("dense-ae", seeds=SEEDS3),
    Recipe("beta-vae", sets=("c_ramp_epochs=50",), seeds=SEEDS3, why="capacity ramp over 50 epochs (fits the cap)"),
    Recipe("aae", seeds=SEEDS3),
    Recipe("soft-intro-vae", seeds=SEEDS3),
    Recipe("morphaeus-no-warp", sets=(f"alpha={ALPHA_DOMAIN_SSL}",), needs=("cradl",), seeds=SEEDS3,
           why="alpha rescaled for the domain-SSL perceptual backend (see ALPHA_DOMAIN_SSL)"),
    Recipe("morphaeus-no-warp-no-pl", seeds=SEEDS3),
    Recipe("cevae", sets=("patience=100",), cap_epochs=None, derive="radl", seeds=SEEDS3,
           why="a fixed 100-epoch schedule as CRADL trains it: early stopping off"),
    Recipe("pii", sets=("patience=50",), cap_epochs=None, seeds=SEEDS3,
           why="a fixed 50-epoch schedule as the PII paper trains it: early stopping off"),
    Recipe("fpi", sets=("patience=50",), cap_epochs=None, seeds=SEEDS3, why="as PII"),
    *(Recipe(f"ae-latent-{side}") for side in (32, 16, 8, 4, 1)),
    # The UPD study's feature-modeling family on the project's own CCD backbone (no ImageNet weights
    # here). Schedules: the study code's fixed step budgets as epochs on 1 098 normal images.
    Recipe("ccd", cap_epochs=None, why="UPD study code: SGD 0.01, cosine over 200 epochs, fixed schedule"),
    Recipe("padim", cap_epochs=None, needs=("ccd",), why="no gradients: one feature pass on the CCD backbone"),
    Recipe("rd", cap_epochs=None, needs=("ccd",), why="study code: Adam 5e-3, batch 4, 10 000 steps = 37 epochs"),
    Recipe("cflow-ad", cap_epochs=None, needs=("ccd",), why="study code: Adam 2e-4, batch 32, 3 000 steps = 89 epochs"),
    Recipe("fae", cap_epochs=None, needs=("ccd",), why="study code: Adam 2e-4, batch 32, 10 000 steps = 295 epochs"),
)
# The config field through which a recipe receives the model it needs (trained on the same data).
NEED_FIELDS = {"cradl": "perceptual_encoder", "ccd": "backbone_checkpoint"}


def recipe_for(method: str) -> Recipe:
    for r in RECIPES:
        if r.method == method:
            return r
    raise UPDError(f"no campaign recipe for {method!r} (recipes: {', '.join(r.method for r in RECIPES)})")


def run_id(method: str, data_name: str, seed: int) -> str:
    base = f"{method}-{data_name.replace('cxr-', '')}-{SIZE}"
    return base if seed == 0 else f"{base}-seed{seed}"


@dataclass
class Job:
    recipe: Recipe
    seed: int
    data: str
    data_name: str
    root: Path  # runs/campaign/<data_name>

    @property
    def id(self) -> str:
        return run_id(self.recipe.method, self.data_name, self.seed)

    @property
    def out(self) -> Path:
        return self.root / self.id

    def state(self) -> str:
        if (self.out / "evaluation.json").exists():
            return "done"
        if (self.out / "config.json").exists():
            return "trained"
        if (self.out / "train_state" / "state.json").exists():
            return "running" if _lock_held(self.root) else "interrupted"
        return "queued"

    def shipped(self) -> bool:
        """True when checkpoints/ already holds this job's finished campaign result (seed 0: a
        campaign-trained, evaluated checkpoint; other seeds: their evaluation record). runs/ is
        machine-local and lost with the machine; the shipped result is what a fresh clone has, so
        the queue skips it instead of training it again (`--retrain` overrides)."""
        if self.data_name != SHIPPED_DATA:
            return False
        from .checkpoint import checkpoints_root

        base = checkpoints_root() / run_id(self.recipe.method, self.data_name, 0)
        if self.seed != 0 and not (base / "seeds" / f"seed{self.seed}.json").exists():
            return False
        record = read_json(base / "config.json")  # seed 0's config also dates the other seeds
        train = record.get("training", {})
        return (bool(train.get("n_calib")) and (base / "evaluation.json").exists()
                and not recipe_changes(self.recipe, record.get("config", {}))
                and not self.stale_needs(train))

    def stale_needs(self, training: dict[str, Any]) -> list[str]:
        """Needed methods whose result changed since this one was trained (`training` is its
        config's training record, which stores the sha256 of each needed model it was trained
        with), or whose shipped result is itself out of date."""
        out = []
        used = training.get("needs_sha256", {})
        for m in self.recipe.needs:
            try:
                r = recipe_for(m)
            except UPDError:
                r = Recipe(m)  # not in the queue: only the recorded weights can be compared
            where = dependency(m, self)
            if where is None and r in RECIPES:
                out.append(m)
            elif where is not None and m in used and used[m] != _model_sha(where):
                out.append(m)
        return out


def recipe_changes(recipe: Recipe, config: dict[str, Any]) -> list[str]:
    """The recipe's `--set` overrides that a trained config does not hold (e.g. views changed
    after the shipped model was trained): such a result is out of date and is trained again."""
    from .overrides import method_config

    try:
        wanted = method_config(recipe.method, list(recipe.sets)).__dict__
    except UPDError:
        return list(recipe.sets)
    changed = []
    for item in recipe.sets:
        key = item.partition("=")[0]
        have = config.get(key)
        have = tuple(have) if isinstance(have, list) else have
        want = wanted.get(key)
        want = tuple(want) if isinstance(want, list) else want
        if have != want:
            changed.append(f"{key}: {have!r} -> {want!r}")
    return changed


def dependency(method: str, job: Job) -> str | None:
    """Where the seed-0 result of `method` that `job` needs lives: its run folder under runs/
    when this machine trained it, else the shipped checkpoint id when checkpoints/ holds the
    campaign's result for this data set; None when neither exists yet."""
    try:
        recipe = recipe_for(method)
    except UPDError:
        recipe = Recipe(method)  # not in the queue (tests, other data): any result of it will do
    dj = Job(recipe, 0, job.data, job.data_name, job.root)
    if (dj.out / "config.json").exists():
        return str(dj.out)
    if dj.shipped():
        return dj.id
    return None


def campaign_root(data_name: str) -> Path:
    return Path(os.environ.get("UPD_RUNS", REPO_ROOT / "runs")) / "campaign" / data_name


def jobs(data: str = "kermany", only: list[str] | None = None, seeds: bool = True) -> list[Job]:
    """The queue for a data set, in order; `only` keeps the given method ids."""
    name = _data_name(data)
    if only:
        unknown = sorted(set(only) - {r.method for r in RECIPES})
        if unknown:
            raise UPDError(f"--only: no recipe for {', '.join(unknown)} "
                           f"(recipes: {', '.join(r.method for r in RECIPES)})")
    chosen = [r for r in RECIPES if not only or r.method in only]
    out = [Job(r, 0, data, name, campaign_root(name)) for r in chosen]  # every seed 0 first
    if seeds:
        out += [Job(r, s, data, name, campaign_root(name)) for r in chosen for s in r.seeds[1:]]
    return out


def _data_name(data: str) -> str:
    """The data set's name (folder name); known short names work without the data present."""
    from .errors import DataError
    from .paths import NAMED_DATASETS

    try:
        return dataset_name(resolve_dataset(data))
    except DataError:
        if data in NAMED_DATASETS:
            return NAMED_DATASETS[data]
        raise


def _lock_held(root: Path) -> bool:
    path = root / ".lock"
    if not path.exists():
        return False
    with open(path) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def _run(cmd: list[str], log: Path, nice: int, ok: tuple[int, ...] = (0,)) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                              preexec_fn=(lambda: os.nice(nice)) if nice else None)
    if proc.returncode not in ok:
        raise UPDError(f"command failed (exit {proc.returncode}): {' '.join(cmd)} — see {log}")


def train_command(job: Job, device: str | None = None) -> list[str]:
    r = job.recipe
    cmd = [sys.executable, "-m", "upd_core", "train", "--method", r.method, "--data", job.data,
           "--size", str(SIZE), "--id", job.id, "--out", str(job.out), "--seed", str(job.seed), "--quiet"]
    if (job.out / "train_state" / "state.json").exists():
        cmd.append("--resume")
    if r.cap_epochs is not None:
        cmd += ["--epochs", str(r.cap_epochs)]
    if r.batch_size is not None:
        cmd += ["--batch-size", str(r.batch_size)]
    for s in r.sets:
        cmd += ["--set", s]
    for need in r.needs:  # MorphAEus' perceptual encoder (CRADL), the feature methods' backbone (CCD)
        where = dependency(need, job) or job.root / run_id(need, job.data_name, 0)
        if need == "ccd":
            cmd += ["--set", "backbone=ccd"]
        cmd += ["--set", f"{NEED_FIELDS[need]}={where}"]
    if device:
        cmd += ["--device", device]
    return cmd


def stage(job: Job, checkpoints: Path | None = None) -> Path | None:
    """Copy a finished, evaluated seed-0 Kermany run into checkpoints/ (other seeds: their
    evaluation record only). Returns what was written, None when nothing is staged."""
    from .checkpoint import checkpoints_root, refresh

    if job.data_name != SHIPPED_DATA or job.state() != "done":
        return None
    dest_root = checkpoints or checkpoints_root()
    base = run_id(job.recipe.method, job.data_name, 0)
    if job.seed != 0:
        dest = dest_root / base / "seeds" / f"seed{job.seed}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        _copy_evaluation(job.out / "evaluation.json", dest, job.id)
        return dest
    dest = dest_root / base  # replace its files; seed records staged earlier (seeds/) stay
    dest.mkdir(parents=True, exist_ok=True)
    for p in dest.iterdir():
        if p.is_file():
            p.unlink()
    for p in job.out.iterdir():
        if p.is_file() and not p.name.endswith((".tmp", ".log")):
            shutil.copy2(p, dest / p.name)
    if (dest / "evaluation.json").exists():
        _copy_evaluation(job.out / "evaluation.json", dest / "evaluation.json", base)
    _ship_dependencies(job, dest / "config.json")
    refresh(dest)
    return dest


def _model_sha(where: str) -> str | None:
    """sha256 of the weights of a run folder or shipped checkpoint id."""
    import hashlib

    from .checkpoint import checkpoints_root

    path = Path(where) if Path(where).is_absolute() else checkpoints_root() / where
    try:
        return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()
    except OSError:
        return None


def _ship_dependencies(job: Job, config: Path) -> None:
    """A staged config names the model it needs (perceptual encoder, backbone) by shipped id, not by
    a machine-local runs/ path (the campaign's run of the shipped data set is shipped under that id), and records
    the sha256 of every needed model it was trained with, so that retraining the encoder later
    marks this result out of date."""
    if not job.recipe.needs or not config.exists():
        return
    record = json.loads(config.read_text())
    cfg = record.get("config", {})
    for need in job.recipe.needs:
        field = NEED_FIELDS.get(need)
        if field and cfg.get(field) == str(job.root / run_id(need, job.data_name, 0)):
            cfg[field] = run_id(need, job.data_name, 0)
    shas = {m: _model_sha(w) for m in job.recipe.needs if (w := dependency(m, job))}
    record.setdefault("training", {})["needs_sha256"] = {m: h for m, h in shas.items() if h}
    config.write_text(json.dumps(record, indent=2) + "\n")


def _copy_evaluation(src: Path, dest: Path, checkpoint_id: str) -> None:
    """The evaluation record under the id it is shipped as: the run was evaluated by path (a
    folder under runs/, possibly another worktree), which must not end up in checkpoints/."""
    record = json.loads(src.read_text())
    record["checkpoint"] = checkpoint_id
    dest.write_text(json.dumps(record, indent=2) + "\n")


def run(data: str = "kermany", only: list[str] | None = None, device: str | None = None,
        nice: int = 10, max_hours: float | None = None, seeds: bool = True, do_stage: bool = True,
        retrain: list[str] | None = None, say=print) -> list[Job]:
    """Work through the queue (see the module docstring). Returns the jobs it finished."""
    queue = jobs(data, only, seeds)
    root = queue[0].root if queue else campaign_root(dataset_name(resolve_dataset(data)))
    root.mkdir(parents=True, exist_ok=True)
    lock = open(root / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise UPDError(f"another campaign is running on {root} (one training at a time)") from None
    t0, finished = time.time(), []
    try:
        for job in queue:
            if max_hours is not None and time.time() - t0 > 3600 * max_hours:
                say(f"stopping: --max-hours {max_hours} reached")
                break
            if job.state() == "queued" and job.recipe.method not in (retrain or []) and job.shipped():
                say(f"skip {job.id}: already shipped (campaign result in checkpoints/; --retrain {job.recipe.method} to redo)")
                continue
            missing = [m for m in job.recipe.needs if dependency(m, job) is None]
            if missing:
                say(f"skip {job.id}: needs {', '.join(missing)} first")
                continue
            log = job.out.with_suffix(".log")
            if job.state() in ("queued", "interrupted", "running"):  # "running": this process holds the lock
                say(f"{time.strftime('%H:%M:%S')} train {job.id}  (log {log})")
                _run(train_command(job, device), log, nice)
            if job.state() == "trained":
                say(f"{time.strftime('%H:%M:%S')} evaluate {job.id}")
                cmd = [sys.executable, "-m", "upd_core", "evaluate", "--checkpoint", str(job.out),
                       "--data", data, "--synthetic-lesions", str(PIXEL_LESIONS)]
                _run(cmd + (["--device", device] if device else []), log, nice)
                if job.data_name == SHIPPED_DATA and job.seed == 0:  # half-precision storage where
                    # AUROC/AP do not move (exit 1: the check failed, the fp32 weights stay)
                    _run([sys.executable, "-m", "upd_core", "compact", "--checkpoint", str(job.out),
                          "--data", data], log, nice, ok=(0, 1))
            if job.recipe.derive and job.seed == 0:
                _derive(job, data, log, nice)
            if do_stage:
                where = stage(job)
                if where:
                    say(f"staged {job.id} -> {where}")
            finished.append(job)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
    return finished


def _derive(job: Job, data: str, log: Path, nice: int) -> None:
    """A derived checkpoint (RADL: density heads on the ceVAE's representations), evaluated."""
    method = job.recipe.derive
    assert method is not None
    dj = Job(Recipe(method, cap_epochs=None), 0, job.data, job.data_name, job.root)
    if dj.state() == "done":
        return
    if dj.state() != "trained":
        _run([sys.executable, "-m", "upd_core.derived", "derive", "--source", str(job.out),
              "--method", method, "--out", str(dj.out), "--id", dj.id, "--data", data], log, nice)
    _run([sys.executable, "-m", "upd_core", "evaluate", "--checkpoint", str(dj.out), "--data", data,
          "--synthetic-lesions", str(PIXEL_LESIONS)], log, nice)
    if job.data_name == SHIPPED_DATA:
        stage(dj)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
