"""Turn whatever a person uploads into a float32 image in [0, 1], or a clear refusal.

Public API
    load_image(src, size=128, *, slice_index=None, window=None, normalize="percentile",
               max_bytes=None)
    load_slices(src, size=128, *, indices=None, window=None, normalize="percentile",
                max_bytes=None)
    load_volume(src, *, max_voxels=MAX_VOXELS, window=None, normalize="percentile")
    image_info(src, *, slice_index=None, max_bytes=None)

`src` may be a path (str / os.PathLike), bytes / bytearray / memoryview, a binary file object
(e.g. a Streamlit upload), a numpy array or a PIL image. A folder path is read as a DICOM series.

Why it is built this way
* The format is detected from the file's content (magic bytes), never from its name: uploads are
  often misnamed (a web page saved as ``x.png``, a ZIP renamed ``.dcm``).
* Every failure caused by the input is an `ImageError` (a ValueError) whose message is written
  for a clinician. Other exceptions raised while decoding are wrapped; KeyboardInterrupt and
  SystemExit pass through, MemoryError becomes an ImageError.
* Sizes are checked from headers *before* anything large is allocated (decompression bombs,
  headers that lie about their size, truncated files).

Decisions (documented contract)
* Intensities: values are mapped to [0, 1] by a robust percentile stretch (0.5 % -> 0,
  99.5 % -> 1, clipped; percentiles estimated on at most ~1 M evenly strided pixels), falling
  back to min-max when the percentiles coincide. ``normalize="minmax"`` uses min-max only.
  A constant image returns all zeros (no error). When a display window applies (the DICOM VOI
  window, or the `window=(centre, width)` argument, which overrides it and also works for other
  formats on their raw values) the window defines the mapping instead.
* Non-finite values: NaN and -inf become the smallest finite value (background), +inf the
  largest. An image without any finite value is refused.
* Colour is converted to grey luminance (ITU-R BT.601: 0.299 R + 0.587 G + 0.114 B);
  transparent pixels are composited over black. EXIF orientation is applied.
* Resizing: to (size, size) with Pillow's antialiased bilinear filter. The aspect ratio is
  NOT preserved - images are squashed, as the training data (e.g. Kermany chest X-rays) were.
  JPEGs are decoded at reduced DCT scale (>= 2x the target size) first, for speed.
* Geometry limits: each side >= 8 pixels (MIN_SIDE); long side / short side <= 20 (MAX_ASPECT);
  at most 64 Mi pixels per 2D image (MAX_PIXELS, 8192 x 8192).
* Resource limits: input <= 512 MiB (MAX_INPUT_BYTES); gzip is inflated as a bounded stream,
  at most 512 MiB (MAX_DECOMPRESSED_BYTES) and never more than the NIfTI header says is needed;
  volumes <= 128 Mi voxels by default (MAX_VOXELS, i.e. 512 MiB as float32). Pillow's own
  decompression-bomb check stays active; our stricter MAX_PIXELS check runs on the header
  size before decoding, so Image.MAX_IMAGE_PIXELS (process-global) is not modified.
  `max_bytes` lowers the decoded-size limit for one call (the apps pass theirs, see
  upd_core.app.uploads): the bytes a decode holds (the inflated / stored data of a NIfTI
  volume, a 2D plane counted as float32, 4 bytes a pixel) are checked against it from the
  header, before anything is inflated or decoded.
  ImageFile.LOAD_TRUNCATED_IMAGES must stay False (its default) for truncation to be detected.
* DICOM: modality LUT (Rescale Slope/Intercept or Modality LUT Sequence, also from enhanced
  multi-frame functional groups), then the first VOI window (LINEAR, LINEAR_EXACT or SIGMOID),
  then MONOCHROME1 is inverted so that dense tissue is bright, as with MONOCHROME2.
  Multi-frame: the middle frame (or `slice_index`). Colour DICOM becomes grey.
  Deflate-compressed DICOM is refused (inflation could not be bounded).
* NIfTI (.nii, .nii.gz, NIfTI-1 and -2): the first volume of 4D+ data; oriented to the closest
  RAS axes and shown in radiological convention like DICOM (anterior at the top, patient's right
  on the image's left); `load_image` takes the middle axial slice (or `slice_index`, counted
  from inferior to superior). nibabel parses the header; the voxels are a numpy view of the
  already size-checked, bounded buffer.
* NumPy .npy: validated header, no pickles (same guarantees as np.load(allow_pickle=False), but
  the header is checked before any allocation). 2D (H, W); 3D is a stack (D, H, W) unless the
  last axis has 3 or 4 entries, which is read as RGB(A) (H, W, C).
* `load_image` normalises the returned 2D slice on its own; `load_volume` normalises the whole
  volume jointly, so the same slice may differ in brightness between the two (not in geometry).
"""
from __future__ import annotations

import contextvars
import io
import math
import mmap
import os
import stat
import struct
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Union

import numpy as np
from PIL import Image, ImageOps

from .errors import ImageError

__all__ = ["load_image", "load_slices", "load_volume", "image_info", "ImageError", "ImageSource",
           "MAX_INPUT_BYTES", "MAX_DECOMPRESSED_BYTES", "MAX_PIXELS", "MAX_VOXELS",
           "MIN_SIDE", "MAX_ASPECT"]

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, np.ndarray,
                    Image.Image]

MAX_INPUT_BYTES = 512 * 2**20
MAX_DECOMPRESSED_BYTES = 512 * 2**20
MAX_PIXELS = 64 * 2**20
MAX_VOXELS = 128 * 2**20
MIN_SIDE = 8
MAX_ASPECT = 20.0
MAX_OUTPUT_SIZE = 8192
MAX_SERIES_FILES = 4096
_PERCENTILES = (0.5, 99.5)
_BYTES_CAP: contextvars.ContextVar[int | None] = contextvars.ContextVar("upd_bytes_cap", default=None)
_SAMPLE = 2**20

HINT = "Please upload a PNG, JPEG, TIFF, BMP, DICOM or NIfTI file."
_PIL_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "DIB", "GIF", "WEBP", "PPM", "JPEG2000")
_PIL_LABEL = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP", "gif": "GIF",
              "webp": "WebP", "pnm": "PNM", "jp2": "JPEG 2000"}

