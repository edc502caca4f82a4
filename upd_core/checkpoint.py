"""One checkpoint format for every method.

A checkpoint is a folder: `model.safetensors` (all parameters and buffers, never pickle),
`config.json` (method id, method config, image size, data source, training record),
`MODEL_CARD.md`, optionally `evaluation.json`, and `manifest.json` with the sha256 of each file.
The shipped checkpoints are also listed in `checkpoints/manifest.json`; loading verifies the
sha256 of the weights and config against it, so tampering or truncation is refused clearly.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .detector import Detector
from .device import resolve_device
from .errors import CheckpointError
from .registry import get_method

FORMAT = "upd-checkpoint/1"
WEIGHTS, CONFIG, CARD, EVALUATION, MANIFEST = (
    "model.safetensors", "config.json", "MODEL_CARD.md", "evaluation.json", "manifest.json")
VERIFIED = (WEIGHTS, CONFIG)
OPTIONAL_BUFFERS = ("calib_scores",)  # buffers newer than some shipped checkpoints  # files whose hashes must match before anything is loaded


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


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _umask_mode() -> int:
    """File mode an ordinary open() would give (mkstemp makes 0600 files, which other users cannot read)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a file via a temporary file + rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def save_tensors_atomic(path: Path, tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_config(ckpt_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(ckpt_dir) / CONFIG).read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{ckpt_dir} is not a checkpoint: {CONFIG} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{ckpt_dir}/{CONFIG} is not valid JSON ({exc})") from None


def save_checkpoint(det: Detector, ckpt_dir: Path, *, checkpoint_id: str | None = None,
                    dataset: dict | None = None, training: dict | None = None) -> Path:
    """Write weights + config (+ card and manifest); keeps dataset/training records already there."""
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
    save_tensors_atomic(ckpt_dir / WEIGHTS, det.state_dict(), metadata={"format": FORMAT, "method": det.method})
    write_json(ckpt_dir / CONFIG, cfg)
    refresh(ckpt_dir)
    return ckpt_dir


def refresh(ckpt_dir: Path) -> None:
    """Regenerate the model card and the manifests after any file in the checkpoint changed."""
    from .model_card import write_card  # local import: the card reads evaluation results

    ckpt_dir = Path(ckpt_dir)
    write_card(ckpt_dir)
    files = {p.name: sha256_file(p) for p in sorted(ckpt_dir.iterdir())
             if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp")}
    write_json(ckpt_dir / MANIFEST, {"format": FORMAT, "sha256": files})
    root = checkpoints_root()
    try:
        ckpt_dir.resolve().relative_to(root.resolve())
    except ValueError:
        return
    update_global_manifest(root)


def update_global_manifest(root: Path | None = None) -> Path:
    """Rebuild checkpoints/manifest.json from the checkpoint folders below `root`."""
    root = Path(root or checkpoints_root())
    entries = {}
    for d in sorted(p for p in root.iterdir() if (p / CONFIG).is_file()):
        cfg = read_config(d)
        local = json.loads((d / MANIFEST).read_text()) if (d / MANIFEST).exists() else {"sha256": {}}
        ev = json.loads((d / EVALUATION).read_text()) if (d / EVALUATION).exists() else {}
        entries[cfg["id"]] = {
            "method": cfg["method"],
            "dataset": cfg.get("dataset", {}).get("name", ""),
            "path": d.name,
            "sha256": local["sha256"],
            "metrics": ev.get("image", {}),
        }
    write_json(root / MANIFEST, {"format": FORMAT, "checkpoints": entries})
    return root / MANIFEST


def _global_manifest() -> dict[str, Any]:
    p = checkpoints_root() / MANIFEST
    if not p.exists():
        return {}
    try:
        return json.loads(p.read_text()).get("checkpoints", {})
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{p} is corrupt ({exc})") from None


def list_checkpoints() -> list[CheckpointInfo]:
    """Shipped (or configured) checkpoints listed in the global manifest."""
    root = checkpoints_root()
    return [CheckpointInfo(id=k, method=v["method"], dataset=v.get("dataset", ""), path=root / v["path"],
                           metrics=v.get("metrics", {}))
            for k, v in sorted(_global_manifest().items())]


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
    for entry in manifest.values():  # a shipped checkpoint given by path: the global manifest rules
        if (root / entry["path"]).resolve() == path.resolve():
            return path, entry["sha256"]
    try:
        return path, json.loads((path / MANIFEST).read_text())["sha256"]
    except FileNotFoundError:
        raise CheckpointError(f"{path} has no {MANIFEST}; refusing to load unverified weights") from None
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
        raise CheckpointError(f"{path}/{MANIFEST} is corrupt; refusing to load") from None


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


def build_detector(cfg: dict[str, Any]) -> Detector:
    """Instantiate the registered method described by a config.json dict (untrained)."""
    cls = get_method(cfg["method"])
    known = {f.name for f in dataclasses.fields(cls.Config)}
    unknown = set(cfg.get("config", {})) - known
    if unknown:
        raise CheckpointError(f"config has settings unknown to {cls.method}: {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.get("config", {}).items()}
    return cls(cls.Config(**values), image_size=int(cfg.get("image_size", 128)))


def load_state(det: Detector, state: dict[str, torch.Tensor]) -> None:
    """Load a state dict, resizing buffers whose size is data-dependent (scores, densities).

    Checkpoints written before calibration scores existed load with an empty `calib_scores`."""
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


def load_detector(checkpoint: str | os.PathLike, device: str | torch.device | None = None) -> Detector:
    """Load a verified checkpoint (id from the manifest or folder path) onto `device`.

    `<id>@<variant>` selects a scoring variant of that checkpoint (see Detector.variant_names),
    e.g. 'cradl-kermany-128@gmm4' for CRADL's GMM with K = 4.
    """
    checkpoint, variant = split_variant(checkpoint)
    ckpt_dir, expected = resolve(checkpoint)
    verify(ckpt_dir, expected)
    cfg = read_config(ckpt_dir)
    if cfg.get("format") != FORMAT:
        raise CheckpointError(f"{ckpt_dir}: unsupported checkpoint format {cfg.get('format')!r}")
    det = build_detector(cfg)
    try:
        state = load_file(str(ckpt_dir / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{ckpt_dir}/{WEIGHTS} cannot be read ({exc})") from None
    try:
        load_state(det, state)
    except RuntimeError as exc:
        raise CheckpointError(f"{ckpt_dir}: weights do not fit method {cfg['method']} ({exc})") from None
    det.checkpoint_id = cfg.get("id", ckpt_dir.name)
    det.checkpoint_dir = ckpt_dir
    if variant is not None:
        try:
            det.set_variant(variant)
        except ValueError as exc:
            raise CheckpointError(f"{det.checkpoint_id}: {exc}") from None
    return det.to(resolve_device(device)).eval()
