"""Tests of upd_core.imaging: valid formats and their semantics, and hostile/odd inputs.

Every test file is generated here at test time (no binary fixtures, no real patient data).
Bombs are built cheaply: a zlib stream of N zero bytes is one compressed 1 MiB block repeated.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import time
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFile
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from upd_core.errors import ImageError, UPDError
from upd_core.imaging import image_info, load_image, load_volume

# Pillow itself warns about the 10000 x 10000 bomb before our stricter check refuses it.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")

REPO = Path(__file__).resolve().parents[1]
GB = 2**30


# --------------------------------------------------------------------------- builders

def png_bytes(im: Image.Image, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, "PNG", **kw)
    return b.getvalue()


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    b = io.BytesIO()
    im.save(b, "JPEG", quality=95, **kw)
    return b.getvalue()


def zlib_zeros(n: int) -> bytes:
    """A valid zlib stream inflating to n zero bytes, made with ~1 MiB of work."""
    block = 1 << 20
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    c.compress(bytes(block))
    c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)  # state reset: repeatable
    m, r = divmod(n, block)
    t = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = t.compress(bytes(r)) + t.flush()
    return b"\x78\xda" + again * m + tail + struct.pack(">I", ((n % 65521) << 16) | 1)


def raw_png(width: int, height: int, idat: bytes, depth: int = 8, colour: int = 0) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat)
            + chunk(b"IEND", b""))


def png_bomb(side: int) -> bytes:
    """side x side 8-bit grey PNG of zeros: ~side^2/1000 bytes on disk."""
    return raw_png(side, side, zlib_zeros(side * (side + 1)))


def dicom_bytes(pixels: np.ndarray, *, photometric: str = "MONOCHROME2", preamble: bool = True,
                frames: int | None = None, pixel_data: bytes | None = None, **attrs) -> bytes:
    """A small DICOM (Secondary Capture, Explicit VR Little Endian) written by pydicom."""
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.PatientName = "Test^Synthetic"
    colour = pixels.ndim == (4 if frames else 3)
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = photometric
    if colour:
        ds.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    if frames:
        ds.NumberOfFrames = frames
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.PixelData = pixel_data if pixel_data is not None else pixels.astype(
        pixels.dtype.newbyteorder("<")).tobytes()
    buf = io.BytesIO()
    if preamble:
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.preamble = b"\x00" * 128
        pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    else:
        pydicom.dcmwrite(buf, ds, implicit_vr=True, little_endian=True)
    return buf.getvalue()


def nifti_bytes(data: np.ndarray, affine: np.ndarray | None = None, gz: bool = False,
                version: int = 1) -> bytes:
    cls = nib.Nifti2Image if version == 2 else nib.Nifti1Image
    img = cls(data, np.eye(4) if affine is None else affine)
    raw = img.to_bytes()
    return gzip.compress(raw, compresslevel=1) if gz else raw


def nifti_header_only(shape: tuple, dtype=np.float32) -> bytes:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(dtype)
    hdr["vox_offset"] = 352
    return hdr.binaryblock + b"\x00" * 4


def npy_bytes(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    b = io.BytesIO()
    np.save(b, arr, allow_pickle=allow_pickle)
    return b.getvalue()


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def check_image(a: np.ndarray, size: int | tuple = 128) -> None:
    shape = (size, size) if isinstance(size, int) else size
    assert isinstance(a, np.ndarray)
    assert a.dtype == np.float32
    assert a.shape == shape
    assert np.isfinite(a).all()
    assert a.min() >= 0.0 and a.max() <= 1.0


def check_message(err: ImageError) -> str:
    msg = str(err)
    assert isinstance(err, ValueError) and isinstance(err, UPDError)
    assert len(msg) > 20 and msg[0].isupper(), msg
    for bad in ("Traceback", "<class", "Error(", "\\x", "None", "errno", "0x"):
        assert bad not in msg, msg
    assert not re.search(r"(?<![A-Za-z])b'|\{'|array\(|dtype\(", msg), msg  # no Python reprs
    return msg


# --------------------------------------------------------------------------- bad inputs

def _docx() -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", "<w:document/>")
    return b.getvalue()


def _zip() -> bytes:
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w") as z:
        z.writestr("scan/readme.txt", "hello")
    return b.getvalue()


def _truncated_png() -> bytes:
    d = png_bytes(Image.fromarray(noise(256, 256)))
    return d[: int(len(d) * 0.6)]


def _truncated_jpeg() -> bytes:
    d = jpeg_bytes(Image.fromarray(noise(256, 256)))
    return d[: int(len(d) * 0.6)]


def _dicom_rows_lie() -> bytes:
    return dicom_bytes(np.zeros((64, 64), np.uint16), Rows=4096, Columns=4096)


def _dicom_frames_lie() -> bytes:
    return dicom_bytes(np.zeros((64, 64), np.uint16), NumberOfFrames=100000)


def _dicom_no_pixels() -> bytes:
    d = dicom_bytes(np.zeros((16, 16), np.uint16))
    ds = pydicom.dcmread(io.BytesIO(d))
    del ds.PixelData
    b = io.BytesIO()
    ds.save_as(b)
    return b.getvalue()


def _nifti_lie() -> bytes:
    return nifti_header_only((512, 512, 512), np.int16) + bytes(1024)


def _nifti_gz_bomb() -> bytes:
    return gzip.compress(nifti_header_only((2048, 2048, 2048)) + bytes(8 << 20), 9)


def _nifti_gz_over_cap() -> bytes:
    return gzip.compress(nifti_header_only((1024, 1024, 200)) + bytes(4 << 20), 9)


def _nifti_gz_lie() -> bytes:
    return gzip.compress(nifti_header_only((256, 256, 256)) + bytes(1 << 20), 9)


def _npy_header_lie() -> bytes:
    """Header claims 99999 x 99999 float32 (40 GB); 1 KB of data follows."""
    b = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        b, {"descr": "<f4", "fortran_order": False, "shape": (99999, 99999)})
    return b.getvalue() + bytes(1024)


BAD: dict[str, object] = {
    "html.png": b"<!DOCTYPE html>\n<html><head><title>x</title></head><body><img src=a.png>"
                b"</body></html>\n",
    "svg.jpg": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" '
               b'height="10"><rect width="10" height="10"/></svg>\n',
    "xml.tif": b'<?xml version="1.0"?>\n<study><patient id="1"/></study>\n',
    "json.png": json.dumps({"image": [[0, 1], [1, 0]]}).encode(),
    "pdf.png": b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n" + bytes(64),
    "zip.dcm": _zip,
    "report.docx.png": _docx,
    "text.nii": b"This is not a NIfTI volume, just some notes about the scan.\n" * 20,
    "bm-text.bmp": b"BMW service notes: the car is fine, nothing to see here.\n" * 5,
    "empty.png": b"",
    "random.bin": lambda: np.random.default_rng(1).bytes(4096),
    "program.exe.png": b"MZ\x90\x00\x03\x00\x00\x00" + bytes(200),
    "truncated.png": _truncated_png,
    "truncated.jpg": _truncated_jpeg,
    "bomb30000.png": lambda: png_bomb(30000),
    "bomb10000.png": lambda: png_bomb(10000),
    "tiny4x4.png": lambda: png_bytes(Image.fromarray(noise(4, 4))),
    "strip2000x40.png": lambda: png_bytes(Image.fromarray(noise(40, 2000))),
    "garbage-after-DICM.dcm": b"\x00" * 128 + b"DICM" + np.random.default_rng(2).bytes(500),
    "dicom-rows-lie.dcm": _dicom_rows_lie,
    "dicom-frames-lie.dcm": _dicom_frames_lie,
    "dicom-no-pixels.dcm": _dicom_no_pixels,
    "nifti-lie.nii": _nifti_lie,
    "nifti-gz-bomb.nii.gz": _nifti_gz_bomb,
    "nifti-gz-over-cap.nii.gz": _nifti_gz_over_cap,
    "nifti-gz-lie.nii.gz": _nifti_gz_lie,
    "nifti-pair.hdr": lambda: nifti_header_only((64, 64, 10)).replace(b"n+1\x00", b"ni1\x00"),
    "nifti-complex.nii": lambda: nifti_bytes(np.ones((16, 16, 4), np.complex64)),
    "gzip-text.nii.gz": lambda: gzip.compress(b"hello " * 100),
    "pickle.npy": lambda: pickle.dumps({"pixels": [[1, 2], [3, 4]]}),
    "object.npy": lambda: npy_bytes(np.array([[1, "a"], [None, 2.0]], dtype=object), True),
    "complex.npy": lambda: npy_bytes(np.ones((16, 16), np.complex64)),
    "1d.npy": lambda: npy_bytes(np.arange(100, dtype=np.float32)),
    "4d.npy": lambda: npy_bytes(np.zeros((2, 2, 16, 16), np.float32)),
    "strings.npy": lambda: npy_bytes(np.array([["ab"] * 16] * 16)),
    "npy-header-lie.npy": _npy_header_lie,
    "all-nan.npy": lambda: npy_bytes(np.full((32, 32), np.nan, np.float32)),
}
# the refusal messages that must name what the file really is
EXPECT_WORD = {"html.png": "web page", "svg.jpg": "SVG", "pdf.png": "PDF", "zip.dcm": "ZIP",
               "report.docx.png": "Office", "text.nii": "text", "bm-text.bmp": "text",
               "empty.png": "empty", "truncated.png": "incomplete",
               "truncated.jpg": "incomplete", "bomb30000.png": "large",
               "bomb10000.png": "large", "tiny4x4.png": "small", "strip2000x40.png": "strip",
               "nifti-gz-bomb.nii.gz": "large", "nifti-gz-over-cap.nii.gz": "large",
               "nifti-lie.nii": "incomplete", "nifti-gz-lie.nii.gz": "incomplete",
               "dicom-rows-lie.dcm": "incomplete", "dicom-frames-lie.dcm": "incomplete",
               "dicom-no-pixels.dcm": "no image", "pickle.npy": "pickle",
               "object.npy": "objects", "complex.npy": "complex", "nifti-pair.hdr": ".img",
               "gzip-text.nii.gz": "gzip", "all-nan.npy": "no valid"}


def _build(name: str) -> bytes:
    spec = BAD[name]
    return spec() if callable(spec) else spec  # type: ignore[operator]


@pytest.mark.parametrize("name", list(BAD))
def test_bad_file_is_refused_plainly_fast_and_small(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(_build(name))
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(ImageError) as info:
            load_image(path)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = check_message(info.value)
    assert elapsed < 5.0, f"{name} took {elapsed:.1f} s"
    assert peak < 64 * 2**20, f"{name} allocated {peak / 2**20:.0f} MB"  # far below 1 GB
    if name in EXPECT_WORD:
        assert EXPECT_WORD[name].lower() in msg.lower(), msg
    # the same refusal for bytes input, and image_info agrees
    with pytest.raises(ImageError):
        load_image(path.read_bytes())
    with pytest.raises(ImageError):
        image_info(path)


@pytest.mark.parametrize("name", ["nifti-gz-bomb.nii.gz", "nifti-lie.nii", "dicom-rows-lie.dcm",
                                  "html.png", "zip.dcm", "random.bin", "pickle.npy"])
def test_bad_file_refused_by_load_volume(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(_build(name))
    with pytest.raises(ImageError) as info:
        load_volume(path)
    check_message(info.value)


def test_bombs_resident_memory_in_subprocess(tmp_path: Path) -> None:
    """Peak RSS growth (not only Python allocations) stays far below 1 GB for the bombs."""
    names = ["bomb30000.png", "bomb10000.png", "nifti-gz-bomb.nii.gz",
             "nifti-gz-over-cap.nii.gz", "nifti-gz-lie.nii.gz", "nifti-lie.nii",
             "dicom-rows-lie.dcm", "dicom-frames-lie.dcm", "npy-header-lie.npy"]
    for n in names:
        (tmp_path / n).write_bytes(_build(n))
    script = (
        "import resource, sys\n"
        "from upd_core.imaging import load_image, load_volume\n"
        "from upd_core.errors import ImageError\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for p in sys.argv[1:]:\n"
        "    for f in (load_image, load_volume):\n"
        "        try:\n"
        "            f(p)\n"
        "        except ImageError:\n"
        "            pass\n"
        "        else:\n"
        "            raise SystemExit('accepted ' + p)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", script, *(str(tmp_path / n) for n in names)],
                         capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    grown_kb = int(out.stdout.strip().splitlines()[-1])
    assert grown_kb * 1024 < GB / 4, f"RSS grew by {grown_kb / 1024:.0f} MB"


def test_missing_file_folder_and_wrong_types(tmp_path: Path) -> None:
    for src in (tmp_path / "nope.png", str(tmp_path / "nope.dcm"), tmp_path, 42, None,
                io.StringIO("text")):
        with pytest.raises(ImageError) as info:
            load_image(src)  # type: ignore[arg-type]
        check_message(info.value)
    with pytest.raises(ImageError):
        load_image(png_bytes(Image.fromarray(noise(32, 32))), size=0)
    with pytest.raises(ImageError):
        load_image(png_bytes(Image.fromarray(noise(32, 32))), window=(10, -1))


def test_truncated_images_flag_is_off() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# --------------------------------------------------------------------------- raster formats

def test_grey_png_all_input_kinds(tmp_path: Path) -> None:
    arr = noise(100, 80)
    data = png_bytes(Image.fromarray(arr))
    path = tmp_path / "grey.weird-extension"
    path.write_bytes(data)
    ref = load_image(path)
    check_image(ref)
    f = io.BytesIO(b"xx" + data)
    f.seek(2)
    with open(path, "rb") as fh:
        others = [load_image(str(path)), load_image(data), load_image(bytearray(data)),
                  load_image(memoryview(data)), load_image(f), load_image(fh)]
    assert f.tell() == 2  # the caller's file position is restored
    for a in others:
        np.testing.assert_array_equal(a, ref)
    pil = Image.open(io.BytesIO(data))
    np.testing.assert_allclose(load_image(pil), ref, atol=1e-6)
    np.testing.assert_allclose(load_image(arr), ref, atol=1e-6)
    native = load_image(data, size=None)
    check_image(native, (100, 80))
    check_image(load_image(data, 64), 64)


def test_normalisation_percentile_minmax_constant() -> None:
    a = np.zeros((64, 64), np.float32)
    a[:, 32:] = 100.0
    a[0, 0] = 1e6  # single outlier: ignored by the percentile stretch, not by min-max
    p = load_image(a, size=None)
    m = load_image(a, size=None, normalize="minmax")
    assert p[5, 40] == pytest.approx(1.0) and p[5, 5] == pytest.approx(0.0)
    assert m[5, 40] < 0.01 and m[0, 0] == pytest.approx(1.0)
    const = load_image(np.full((20, 20), 7.0), size=None)
    check_image(const, (20, 20))
    assert (const == 0).all()


def test_nan_and_inf_are_repaired() -> None:
    a = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))
    a[3:6, 3:6] = np.nan
    a[10, 10] = np.inf
    a[11, 11] = -np.inf
    out = load_image(a, size=None, normalize="minmax")
    check_image(out, (32, 32))
    assert out[4, 4] == 0.0 and out[10, 10] == 1.0 and out[11, 11] == 0.0
    tif = io.BytesIO()
    Image.fromarray(a).save(tif, "TIFF")
    check_image(load_image(tif.getvalue()))


def test_16bit_png_keeps_precision() -> None:
    a = np.zeros((30, 30), np.uint16)
    a[:, :10], a[:, 10:20], a[:, 20:] = 1000, 1001, 1002  # indistinguishable in 8 bits
    out = load_image(png_bytes(Image.fromarray(a)), size=None, normalize="minmax")
    check_image(out, (30, 30))
    np.testing.assert_allclose(out[0, [0, 15, 25]], [0.0, 0.5, 1.0], atol=1e-6)
    tif = io.BytesIO()
    Image.fromarray(a).save(tif, "TIFF")
    np.testing.assert_allclose(load_image(tif.getvalue(), size=None, normalize="minmax"), out)


def test_rgb_cmyk_palette_bmp_gif_webp_1bit() -> None:
    rgb = np.zeros((32, 32, 3), np.uint8)
    rgb[:, :16] = (255, 0, 0)
    rgb[:, 16:] = (0, 255, 0)  # green is brighter than red in luminance
    out = load_image(jpeg_bytes(Image.fromarray(rgb)), size=None)
    assert out[:, 20:28].mean() > out[:, 4:12].mean() + 0.5
    cmyk = Image.new("CMYK", (32, 32), (0, 0, 0, 0))  # white
    cmyk.paste((0, 0, 0, 255), (16, 0, 32, 32))      # black right half
    out = load_image(jpeg_bytes(cmyk), size=None)
    assert out[:, :12].mean() > 0.9 and out[:, 20:].mean() < 0.1
    pal = Image.new("P", (32, 32), 0)
    pal.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)  # index 0 white, index 1 black
    pal.paste(1, (16, 0, 32, 32))
    out = load_image(png_bytes(pal), size=None)
    assert out[:, :12].mean() > 0.9 and out[:, 20:].mean() < 0.1  # palette applied
    for fmt in ("BMP", "GIF", "WEBP", "PPM"):
        b = io.BytesIO()
        Image.fromarray(noise(40, 50)).save(b, fmt)
        check_image(load_image(b.getvalue()))
    check_image(load_image(png_bytes(Image.fromarray(noise(40, 50) > 128))))


def test_alpha_is_composited_over_black() -> None:
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[:, :10] = (255, 255, 255, 0)      # transparent white
    rgba[:, 10:20] = (255, 255, 255, 255)  # opaque white
    rgba[:, 20:] = (0, 0, 0, 255)          # opaque black
    out = load_image(png_bytes(Image.fromarray(rgba)), size=None)
    np.testing.assert_allclose(out[0, [5, 15, 25]], [0.0, 1.0, 0.0], atol=1e-6)
    la = Image.fromarray(rgba[..., [0, 3]], mode="LA")
    out = load_image(png_bytes(la), size=None)
    np.testing.assert_allclose(out[0, [5, 15, 25]], [0.0, 1.0, 0.0], atol=1e-6)


def test_exif_orientation_is_applied() -> None:
    a = np.zeros((20, 40), np.uint8)  # stored landscape, bright block top-left
    a[:10, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = jpeg_bytes(Image.fromarray(a), exif=exif)
    out = load_image(data, size=None)
    check_image(out, (40, 20))  # displayed portrait
    assert out[:10, 10:].mean() > 0.8  # top-left moved to top-right
    assert out[:10, :10].mean() < 0.2 and out[20:].mean() < 0.2
    assert image_info(data)["shape"] == (20, 40)  # as stored


def test_multipage_tiff_slice_index() -> None:
    pages = [Image.fromarray(np.full((16, 16), v, np.uint8)) for v in (0, 255)]
    pages[0].paste(255, (0, 0, 8, 16))
    b = io.BytesIO()
    pages[0].save(b, "TIFF", save_all=True, append_images=pages[1:])
    first = load_image(b.getvalue(), size=None)
    assert first[:, :8].mean() == 1.0 and first[:, 8:].mean() == 0.0
    second = load_image(b.getvalue(), size=None, slice_index=1)
    assert (second == 0).all()  # constant page -> zeros
    with pytest.raises(ImageError):
        load_image(b.getvalue(), slice_index=5)


def test_pil_input_is_not_mutated() -> None:
    a = np.zeros((20, 40), np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6
    im = Image.open(io.BytesIO(jpeg_bytes(Image.fromarray(a), exif=exif)))
    check_image(load_image(im, size=None), (40, 20))
    assert im.size == (40, 20)


# --------------------------------------------------------------------------- DICOM

def _halves(left: int, right: int, dtype=np.uint16, shape=(32, 32)) -> np.ndarray:
    a = np.full(shape, left, dtype)
    a[:, shape[1] // 2:] = right
    return a


def test_dicom_monochrome1_is_inverted() -> None:
    px = _halves(100, 1000)
    m2 = load_image(dicom_bytes(px), size=None)
    m1 = load_image(dicom_bytes(px, photometric="MONOCHROME1"), size=None)
    check_image(m1, (32, 32))
    assert m2[:, :16].mean() == 0.0 and m2[:, 16:].mean() == 1.0
    assert m1[:, :16].mean() == 1.0 and m1[:, 16:].mean() == 0.0


def test_dicom_rescale_and_voi_window() -> None:
    px = np.zeros((30, 30), np.uint16)
    px[:, :10], px[:, 10:20], px[:, 20:] = 500, 525, 600  # HU = 2 * v - 1024: -24, 26, 176
    data = dicom_bytes(px, RescaleSlope=2, RescaleIntercept=-1024, WindowCenter=[40, 300],
                       WindowWidth=[400, 1500])
    out = load_image(data, size=None)
    hu = np.array([-24.0, 26.0, 176.0])
    expect = np.clip((hu - 39.5) / 399 + 0.5, 0, 1)  # first window, DICOM linear formula
    np.testing.assert_allclose(out[0, [5, 15, 25]], expect, atol=1e-5)
    over = load_image(data, size=None, window=(0, 100))
    np.testing.assert_allclose(over[0, [5, 15, 25]],
                               np.clip((hu + 0.5) / 99 + 0.5, 0, 1), atol=1e-5)
    info = image_info(data)
    assert info["format"] == "DICOM" and info["window"] == (40.0, 400.0)


def test_dicom_multiframe_middle_and_slice_index() -> None:
    frames = np.zeros((5, 16, 16), np.uint16)
    for k in range(5):
        frames[k, :, 3 * k:3 * k + 2] = 1000  # a bright column whose position encodes k
    data = dicom_bytes(frames, frames=5)
    mid = load_image(data, size=None)
    assert mid[:, 6:8].mean() == 1.0 and mid.sum() == 32
    assert load_image(data, size=None, slice_index=0)[:, 0:2].mean() == 1.0
    with pytest.raises(ImageError):
        load_image(data, slice_index=5)
    vol = load_volume(data)
    assert vol.shape == (5, 16, 16) and vol.dtype == np.float32
    assert all(vol[k, :, 3 * k].mean() == 1.0 for k in range(5))
    assert image_info(data)["n_slices"] == 5


def test_dicom_rgb_and_no_preamble() -> None:
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:, :8] = (255, 0, 0)
    rgb[:, 8:] = (0, 255, 0)
    out = load_image(dicom_bytes(rgb, photometric="RGB"), size=None)
    assert out[:, 8:].mean() > out[:, :8].mean()
    raw = dicom_bytes(_halves(0, 50), preamble=False)
    assert raw[128:132] != b"DICM"
    out = load_image(raw, size=None)
    assert out[:, :16].max() == 0.0 and out[:, 16:].min() == 1.0


def test_dicom_series_folder_sorted_by_position(tmp_path: Path) -> None:
    series = generate_uid()
    zs = [30.0, 10.0, 50.0, 20.0, 40.0]
    for i, z in enumerate(zs):
        px = np.full((16, 16), int(z), np.uint16)
        px[0, 0] = 0
        (tmp_path / f"img{9 - i}.dcm").write_bytes(dicom_bytes(
            px, SeriesInstanceUID=series, ImagePositionPatient=[0, 0, z],
            ImageOrientationPatient=[1, 0, 0, 0, 1, 0], InstanceNumber=i + 1))
    (tmp_path / "notes.txt").write_text("not a dicom")
    vol = load_volume(tmp_path)
    assert vol.shape == (5, 16, 16)
    means = vol[:, 1:, 1:].mean(axis=(1, 2))
    assert np.all(np.diff(means) > 0)  # inferior -> superior
    mid = load_image(tmp_path, size=None)
    check_image(mid, (16, 16))
    with pytest.raises(ImageError):
        load_volume(tmp_path, max_voxels=100)


def _testdata(name: str) -> str | None:
    try:
        from pydicom.data import get_testdata_file
        return get_testdata_file(name, download=False)
    except Exception:  # noqa: BLE001
        return None


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "rtdose.dcm",
                                  "MR_small_RLE.dcm", "JPEG2000.dcm", "examples_ybr_color.dcm"])
def test_pydicom_shipped_files(name: str) -> None:
    path = _testdata(name)
    if not path:
        pytest.skip(f"{name} not available offline")
    try:
        out = load_image(path)
    except ImageError as err:  # a codec may be missing: then a plain refusal is fine
        assert name == "JPEG2000.dcm", err
        check_message(err)
        return
    check_image(out)
    assert out.std() > 0.01


# --------------------------------------------------------------------------- NIfTI

def _phantom(shape=(20, 24, 9)) -> np.ndarray:
    """Volume whose slices differ and with a marker at patient-left (low x), anterior (high y)."""
    rng = np.random.default_rng(3)
    vol = rng.uniform(0, 10, shape).astype(np.float32)
    vol[:4, -4:, :] = 100.0
    vol += np.arange(shape[2], dtype=np.float32)[None, None, :] * 3
    return vol


def _minmax(a: np.ndarray) -> np.ndarray:
    return ((a - a.min()) / (a.max() - a.min())).astype(np.float32)


@pytest.mark.parametrize("gz", [False, True])
def test_nifti_3d_middle_slice_orientation(gz: bool) -> None:
    vol = _phantom()
    data = nifti_bytes(vol, gz=gz)
    out = load_image(data, size=None, normalize="minmax")
    check_image(out, (24, 20))  # (A-P rows, R-L columns)
    np.testing.assert_allclose(out, _minmax(vol[::-1, ::-1, 4].T), atol=1e-5)
    # radiological display: anterior at the top, patient's left on the image's right
    assert out[:4, -4:].mean() > 0.9
    k2 = load_image(data, size=None, normalize="minmax", slice_index=2)
    np.testing.assert_allclose(k2, _minmax(vol[::-1, ::-1, 2].T), atol=1e-5)
    check_image(load_image(data))
    with pytest.raises(ImageError):
        load_image(data, slice_index=9)
    info = image_info(data)
    assert info["n_slices"] == 9 and info["slice_index"] == 4 and info["shape"] == (20, 24, 9)


def test_nifti_orientation_from_affine_and_nifti2() -> None:
    vol = _phantom()
    ras = load_image(nifti_bytes(vol), size=None)
    las = load_image(nifti_bytes(vol[::-1].copy(), affine=np.diag([-1.0, 1, 1, 1])), size=None)
    np.testing.assert_allclose(las, ras, atol=1e-6)
    # stored as (y, x, z): the transposed axes are undone through the affine
    swapped = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], float)
    yxz = load_image(nifti_bytes(vol.transpose(1, 0, 2).copy(), affine=swapped), size=None)
    np.testing.assert_allclose(yxz, ras, atol=1e-6)
    np.testing.assert_allclose(load_image(nifti_bytes(vol, version=2), size=None), ras,
                               atol=1e-6)


def test_nifti_4d_first_volume_and_2d_and_scaling() -> None:
    vol = _phantom()
    four = np.stack([vol, -vol * 7 + 3], axis=-1)
    np.testing.assert_allclose(load_image(nifti_bytes(four, gz=True), size=None),
                               load_image(nifti_bytes(vol), size=None), atol=1e-6)
    flat = nifti_bytes(vol[:, :, :1])
    check_image(load_image(flat, size=None), (24, 20))
    img = nib.Nifti1Image(np.full((16, 16, 3), 10, np.int16), np.eye(4))
    img.header.set_slope_inter(2.0, -5.0)
    data = img.to_bytes()
    out = load_image(data, size=None, window=(15.0, 11.0))  # 10 * 2 - 5 = 15 -> centre
    np.testing.assert_allclose(out, 0.55, atol=1e-6)


def test_nifti_load_volume_matches_slices() -> None:
    vol = _phantom()
    data = nifti_bytes(vol, gz=True)
    v = load_volume(data, normalize="minmax")
    assert v.shape == (9, 24, 20) and v.dtype == np.float32
    assert v.min() == 0.0 and v.max() == 1.0
    np.testing.assert_allclose(_minmax(v[4]), load_image(data, size=None, normalize="minmax"),
                               atol=1e-5)
    with pytest.raises(ImageError):
        load_volume(data, max_voxels=1000)
    with pytest.raises(ImageError) as info:
        load_volume(png_bytes(Image.fromarray(noise(32, 32))))
    assert "2D" in check_message(info.value)


# --------------------------------------------------------------------------- NumPy

def test_npy_float_stack_and_rgb(tmp_path: Path) -> None:
    img = np.random.default_rng(4).normal(size=(50, 60)).astype(np.float64)
    path = tmp_path / "scan.npy"
    path.write_bytes(npy_bytes(img))
    check_image(load_image(path))
    np.testing.assert_allclose(load_image(path, size=None, normalize="minmax"), _minmax(img),
                               atol=1e-6)
    stack = np.zeros((5, 16, 16), np.uint8)
    stack[2, :, :8] = 200
    out = load_image(npy_bytes(stack), size=None)
    assert out[:, :8].mean() == 1.0 and out[:, 8:].mean() == 0.0
    np.testing.assert_array_equal(load_volume(npy_bytes(stack)).shape, (5, 16, 16))
    fortran = np.asfortranarray(img)
    np.testing.assert_allclose(load_image(npy_bytes(fortran), size=None),
                               load_image(img, size=None), atol=1e-6)
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[:, 10:] = 255
    out = load_image(npy_bytes(rgb), size=None)
    assert out[:, :10].max() == 0.0 and out[:, 10:].min() == 1.0
    huge = np.array([[1e300, -1e300] * 8] * 16)
    check_image(load_image(huge), 128)
