"""What the apps do with an uploaded file: decode it once, under a lower size cap than the CLI's.

    app_max_decoded_bytes()   the apps' decoded-size cap (default 128 MB; UPD_APP_MAX_DECODED_MB)
    digest(data)              sha256 of an upload: the key the apps cache its decode under
    decode_upload(data, ...)  every slice at model size from one decode -> DecodedUpload
    load_upload(data, ...)    one image (the default slice) under the apps' cap (the Gradio demo)

Why: a 0.5 MB .nii.gz may inflate to the 512 MB the command-line tools accept
(`upd_core.imaging.MAX_DECOMPRESSED_BYTES`), and a page that decoded it again on every rerun (to
describe it, to load it, once more when the slice slider moved) multiplied that by the number of
sessions. The apps decode an upload once, with `max_bytes` = the cap checked from the file's
header before anything is inflated, and keep only the slices at model size (at most
`MAX_STACK_BYTES` of them per upload; the others are decoded when asked for).
benchmarks/bench_upload_memory.py measures the peak memory of one upload at the cap.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import imaging
from ..errors import ImageError

APP_MAX_DECODED_BYTES = 128 * 2**20  # bytes one decode of an upload may hold in the apps (CLI: 512 MB)
MAX_STACK_BYTES = 32 * 2**20  # slices at model size kept per upload (512 slices at 128 x 128)


def app_max_decoded_bytes() -> int:
    """The apps' decoded-size cap in bytes: APP_MAX_DECODED_BYTES, or UPD_APP_MAX_DECODED_MB
    (a positive number of MB) when set. Never above the command-line limit."""
    text = os.environ.get("UPD_APP_MAX_DECODED_MB", "").strip()
    if not text:
        return APP_MAX_DECODED_BYTES
    try:
        mb = float(text)
    except ValueError:
        raise ImageError(f"UPD_APP_MAX_DECODED_MB must be a number of megabytes, not {text!r}.") from None
    if not mb > 0:
        raise ImageError("UPD_APP_MAX_DECODED_MB must be a positive number of megabytes.")
    return int(min(mb * 2**20, imaging.MAX_DECOMPRESSED_BYTES))


def digest(data: bytes) -> str:
    """The sha256 (hex) of an upload's bytes."""
    return hashlib.sha256(data).hexdigest()


@dataclass
class DecodedUpload:
    """An upload decoded once: its description and its slices at model size.

    `info` is `upd_core.imaging.image_info` of the file; `slices` maps a slice number to the
    (size, size) float32 image `load_image(data, size, slice_index=k, window=window)` returns.
    """
    digest: str
    info: dict[str, Any]
    size: int
    window: tuple[float, float] | None
    slices: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def n_slices(self) -> int:
        return int(self.info.get("n_slices", 1) or 1)

    @property
    def default_slice(self) -> int:
        return int(self.info.get("slice_index", 0) or 0)

    def image(self, data: bytes, slice_index: int | None = None) -> np.ndarray:
        """Slice `slice_index` (default: the file's default slice) at model size; decoded from
        `data` (the same upload) only when it is not kept yet."""
        k = self.default_slice if slice_index is None else int(slice_index)
        if k not in self.slices:
            if digest(data) != self.digest:
                raise ValueError("image() needs the bytes this upload was decoded from")
            stack, _ = imaging.load_slices(data, self.size, indices=[k], window=self.window,
                                           max_bytes=app_max_decoded_bytes())
            if len(self.slices) * self.size ** 2 * 4 >= MAX_STACK_BYTES:
                self.slices.pop(next(k2 for k2 in self.slices if k2 != self.default_slice))
            self.slices[k] = stack[0]
        return self.slices[k]


def decode_upload(data: bytes, size: int = 128, window: tuple[float, float] | None = None,
                  sha256: str | None = None) -> DecodedUpload:
    """Decode an upload once under the apps' cap: its description and its slices at model size
    (all of them when they fit in MAX_STACK_BYTES, else the default one; others on demand).
    `sha256`: the upload's digest when the caller has it already.

    Raises ImageError (a message for a person) for a bad or too-large file.
    """
    chosen: list[int] = []

    def pick(n: int, default: int) -> list[int]:
        chosen[:] = range(n) if n * size * size * 4 <= MAX_STACK_BYTES else [default]
        return chosen

    stack, info = imaging.load_slices(data, size, indices=pick, window=window,
                                      max_bytes=app_max_decoded_bytes())
    return DecodedUpload(sha256 or digest(data), info, size, window, dict(zip(chosen, stack)))


def load_upload(data: bytes, size: int = 128) -> np.ndarray:
    """The default slice of an upload at model size, under the apps' decoded-size cap."""
    return imaging.load_image(data, size=size, max_bytes=app_max_decoded_bytes())