_REFUSALS = {
    "empty": "The file is empty (0 bytes). Please upload the image file again.",
    "pdf": "This file is a PDF document, not an image. " + HINT,
    "zip": "This file is a ZIP archive, not an image. Please extract the image from it "
           "first. " + HINT,
    "npz": "This file is a NumPy .npz archive. Please save a single array with numpy.save "
           "(.npy) or upload an image file instead.",
    "office": "This file is a Microsoft Office document (Word, Excel or PowerPoint), not an "
              "image. Please save the picture inside it as a PNG or JPEG file.",
    "html": "This file is a web page (HTML), not an image. If you saved it from a browser, "
            "save the picture itself instead (right-click it, 'Save image as'). " + HINT,
    "svg": "This file is an SVG vector drawing, not a pixel image. Please export it as a PNG "
           "file.",
    "xml": "This file is an XML document, not an image. " + HINT,
    "json": "This file is a JSON data file, not an image. " + HINT,
    "text": "This file contains plain text, not an image. " + HINT,
    "pickle": "This file is a Python 'pickle' file. Such files can run hidden code, so they "
              "are never opened here. Please save arrays with numpy.save or upload an image "
              "file.",
    "archive": "This file is a compressed archive (such as RAR, 7-Zip, bzip2, xz or zstd), "
               "not an image. Please extract the image from it first. " + HINT,
    "program": "This file is a computer program, not an image. " + HINT,
    "media": "This file is a video or sound recording, not a still image. " + HINT,
    "heic": "This file is a HEIC/AVIF photo (the format many phones use), which cannot be "
            "read here. Please export it as JPEG or PNG.",
    "psd": "This file is a Photoshop document. Please export it as a PNG or TIFF file.",
    "hdf5": "This file is an HDF5 or MATLAB data file, not an image. " + HINT,
    "sqlite": "This file is a database, not an image. " + HINT,
    "postscript": "This file is a PostScript/EPS drawing, which is not opened here for safety "
                  "reasons. Please export it as a PNG file.",
    "nrrd": "This file is an NRRD volume, which is not supported. Please convert it to NIfTI "
            "(.nii or .nii.gz).",
    "metaimage": "This file is a MetaImage header (.mhd) whose voxels are stored in another "
                 "file. Please convert it to NIfTI (.nii or .nii.gz).",
    "nifti_pair": "This file is a NIfTI/ANALYZE header (.hdr) whose image data is stored in a "
                  "separate .img file. Please upload a single .nii or .nii.gz file instead.",
    "gzip_other": "This file is gzip-compressed but does not contain a NIfTI image. Please "
                  "decompress it and upload the image inside.",
    "unknown": "The file format was not recognised; it does not look like an image. " + HINT,
}

# (prefix, kind) checked at offset 0, after the image formats.
_MAGIC_REFUSALS: tuple[tuple[bytes, str], ...] = (
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"), (b"PK\x07\x08", "zip"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "office"),
    (b"Rar!\x1a\x07", "archive"), (b"7z\xbc\xaf\x27\x1c", "archive"), (b"BZh", "archive"),
    (b"\xfd7zXZ\x00", "archive"), (b"\x28\xb5\x2f\xfd", "archive"),
    (b"\x7fELF", "program"), (b"MZ", "program"), (b"\xca\xfe\xba\xbe", "program"),
    (b"\xcf\xfa\xed\xfe", "program"), (b"#!", "program"),
    (b"\x89HDF\r\n\x1a\n", "hdf5"), (b"MATLAB", "hdf5"), (b"SQLite format 3\x00", "sqlite"),
    (b"8BPS", "psd"), (b"%!PS", "postscript"), (b"\xc5\xd0\xd3\xc6", "postscript"),
    (b"NRRD", "nrrd"), (b"OggS", "media"), (b"ID3", "media"), (b"fLaC", "media"),
    (b"\x1a\x45\xdf\xa3", "media"), (b"FLV", "media"),
)


# --------------------------------------------------------------------------- helpers

@dataclass
class _Decoded:
    """Pixels before display mapping: raw (modality) values plus how to display them."""
    pixels: np.ndarray                       # float32, 2D (H, W) or 3D (D, H, W), owned
    window: tuple[float, float] | None = None
    voi_function: str = "LINEAR"
    invert: bool = False
    info: dict[str, Any] = field(default_factory=dict)


@contextmanager
def _guarded(message: str) -> Iterator[None]:
    """Convert any unexpected failure into an ImageError with a plain message."""
    try:
        yield
    except ImageError:
        raise
    except MemoryError:
        raise ImageError("The image is too large to process with the memory available. "
                         "Please upload a smaller image.") from None
    except RecursionError:
        raise ImageError(message) from None
    except Exception as exc:  # noqa: BLE001 - every decoder error is a bad-input error here
        raise ImageError(message) from exc


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MB"


@contextmanager
def _bytes_cap(max_bytes: int | None) -> Iterator[None]:
    """Apply a caller's lower decoded-size limit (`max_bytes`) for the duration of one call."""
    if max_bytes is None:
        yield
        return
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        raise ImageError("The decoded-size limit must be a positive whole number of bytes.")
    token = _BYTES_CAP.set(int(max_bytes))
    try:
        yield
    finally:
        _BYTES_CAP.reset(token)


def _check_decoded(nbytes: int, what: str) -> None:
    """Refuse a decode that would hold more than the caller's `max_bytes` (if one is set)."""
    cap = _BYTES_CAP.get()
    if cap is not None and nbytes > cap:
        def mb(n: int) -> str:
            return _mib(n) if n >= 10 * 2**20 else f"{n / 2**20:.2g} MB"
        raise ImageError(f"The {what} is too large to open here: decoding it needs {mb(nbytes)}, "
                         f"and this application opens at most {mb(cap)} per image. Please upload "
                         "a smaller image (the command-line tools accept larger ones).")


def _check_size(size: int | None) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) \
            or not MIN_SIDE <= int(size) <= MAX_OUTPUT_SIZE:
        raise ImageError(f"The requested output size must be a whole number of pixels between "
                         f"{MIN_SIDE} and {MAX_OUTPUT_SIZE}.")
    return int(size)


def _check_window(window: Any) -> tuple[float, float] | None:
    if window is None:
        return None
    try:
        c, w = (float(v) for v in window)
    except Exception:  # noqa: BLE001
        raise ImageError("The display window must be two numbers: centre and width.") from None
    if not (math.isfinite(c) and math.isfinite(w) and w > 0):
        raise ImageError("The display window must have a finite centre and a positive width.")
    return c, w


def _check_normalize(normalize: str) -> str:
    if normalize not in ("percentile", "minmax"):
        raise ImageError("The intensity normalisation must be 'percentile' or 'minmax'.")
    return normalize


def _check_plane(h: int, w: int) -> None:
    """Refuse 2D shapes that cannot be a sensible image (before allocating them)."""
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ImageError(f"The image is too small ({w} x {h} pixels); at least {MIN_SIDE} x "
                         f"{MIN_SIDE} pixels are needed.")
    if max(h, w) > MAX_ASPECT * min(h, w):
        raise ImageError(f"The image is a very thin strip ({w} x {h} pixels). Images more than "
                         f"{MAX_ASPECT:.0f} times longer than they are wide cannot be analysed.")
    if h * w > MAX_PIXELS:
        raise ImageError(f"The image is too large ({w} x {h} pixels, {h * w / 1e6:.0f} "
                         f"megapixels); the limit is {MAX_PIXELS / 1e6:.0f} megapixels. "
                         "Please upload a smaller version.")
    _check_decoded(h * w * 4, "image")


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """Grey float32 from an (..., 3+) RGB array (BT.601 weights)."""
    out = rgb[..., 0].astype(np.float32)
    out *= 0.299
    out += np.float32(0.587) * rgb[..., 1].astype(np.float32)
    out += np.float32(0.114) * rgb[..., 2].astype(np.float32)
    return out


