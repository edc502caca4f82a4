"""kill -9 during `python -m upd_core train`, then `--resume`: at most the epoch in progress is lost,
no epoch is repeated or skipped, and the weights are those of an uninterrupted run.

The training runs in its own process, slowed down at one chosen moment (in the middle of epoch 2,
or while epoch 2's state is being committed, between its tensors file and its state.json) so the
SIGKILL lands exactly there. The resume and the uninterrupted reference run in fresh processes
too, so that no state left by other tests in this process (thread counts, flags) changes a loss.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.app_fixtures import make_dataset

REPO = Path(__file__).resolve().parent.parent
EPOCHS = 3

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGKILL and select() on pipes are POSIX")

# Runs the CLI with one hook that prints "HANG <epochs completed>" and sleeps until killed.
DRIVER = r"""
import os, sys, time
from upd_core import cli
from upd_core.registry import get_method

where = sys.argv[1]

def hang(done):
    print(f"HANG {done}", flush=True)
    time.sleep(600)

if where == "mid-epoch":
    cls = get_method("spatial-ae")
    real_step = cls.training_step
    def step(self, x, epoch, *a, **k):
        if epoch == 1:
            hang(1)
        return real_step(self, x, epoch, *a, **k)
    cls.training_step = step
else:  # "mid-commit": epoch 1's state took two renames; epoch 2's tensors file is the third
    real_replace, renames = os.replace, [0]
    def replace(src, dst):
        if "train_state" in str(dst):
            renames[0] += 1
            if renames[0] == 4:
                hang(2)
        return real_replace(src, dst)
    os.replace = replace
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The data set, its decoded cache, and the training record and weights of an uninterrupted run."""
    root = tmp_path_factory.mktemp("kill")
    folder = make_dataset(root / "data", n=8)
    assert _cli(_args(folder, root / "reference"), root / "cache") == 0
    record = json.loads((root / "reference" / "config.json").read_text())["training"]
    return folder, root / "cache", record, load_file(str(root / "reference" / "model.safetensors"))


def _args(folder, out, *extra: str) -> list[str]:
    return ["train", "--method", "spatial-ae", "--data", str(folder), "--size", "32", "--epochs", str(EPOCHS),
            "--seed", "2", "--out", str(out), "--quiet", *extra]


def _cli(args: list[str], cache: Path) -> int:
    """`python -m upd_core ARGS` in a fresh process; its exit status."""
    return subprocess.run([sys.executable, "-m", "upd_core", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                          env={**os.environ, "UPD_CACHE_DIR": str(cache)}, timeout=600).returncode


def _run_until_hang(where: str, args: list[str], cache: Path, timeout: float = 600.0) -> int:
    """Start the training, wait for the hook, SIGKILL it; the number of epochs it had completed."""
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, where, *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "UPD_CACHE_DIR": str(cache)})
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else ""
            if line.startswith("HANG"):
                proc.send_signal(signal.SIGKILL)
                return int(line.split()[1])
            if not ready or (line == "" and proc.poll() is not None):
                pytest.fail(f"the training never reached the {where} hook (exit {proc.poll()})")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()


@pytest.mark.parametrize("where", ["mid-epoch", "mid-commit"])
def test_kill_9_then_resume_loses_at_most_one_epoch(setup, tmp_path, where):
    folder, cache, reference_record, reference = setup
    out = tmp_path / "run"
    completed = _run_until_hang(where, _args(folder, out), cache)
    state = out / "train_state"
    committed = json.loads((state / "state.json").read_text())["record"]["epochs"]
    assert completed - 1 <= committed <= completed  # at most the epoch in progress is lost
    if where == "mid-commit":
        assert list(state.glob("*.tmp"))  # the kill left a half-committed state behind
    assert _cli(_args(folder, out, "--resume"), cache) == 0
    record = json.loads((out / "config.json").read_text())["training"]
    assert [h["epoch"] for h in record["history"]] == list(range(1, EPOCHS + 1))  # none repeated or skipped
    assert record["history"] == reference_record["history"]  # the same losses, epoch by epoch
    assert not (out / "train_state").exists() and not list(out.glob("*.tmp"))
    resumed = load_file(str(out / "model.safetensors"))
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
