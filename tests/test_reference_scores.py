"""Every shipped checkpoint and `@variant` still gives the scores stored in tests/reference/scores.json.

The reference was written by scripts/reference_scores.py; refactors must not change any score.
Generated images always run; the stored Kermany test images run when ../shared/data is present.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import upd_core
from upd_core.checkpoint import WEIGHTS, checkpoints_root, sha256_file
from upd_core.paths import data_root

from .methods.test_contract import smooth_images

REPO = Path(__file__).resolve().parent.parent
REF = json.loads((REPO / "tests" / "reference" / "scores.json").read_text())
SHIPPED = {c.id for c in upd_core.list_checkpoints()} if checkpoints_root() == REPO / "checkpoints" else set()
CASES = [(cid, v) for cid, e in REF["checkpoints"].items() for v in e["variants"]]


def test_every_shipped_checkpoint_has_reference_scores() -> None:
    if not SHIPPED:
        pytest.skip("no shipped checkpoints in this checkout")
    missing = sorted(SHIPPED - set(REF["checkpoints"]))
    assert not missing, f"run `python scripts/reference_scores.py {' '.join(missing)}`"


@pytest.mark.parametrize("cid,variant", CASES, ids=[f"{c}@{v}" if v else c for c, v in CASES])
def test_scores_unchanged(cid: str, variant: str) -> None:
    if cid not in SHIPPED:
        pytest.skip(f"{cid} is not shipped in this checkout")
    entry = REF["checkpoints"][cid]
    det = upd_core.load_detector(f"{cid}@{variant}" if variant else cid, device="cpu")
    assert sha256_file(det.checkpoint_dir / WEIGHTS) == entry["sha256"], (
        f"{cid} was retrained: run `python scripts/reference_scores.py {cid}` and say so in the commit")
    want = entry["variants"][variant]
    got = det.predict(smooth_images(2, size=det.image_size, seed=7)).score
    np.testing.assert_allclose(got, want["generated"], rtol=1e-4, atol=1e-6)
    files = [data_root() / f for f in REF["kermany_files"]]
    if "kermany" in want and all(f.is_file() for f in files):
        real = np.stack([upd_core.load_image(f, size=det.image_size) for f in files])
        np.testing.assert_allclose(det.predict(real).score, want["kermany"], rtol=1e-4, atol=1e-6)
