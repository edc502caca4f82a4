"""One checkpoint format for every method.

A checkpoint is a folder: `model.safetensors` (all parameters and buffers, never pickle),
`config.json` (method id, method config, image size, data source, training record),
`MODEL_CARD.md`, optionally `evaluation.json`, and `manifest.json` with the sha256 of each file.
The shipped checkpoints are also listed in `checkpoints/manifest.json`; loading verifies the
sha256 of the weights and config against it, so tampering or truncation is refused clearly.
The domain classifier (`upd_core.domain`) uses the same format with `"kind"` in its config; the
manifest lists it under "auxiliary", never among the detectors. File names and atomic writes live
in `checkpoint_files`, card text in `model_card`. A folder's files are written together (weights,
config, card, then the manifest that vouches for them, all staged before any is renamed), so a
full disk or a failing write leaves the previous checkpoint in that folder intact.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from .checkpoint_files import (CARD, CONFIG, EVALUATION, FORMAT, MANIFEST, WEIGHTS, json_bytes,  # noqa: F401
                               read_config, read_evaluation, save_tensors_atomic, sha256_file, tensors_bytes,
                               stored_state, write_files_atomic, write_json)
from .detector import Detector
from .device import resolve_device
from .errors import CheckpointError
from .model_card import card_text
from .paths import REPO_ROOT
from .registry import get_method

VERIFIED = (WEIGHTS, CONFIG)  # files whose hashes must match before anything is loaded
OPTIONAL_BUFFERS = ("calib_scores",)  # buffers a checkpoint may lack (they load empty)


def checkpoints_root() -> Path:
    """Folder of shipped checkpoints: $UPD_CHECKPOINTS or <repo>/checkpoints."""
    env = os.environ.get("UPD_CHECKPOINTS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "checkpoints"


@dataclass
class CheckpointInfo:
    id: str
    method: str
    dataset: str
    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(det: Detector, ckpt_dir: Path, *, checkpoint_id: str | None = None,
                    dataset: dict | None = None, training: dict | None = None,
                    keep_evaluation: bool = True, storage: dict | None = None) -> Path:
    """Write weights + config + card + manifest together; keeps dataset/training records already there.

    `storage` (from `upd_core.storage.compact`) writes the parameters in its `weights_dtype` and
    records its check; without it a re-save of the same weights (no `training` given) keeps the
    stored dtype and record, and new weights (a training) are written in fp32.

    `keep_evaluation=False` (new weights over an evaluated checkpoint, `train --force`): the old
    evaluation.json no longer describes the weights, so the card and manifest leave it out and it
    is deleted once the new files are in place."""
    ckpt_dir = Path(ckpt_dir)
    old = read_config(ckpt_dir) if (ckpt_dir / CONFIG).exists() else {}
    cfg = {
        "format": FORMAT,
        "id": checkpoint_id or old.get("id") or ckpt_dir.name,
        "method": det.method,
        "image_size": det.image_size,
        "config": dataclasses.asdict(det.config),
        "dataset": dataset if dataset is not None else old.get("dataset", {}),
        "training": training if training is not None else old.get("training", {}),
    }
    if storage is None and training is None:
        storage = old.get("storage")
    if storage:
        cfg["storage"] = storage
    state = stored_state(det, (storage or {}).get("weights_dtype", "float32"))
    files = {WEIGHTS: tensors_bytes(state, metadata={"format": FORMAT, "method": det.method}),
             CONFIG: json_bytes(cfg)}
    drop = () if keep_evaluation else (EVALUATION,)
    write_files_atomic({ckpt_dir / k: v for k, v in _with_card_and_manifest(ckpt_dir, files, drop).items()})
    for name in drop:
        (ckpt_dir / name).unlink(missing_ok=True)
    if is_shipped(ckpt_dir):
        update_global_manifest(checkpoints_root())
    return ckpt_dir


def is_shipped(folder: Path) -> bool:
    """True when `folder` lies inside the shipped checkpoints folder (checkpoints_root())."""
    try:
        Path(folder).resolve().relative_to(checkpoints_root().resolve())
        return True
    except ValueError:
        return False


def _with_card_and_manifest(ckpt_dir: Path, files: dict[str, bytes],
                            drop: tuple[str, ...] = ()) -> dict[str, bytes]:
    """`files` (new contents by name), then the model card and the manifest (sha256 of every file)
    the folder has once they are written, with the files named in `drop` left out; in write order."""
    cfg = json.loads(files[CONFIG]) if CONFIG in files else read_config(ckpt_dir)
    size = len(files[WEIGHTS]) if WEIGHTS in files else (
        (ckpt_dir / WEIGHTS).stat().st_size if (ckpt_dir / WEIGHTS).exists() else 0)
    ev = None if EVALUATION in drop else read_evaluation(ckpt_dir)
    out = {**files, CARD: card_text(cfg, ev, size).encode()}
    sha = {p.name: sha256_file(p) for p in ckpt_dir.iterdir()
           if p.is_file() and p.name not in out and p.name not in drop and p.name != MANIFEST
           and not p.name.endswith(".tmp")} if ckpt_dir.is_dir() else {}
    sha.update({name: hashlib.sha256(data).hexdigest() for name, data in out.items()})
    out[MANIFEST] = json_bytes({"format": FORMAT, "sha256": dict(sorted(sha.items()))})
    return out


def refresh(ckpt_dir: Path) -> None:
    """Regenerate the model card and the manifests after any file in the checkpoint changed."""
    ckpt_dir = Path(ckpt_dir)
    write_files_atomic({ckpt_dir / k: v for k, v in _with_card_and_manifest(ckpt_dir, {}).items()})
    if is_shipped(ckpt_dir):
        update_global_manifest(checkpoints_root())


def update_global_manifest(root: Path | None = None) -> Path:
    """Rebuild checkpoints/manifest.json from the checkpoint folders below `root`.

    Detectors are listed under "checkpoints"; folders in the same format whose config names a
    `kind` (the domain classifier) under "auxiliary", so they are verified but never listed as
    detectors."""
    root = Path(root or checkpoints_root())
    entries, auxiliary = {}, {}
    for d in sorted(p for p in root.iterdir() if (p / CONFIG).is_file()):
        cfg = read_config(d)
        local = json.loads((d / MANIFEST).read_text()) if (d / MANIFEST).exists() else {"sha256": {}}
        if cfg.get("kind"):
            auxiliary[cfg["id"]] = {"kind": cfg["kind"], "path": d.name, "sha256": local["sha256"]}
            continue
        ev = json.loads((d / EVALUATION).read_text()) if (d / EVALUATION).exists() else {}
        entries[cfg["id"]] = {
            "method": cfg["method"],
            "dataset": cfg.get("dataset", {}).get("name", ""),
            "path": d.name,
            "sha256": local["sha256"],
            "metrics": ev.get("image", {}),
        }
    manifest: dict[str, Any] = {"format": FORMAT, "checkpoints": entries}
    if auxiliary:
        manifest["auxiliary"] = auxiliary
    write_json(root / MANIFEST, manifest)
    return root / MANIFEST


def _global_manifest(section: str = "checkpoints", root: Path | None = None) -> dict[str, Any]:
    p = Path(root or checkpoints_root()) / MANIFEST
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text()).get(section, {})
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{p} is corrupt ({exc})") from None


def list_checkpoints() -> list[CheckpointInfo]:
    """Shipped (or configured) checkpoints listed in the global manifest."""
    root = checkpoints_root()
    return [CheckpointInfo(id=k, method=v["method"], dataset=v.get("dataset", ""), path=root / v["path"],
                           metrics=v.get("metrics", {}))
            for k, v in sorted(_global_manifest().items())]


def expected_sha256(path: Path, root: Path | None = None) -> dict[str, str]:
    """The sha256 values a checkpoint folder must match.

    A folder listed in the global manifest of `root` (default: the checkpoints root) is held to
    that manifest, whatever its own manifest says; any other folder to its own manifest.json."""
    path, root = Path(path), Path(root or checkpoints_root())
    for section in ("checkpoints", "auxiliary"):
        for entry in _global_manifest(section, root).values():
            if (root / entry["path"]).resolve() == path.resolve():
                return entry["sha256"]
    try:
        return json.loads((path / MANIFEST).read_text())["sha256"]
    except FileNotFoundError:
        raise CheckpointError(f"{path} has no {MANIFEST}; refusing to load unverified weights") from None
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
        raise CheckpointError(f"{path}/{MANIFEST} is corrupt; refusing to load") from None


def resolve(checkpoint: str | os.PathLike) -> tuple[Path, dict[str, str]]:
    """Folder of a checkpoint id or path, and the sha256 values it must match."""
    manifest = _global_manifest()
    root = checkpoints_root()
    key = str(checkpoint)
    if key in manifest:
        return root / manifest[key]["path"], manifest[key]["sha256"]
    path = Path(checkpoint)
    if not path.is_dir():
        known = ", ".join(sorted(manifest)) or "none"
        raise CheckpointError(f"no checkpoint {key!r}: not a known id (known: {known}) nor a folder")
    return path, expected_sha256(path, root)


def verify(ckpt_dir: Path, expected: dict[str, str]) -> None:
    for name in VERIFIED:
        p = ckpt_dir / name
        if not p.is_file():
            raise CheckpointError(f"checkpoint {ckpt_dir.name}: {name} is missing")
        if name not in expected:
            raise CheckpointError(f"checkpoint {ckpt_dir.name}: no sha256 recorded for {name}")
        if sha256_file(p) != expected[name]:
            raise CheckpointError(
                f"checkpoint {ckpt_dir.name}: {name} does not match its sha256 in the manifest "
                "(the file was modified, truncated or replaced); refusing to load it")


def read_verified(ckpt_dir: Path, expected: dict[str, str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Config and tensors of a checkpoint folder, after its weights and config match `expected`."""
    ckpt_dir = Path(ckpt_dir)
    verify(ckpt_dir, expected)
    cfg = read_config(ckpt_dir)
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{ckpt_dir}: unsupported checkpoint format {cfg.get('format')!r}")
    try:
        state = load_file(str(ckpt_dir / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{ckpt_dir}/{WEIGHTS} cannot be read ({exc})") from None
    return cfg, state


def build_detector(cfg: dict[str, Any]) -> Detector:
    """Instantiate the registered method described by a config.json dict (untrained).

    Whatever is wrong in the config (no or an unknown `method`, settings the method does not
    have, values it refuses) is a CheckpointError."""
    method = cfg.get("method")
    if not isinstance(method, str) or not method:
        raise CheckpointError(f"config names no method (got {method!r})")
    try:
        cls = get_method(method)
    except ValueError as exc:
        raise CheckpointError(f"config: {exc}") from None
    settings = cfg.get("config", {})
    if not isinstance(settings, dict):
        raise CheckpointError(f"config of {method}: 'config' must be a JSON object")
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = set(settings) - known
    if unknown:
        raise CheckpointError(f"config has settings unknown to {cls.method}: {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()}
    try:
        return cls(cls.Config(**values), image_size=int(cfg.get("image_size", 128)))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"config of {method} cannot build the model ({exc})") from None


def load_state(det: Detector, state: dict[str, torch.Tensor]) -> None:
    """Load a state dict, resizing buffers whose size is data-dependent (scores, densities).

    Checkpoints without calibration scores load with an empty `calib_scores`."""
    state = dict(state)
    for name in OPTIONAL_BUFFERS:
        if name not in state and name in dict(det.named_buffers()):
            state[name] = torch.zeros(0, 0)
    for name, buf in list(det.named_buffers()):
        if name in state and state[name].shape != buf.shape:
            mod_name, _, attr = name.rpartition(".")
            mod = det.get_submodule(mod_name) if mod_name else det
            mod._buffers[attr] = torch.empty_like(state[name], device=buf.device)
    det.load_state_dict(state, strict=True)


def split_variant(checkpoint: str | os.PathLike) -> tuple[str | os.PathLike, str | None]:
    """'cradl-kermany-128@gmm4' -> ('cradl-kermany-128', 'gmm4'); anything else unchanged."""
    text = str(checkpoint)
    if "@" in text and not Path(text).exists():
        base, variant = text.rsplit("@", 1)
        return base, variant or None
    return checkpoint, None


def checkpoint_label(checkpoint: str | os.PathLike, ckpt_dir: Path) -> str:
    """What a loaded checkpoint calls itself (`Detector.checkpoint_id`).

    An id of the global manifest, or a folder that manifest lists (verified against it), is that
    id; any other folder is its path (relative to the repository when inside it), never the `id`
    its own config.json claims: a copy or retraining in runs/ must not pass for a shipped one."""
    manifest = _global_manifest()
    if str(checkpoint) in manifest:
        return str(checkpoint)
    root, here = checkpoints_root(), Path(ckpt_dir).resolve()
    for cid, entry in manifest.items():
        if (root / entry["path"]).resolve() == here:
            return cid
    try:
        return here.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return str(checkpoint)


def load_detector(checkpoint: str | os.PathLike, device: str | torch.device | None = None) -> Detector:
    """Load a verified checkpoint (id from the manifest or folder path) onto `device`.

    `<id>@<variant>` selects a scoring variant of that checkpoint (see Detector.variant_names),
    e.g. 'cradl-kermany-128@gmm4' for CRADL's GMM with K = 4. The detector's `checkpoint_id` is
    `checkpoint_label` (a folder outside the manifest reports its path).
    """
    checkpoint, variant = split_variant(checkpoint)
    ckpt_dir, expected = resolve(checkpoint)
    cfg, state = read_verified(ckpt_dir, expected)
    if cfg.get("kind"):
        raise CheckpointError(f"{ckpt_dir} holds a {cfg['kind']}, not a detector")
    det = build_detector(cfg)
    try:
        load_state(det, state)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt_dir}: weights do not fit method {cfg['method']} ({exc})") from None
    det.checkpoint_id = checkpoint_label(checkpoint, ckpt_dir)
    det.checkpoint_dir = ckpt_dir
    if variant is not None:
        try:
            det.set_variant(variant)
        except ValueError as exc:
            raise CheckpointError(f"{det.checkpoint_id}: {exc}") from None
    return det.to(resolve_device(device)).eval()
