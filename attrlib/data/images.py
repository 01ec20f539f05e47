"""Safe image decoding: any file a user brings becomes an HxWx3 uint8 array, or a DataError naming it.

Generator fingerprints live in the exact pixel values, so decoding never resamples and never composites:
alpha is dropped (the colour channels are what the generator wrote), palettes are expanded, 16-bit data
is scaled to 8 bits (not clipped, which would turn most 16-bit images white), and EXIF orientation is
ignored on purpose (rotating would move pixels away from their mask).

Every failure a real folder produces (empty file, truncated download, an HTML page saved as `.png`,
a decompression bomb) is turned into a `DataError` that names the file, says what is wrong and what
to do, so a training run never starts on a silently wrong image.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from ..errors import DataError

# Suffixes read as images (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Largest image (width * height) we agree to decode. Pillow's own guard warns at ~89 Mpx and fails at
# twice that; we fail earlier with a message saying what to do. A 64 Mpx RGB image is 192 MiB decoded.
MAX_IMAGE_PIXELS = 64_000_000


def is_image_path(path: str | os.PathLike) -> bool:
    """True when the file's suffix is one of IMAGE_EXTENSIONS (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def _open(path: str | os.PathLike, max_pixels: int | None) -> Image.Image:
    """Open (header only) and run the checks that need no decoding: existence, emptiness, format, size."""
    path = Path(path)
    limit = MAX_IMAGE_PIXELS if max_pixels is None else int(max_pixels)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise DataError(f"image file {path} does not exist; restore it or remove it from the data") from None
    except OSError as e:
        raise DataError(f"image file {path} cannot be read ({e}); check its permissions") from None
    if not path.is_file():
        raise DataError(f"image path {path} is not a regular file; point it at an image file")
    if size == 0:
        raise DataError(f"image file {path} is empty (0 bytes), probably an interrupted copy or download; "
                        "replace it with the real image or delete it (or load with on_bad='skip')")
    try:
        with warnings.catch_warnings():
            # Our own limit below gives the actionable message; Pillow's warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise _bomb(path, str(e), limit) from None
    except UnidentifiedImageError:
        raise _unreadable(path) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise _broken(path, e) from None
    w, h = im.size
    if w * h > limit:
        im.close()
        raise _bomb(path, f"{w}x{h} = {w * h} pixels", limit)
    if w == 0 or h == 0:
        im.close()
        raise DataError(f"image file {path} has zero size ({w}x{h}); replace or delete it")
    return im


# File signatures of the formats we read: they tell "a corrupt PNG" from "not an image at all".
_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"BM": "BMP", b"II*\x00": "TIFF",
               b"MM\x00*": "TIFF", b"RIFF": "WebP"}


def _unreadable(path: Path) -> DataError:
    with open(path, "rb") as fh:
        head = fh.read(16)
    kind = next((name for sig, name in _SIGNATURES.items() if head.startswith(sig)), None)
    if kind:
        return DataError(f"image file {path} is corrupt: it starts like a {kind} file but its header cannot be "
                         "decoded; replace or delete it (or load with on_bad='skip')")
    return DataError(f"file {path} is not an image: it has an image extension but its content starts with "
                     f"{head[:12]!r}, not a PNG/JPEG/BMP/TIFF/WebP signature (an HTML error page or a text "
                     "file saved under an image name?); replace or delete it (or load with on_bad='skip')")


def _broken(path: Path, e: Exception) -> DataError:
    text = str(e) or type(e).__name__
    truncated = "truncat" in text.lower() or isinstance(e, EOFError)
    what = "truncated (the file ends before the image data does)" if truncated else f"corrupt ({text})"
    return DataError(f"image file {path} is {what}; replace or delete it (or load with on_bad='skip')")


def _bomb(path: Path, what: str, limit: int) -> DataError:
    return DataError(f"image file {path} is too large to decode safely ({what}; the limit is {limit} pixels): "
                     "it may be a decompression bomb. If it is a genuine image, downscale it, or raise "
                     "attrlib.data.images.MAX_IMAGE_PIXELS (or pass max_pixels=)")


