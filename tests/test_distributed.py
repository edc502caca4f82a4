"""Data-parallel training under torchrun (upd_core.distributed): the same loop on 2 CPU processes.

Equivalences tested, with the same global batch (per-process batch = global / 2):
- data order: the two ranks' batches together are exactly the one-process batches, and one
  process keeps `randperm(seed + epoch)` (exact);
- the loop: spatial-ae with its BatchNorm layers removed and amp off trains to the same weights
  in 2 processes as in 1 (|diff| <= 1e-5: only the order of the gradient sums differs);
- the command: `torchrun --standalone --nproc_per_node 2 -m upd_core train` (spatial-ae, 32 px,
  2 epochs, BatchNorm kept, bf16) gives every epoch's validation loss within 2 % of the
  one-process run (BatchNorm normalises over each process's half batch, as in plain DDP), and
  rank 0 alone writes the checkpoint and reports.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.app_fixtures import env, make_dataset
from tests.methods.test_contract import smooth_images
from upd_core import cli, distributed
from upd_core.distributed import DistContext, DistributedError

REPO = Path(__file__).resolve().parent.parent
TORCH_ENV = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.mark.parametrize("n,batch", [(11, 4), (16, 8), (9, 2), (24, 6)])
def test_the_ranks_batches_together_are_the_one_process_batches(n, batch):
    one = distributed.epoch_indices(n, 7 * 100_003, 3, DistContext())
    assert torch.equal(one, torch.randperm(n, generator=torch.Generator().manual_seed(7 * 100_003 + 3)))
    shards = [distributed.epoch_indices(n, 7 * 100_003, 3, DistContext(2, r, r)) for r in (0, 1)]
    local = batch // 2
    for b in range(n // batch):
        together = torch.cat([s[b * local:(b + 1) * local] for s in shards])
        assert sorted(together.tolist()) == sorted(one[b * batch:(b + 1) * batch].tolist())


def test_batch_sizes_split_over_the_processes():
    assert distributed.local_batch_size(8, DistContext(), capped=False) == (8, 8)
    assert distributed.local_batch_size(8, DistContext(2, 0, 0), capped=False) == (8, 4)
    assert distributed.local_batch_size(11, DistContext(2, 0, 0), capped=True) == (10, 5)  # a small data set
    with pytest.raises(DistributedError, match="multiple of 2"):
        distributed.local_batch_size(7, DistContext(2, 0, 0), capped=False)


def test_the_environment_is_read_and_checked():
    with env(WORLD_SIZE=None, RANK=None, LOCAL_RANK=None):
        assert distributed.context() == DistContext()
    with env(WORLD_SIZE="2", RANK="1", LOCAL_RANK="1"):
        assert distributed.context() == DistContext(2, 1, 1) and not distributed.context().is_main
    with env(WORLD_SIZE="2", RANK=None):
        with pytest.raises(DistributedError, match="torchrun"):
            distributed.context()


@pytest.mark.parametrize("method", ["aae", "soft-intro-vae"])
def test_methods_with_several_optimisers_are_refused_in_one_line(method, tmp_path, capsys, monkeypatch):
    import upd_core.data

    def no_decoding(*a, **k):
        raise AssertionError("refused only after decoding the data")

    monkeypatch.setattr(upd_core.data, "load_split", no_decoding)
    folder = make_dataset(tmp_path / "data", n=2)
    with env(WORLD_SIZE="2", RANK="0", LOCAL_RANK="0"):
        code = cli.main(["train", "--method", method, "--data", str(folder), "--size", "32",
                         "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "DDP) is not supported for this method" in err and "several optimisers" in err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bn_free_ae():
    from upd_core.registry import get_method

    torch.manual_seed(0)
    det = get_method("spatial-ae")(image_size=32)
    for name, m in list(det.named_modules()):
        for child_name, child in list(m.named_children()):
            if isinstance(child, torch.nn.BatchNorm2d):
                setattr(m, child_name, torch.nn.Identity())
    return det


def _fit_bn_free(out: Path) -> None:
    from upd_core.training import TrainConfig, fit

    x = smooth_images(20, 32)
    det = _bn_free_ae()
    fit(det, x[:16], x[16:], out, tc=TrainConfig(max_epochs=2, batch_size=8, amp="off", channels_last=False,
                                                   progress=False))


def _rank_main(rank: int, port: int, out: str) -> None:
    """One rank of the 2-process run (torch.multiprocessing.spawn target)."""
    os.environ.update(WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    _fit_bn_free(Path(out))


def test_two_processes_train_the_same_weights_as_one(tmp_path):
    import torch.multiprocessing as mp

    with env(**{k: None for k in TORCH_ENV}):
        _fit_bn_free(tmp_path / "one")
    ctx = mp.spawn(_rank_main, args=(_free_port(), str(tmp_path / "two")), nprocs=2, join=False)
    deadline = time.monotonic() + 300
    while not ctx.join(timeout=5):
        assert time.monotonic() < deadline, "the 2-process run did not finish (a rank waits for the other)"
    one, two = load_file(str(tmp_path / "one" / "model.safetensors")), load_file(str(tmp_path / "two" / "model.safetensors"))
    assert one.keys() == two.keys()
    for k in one:  # weights, and the validation scores computed from them
        assert torch.allclose(one[k], two[k], atol=1e-5, rtol=0), k
    init = dict(_bn_free_ae().named_parameters())
    assert max(float((one[k] - p.detach()).abs().max()) for k, p in init.items()) > 1e-3  # it did train
    rec = json.loads((tmp_path / "two" / "config.json").read_text())["training"]
    assert rec["world_size"] == 2 and rec["batch_size_per_process"] == 4 and rec["epochs"] == 2


def _train_args(data: Path, out: Path) -> list[str]:
    return ["train", "--method", "spatial-ae", "--data", str(data), "--size", "32", "--epochs", "2",
            "--batch-size", "4", "--seed", "0", "--out", str(out), "--quiet"]


def _train_command(launcher: list[str], data: Path, out: Path, cache: Path) -> subprocess.CompletedProcess:
    env_vars = {k: v for k, v in os.environ.items() if k not in TORCH_ENV}
    env_vars.update(UPD_CACHE_DIR=str(cache), OMP_NUM_THREADS="1")
    return subprocess.run([*launcher, "-m", "upd_core", *_train_args(data, out)], capture_output=True, text=True,
                          env=env_vars, cwd=REPO, timeout=600)


def test_torchrun_two_cpu_processes_match_one_process(tmp_path):
    data = make_dataset(tmp_path / "data", n=16)
    with env(UPD_CACHE_DIR=str(tmp_path / "cache"), **{k: None for k in TORCH_ENV}):  # in this process
        assert cli.main(_train_args(data, tmp_path / "one")) == 0
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = _train_command(torchrun, data, tmp_path / "two", tmp_path / "cache")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("Training spatial-ae") == 1 and two.stdout.count("Checkpoint:") == 1  # rank 0 only
    rec1 = json.loads((tmp_path / "one" / "config.json").read_text())["training"]
    rec2 = json.loads((tmp_path / "two" / "config.json").read_text())["training"]
    assert rec2["world_size"] == 2 and rec2["batch_size"] == rec1["batch_size"] == 4
    assert not (tmp_path / "two" / "train_state").exists()
    for h1, h2 in zip(rec1["history"], rec2["history"], strict=True):
        assert h2["val_loss"] == pytest.approx(h1["val_loss"], rel=0.02), (h1, h2)
