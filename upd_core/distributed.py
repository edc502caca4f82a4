"""Data-parallel training under `torchrun` (DistributedDataParallel), as plain helpers for `fit`.

`torchrun` sets WORLD_SIZE / RANK / LOCAL_RANK; without them (or with WORLD_SIZE=1) nothing here
changes the single-process run. With them, `fit` keeps its one loop and:

- shards the data with a `DistributedSampler` seeded as the single-process shuffle (seed + epoch,
  `set_epoch` every epoch), so rank r's k-th batch of `global/world` images holds positions
  `k*global + r, k*global + r + world, ...` of the one-process permutation: the ranks together
  see exactly the single-process batches;
- routes the method's `loss` through a DDP wrapper during the training step (gradients are
  averaged over ranks in the backward pass; BatchNorm statistics stay per rank, as in plain DDP);
- validates on rank 0 only (the whole validation split, as one process does) and broadcasts that
  loss and rank 0's clock, so early stopping and the time budget decide identically everywhere;
- writes checkpoints, training state, logs and progress bars on rank 0 only.

Methods with several optimisers (AAE, Soft-Intro VAE: adversarial steps) or a training step that
does not call `loss` exactly once are refused with one line; density heads and other
non-gradient fitting (`fit_extra`: CRADL/RADL heads, PaDiM statistics) run on rank 0 after the
network training, on all training images.
"""
from __future__ import annotations

import contextlib
import datetime
import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler

from .device import resolve_device
from .errors import UPDError

RANK_SEED_STRIDE = 1_000_003  # rank r > 0 seeds its own noise with seed + r * stride


class DistributedError(UPDError):
    """Training cannot run under torchrun as asked (environment, method, batch size)."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in a torchrun job (world_size 1: a plain single process)."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise DistributedError(f"environment variable {name}={text!r} is not an integer (set by torchrun)") from None


def context() -> DistContext:
    """The torchrun environment of this process (WORLD_SIZE, RANK, LOCAL_RANK)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext()
    if "RANK" not in os.environ:
        raise DistributedError(f"WORLD_SIZE={world} but RANK is not set: start distributed training with torchrun")
    ctx = DistContext(world, _env_int("RANK", 0), _env_int("LOCAL_RANK", 0))
    if not 0 <= ctx.rank < world:
        raise DistributedError(f"RANK={ctx.rank} is outside 0..{world - 1}")
    return ctx


def training_device(requested: str | None, ctx: DistContext) -> torch.device:
    """The device of this rank: `resolve_device` in one process; under torchrun CUDA means
    `cuda:LOCAL_RANK` (one GPU per process) and anything else the CPU."""
    dev = resolve_device(requested)
    if not ctx.enabled or dev.type != "cuda":
        return dev
    if requested not in (None, "auto", "cuda"):
        raise DistributedError(f"--device {requested}: under torchrun each process uses cuda:LOCAL_RANK; "
                               "pass --device cuda (or nothing) and choose GPUs with CUDA_VISIBLE_DEVICES")
    if ctx.local_rank >= torch.cuda.device_count():
        raise DistributedError(f"LOCAL_RANK {ctx.local_rank} has no GPU ({torch.cuda.device_count()} visible): "
                               "use --nproc_per_node <= the number of GPUs")
    torch.cuda.set_device(ctx.local_rank)
    return torch.device("cuda", ctx.local_rank)


@contextlib.contextmanager
def process_group(ctx: DistContext, device: torch.device) -> Iterator[None]:
    """Initialise the process group (NCCL on CUDA, gloo on CPU) for the block and destroy it
    afterwards; nothing in one process or when the caller already initialised one."""
    if not ctx.enabled or dist.is_initialized():
        yield
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world_size,
                            timeout=datetime.timedelta(minutes=60))  # rank 0 validates alone
    try:
        yield
    finally:
        dist.destroy_process_group()


def local_batch_size(global_batch: int, ctx: DistContext, capped: bool) -> tuple[int, int]:
    """(global, per-rank) batch sizes. The global batch must split evenly over the ranks; one
    capped by a small training set is rounded down to a multiple of the world size instead."""
    if not ctx.enabled:
        return global_batch, global_batch
    if capped:
        global_batch -= global_batch % ctx.world_size
    if global_batch < ctx.world_size or global_batch % ctx.world_size:
        raise DistributedError(f"batch size {global_batch} does not split over {ctx.world_size} processes: "
                               f"use a --batch-size that is a multiple of {ctx.world_size} (the global batch; "
                               "each process takes batch/world images)")
    return global_batch, global_batch // ctx.world_size


