"""What an image's pixels say about its history: a perceptual hash (near-duplicates) and JPEG blockiness.

Real folders hold near-duplicates (one seed rendered twice, quantisation variants of one prompt and seed,
style-mixing rows of one grid) and lossless files cut from JPEG grids, whose 8x8 block artefacts a model can
learn instead of the generator's trace. Both are read from the decoded pixels, once per image:

    stats = pixel_statistics(data.frame)        # path, phash, blockiness (cached per file in this process)
    groups = near_duplicate_groups(stats)       # one group id per row: images within MAX_HASH_DISTANCE bits

- `perceptual_hash`: the DCT pHash (Zauner 2010, as the `imagehash` package computes it): greyscale, resized to
  32x32, 2-D DCT, the 8x8 lowest frequencies less the DC term (63 bits) compared with their median. A flat
  image (thumbnail std below FLAT_STD) has no hash: every flat image would otherwise look alike. Nor has an
  image with a side under MIN_HASH_SIDE: its thumbnail is the image itself, whose layout alone (a blob on a
  background) makes look-alikes of unrelated images (the tests' 32-px folders: 1 pair in 4 within a cell).
- `blockiness`: JPEG history, with the grid found wherever it lies (a tile cut from a JPEG grid is not
  aligned to its own 8x8 grid). JPEG quantisation zeroes the high frequencies of each 8x8 block, and the
  2-D block's zeros survive in the 1-D DCT of its 8-pixel rows (the transform is separable), so at the grid's
  phase few row segments keep a high-frequency coefficient above rounding noise, at the seven other phases
  many do. Per direction (rows, columns): the share of high-frequency coefficients above TEXTURED at the
  second lowest phase over that at the lowest; the score is the smaller of the two directions (a stripe of
  period 8 in one direction is not a JPEG grid). About 1.00 for an image never JPEG-compressed (at most 1.05
  on realdev's clean PNG generators), 1.07 at quality 95, 1.7 at 90, 4 at 75; at least JPEG_HISTORY counts as
  JPEG history. On realdev the tiles of JPEG grids score 1.07 (stylegan2's night cities) to 3.6.
"""
from __future__ import annotations

import os
from typing import Iterable

import numpy as np
import pandas as pd
from PIL import Image
from scipy.fft import dct, dctn
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from ..errors import DataError
from .images import load_image

HASH_SIZE = 8             # the 8x8 lowest DCT frequencies (63 bits without the DC term)
HASH_THUMB = 32           # the thumbnail the DCT is taken of
MAX_HASH_DISTANCE = 6     # bits (of 63) within which two images are near-duplicates: on realdev this joins the
                          # stable_diffusion Core ML pairs and the sd.cpp quantisation variants, no two unrelated images
FLAT_STD = 2.0            # grey levels: a thumbnail flatter than this has no meaningful hash
MIN_HASH_SIDE = 48        # pixels: a smaller image is not hashed (realdev's smallest images are 64 px)
BLOCK = 8
HIGH_FREQUENCIES = slice(4, BLOCK)   # the DCT coefficients JPEG quantisation zeroes first
BLOCKINESS_CROP = 256     # the central crop scored (enough 8x8 segments; bounded cost on large images)
JPEG_HISTORY = 1.08       # blockiness at or above this: the pixels were JPEG-compressed once
TEXTURED = 0.75           # |DCT coefficient| (grey levels) above rounding noise: the segment has that frequency
SHARE_FLOOR = 0.005       # added to both shares: a nearly flat image (hardly any textured segment) scores ~1
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
_CACHE: dict[tuple, tuple] = {}     # (path, size, mtime) -> (hash bits or None, blockiness)


def perceptual_hash(image: np.ndarray) -> np.ndarray | None:
    """63 booleans (the DCT pHash less its DC term) of an HxWx3 uint8 image; None for a flat or small image."""
    if min(image.shape[:2]) < MIN_HASH_SIDE:
        return None
    grey = Image.fromarray(np.ascontiguousarray(image)).convert("L").resize((HASH_THUMB, HASH_THUMB),
                                                                              Image.Resampling.LANCZOS)
    thumb = np.asarray(grey, dtype=np.float64)
    if thumb.std() < FLAT_STD:
        return None
    low = dctn(thumb, norm="ortho")[:HASH_SIZE, :HASH_SIZE].ravel()[1:]
    return low > np.median(low)


def _phase_texture(y: np.ndarray, axis: int) -> np.ndarray:
    """The share of high-frequency 1-D DCT coefficients of the 8-pixel segments along `axis` above TEXTURED,
    for each of the 8 phases."""
    y = np.moveaxis(y, axis, -1)
    share = np.empty(BLOCK)
    for phase in range(BLOCK):
        k = (y.shape[-1] - phase) // BLOCK
        segments = y[..., phase:phase + BLOCK * k].reshape(*y.shape[:-1], k, BLOCK)
        share[phase] = (np.abs(dct(segments, axis=-1, norm="ortho")[..., HIGH_FREQUENCIES]) > TEXTURED).mean()
    return share


