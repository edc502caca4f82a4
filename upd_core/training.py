"""The one training loop for every method.

Seeded (the caller seeds before building the model; every epoch reseeds from (seed, epoch), so
a resumed run continues exactly as an uninterrupted one); mini-batches from an in-memory image tensor; tqdm progress; validation loss on normal
held-out images with early stopping; bf16 autocast and channels_last where they help; after every
epoch the current and best weights and optimizer state are written atomically to
`<out>/train_state/` (safetensors + JSON, no pickle), so `resume=True` continues an interrupted run.

The state is committed by one atomic file: the tensors go to `state-<epoch>.safetensors`, then
`state.json` (record, optimizer settings, run identity, and the name and sha256 of that tensors
file) replaces the previous one, then older tensor files are deleted. A kill at any moment leaves
a `state.json` that names complete tensors of the same epoch, so at most the current epoch is
lost and no epoch is repeated or skipped. A resume restores the optimizers exactly as recorded
(learning rate included) and refuses a run whose method, size, seed, batch size, number of
training images or method config differ. The output folder is checked for writability (and
space) before the first epoch, and temporary files of a killed run are removed at start.

Under `torchrun` the same loop runs data-parallel (`upd_core.distributed`): `batch_size` is the
global batch, rank 0 validates, writes and reports; one process runs exactly as without it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tqdm.auto import tqdm

from . import distributed
from .checkpoint import load_state, save_checkpoint
from .checkpoint_files import ensure_writable, remove_stray_temps, tensors_bytes, write_atomic, write_json
from .detector import Detector
from .device import autocast_factory
from .errors import DataError, UPDError
from .stopping import (CONVERGED_KINDS, STOP_CAP, STOP_EARLY, STOP_MAX, STOP_TIME, is_converged,  # noqa: F401 (re-exported)
                       plateau_lr, plateau_reductions, stop_label)

STATE_DIR = "train_state"
STATE_FILE = "state.json"  # the commit marker: record + the name and sha256 of its tensors file
LEGACY_TENSORS = "state.safetensors"  # the tensors of a state written before state.json named them
_RECORD_KEYS = {"epochs", "best_epoch", "best_val_loss", "bad_epochs", "seconds", "history"}


@dataclass
class TrainConfig:
    """Loop settings; `None` means "the method config's (paper) value"."""

    max_epochs: int | None = None
    patience: int | None = None
    batch_size: int | None = None
    time_budget_min: float | None = None  # stop after this many minutes (recorded in the card)
    min_delta: float = 1e-8  # improvement needed to reset patience (MorphAEus appendix A.1: "10e-9")
    cap_epochs: int | None = None  # a stated cap below the paper's max_epochs ("not converged" when hit)
    seed: int = 0
    device: str | None = None
    amp: str = "auto"  # bf16 autocast ("auto"/"bf16") or "off"
    channels_last: bool = True
    progress: bool = True


class TrainingStateError(UPDError):
    """A saved training state cannot be resumed (missing, corrupt, or other settings)."""


class DivergedError(UPDError, FloatingPointError):
    """The training loss became NaN or infinite."""


def has_state(out: str | Path) -> bool:
    """True when `out` holds a committed training state that `resume=True` continues."""
    return (Path(out) / STATE_DIR / STATE_FILE).is_file()


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (call before building a model for reproducible weights)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _to_tensor(images: Any) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise DataError(f"training images must be (N,H,W) or (N,1,H,W), got {tuple(x.shape)}")
    return x


def _flatten_optimizers(optimizers: dict[str, torch.optim.Optimizer]) -> tuple[dict, dict]:
    tensors, meta = {}, {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        scalars = {}
        for idx, st in sd["state"].items():
            for k, v in st.items():
                if torch.is_tensor(v):
                    tensors[f"opt/{name}/{idx}/{k}"] = v
                else:
                    scalars[f"{idx}/{k}"] = v
        meta[name] = {"param_groups": sd["param_groups"], "scalars": scalars}
    return tensors, meta


def _restore_optimizers(optimizers: dict, tensors: dict, meta: dict) -> None:
    for name, opt in optimizers.items():
        state: dict[int, dict] = {}
        for key, v in tensors.items():
            parts = key.split("/")
            if parts[0] == "opt" and parts[1] == name:
                state.setdefault(int(parts[2]), {})[parts[3]] = v
        for key, v in meta[name]["scalars"].items():
            idx, k = key.split("/")
            state.setdefault(int(idx), {})[k] = v
        opt.load_state_dict({"state": state, "param_groups": meta[name]["param_groups"]})
        params = [p for g in opt.param_groups for p in g["params"]]
        for p in params:  # moments in the parameter's memory format (channels_last), as when fresh
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v) and v.shape == p.shape:
                    opt.state[p][k] = torch.empty_like(p).copy_(v)


def _run_identity(det: Detector, seed: int, batch_size: int, n_train: int) -> dict[str, Any]:
    """What a resumed run must share with the saved one (the epoch cap and time budget may change)."""
    return json.loads(json.dumps({"method": det.method, "image_size": det.image_size, "seed": seed,
                                  "batch_size": batch_size, "n_train": n_train,
                                  "config": {k: v for k, v in asdict(det.config).items() if k != "perceptual_used"}},
                                 default=str))


def _state_bytes_needed(det: Detector) -> int:
    """Disk space a run needs at its peak: two states (the committed one and the one being
    written), each ~4x the weights (weights, best weights, two Adam moments), plus the old and the
    new checkpoint."""
    weights = sum(t.numel() * t.element_size() for t in det.state_dict().values()
                  if not torch.nn.parameter.is_lazy(t))
    return 10 * weights


def _remove_uncommitted(folder: Path) -> None:
    """Delete tensor files that the committed state.json does not name (a kill before the commit
    or before the clean-up); nothing when state.json is unreadable (the user decides)."""
    if not folder.is_dir():
        return
    try:
        keep = json.loads((folder / STATE_FILE).read_text()).get("tensors", LEGACY_TENSORS)
    except FileNotFoundError:
        keep = None
    except (OSError, ValueError, AttributeError):
        return
    for p in folder.glob("state*.safetensors"):
        if p.name != keep:
            p.unlink(missing_ok=True)


def _save_state(out: Path, det: Detector, optimizers: dict, record: dict, best: dict, run: dict) -> None:
    """Commit the state after an epoch: tensors first, then the marker naming them (see module doc)."""
    tensors, meta = _flatten_optimizers(optimizers)
    tensors.update({f"model/{k}": v for k, v in det.state_dict().items()})
    tensors.update({f"best/{k}": v for k, v in best.items()})
    payload = tensors_bytes(tensors)
    folder, name = out / STATE_DIR, f"state-{record['epochs']:05d}.safetensors"
    write_atomic(folder / name, payload)
    write_json(folder / STATE_FILE, {"record": record, "optimizers": meta, "run": run, "tensors": name,
                                     "sha256": hashlib.sha256(payload).hexdigest()})
    _remove_uncommitted(folder)


def _corrupt(folder: Path, why: str) -> TrainingStateError:
    return TrainingStateError(f"--resume: the training state in {folder} is unusable ({why}); delete that "
                              "folder, or train with --force instead of --resume to start afresh")


def _read_state(folder: Path) -> dict[str, Any]:
    """state.json, checked for the keys a resume needs."""
    try:
        info = json.loads((folder / STATE_FILE).read_text())
    except FileNotFoundError:
        raise TrainingStateError(f"--resume: no training state in {folder.parent}") from None
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise _corrupt(folder, f"{STATE_FILE}: {exc}") from None
    if not isinstance(info, dict) or not isinstance(info.get("record"), dict) \
            or not isinstance(info.get("optimizers"), dict) or not _RECORD_KEYS <= set(info["record"]):
        raise _corrupt(folder, f"{STATE_FILE} lacks the training record")
    return info


def _check_run(out: Path, saved: dict | None, run: dict) -> None:
    if saved is not None and saved != run:
        diff = sorted({k for k in set(saved) | set(run) if saved.get(k) != run.get(k)} - {"config"} |
                      {f"config.{k}" for k in set(saved.get("config", {})) | set(run.get("config", {}))
                       if saved.get("config", {}).get(k) != run.get("config", {}).get(k)})
        raise TrainingStateError(f"--resume: the saved run in {out} differs in {', '.join(diff)}; resume "
                                 f"with the same settings, or train with --force instead of --resume to "
                                 "start afresh")


def check_resume(out: str | Path, det: Detector, seed: int) -> None:
    """Refuse, before any data is decoded, a resume of `out` whose state is unreadable or whose
    method, image size, seed or method config differ (fit checks the rest: batch size, data)."""
    out = Path(out)
    info = _read_state(out / STATE_DIR)
    saved = info.get("run")
    if saved is not None:
        mine = _run_identity(det, seed, saved.get("batch_size"), saved.get("n_train"))
        _check_run(out, saved, mine)


def _load_state(out: Path, det: Detector, optimizers: dict, run: dict) -> tuple[dict, dict]:
    folder = out / STATE_DIR
    info = _read_state(folder)
    _check_run(out, info.get("run"), run)
    name = info.get("tensors", LEGACY_TENSORS)
    path = folder / str(name)
    try:
        if "sha256" in info and hashlib.sha256(path.read_bytes()).hexdigest() != info["sha256"]:
            raise _corrupt(folder, f"{name} does not match the sha256 in {STATE_FILE}")
        tensors = load_file(str(path))
    except FileNotFoundError:
        raise _corrupt(folder, f"{name} is missing") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise _corrupt(folder, f"{name}: {exc}") from None
    try:
        load_state(det, {k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
        _restore_optimizers(optimizers, {k: v for k, v in tensors.items() if k.startswith("opt/")},
                            info["optimizers"])
    except (RuntimeError, KeyError, ValueError, IndexError, TypeError) as exc:
        raise _corrupt(folder, f"it does not fit this model ({str(exc).splitlines()[0]})") from None
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")}
    return info["record"], best


def fit(det: Detector, train_images: Any, val_images: Any, out_dir: str | Path, *,
        tc: TrainConfig | None = None, dataset: dict | None = None, resume: bool = False,
        checkpoint_id: str | None = None, calib_images: Any = None) -> dict[str, Any]:
    """Train `det` on normal images, early-stop on `val_images`, save a checkpoint in `out_dir`.

    `calib_images` (normal images used neither for training nor for early stopping) give the
    reference scores of every scoring variant, hence the percentiles. Returns the training
    record (also stored in the checkpoint's config.json and model card). Under torchrun every
    rank calls it; only rank 0 writes (see `upd_core.distributed`).
    """
    tc = tc or TrainConfig()
    ctx = distributed.context()
    device = distributed.training_device(tc.device, ctx)
    with distributed.process_group(ctx, device):
        return _fit(det, train_images, val_images, Path(out_dir), tc, dataset, resume, checkpoint_id,
                    calib_images, ctx, device)


def _plateau_lr(cfg: Any, optimizers: dict, base_lrs: dict[str, list[float]], record: dict[str, Any]) -> None:
    """Set every learning rate to base x factor^cuts (torch's rule), the cuts replayed from the validation
    history (`stopping.plateau_reductions`); nothing when the method has no plateau scheduler."""
    factor = getattr(cfg, "lr_plateau_factor", None)
    if not factor:
        return
    cuts = plateau_reductions([h["val_loss"] for h in record["history"]], int(cfg.lr_plateau_patience))
    for name, opt in optimizers.items():
        for g, base in zip(opt.param_groups, base_lrs[name]):
            g["lr"] = plateau_lr(base, factor, cuts)


def _fit(det: Detector, train_images: Any, val_images: Any, out: Path, tc: TrainConfig, dataset: dict | None,
         resume: bool, checkpoint_id: str | None, calib_images: Any, ctx: distributed.DistContext,
         device: torch.device) -> dict[str, Any]:
    """The loop of `fit`, on this rank's `device` inside its process group (if any)."""
    cfg = det.config
    max_epochs = tc.max_epochs if tc.max_epochs is not None else cfg.max_epochs
    patience = tc.patience if tc.patience is not None else cfg.patience
    batch_size = tc.batch_size if tc.batch_size is not None else cfg.batch_size
    last_epoch = min(max_epochs, tc.cap_epochs) if tc.cap_epochs is not None else max_epochs
    x_train, x_val = _to_tensor(train_images), _to_tensor(val_images)
    if len(x_train) < 2 or len(x_val) < 1:
        raise DataError("training needs at least 2 training images and 1 validation image")
    main = ctx.is_main  # the one process that writes files and reports
    if main:
        for folder in (out, out / STATE_DIR):  # what a killed run left half-written
            remove_stray_temps(folder)
        _remove_uncommitted(out / STATE_DIR)
        ensure_writable(out, _state_bytes_needed(det))  # fail now, not after the first epoch
        if not resume:  # starting afresh: an older state must not outlive (or be mixed with) this run's
            shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    det.to(device)
    fmt = torch.channels_last if tc.channels_last else torch.contiguous_format
    det.to(memory_format=fmt)
    amp = autocast_factory(device, tc.amp)
    optimizers = det.configure_optimizers()
    base_lrs = {k: [g["lr"] for g in opt.param_groups] for k, opt in optimizers.items()}
    record: dict[str, Any] = {"epochs": 0, "best_epoch": -1, "best_val_loss": float("inf"),
                              "bad_epochs": 0, "seconds": 0.0, "history": []}
    best: dict[str, torch.Tensor] = {}
    batch_size, local_batch = distributed.local_batch_size(min(batch_size, len(x_train)), ctx,
                                                           capped=batch_size > len(x_train))
    run = _run_identity(det, tc.seed, batch_size, len(x_train))
    if resume and has_state(out):
        record, best = _load_state(out, det, optimizers, run)
        det.to(device)
    start = record["epochs"]
    _plateau_lr(cfg, optimizers, base_lrs, record)  # a resumed run continues at its reduced rate
    distributed.check_same(start, "the epoch to resume from", ctx, device)
    train_step = distributed.training_step(det, optimizers, device, ctx)
    t0 = time.perf_counter() - record["seconds"]
    if last_epoch < max_epochs:
        stop_kind, stop_reason = STOP_CAP, f"epoch cap of {last_epoch} reached (paper: up to {max_epochs})"
    else:
        stop_kind, stop_reason = STOP_MAX, f"max epochs ({max_epochs}) reached"
    for epoch in range(start, last_epoch):
        # resumable: the same randomness per epoch (rank r > 0: its own noise)
        seed_everything(distributed.rank_seed(tc.seed * 100_003 + epoch, ctx))
        det.train()
        # randperm seeded with (seed, epoch); under torchrun this rank's DistributedSampler shard of it
        perm = distributed.epoch_indices(len(x_train), tc.seed * 100_003, epoch, ctx)
        n_batches = max(1, len(x_train) // batch_size)  # drop a ragged last batch (BatchNorm)
        sums: dict[str, float] = {}
        bar = tqdm(range(n_batches), desc=f"{det.method} epoch {epoch + 1}/{max_epochs}",
                   disable=not (tc.progress and main), leave=False, unit="batch")
        for b in bar:
            xb = x_train[perm[b * local_batch:(b + 1) * local_batch]].to(device).contiguous(memory_format=fmt)
            losses = train_step(xb, epoch, optimizers, amp)
            if not np.isfinite(losses["loss"]):
                raise DivergedError(f"{det.method}: training loss became {losses['loss']} at epoch "
                                    f"{epoch + 1}; lower the learning rate or disable amp")
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{losses['loss']:.4g}")
        det.eval()
        val_loss = float("nan")
        if main:  # rank 0 validates on the whole split, as one process does; the others wait
            with torch.no_grad(), amp():
                vals = [det.validation_loss(x_val[i:i + batch_size].to(device).contiguous(memory_format=fmt), epoch)
                        for i in range(0, len(x_val), batch_size)]
            val_loss = float(np.mean(vals))
        # rank 0's loss and clock on every rank: early stopping and the time budget decide alike
        val_loss, seconds = distributed.broadcast_floats([val_loss, time.perf_counter() - t0], ctx, device)
        train_losses = distributed.mean_over_ranks({k: v / n_batches for k, v in sums.items()}, ctx, device)
        record["epochs"] = epoch + 1
        record["seconds"] = seconds
        record["history"].append({"epoch": epoch + 1, "val_loss": val_loss, **train_losses})
        if getattr(cfg, "lr_plateau_factor", None):  # the rate this epoch used, then the next one's
            record["history"][-1]["lr"] = optimizers[next(iter(optimizers))].param_groups[0]["lr"]
            _plateau_lr(cfg, optimizers, base_lrs, record)
        if tc.progress and main:
            tqdm.write(f"{det.method} epoch {epoch + 1}: train {train_losses['loss']:.5g}  val {val_loss:.5g}")
        # While the method's loss schedule still changes the objective (e.g. MorphAEus before
        # L_warp is on and beta at its final value), validation losses of different epochs are not
        # comparable: the latest epoch is kept and patience does not run.
        in_schedule = epoch + 1 <= det.selection_start_epoch()
        if in_schedule or val_loss < record["best_val_loss"] - tc.min_delta or not best:
            record.update(best_val_loss=val_loss, best_epoch=epoch + 1, bad_epochs=0)
            best = {k: v.detach().clone() for k, v in det.state_dict().items()}
        else:
            record["bad_epochs"] += 1
        if main:
            _save_state(out, det, optimizers, record, best, run)
        if record["bad_epochs"] >= patience:
            stop_kind, stop_reason = STOP_EARLY, f"early stopping (no improvement for {patience} epochs)"
            break
        if tc.time_budget_min is not None and record["seconds"] > 60 * tc.time_budget_min:
            stop_kind, stop_reason = STOP_TIME, f"time budget of {tc.time_budget_min} min reached"
            break
    load_state(det, best)
    det.to(device).to(memory_format=torch.contiguous_format)
    if main:  # non-gradient fitting (density heads) and calibration on rank 0, on all the data
        det.fit_extra(x_train.to(device), progress=tc.progress, val=x_val.to(device))
        det.val_scores = torch.as_tensor(det.predict(x_val).score, dtype=torch.float32, device=device)
        if calib_images is not None:
            det.calibrate_percentiles(_to_tensor(calib_images))
    record.update(
        stop_reason=stop_reason, stop_kind=stop_kind, converged=stop_kind in CONVERGED_KINDS,
        n_calib=0 if calib_images is None else len(calib_images), seconds=round(time.perf_counter() - t0, 1), n_train=len(x_train),
        n_val=len(x_val), batch_size=batch_size, max_epochs=max_epochs, patience=patience,
        device=str(device), amp="off" if amp is contextlib.nullcontext else "bf16 autocast",
        channels_last=tc.channels_last, seed=tc.seed, torch=torch.__version__, threads=torch.get_num_threads(),
        cpu=platform.processor() or platform.machine(), train_config=asdict(tc))
    record["images_per_second"] = round(record["n_train"] * record["epochs"] / max(record["seconds"], 1e-9), 1)
    record.pop("bad_epochs", None)
    record["selection_start_epoch"] = det.selection_start_epoch()
    if ctx.enabled:
        record["world_size"] = ctx.world_size
        record["batch_size_per_process"] = local_batch
    if main:
        save_checkpoint(det, out, checkpoint_id=checkpoint_id, dataset=dataset, training=record, keep_evaluation=False)
        shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    return record