def _to_float32(a: np.ndarray) -> np.ndarray:
    """Owned float32 copy; float64 values beyond float32 range are rescaled, not turned inf."""
    if a.dtype.kind == "f" and a.dtype.itemsize > 4:
        with np.errstate(all="ignore"):
            finite = np.isfinite(a)
            big = float(np.max(np.abs(a), where=finite, initial=0.0))
        if big > 1e37:
            a = a / big
    with np.errstate(all="ignore"):
        return np.array(a, dtype=np.float32, copy=True)


def _replace_nonfinite(a: np.ndarray) -> np.ndarray:
    """NaN/-inf -> smallest finite value, +inf -> largest; refuse if nothing is finite."""
    finite = np.isfinite(a)
    if finite.all():
        return a
    if not finite.any():
        raise ImageError("The image contains no valid pixel values (they are all missing or "
                         "infinite).")
    lo = float(np.min(a, where=finite, initial=np.inf))
    hi = float(np.max(a, where=finite, initial=-np.inf))
    np.nan_to_num(a, copy=False, nan=lo, posinf=hi, neginf=lo)
    return a


def _normalise(a: np.ndarray, method: str) -> np.ndarray:
    """Map to [0, 1] in place: robust percentiles (or min-max); constant -> zeros."""
    lo = hi = 0.0
    if method == "percentile":
        flat = a.reshape(-1)
        sample = flat[:: max(1, flat.size // _SAMPLE)]
        lo, hi = (float(v) for v in np.percentile(sample, _PERCENTILES))
    if not hi > lo:
        lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        a[...] = 0.0
        return a
    a -= np.float32(lo)
    a *= np.float32(1.0 / (hi - lo))
    np.clip(a, 0.0, 1.0, out=a)
    return a


def _apply_window(a: np.ndarray, centre: float, width: float, function: str) -> np.ndarray:
    """DICOM VOI window (PS3.3 C.11.2.1.2) to [0, 1], in place."""
    if function == "SIGMOID":
        a -= np.float32(centre)
        a *= np.float32(-4.0 / width)
        np.clip(a, -80.0, 80.0, out=a)
        np.exp(a, out=a)
        a += 1.0
        np.reciprocal(a, out=a)
    elif function == "LINEAR_EXACT":
        a -= np.float32(centre - width / 2.0)
        a *= np.float32(1.0 / width)
    elif width <= 1.0:
        np.greater(a, centre - 0.5, out=a, casting="unsafe")
    else:
        a -= np.float32(centre - 0.5)
        a *= np.float32(1.0 / (width - 1.0))
        a += 0.5
    np.clip(a, 0.0, 1.0, out=a)
    return a


def _resize(a: np.ndarray, size: int) -> np.ndarray:
    """Antialiased bilinear resize to (size, size); aspect ratio is not preserved."""
    if a.shape == (size, size):
        return a
    im = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))
    out = np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)
    return np.array(out, dtype=np.float32, copy=True)


def _display(dec: _Decoded, window: tuple[float, float] | None, normalize: str) -> np.ndarray:
    """Raw values -> [0, 1]: non-finite repair, window or normalisation, MONOCHROME1 inversion."""
    a = _replace_nonfinite(dec.pixels)
    win = window or dec.window
    if win is not None:
        _apply_window(a, win[0], win[1], dec.voi_function if window is None else "LINEAR")
    else:
        _normalise(a, normalize)
    if dec.invert:
        np.subtract(np.float32(1.0), a, out=a)
    return a


# --------------------------------------------------------------------------- input reading

def _as_path(src: Any) -> Path | None:
    if isinstance(src, (str, os.PathLike)):
        return Path(os.fspath(src))
    return None


def _read_path(path: Path) -> bytes:
    """Read a regular file of at most MAX_INPUT_BYTES."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ImageError(f"The file '{path.name}' was not found.") from None
    except OSError:
        raise ImageError(f"The file '{path.name}' cannot be opened.") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError("This is a folder, not a file. Folders can only be read as a DICOM "
                         "series.")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(f"'{path.name}' is not a regular file.")
    if st.st_size > MAX_INPUT_BYTES:
        raise ImageError(f"The file is too large ({_mib(st.st_size)}); the limit is "
                         f"{_mib(MAX_INPUT_BYTES)}.")
    try:
        with open(path, "rb") as f:
            data = f.read(st.st_size + 1)  # read(n) reserves n bytes up front: ask for the size
    except OSError:
        raise ImageError(f"The file '{path.name}' cannot be read.") from None
    if len(data) > MAX_INPUT_BYTES:
        raise ImageError(f"The file is too large; the limit is {_mib(MAX_INPUT_BYTES)}.")
    return data


def _read_fileobj(f: Any) -> bytes:
    """Read a binary file object (bounded), restoring its position when possible."""
    pos = None
    try:
        if f.seekable():
            pos = f.tell()
            end = f.seek(0, io.SEEK_END)
            f.seek(pos)
            if end - pos > MAX_INPUT_BYTES:
                raise ImageError(f"The file is too large ({_mib(end - pos)}); the limit is "
                                 f"{_mib(MAX_INPUT_BYTES)}.")
    except ImageError:
        raise
    except Exception:  # noqa: BLE001 - not seekable after all
        pos = None
    buf = bytearray()
    while len(buf) <= MAX_INPUT_BYTES:
        chunk = f.read(min(2**20, MAX_INPUT_BYTES + 1 - len(buf)))
        if not chunk:
            break
        if isinstance(chunk, str):
            raise ImageError("The file was opened as text; it must be opened in binary mode.")
        buf += chunk
    if len(buf) > MAX_INPUT_BYTES:
        raise ImageError(f"The file is too large; the limit is {_mib(MAX_INPUT_BYTES)}.")
    if pos is not None:
        try:
            f.seek(pos)
        except Exception:  # noqa: BLE001
            pass
    return bytes(buf)


def _read_bytes(src: Any) -> bytes:
    """Bytes of `src` (path, bytes-like or binary file object), bounded by MAX_INPUT_BYTES."""
    path = _as_path(src)
    if path is not None:
        return _read_path(path)
    if isinstance(src, (bytes, bytearray, memoryview)):
        n = src.nbytes if isinstance(src, memoryview) else len(src)
        if n > MAX_INPUT_BYTES:
            raise ImageError(f"The file is too large ({_mib(n)}); the limit is "
                             f"{_mib(MAX_INPUT_BYTES)}.")
        return src if isinstance(src, bytes) else bytes(src)
    if hasattr(src, "read"):
        return _read_fileobj(src)
    raise ImageError("This input is not a file or an image (expected a file path, bytes, "
                     "an open binary file, a NumPy array or a PIL image).")


# --------------------------------------------------------------------------- sniffing

def _nifti_kind(head: bytes) -> str | None:
    """'nifti1', 'nifti2', 'nifti_pair' (separate .img), 'analyze' or None."""
    if len(head) >= 348:
        for end in "<>":
            (n,) = struct.unpack(end + "i", head[:4])
            if n == 348:
                if head[344:348] == b"n+1\x00":
                    return "nifti1"
                if head[344:348] == b"ni1\x00":
                    return "nifti_pair"
                return "analyze"
            if n == 540 and len(head) >= 540:
                if head[4:8] == b"n+2\x00":
                    return "nifti2"
                if head[4:8] == b"ni2\x00":
                    return "nifti_pair"
    return None


def _text_kind(head: bytes) -> str | None:
    """Classify text-like content ('html', 'svg', 'xml', 'json', 'metaimage', 'text')."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "text"  # UTF-16 text
    if not head or b"\x00" in head:
        return None
    controls = bytes(c for c in range(32) if c not in (9, 10, 12, 13, 27))
    if len(head) - len(head.translate(None, controls)) > 0.02 * len(head):
        return None
    t = head.decode("utf-8", "replace").lstrip("\ufeff \t\r\n").lower()
    if t.startswith("<"):
        if "<svg" in t:
            return "svg"
        if any(k in t for k in ("<html", "<!doctype html", "<head", "<body")):
            return "html"
        if t.startswith("<?xml"):
            return "xml"
        return "html"
    if t.startswith(("{", "[")):
        return "json"
    if "objecttype" in t and "elementdatafile" in t:
        return "metaimage"
    return "text"


