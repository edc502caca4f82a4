"""Store reference scores of every shipped checkpoint and scoring variant (for refactoring safety).

    python scripts/reference_scores.py            # all shipped checkpoints
    python scripts/reference_scores.py ID [ID...] # only these (after retraining them)

For each checkpoint and each `@variant`, the scores of a few Kermany test images (2 normal, 2
pneumonia; numbers only, never the images) and of 2 generated smooth images are written to
tests/reference/scores.json together with the sha256 of the weights. tests/test_reference_scores.py
recomputes them: a refactor that changes any score fails, unless the weights changed (then this
script must be rerun for that checkpoint, which the test says).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

import upd_core
from upd_core.checkpoint import WEIGHTS, sha256_file
from upd_core.paths import data_root

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "reference" / "scores.json"
N_PER_CLASS = 2


def kermany_files() -> list[str]:
    """Relative paths (under the data root) of the first test images per class, or []."""
    root = data_root() / "cxr-kermany" / "test"
    files = []
    for cls in ("NORMAL", "PNEUMONIA"):
        found = sorted((root / cls).glob("*.jp*g")) if (root / cls).is_dir() else []
        files += [str(p.relative_to(data_root())) for p in found[:N_PER_CLASS]]
    return files


def generated_images(size: int = 128) -> np.ndarray:
    """Two smooth random images (the same generator as the method tests), always available."""
    sys.path.insert(0, str(REPO))
    from tests.methods.test_contract import smooth_images

    return smooth_images(2, size=size, seed=7)


def scores_for(checkpoint_id: str, files: list[str]) -> dict:
    det = upd_core.load_detector(checkpoint_id, device="cpu")
    variants = det.variant_names() or (None,)
    real = np.stack([upd_core.load_image(data_root() / f, size=det.image_size) for f in files]) if files else None
    gen = generated_images(det.image_size)
    entry = {"sha256": sha256_file(det.checkpoint_dir / WEIGHTS), "variants": {}}
    for v in variants:
        d = det if v is None else upd_core.load_detector(f"{checkpoint_id}@{v}", device="cpu")
        row = {"generated": d.predict(gen).score.tolist()}
        if real is not None:
            row["kermany"] = d.predict(real).score.tolist()
        entry["variants"][v or ""] = row
    return entry


def main(ids: list[str]) -> None:
    old = json.loads(OUT.read_text()) if OUT.exists() else {}
    files = kermany_files()
    if not files:
        raise SystemExit(f"Kermany test images not found under {data_root()}: set UPD_DATA_ROOT")
    ids = ids or [c.id for c in upd_core.list_checkpoints()]
    ckpts = dict(old.get("checkpoints", {}))
    for cid in ids:
        ckpts[cid] = scores_for(cid, files)
        print(f"{cid}: {len(ckpts[cid]['variants'])} scoring(s)")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"kermany_files": files, "checkpoints": dict(sorted(ckpts.items()))}, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv[1:])