def epoch_indices(n: int, seed: int, epoch: int, ctx: DistContext) -> torch.Tensor:
    """This rank's training indices of an epoch. One process: `randperm(n)` seeded with
    seed + epoch, the single-process order; several: its DistributedSampler shard of that order."""
    sampler = DistributedSampler(range(n), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                 seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return torch.as_tensor(list(sampler), dtype=torch.long)


def rank_seed(seed: int, ctx: DistContext) -> int:
    """Rank 0 keeps `seed`; other ranks draw their own noise (augmentations, sampled latents)."""
    return seed + RANK_SEED_STRIDE * ctx.rank


class _LossModule(nn.Module):
    """What DDP wraps: the detector (its parameters) with `forward` = the method's own `loss`."""

    def __init__(self, det: nn.Module) -> None:
        super().__init__()
        self.det = det
        self.calls = 0

    def forward(self, x: torch.Tensor, epoch: int, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        self.calls += 1
        return type(self.det).loss(self.det, x, epoch, *args, **kwargs)


def _no_buffer_sync() -> dict[str, bool]:
    """The DDP keyword that stops syncing buffers at every forward (renamed in torch 2.14)."""
    params = inspect.signature(DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in params else {"broadcast_buffers": False}


def check_supported(det: Any, optimizers: dict) -> None:
    """Refuse methods whose training DDP cannot synchronise through one `loss` call per step."""
    if optimizers and list(optimizers) != ["main"]:
        raise DistributedError(f"{det.method}: training under torchrun (DDP) is not supported for this method "
                               f"(several optimisers: {', '.join(optimizers)}); train it in one process")


class DDPStep:
    """The training step under DDP: the method's own `training_step`, with `det.loss` routed
    through DistributedDataParallel so its backward averages the gradients over the ranks."""

    def __init__(self, det: Any, optimizers: dict, device: torch.device) -> None:
        check_supported(det, optimizers)
        self.det = det
        self.module = _LossModule(det)
        # find_unused_parameters: parameters outside the loss (density heads fitted afterwards,
        # terms a loss schedule switches on later) must not stall the gradient reduction.
        # Buffers (BatchNorm statistics) are synced once at the start, then kept per rank: rank 0's
        # are validated and saved.
        self.ddp = DistributedDataParallel(self.module, device_ids=[device.index] if device.type == "cuda" else None,
                                           find_unused_parameters=True, **_no_buffer_sync())

    def __call__(self, xb: torch.Tensor, epoch: int, optimizers: dict, amp: Callable) -> dict[str, float]:
        self.module.calls = 0
        vars(self.det)["loss"] = self.ddp  # shadows the method for this step only
        try:
            losses = self.det.training_step(xb, epoch, optimizers, amp)
        finally:
            vars(self.det).pop("loss", None)
        if self.module.calls != 1:
            raise DistributedError(f"{self.det.method}: training under torchrun (DDP) is not supported for this "
                                   f"method (its training step calls its loss {self.module.calls} times, DDP "
                                   "needs exactly one); train it in one process")
        return losses


def training_step(det: Any, optimizers: dict, device: torch.device, ctx: DistContext) -> Callable:
    """The step `fit` calls per batch: the method's own in one process, or when nothing is trained
    by gradients (PaDiM: its fitting runs on rank 0 afterwards); else the DDP step."""
    if not ctx.enabled or not optimizers:
        return det.training_step
    return DDPStep(det, optimizers, device)


def _float_tensor(values: list[float], device: torch.device) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, device=device)


def broadcast_floats(values: list[float], ctx: DistContext, device: torch.device) -> list[float]:
    """Rank 0's `values` on every rank (unchanged in one process)."""
    if not ctx.enabled:
        return values
    t = _float_tensor(values, device)
    dist.broadcast(t, src=0)
    return [float(v) for v in t.cpu()]


def mean_over_ranks(values: dict[str, float], ctx: DistContext, device: torch.device) -> dict[str, float]:
    """The mean of each value over the ranks (the same keys on every rank; unchanged in one process)."""
    if not ctx.enabled:
        return values
    keys = sorted(values)
    t = _float_tensor([values[k] for k in keys], device)
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.cpu())}


def check_same(value: int, what: str, ctx: DistContext, device: torch.device) -> None:
    """Raise unless every rank holds the same `value` (e.g. the epoch a resume starts from)."""
    if not ctx.enabled:
        return
    t = _float_tensor([value, -value], device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if int(t[0]) != value or int(-t[1]) != value:
        raise DistributedError(f"the processes disagree on {what}: with several machines, --out must be on a "
                               "file system every machine reads")