def _sniff(data: bytes) -> str:
    """Format of `data` from its content: an image kind, or a key of _REFUSALS."""
    if not data:
        return "empty"
    head = data[:8192]
    if data[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "jp2"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    nk = _nifti_kind(head)
    if nk is not None:
        return "nifti_pair" if nk in ("nifti_pair", "analyze") else nk
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    if b"%PDF-" in head[:1024]:
        return "pdf"
    for prefix, kind in _MAGIC_REFUSALS:
        if head.startswith(prefix):
            if kind == "zip":
                if any(k in data[:65536] for k in (b"word/", b"xl/", b"ppt/")):
                    return "office"
                if b".npy" in data[:4096]:
                    return "npz"
            return kind
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "heic" if brand in (b"heic", b"heix", b"heif", b"mif1", b"msf1", b"avif",
                                   b"avis", b"hevc") else "media"
    if head[:4] == b"RIFF":
        return "media"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if len(head) > 3 and head[0:1] == b"P" and head[1:2] in b"1234567" \
            and head[2:3] in b" \t\r\n":
        return "pnm"
    # DICOM without the 128-byte preamble: starts with a group 0002 or 0008 element.
    if len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00"):
        return "dicom_raw"
    text = _text_kind(head)
    if text is not None:
        return text
    return "unknown"


def _refuse(kind: str) -> ImageError:
    return ImageError(_REFUSALS.get(kind, _REFUSALS["unknown"]))


# --------------------------------------------------------------------------- PIL formats

def _open_pil(data: bytes, kind: str) -> Image.Image:
    label = _PIL_LABEL.get(kind, "image")
    formats = tuple(f for f in _PIL_FORMATS if f in Image.OPEN) or None
    try:
        return Image.open(io.BytesIO(data), formats=formats)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("The image is too large (its header declares an enormous number of "
                         "pixels); it may be a 'decompression bomb'. Please upload a smaller "
                         "image.") from None
    except Exception as exc:  # noqa: BLE001
        text = _text_kind(data[:8192])
        if kind in ("bmp", "pnm") and text is not None:
            raise _refuse(text) from None
        raise ImageError(f"This {label} file is damaged or incomplete and cannot be read "
                         f"(it may have been cut off during upload). {HINT}") from exc


def _pil_grey(im: Image.Image) -> np.ndarray:
    """Owned float32 grey array from any Pillow mode (alpha composited over black)."""
    mode = im.mode
    if mode == "P" or mode == "PA":
        im = im.convert("RGBA" if (mode == "PA" or "transparency" in im.info) else "RGB")
        mode = im.mode
    if mode in ("La", "RGBa"):
        im = im.convert("LA" if mode == "La" else "RGBA")
        mode = im.mode
    if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
        return _to_float32(np.asarray(im))
    alpha = None
    if mode in ("LA", "RGBA"):
        alpha = np.asarray(im.getchannel("A"))
    if mode == "LAB":
        grey = np.asarray(im.getchannel("L"))
    elif mode in ("L", "LA", "RGB", "RGBA", "RGBX"):
        grey = np.asarray(im.convert("L"))
    else:  # CMYK, YCbCr, HSV, ...
        grey = np.asarray(im.convert("RGB").convert("L"))
    out = grey.astype(np.float32)
    del grey
    if alpha is not None and int(alpha.min()) < 255:
        for r in range(0, out.shape[0], 512):  # in row blocks: no full-size float temporary
            out[r:r + 512] *= alpha[r:r + 512].astype(np.float32) * np.float32(1.0 / 255.0)
    return out


def _decode_pil(im: Image.Image, kind: str, slice_index: int | None,
                size: int | None, verify_load: bool = True) -> _Decoded:
    """Decode a (lazily opened) Pillow image after checking its header size."""
    label = _PIL_LABEL.get(kind, im.format or "image")
    w, h = im.size
    _check_plane(h, w)
    n_frames = 1
    if slice_index not in (None, 0):
        n_frames = int(getattr(im, "n_frames", 1))
        if not 0 <= slice_index < n_frames:
            raise _slice_error(slice_index, n_frames)
        im.seek(slice_index)
        _check_plane(im.size[1], im.size[0])
    drafted = False
    if size is not None and im.format in ("JPEG", "MPO") and im.mode in ("L", "RGB"):
        im.draft(im.mode, (2 * size, 2 * size))  # DCT-domain downscale: fast, antialiased
        drafted = im.size != (w, h)
    if verify_load:
        try:
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError("The image is too large to decode safely. Please upload a "
                             "smaller image.") from None
        except Exception as exc:  # noqa: BLE001
            raise ImageError(f"This {label} file is damaged or incomplete and cannot be read "
                             f"(it may have been cut off during upload). {HINT}") from exc
    info: dict[str, Any] = {"format": im.format or label, "mode": im.mode, "shape": (h, w)}
    try:
        if drafted:  # the plane shape a full decode has (image_info), EXIF rotation included
            info["_plane"] = (w, h) if im.getexif().get(0x0112) in (5, 6, 7, 8) else (h, w)
        ImageOps.exif_transpose(im, in_place=True)
    except Exception:  # noqa: BLE001 - broken EXIF: keep the stored orientation
        pass
    pixels = _pil_grey(im)
    return _Decoded(pixels, info=info)


# --------------------------------------------------------------------------- DICOM

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_DEFLATED = b"1.2.840.10008.1.2.1.99"


def _first_number(value: Any) -> float | None:
    """First finite number of a (possibly multi-valued) DICOM value, else None."""
    try:
        if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
            value = value[0]
        v = float(value)
    except Exception:  # noqa: BLE001
        return None
    return v if math.isfinite(v) else None


def _functional_item(ds: Any, frame: int, sequence: str) -> Any:
    """First item of a functional-group macro, per-frame first, then shared."""
    for top, idx in (("PerFrameFunctionalGroupsSequence", frame),
                     ("SharedFunctionalGroupsSequence", 0)):
        try:
            groups = ds.get(top)
            if groups and len(groups) > idx:
                seq = groups[idx].get(sequence)
                if seq:
                    return seq[0]
        except Exception:  # noqa: BLE001
            continue
    return None


def _dicom_dataset(data: bytes, raw: bool) -> Any:
    """Parse a DICOM file that must contain pixel data; `raw` = no preamble (force)."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if _DEFLATED in data[:4096]:
        raise ImageError("This DICOM file uses 'deflate' compression, which is not supported. "
                         "Please export it uncompressed.")
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=raw)
    except Exception as exc:  # noqa: BLE001
        if raw:
            raise _refuse("unknown") from exc
        raise ImageError("This DICOM file is damaged and cannot be read.") from exc
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        if raw:
            raise _refuse("unknown")
        raise ImageError("This DICOM file contains no image (it may be a report, a structured "
                         "document or a DICOMDIR index).")
    meta = getattr(ds, "file_meta", None)
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit in (True, None) else
                                  ExplicitVRLittleEndian if little in (True, None) else
                                  ExplicitVRBigEndian)
    if "PhotometricInterpretation" not in ds:
        ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def _dicom_geometry(ds: Any) -> tuple[int, int, int, int]:
    """(rows, columns, samples, frames), checked against the stored pixel data length."""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        spp = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.BitsAllocated)
    except Exception:  # noqa: BLE001
        raise ImageError("This DICOM file is missing the information needed to read its "
                         "image (rows, columns or bit depth).") from None
    try:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except Exception:  # noqa: BLE001
        frames = 1
    frames = max(frames, 1)
    if rows < 1 or cols < 1 or spp not in (1, 3) or bits not in (1, 8, 16, 32, 64):
        raise ImageError("This DICOM file describes its image with impossible values "
                         "(size, colour samples or bit depth).")
    _check_plane(rows, cols)
    tsyntax = ds.file_meta.TransferSyntaxUID
    if not tsyntax.is_encapsulated:
        keyword = next(k for k in _PIXEL_KEYWORDS if k in ds)
        have = len(ds[keyword].value or b"")
        expected = rows * cols * spp * frames
        expected = (expected + 7) // 8 if bits == 1 else expected * (bits // 8)
        if str(ds.get("PhotometricInterpretation", "")).strip() == "YBR_FULL_422":
            expected = expected // 3 * 2
        if have < expected:
            raise ImageError(
                f"This DICOM file is incomplete: its header describes {frames} image(s) of "
                f"{cols} x {rows} pixels, but it contains only part of that pixel data.")
    return rows, cols, spp, frames


def _dicom_frame(ds: Any, frame: int, frames: int) -> _Decoded:
    """Decode one frame to modality values (float32) plus window and inversion."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, pixel_array

    tsyntax = ds.file_meta.TransferSyntaxUID
    try:
        arr = pixel_array(ds, index=frame if frames > 1 else None)
    except Exception as exc:  # noqa: BLE001
        if tsyntax.is_encapsulated:
            raise ImageError(f"This DICOM image is compressed ({tsyntax.name}) in a way that "
                             "cannot be decoded here. Please export it uncompressed or as "
                             "PNG.") from exc
        raise ImageError("The image data in this DICOM file is damaged and cannot be "
                         "read.") from exc
    pi = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if arr.ndim == 3 and int(ds.get("SamplesPerPixel", 1) or 1) == 1:
        arr = arr[min(frame, arr.shape[0] - 1)]
    if arr.ndim == 3:
        return _Decoded(_luminance(arr))
    if pi == "PALETTE COLOR":
        return _Decoded(_luminance(apply_color_lut(arr, ds)))
    if ds.get("ModalityLUTSequence"):
        pixels = _to_float32(apply_modality_lut(arr, ds))
    else:
        pixels = _to_float32(arr)
        slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
        if slope is None and intercept is None:
            item = _functional_item(ds, frame, "PixelValueTransformationSequence")
            if item is not None:
                slope, intercept = item.get("RescaleSlope"), item.get("RescaleIntercept")
        s, i = _first_number(slope), _first_number(intercept)
        if s is not None and s != 0 and s != 1:
            pixels *= np.float32(s)
        if i:
            pixels += np.float32(i)
    source: Any = ds
    if "WindowCenter" not in ds:
        source = _functional_item(ds, frame, "FrameVOILUTSequence") or ds
    centre = _first_number(source.get("WindowCenter"))
    width = _first_number(source.get("WindowWidth"))
    window = (centre, width) if centre is not None and width is not None and width > 0 else None
    function = str(source.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
    return _Decoded(pixels, window=window, voi_function=function,
                    invert=pi == "MONOCHROME1")


def _dicom_reader(data: bytes, raw: bool) -> Callable[[int | None], _Decoded]:
    """Parse a DICOM file once; the function returned decodes one frame (None: the middle one)."""
    ds = _dicom_dataset(data, raw)
    rows, cols, _, frames = _dicom_geometry(ds)

    def frame(slice_index: int | None) -> _Decoded:
        k = frames // 2 if slice_index is None else slice_index
        if not 0 <= k < frames:
            raise _slice_error(k, frames)
        dec = _dicom_frame(ds, k, frames)
        dec.info = {"format": "DICOM", "shape": (rows, cols), "n_slices": frames, "slice_index": k,
                    "modality": str(ds.get("Modality", "") or ""),
                    "photometric": str(ds.get("PhotometricInterpretation", "") or "")}
        return dec
    return frame


def _dicom_multiframe_volume(data: bytes, raw: bool, max_voxels: int) -> _Decoded:
    ds = _dicom_dataset(data, raw)
    rows, cols, _, frames = _dicom_geometry(ds)
    _check_voxels(frames * rows * cols, max_voxels)
    vol = np.empty((frames, rows, cols), dtype=np.float32)
    mid = None
    for k in range(frames):
        dec = _dicom_frame(ds, k, frames)
        vol[k] = dec.pixels
        if k == frames // 2:
            mid = dec
    assert mid is not None
    return _Decoded(vol, window=mid.window, voi_function=mid.voi_function, invert=mid.invert,
                    info={"format": "DICOM", "shape": (frames, rows, cols),
                          "modality": str(ds.get("Modality", "") or "")})


def _dicom_series(folder: Path, max_voxels: int) -> _Decoded:
    """A folder of single-frame DICOM files (one series) as a volume, sorted by position."""
    import pydicom

    try:
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        raise ImageError("This folder cannot be read.") from None
    files = [p for p in entries if p.is_file()]
    if len(files) > MAX_SERIES_FILES:
        raise ImageError(f"This folder contains too many files ({len(files)}); the limit is "
                         f"{MAX_SERIES_FILES}.")
    headers = []
    for p in files:
        try:
            if p.stat().st_size > MAX_INPUT_BYTES:
                continue
            with open(p, "rb") as f:
                head = f.read(132)
            raw = head[128:132] != b"DICM"
            if raw and _sniff(head + b"\x00" * 8) != "dicom_raw":
                continue
            ds = pydicom.dcmread(p, stop_before_pixels=True, force=raw)
            if "Rows" in ds and "Columns" in ds:
                headers.append((p, ds, raw))
        except Exception:  # noqa: BLE001 - not a DICOM image: ignore it in a folder
            continue
    if not headers:
        raise ImageError("This folder contains no DICOM images.")
    groups: dict[str, list] = {}
    for h in headers:
        groups.setdefault(str(h[1].get("SeriesInstanceUID", "")), []).append(h)
    series = max(groups.values(), key=len)
    if len(series) == 1:
        return _dicom_multiframe_volume(_read_path(series[0][0]), series[0][2], max_voxels)
    series.sort(key=_series_sort_key)
    rows, cols = int(series[0][1].Rows), int(series[0][1].Columns)
    if any((int(h[1].Rows), int(h[1].Columns)) != (rows, cols) for h in series):
        raise ImageError("The images in this DICOM folder have different sizes, so they do "
                         "not form one volume.")
    _check_plane(rows, cols)
    _check_voxels(len(series) * rows * cols, max_voxels)
    vol = np.empty((len(series), rows, cols), dtype=np.float32)
    mid = None
    for k, (p, _, raw) in enumerate(series):
        ds = _dicom_dataset(_read_path(p), raw)
        r, c, _, frames = _dicom_geometry(ds)
        if (r, c) != (rows, cols):
            raise ImageError("The images in this DICOM folder have different sizes.")
        dec = _dicom_frame(ds, 0, frames)
        vol[k] = dec.pixels
        if k == len(series) // 2:
            mid = dec
    assert mid is not None
    return _Decoded(vol, window=mid.window, voi_function=mid.voi_function, invert=mid.invert,
                    info={"format": "DICOM series", "shape": vol.shape,
                          "modality": str(series[0][1].get("Modality", "") or ""),
                          "n_series_in_folder": len(groups)})


def _series_sort_key(h: tuple) -> tuple:
    """Position along the slice normal, else InstanceNumber, else file name."""
    ds = h[1]
    try:
        o = [float(v) for v in ds.ImageOrientationPatient]
        pos = [float(v) for v in ds.ImagePositionPatient]
        normal = np.cross(o[:3], o[3:])
        return (0, float(np.dot(normal, pos)), h[0].name)
    except Exception:  # noqa: BLE001
        pass
    try:
        return (1, float(ds.InstanceNumber), h[0].name)
    except Exception:  # noqa: BLE001
        return (2, 0.0, h[0].name)


# --------------------------------------------------------------------------- NIfTI

def _gunzip(data: bytes, limit: int) -> memoryview:
    """Inflate gzip (multi-member) as a stream, producing at most `limit` bytes.

    The output is one anonymous memory map of `limit` bytes, filled in pieces of at most 4 MB:
    its pages take memory only once written, so the peak is the inflated data itself (growing
    a buffer by appending costs up to twice that), and a header that lies costs nothing."""
    out = mmap.mmap(-1, max(int(limit), 1))
    n = 0
    view = memoryview(data)
    pos, step = 0, 2**20
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    while n < limit:
        if d.unconsumed_tail:
            chunk: Any = d.unconsumed_tail
        elif d.eof:
            rest = d.unused_data + bytes(view[pos:pos + step])
            pos += step
            if not rest.strip(b"\x00"):
                break
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            chunk = rest
        elif pos < len(view):
            chunk = view[pos:pos + step]
            pos += step
        else:
            break
        piece = d.decompress(chunk, min(limit - n, 4 * 2**20))
        out[n:n + len(piece)] = piece
        n += len(piece)
    return memoryview(out)[:n]


def _nifti_header(buf: bytes | memoryview, kind: str) -> Any:
    import nibabel as nib

    if kind == "nifti2":
        return nib.Nifti2Header(bytes(buf[:540]), check=False)
    return nib.Nifti1Header(bytes(buf[:348]), check=False)


def _nifti_layout(hdr: Any, kind: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """Checked (full shape, dtype, data offset) from a NIfTI header."""
    try:
        shape = tuple(int(s) for s in hdr.get_data_shape())
        dtype = np.dtype(hdr.get_data_dtype())
        offset = int(hdr.get_data_offset())
    except Exception as exc:  # noqa: BLE001
        raise ImageError("The NIfTI header is damaged (its dimensions or data type are "
                         "invalid).") from exc
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise ImageError("The NIfTI file does not describe a 2D or 3D image (its dimensions "
                         "are invalid).")
    if dtype.kind == "c":
        raise ImageError("The NIfTI file holds complex-valued data, which cannot be shown as "
                         "an image.")
    if (dtype.names is None and (dtype.kind not in "biuf" or dtype.itemsize > 8)) or \
            (dtype.names is not None and len(dtype.names) < 3):
        raise ImageError("The NIfTI file uses an unsupported data type.")
    offset = max(offset, 544 if kind == "nifti2" else 352)
    return shape, dtype, offset


def _nifti_first_volume(data: bytes, kind: str, plane_only: bool,
                        max_voxels: int) -> tuple[np.ndarray, Any, dict]:
    """Header-checked view (X, Y, Z) of the first volume, without copying the voxels."""
    gz = kind == "gzip"
    buf: bytes | memoryview = data
    if gz:
        head = bytes(_gunzip(data, 544))
        kind = _nifti_kind(head) or ""
        if kind not in ("nifti1", "nifti2"):
            raise _refuse("nifti_pair" if kind in ("nifti_pair", "analyze") else "gzip_other")
        buf = head
    hdr = _nifti_header(buf, kind)
    shape, dtype, offset = _nifti_layout(hdr, kind)
    vol_shape = (shape + (1, 1))[:3]
    n_vol = vol_shape[0] * vol_shape[1] * vol_shape[2]
    if not plane_only:
        _check_voxels(n_vol, max_voxels)
    need = offset + n_vol * dtype.itemsize
    _check_decoded(need, "NIfTI volume")
    if gz:
        if need > MAX_DECOMPRESSED_BYTES:
            raise ImageError(f"The NIfTI image is too large: its header describes "
                             f"{' x '.join(map(str, shape))} voxels ({_mib(need)} uncompressed); "
                             f"the limit is {_mib(MAX_DECOMPRESSED_BYTES)}.")
        try:
            buf = _gunzip(data, need)
        except zlib.error as exc:
            raise ImageError("The compressed NIfTI file is damaged and cannot be "
                             "decompressed.") from exc
        available = len(buf)
    else:
        need_all = offset + math.prod(shape) * dtype.itemsize
        available = len(buf) if need_all <= len(buf) else -1
    if available < need:
        raise ImageError(f"The NIfTI file is incomplete: its header describes "
                         f"{' x '.join(map(str, shape))} voxels, but the file holds less data "
                         "than that (it may have been cut off, or the header is wrong).")
    arr = np.ndarray(vol_shape, dtype=dtype, buffer=buf, offset=offset, order="F")
    info = {"format": "NIfTI-2" if kind == "nifti2" else "NIfTI", "shape": shape,
            "dtype": str(dtype), "compressed": gz}
    return arr, hdr, info


def _nifti_canonical(arr: np.ndarray, hdr: Any) -> np.ndarray:
    """View of `arr` reordered/flipped to the closest RAS+ axes (identity if unknown)."""
    from nibabel.orientations import apply_orientation, io_orientation

    try:
        ornt = io_orientation(hdr.get_best_affine())
        if np.isnan(ornt).any():
            raise ValueError
        return apply_orientation(arr, ornt)
    except Exception:  # noqa: BLE001 - degenerate affine: keep the stored axes
        return arr


def _nifti_values(a: np.ndarray, hdr: Any) -> np.ndarray:
    """Owned float32 values with scl_slope / scl_inter applied (RGB types -> luminance)."""
    if a.dtype.names is not None:
        names = a.dtype.names
        out = _luminance(np.stack([a[n] for n in names[:3]], axis=-1))
    else:
        out = _to_float32(a)
    try:
        slope, inter = hdr.get_slope_inter()
    except Exception:  # noqa: BLE001
        slope, inter = None, None
    if slope is not None and math.isfinite(slope) and slope not in (0.0, 1.0):
        out *= np.float32(slope)
    if inter is not None and math.isfinite(inter) and inter != 0.0:
        out += np.float32(inter)
    return out


def _nifti_reader(data: bytes, kind: str) -> Callable[[int | None], _Decoded]:
    """Inflate a NIfTI file once; the function returned decodes one axial slice (None: middle)."""
    arr, hdr, info = _nifti_first_volume(data, kind, True, MAX_VOXELS)
    can = _nifti_canonical(arr, hdr)
    n = can.shape[2]

    def axial(slice_index: int | None) -> _Decoded:
        k = n // 2 if slice_index is None else slice_index
        if not 0 <= k < n:
            raise _slice_error(k, n)
        _check_plane(can.shape[1], can.shape[0])
        plane = can[::-1, ::-1, k].T  # radiological display: anterior up, patient right on left
        return _Decoded(_nifti_values(plane, hdr), info=dict(info, n_slices=n, slice_index=k))
    return axial


def _nifti_volume(data: bytes, kind: str, max_voxels: int) -> _Decoded:
    arr, hdr, info = _nifti_first_volume(data, kind, False, max_voxels)
    can = _nifti_canonical(arr, hdr)
    _check_plane(can.shape[1], can.shape[0])
    vol = can[::-1, ::-1, :].transpose(2, 1, 0)  # (D, H, W) slices as in _decode_nifti
    return _Decoded(_nifti_values(vol, hdr), info=info)


# --------------------------------------------------------------------------- NumPy

def _npy_array(data: bytes) -> np.ndarray:
    """Read-only view of a .npy payload; header validated before any allocation."""
    from numpy.lib import format as npformat

    fp = io.BytesIO(data)
    try:
        version = npformat.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npformat.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = npformat.read_array_header_2_0(fp)
        else:
            raise ValueError(version)
    except Exception as exc:  # noqa: BLE001
        raise ImageError("This NumPy (.npy) file is damaged or uses an unsupported "
                         "version.") from exc
    _check_array_dtype(np.dtype(dtype))
    count = math.prod(shape)
    offset = fp.tell()
    if count * dtype.itemsize > len(data) - offset:
        raise ImageError(f"This NumPy (.npy) file is incomplete: its header describes an array "
                         f"of shape {' x '.join(map(str, shape))}, but the file holds less data.")
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return flat.reshape(shape, order="F" if fortran else "C")


def _check_array_dtype(dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise ImageError("This NumPy file contains Python objects (it was saved with "
                         "pickling), so it is not opened for safety reasons. Please save a "
                         "plain numeric array.")
    if dtype.kind == "c":
        raise ImageError("This array holds complex numbers, which cannot be shown as an image.")
    if dtype.kind not in "biuf" or dtype.itemsize > 8:
        raise ImageError("This array does not hold plain numbers (it may be text, dates or "
                         "records), so it cannot be shown as an image.")


def _array_2d(a: np.ndarray, slice_index: int | None, label: str) -> _Decoded:
    _check_array_dtype(a.dtype)
    info: dict[str, Any] = {"format": label, "shape": tuple(a.shape), "dtype": str(a.dtype)}
    if a.ndim == 3 and a.shape[-1] in (3, 4) and min(a.shape[:2]) > 4:
        _check_plane(a.shape[0], a.shape[1])
        return _Decoded(_luminance(a), info=info)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ImageError(f"This array has {a.ndim} dimension(s); a 2D image or a 3D stack of "
                         "slices is needed.")
    k = a.shape[0] // 2 if slice_index is None else slice_index
    if not 0 <= k < a.shape[0]:
        raise _slice_error(k, a.shape[0])
    _check_plane(a.shape[1], a.shape[2])
    info.update(n_slices=a.shape[0], slice_index=k)
    return _Decoded(_to_float32(a[k]), info=info)


def _array_volume(a: np.ndarray, max_voxels: int, label: str) -> _Decoded:
    _check_array_dtype(a.dtype)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ImageError(f"This array has {a.ndim} dimension(s); a 3D volume (slices, height, "
                         "width) is needed.")
    _check_plane(a.shape[1], a.shape[2])
    _check_voxels(a.size, max_voxels)
    return _Decoded(_to_float32(a), info={"format": label, "shape": tuple(a.shape),
                                          "dtype": str(a.dtype)})


# --------------------------------------------------------------------------- dispatch

def _slice_error(k: int, n: int) -> ImageError:
    return ImageError(f"Slice {k} was requested, but this image has {n} slice(s) "
                      f"(numbered 0 to {n - 1}).")


def _check_voxels(n: int, max_voxels: int) -> None:
    if n > max_voxels:
        raise ImageError(f"The volume is too large ({n / 1e6:.0f} million voxels); the limit "
                         f"is {max_voxels / 1e6:.0f} million.")


def _check_slice_index(slice_index: Any) -> None:
    if slice_index is not None and (isinstance(slice_index, bool) or
                                    not isinstance(slice_index, (int, np.integer))):
        raise ImageError("The slice number must be a whole number.")


def _slice_reader(src: Any, size: int | None) -> Callable[[int | None], _Decoded]:
    """Read, parse (and inflate) `src` once; the function returned decodes one 2D plane of raw
    values (not yet mapped to [0, 1]) of it: slice / frame k, or the default one for None."""
    if isinstance(src, np.ndarray):
        return lambda k: _array_2d(src, k, "NumPy array")
    if isinstance(src, Image.Image):
        def pil_image(k: int | None) -> _Decoded:
            _check_plane(src.size[1], src.size[0])
            if k not in (None, 0):
                raise ImageError("Pick the frame of a PIL image with its seek() method before "
                                 "passing it.")
            return _decode_pil(src.copy(), "image", None, size)  # copy: never mutate the caller's
        return pil_image
    path = _as_path(src)
    if path is not None and path.is_dir():
        vol = _dicom_series(path, MAX_VOXELS)

        def series(slice_index: int | None) -> _Decoded:
            n = vol.pixels.shape[0]
            k = n // 2 if slice_index is None else slice_index
            if not 0 <= k < n:
                raise _slice_error(k, n)
            info = dict(vol.info, n_slices=n, slice_index=k)
            return _Decoded(vol.pixels[k].copy(), vol.window, vol.voi_function, vol.invert, info)
        return series
    data = _read_bytes(src)
    kind = _sniff(data)
    if kind in _PIL_LABEL:
        return lambda k: _decode_pil(_open_pil(data, kind), kind, k, size)
    if kind in ("dicom", "dicom_raw"):
        return _dicom_reader(data, kind == "dicom_raw")
    if kind in ("nifti1", "nifti2", "gzip"):
        return _nifti_reader(data, kind)
    if kind == "npy":
        array = _npy_array(data)
        return lambda k: _array_2d(array, k, "NumPy file")
    raise _refuse(kind)


def _decode_2d(src: Any, slice_index: int | None, size: int | None) -> _Decoded:
    """Any supported source -> one 2D plane of raw values (not yet mapped to [0, 1])."""
    _check_slice_index(slice_index)
    return _slice_reader(src, size)(slice_index)


def _finish(dec: _Decoded, window: tuple[float, float] | None, normalize: str,
            size: int | None) -> np.ndarray:
    """A decoded plane -> float32 in [0, 1] at (size, size) (native size if None)."""
    _check_plane(*dec.pixels.shape)
    a = _display(dec, window, normalize)
    if size is not None:
        a = _resize(a, size)
    np.clip(a, 0.0, 1.0, out=a)
    return np.ascontiguousarray(a, dtype=np.float32)


def _describe(dec: _Decoded) -> dict[str, Any]:
    """image_info's description of a decoded plane."""
    _check_plane(*dec.pixels.shape)
    _replace_nonfinite(dec.pixels)
    info = dict(dec.info)
    info["plane_shape"] = tuple(int(s) for s in info.pop("_plane", dec.pixels.shape))
    if dec.window is not None:
        info["window"] = dec.window
    if dec.invert:
        info["inverted"] = True
    return info


def _decode_volume(src: Any, max_voxels: int) -> _Decoded:
    """Any volumetric source -> (D, H, W) raw values."""
    if isinstance(src, np.ndarray):
        return _array_volume(src, max_voxels, "NumPy array")
    path = _as_path(src)
    if path is not None and path.is_dir():
        return _dicom_series(path, max_voxels)
    if isinstance(src, Image.Image):
        kind = "png"
    else:
        data = _read_bytes(src)
        kind = _sniff(data)
    if kind in ("dicom", "dicom_raw"):
        return _dicom_multiframe_volume(data, kind == "dicom_raw", max_voxels)
    if kind in ("nifti1", "nifti2", "gzip"):
        return _nifti_volume(data, kind, max_voxels)
    if kind == "npy":
        return _array_volume(_npy_array(data), max_voxels, "NumPy file")
    if kind in _PIL_LABEL:
        raise ImageError(f"This is a 2D picture ({_PIL_LABEL[kind]}), not a 3D scan. Volumes "
                         "can be read from NIfTI (.nii, .nii.gz), DICOM (a multi-frame file or "
                         "a folder of slices) or NumPy (.npy) files.")
    raise _refuse(kind)


# --------------------------------------------------------------------------- public API

def load_image(src: ImageSource, size: int | None = 128, *, slice_index: int | None = None,
               window: tuple[float, float] | None = None,
               normalize: str = "percentile", max_bytes: int | None = None) -> np.ndarray:
    """Load any supported image as float32 (size, size) in [0, 1] (native size if None).

    `slice_index` picks a frame / slice of multi-frame DICOM, NIfTI (axial, inferior to
    superior), 3D .npy stacks, multi-page TIFF/GIF or DICOM folders (default: the middle one;
    the first page for TIFF/GIF). `window=(centre, width)` overrides the DICOM VOI window.
    `max_bytes` lowers the decoded-size limit (see the module notes; None: the module limits).
    Raises ImageError (with a message for a person) for anything that is not a sensible image.
    """
    size = _check_size(size)
    win = _check_window(window)
    normalize = _check_normalize(normalize)
    with _bytes_cap(max_bytes), _guarded("The image could not be read. " + HINT):
        return _finish(_decode_2d(src, slice_index, size), win, normalize, size)


def load_slices(src: ImageSource, size: int = 128, *, indices: Any = None,
                window: tuple[float, float] | None = None, normalize: str = "percentile",
                max_bytes: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Every slice of `src` (or those in `indices`) at (size, size), from one decode.

    Returns (stack, info): stack[i] equals load_image(src, size, slice_index=k, window=window,
    normalize=normalize) for the i-th slice k (NIfTI axial slices, DICOM frames, 3D .npy stacks,
    DICOM folders; any other image is one slice), and info equals image_info(src) (its
    n_slices / slice_index, when present, give the number of slices and the default one). The
    file is read, parsed and inflated once, however many slices are taken from it, which is
    what a slice slider needs. `indices`: None (all), slice numbers, or a function
    (n_slices, default_slice) -> slice numbers, to choose once the file's header is read.
    `max_bytes` as for load_image.
    """
    size = _check_size(size)
    if size is None:
        raise ImageError("load_slices needs an output size.")
    win = _check_window(window)
    normalize = _check_normalize(normalize)
    with _bytes_cap(max_bytes), _guarded("The image could not be read. " + HINT):
        read = _slice_reader(src, size)
        first = read(None)
        info = _describe(first)
        n = int(info.get("n_slices", 1) or 1)
        default = int(info.get("slice_index", 0) or 0)
        wanted = list(range(n) if indices is None else
                      indices(n, default) if callable(indices) else indices)
        for k in wanted:
            _check_slice_index(k)
        out = np.empty((len(wanted), size, size), dtype=np.float32)
        for i, k in enumerate(wanted):
            if first is not None and k == default:
                dec, first = first, None  # decoded already; used once (_finish maps it in place)
            else:
                dec = read(int(k))
            out[i] = _finish(dec, win, normalize, size)
        return out, info


def load_volume(src: ImageSource, *, max_voxels: int = MAX_VOXELS,
                window: tuple[float, float] | None = None,
                normalize: str = "percentile") -> np.ndarray:
    """Load a 3D scan as float32 (D, H, W) in [0, 1], slices along the first axis.

    Sources: NIfTI (.nii/.nii.gz; first volume of 4D; axial slices inferior to superior,
    displayed like `load_image`), a multi-frame DICOM file, a folder holding one DICOM series
    (sorted by ImagePositionPatient along the slice normal, else InstanceNumber), or a .npy /
    array of shape (D, H, W). The whole volume shares one intensity mapping.
    Raises ImageError for anything else or for volumes above `max_voxels`.
    """
    win = _check_window(window)
    normalize = _check_normalize(normalize)
    if isinstance(max_voxels, bool) or not isinstance(max_voxels, (int, np.integer)) \
            or max_voxels < 1:
        raise ImageError("The voxel limit must be a positive whole number.")
    with _guarded("The scan could not be read. Volumes can be read from NIfTI (.nii, .nii.gz), "
                  "DICOM or NumPy (.npy) files."):
        dec = _decode_volume(src, int(max_voxels))
        _check_plane(*dec.pixels.shape[1:])
        a = _display(dec, win, normalize)
        np.clip(a, 0.0, 1.0, out=a)
        return np.ascontiguousarray(a, dtype=np.float32)


def image_info(src: ImageSource, *, slice_index: int | None = None,
               max_bytes: int | None = None) -> dict[str, Any]:
    """Small description of an input: format, original shape, dtype/mode, modality, slices.

    Decodes the image (with the same checks as `load_image`), so it raises the same
    ImageError for bad input. Keys present depend on the format.
    """
    with _bytes_cap(max_bytes), _guarded("The image could not be read. " + HINT):
        return _describe(_decode_2d(src, slice_index, None))
