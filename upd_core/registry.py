"""One registry of detection methods.

Every method family module registers its `Detector` subclasses with `@register`; the CLI, the
checkpoint loader, the app and the contract tests all find methods only through this registry.
Another scoring of the same weights is not a method: it is a scoring variant of the checkpoint,
`<checkpoint>@<variant>` (`Detector.variant_names`), e.g. CRADL's density heads or the VAE's
Table-9 scores of the CRADL paper.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .detector import Detector

_REGISTRY: dict[str, type["Detector"]] = {}

# Method family modules, imported lazily the first time the registry is read.
_FAMILIES = (
    "upd_core.methods.autoencoders",
    "upd_core.methods.morphaeus",
    "upd_core.methods.generative",
    "upd_core.methods.cradl",
    "upd_core.methods.cevae",
    "upd_core.methods.pii",
    "upd_core.methods.ccd",
    "upd_core.methods.padim",
    "upd_core.methods.rd",
    "upd_core.methods.fae",
    "upd_core.methods.cflow",
)
_loaded = False


def register(cls: type["Detector"]) -> type["Detector"]:
    """Class decorator: add a Detector subclass under its `method` id (lowercase-hyphen)."""
    name = cls.method
    if not name or name != name.lower() or " " in name or "_" in name:
        raise ValueError(f"method id must be lowercase-hyphen, got {name!r}")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"method {name!r} registered twice")
    _REGISTRY[name] = cls
    return cls


def _load_families() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in _FAMILIES:
        importlib.import_module(mod)


def list_methods() -> list[str]:
    """Registered method ids, sorted."""
    _load_families()
    return sorted(_REGISTRY)


def get_method(name: str) -> type["Detector"]:
    """The Detector class registered as `name`; a clear KeyError-free ValueError otherwise."""
    _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown method {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None