def image_size(path: str | os.PathLike, max_pixels: int | None = None) -> tuple[int, int]:
    """(height, width) from the file's header, without decoding the pixels."""
    im = _open(path, max_pixels)
    w, h = im.size
    im.close()
    return h, w


def _decode(path: Path, im: Image.Image) -> None:
    """Force the full decode so truncated or corrupt data fails here and not later inside a batch."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Another library switched on Pillow's "pad truncated images with grey" mode; that would hand us
        # a silently wrong image, so we refuse rather than train on it.
        raise DataError("PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True in this process, so truncated images "
                        f"would decode silently (while reading {path}); set it back to False")
    try:
        im.load()
    except Image.DecompressionBombError as e:
        raise _bomb(path, str(e), MAX_IMAGE_PIXELS) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise _broken(path, e) from None


def _to_rgb_uint8(path: Path, im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        a = np.asarray(im)
        if mode.startswith("I;16"):
            a = a.astype(np.float32) / 257.0             # 65535 -> 255, exact for 8-bit data stored as 16-bit
        elif mode == "I":
            # 32-bit integer pixels say nothing of their range; read it from the values: 8-bit data saved as
            # int32 stays as is, 16-bit data (older Pillow opens 16-bit PNGs as "I") is scaled by 255/65535,
            # anything wider is mapped from the full int32 range.
            a = a.astype(np.float64)
            lo, hi = a.min(), a.max()
            if lo >= 0 and hi <= 255:
                pass
            elif lo >= 0 and hi <= 65535:
                a = a / 257.0
            else:
                a = (a + 2.0 ** 31) / (2.0 ** 32 - 1) * 255.0
        else:  # F: float images are [0, 1] or [0, 255] by convention
            a = a.astype(np.float64)
            a = np.nan_to_num(a)
            a = a * 255.0 if a.max() <= 1.0 else a
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[:, :, None], 3, axis=2))
    if mode != "RGB":
        try:
            with warnings.catch_warnings():
                # "Palette images with transparency expressed in bytes should be converted to RGBA": we
                # drop alpha anyway, so the warning says nothing useful.
                warnings.simplefilter("ignore")
                im = im.convert("RGB")
        except (ValueError, OSError) as e:
            raise DataError(f"image file {path} has colour mode {mode!r}, which cannot be converted to RGB "
                            f"({e}); convert it to an RGB PNG") from None
    a = np.array(im, dtype=np.uint8)  # a writable copy: torch.from_numpy warns on read-only arrays
    if a.ndim != 3 or a.shape[2] != 3:
        raise DataError(f"image file {path} decoded to an array of shape {a.shape}, not HxWx3; convert it to an RGB PNG")
    return np.ascontiguousarray(a)


def load_image(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 array (any size, any mode); raise DataError naming the file.

    Modes: RGB, RGBA/LA/PA (alpha dropped), L, 1, P (palette expanded), CMYK, YCbCr, I;16 (scaled by
    255/65535), I (range read from the values: 8-bit, 16-bit or 32-bit), F ([0, 1] or [0, 255]).
    Multi-frame files give their first frame. 48/64-bit RGB(A) PNGs are reduced to 8 bits by Pillow itself.
    """
    path = Path(path)
    im = _open(path, max_pixels)
    try:
        _decode(path, im)
        return _to_rgb_uint8(path, im)
    finally:
        im.close()


def load_mask(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """Decode an object mask to an HxW uint8 array (255 = object); colour masks are reduced to luminance."""
    path = Path(path)
    im = _open(path, max_pixels)
    try:
        _decode(path, im)
        if im.mode.startswith("I;16") or im.mode in ("I", "F"):
            return _to_rgb_uint8(path, im)[:, :, 0]
        if im.mode != "L":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                im = im.convert("L")
        return np.ascontiguousarray(np.array(im, dtype=np.uint8))
    finally:
        im.close()