def blockiness(image: np.ndarray) -> float:
    """JPEG history of an HxWx3 uint8 image (see the module docstring): ~1.0 clean, >= JPEG_HISTORY compressed.
    NaN for an image under 2 blocks (16 px) in either direction."""
    h, w = image.shape[:2]
    if min(h, w) < 2 * BLOCK:
        return float("nan")
    top, left = max(0, (h - BLOCKINESS_CROP) // 2), max(0, (w - BLOCKINESS_CROP) // 2)
    crop = image[top:top + BLOCKINESS_CROP, left:left + BLOCKINESS_CROP]
    luma = crop.astype(np.float32) @ _LUMA
    scores = []
    for axis in (0, 1):
        lowest, second = np.sort(_phase_texture(luma, axis))[:2]
        scores.append((second + SHARE_FLOOR) / (lowest + SHARE_FLOOR))
    return float(min(scores))


def _key(path: str) -> tuple:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


def image_statistics(path: str | os.PathLike) -> tuple[np.ndarray | None, float]:
    """(perceptual hash, blockiness) of one image file, decoded once through `load_image` (DataError naming
    it when unreadable); cached in this process by path, size and modification time."""
    path = str(path)
    key = _key(path)
    if key not in _CACHE:
        image = load_image(path)
        _CACHE[key] = (perceptual_hash(image), blockiness(image))
    return _CACHE[key]


def pixel_statistics(frame: pd.DataFrame, on_bad: str = "raise") -> pd.DataFrame:
    """Per row of `frame` (a `path` column): `phash` (63 booleans, or None for a flat image) and `blockiness`,
    and `jpeg_history` (blockiness >= JPEG_HISTORY), in the frame's order. on_bad: "raise" (a DataError naming
    an unreadable file) or "skip" (no hash and NaN blockiness for it; `verify_images` lists it later)."""
    hashes, scores = [], []
    for path in frame["path"]:
        try:
            h, b = image_statistics(path)
        except DataError:
            if on_bad == "raise":
                raise
            h, b = None, float("nan")
        hashes.append(h)
        scores.append(b)
    out = pd.DataFrame({"path": frame["path"].to_numpy(), "phash": hashes, "blockiness": scores},
                       index=frame.index)
    out["jpeg_history"] = out["blockiness"] >= JPEG_HISTORY
    return out


def near_duplicate_groups(hashes: Iterable[np.ndarray | None], max_distance: int = MAX_HASH_DISTANCE,
                          within: Iterable | None = None) -> np.ndarray:
    """A group id per image (0, 1, ... in order of first appearance): the connected components of "the hashes
    differ in at most `max_distance` bits". An image without a hash (flat, small) is a group of its own.
    within: a label per image (the generator): only images with the same label are joined. A near-duplicate
    is one generator's output twice (a seed rendered again, a quantised variant); two generators' look-alikes
    (one prompt, one reference image, a synthetic folder's flat content) leak no label between splits."""
    hashes = list(hashes)
    n = len(hashes)
    labels = np.zeros(n, dtype=np.int64) if within is None else pd.factorize(pd.Series(list(within)))[0]
    rows, cols = [], []
    for label in np.unique(labels):
        have = [i for i, h in enumerate(hashes) if h is not None and labels[i] == label]
        if not have:
            continue
        bits = np.stack([hashes[i] for i in have]).astype(np.uint8)
        packed = np.packbits(bits, axis=1)
        # Hamming distances by popcount of XOR, in chunks so that memory stays O(chunk x n)
        table = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1)
        for start in range(0, len(have), 512):
            block = packed[start:start + 512]
            distance = table[np.bitwise_xor(block[:, None, :], packed[None, :, :])].sum(-1)
            a, b = np.nonzero(distance <= max_distance)
            keep = a + start < b
            rows.extend(np.asarray(have)[a[keep] + start])
            cols.extend(np.asarray(have)[b[keep]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, components = connected_components(graph, directed=False)
    # renumber by first appearance, so that ids do not depend on scipy's numbering
    order: dict = {}
    return np.array([order.setdefault(c, len(order)) for c in components], dtype=np.int64)


def duplicate_table(frame: pd.DataFrame, groups: np.ndarray) -> pd.DataFrame:
    """The groups with more than one image: group, images, generators, subclasses, example paths (file names)."""
    f = frame.assign(_group=groups)
    sizes = f["_group"].value_counts()
    rows = []
    for g in sorted(sizes[sizes > 1].index, key=lambda g: (-sizes[g], g)):
        members = f[f["_group"] == g]
        names = [_short(os.path.basename(p)) for p in members["path"].iloc[:3]]
        rows.append({"group": len(rows) + 1, "images": len(members),
                     "generators": ", ".join(sorted(members["generator"].astype(str).unique())),
                     "subclasses": ", ".join(sorted(members["subclass"].astype(str).unique())),
                     "examples": ", ".join(names) + (", ..." if len(members) > 3 else "")})
    return pd.DataFrame(rows, columns=["group", "images", "generators", "subclasses", "examples"])


def _short(name: str, width: int = 48) -> str:
    return name if len(name) <= width else name[:20] + "..." + name[-(width - 23):]
