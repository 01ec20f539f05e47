"""The realistic variant of the SIMULATED benchmark: a folder that looks like a user's real generated images.

`synthesize(out, realistic=True)` (CLI: `attrlib synth --realistic`) writes the same generators, subclasses,
ground truth and `_masks/` as the default benchmark, but with the file properties of a real folder of
generated images that break naive pipelines (issue 10): per-generator image sizes (most larger than the
model's 64-px crop, a few smaller, some non-square such as 3:1 panoramas), per-generator file formats (JPEG
at generator-typical qualities, RGB and RGBA PNG, a few palette, grayscale or 16-bit PNGs), unequal counts per
generator, generators without images of some training subclass and a held-out subclass that some generators
lack. The profiles below were written down once, before any technique was tried on them, and are not tuned.

How an image is made: the content and the family's fingerprint are computed on a square of side
max(height, width) (rounded up to a multiple of 8, at least 16; `content.draw` and `families.render` work on
squares), exactly as a default benchmark of that side would be (the fingerprint is calibrated at that side),
then cropped to height x width around the centre with offsets rounded down to a multiple of 8 (the crop keeps
the family's upsampling grid aligned with the image's top-left corner, as in a real generator's output),
THEN encoded. The encoding is part of the data, as in reality: JPEG compression, the palette quantisation and
the conversion to grayscale change pixels; RGBA adds an opaque alpha; 16-bit PNGs are grayscale (Pillow cannot
write 16-bit RGB), luma x 257. Masks are 8-bit PNGs at the image's own size.

Sizes are stated for the model's 64-px crop (`REFERENCE_CROP`); the benchmark's `size` parameter is the crop
the folder is made for, and every height and width is scaled by size/64 (so `size=16` makes a fast test folder
with the same structure). Counts: `REALISTIC_TRAIN`/`REALISTIC_TEST` at the default scale (1/50), multiplied by
scale/(1/50) otherwise. Sizes and formats are drawn per image by stratified sampling (each share within one
image of its expected count in every cell), independently of each other and of the content.

PLANTED SHORTCUTS (deliberate: a shortcut audit must find them). File format, JPEG quality, image size and
aspect ratio tell generators apart without looking at a fingerprint, as they do in real folders:

| generator           | sizes at a 64-px crop                                  | files                                             |
|---------------------|--------------------------------------------------------|---------------------------------------------------|
| guided_diffusion    | 256x256 (90 %), 128x128                                | PNG RGB 85 %, PNG RGBA 15 %                        |
| latent_diffusion    | 256x256 (50 %), 512x512 (30 %), 384x512 (h x w, 20 %)  | PNG RGB 60 %, JPEG q75-90 40 %                    |
| lsgm                | 256x256 (70 %), 32x32 (30 %, under the crop)           | PNG RGB 80 %, PNG P (palette) 10 %, PNG L 10 %     |
| stylegan2           | 256x256 (50 %), 512x512 (30 %), 384x512 (20 %)         | PNG RGB 80 %, PNG RGBA 10 %, PNG 16-bit grey 10 %  |
| stylegan3           | 512x512 (85 %), 256x256                                | JPEG q90-95 85 %, PNG RGB 15 %                    |
| taming_transformers | 48-1024 mixed, 256x768 panoramas (3:1), 333x500       | PNG RGB 60 %, JPEG q70-85 30 %, PNG P 5 %, RGBA 5 % |

Held-out military vehicles exist for latent_diffusion, stylegan2, stylegan3 and taming_transformers only; lsgm
has faces only (the smallest generator). The same table is written to benchmark.json (`realistic`, with the
sizes in pixels at the folder's `size`), and what was drawn, file by file, is summarised there under `files`.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from . import content, families

# Bump when a change here changes the files: part of the cache key (benchmark.json's `realistic` section).
REALISTIC_VERSION = "real-2"  # real-2: held-out images are split "pool" (pool_NNNNN), pixels unchanged
REFERENCE_CROP = 64  # the model crop the sizes below are stated for; a folder for crop `size` scales them by size/64

# Training images per generator and subclass at the default scale (val: 20 % more, as in the default variant).
REALISTIC_TRAIN = {
    "guided_diffusion":    {"horse": 30, "bed": 25},
    "latent_diffusion":    {"face": 35, "bed": 15, "church": 15},
    "lsgm":                {"face": 12},
    "stylegan2":           {"horse": 12, "face": 12, "church": 12, "cat": 12, "car": 12},
    "stylegan3":           {"face": 45, "animal_face": 25},
    "taming_transformers": {"face": 40, "cat": 8},
}
# Held-out images (split "pool") per generator at the default scale; guided_diffusion and lsgm have none.
# Only the held-out subclass has a pool here: rotations are the default benchmark's.
REALISTIC_TEST = {"latent_diffusion": 12, "stylegan2": 10, "stylegan3": 10, "taming_transformers": 8}

# Per generator: sizes as (height, width, share) at a 64-px crop; formats as (kind, share); JPEG quality range.
# Kinds: png (8-bit RGB), rgba (8-bit RGBA, opaque), l (8-bit grayscale), p (palette, 256 colours),
# png16 (16-bit grayscale), jpeg (4:2:0, baseline).
PROFILES = {
    "guided_diffusion": dict(sizes=((256, 256, 0.9), (128, 128, 0.1)),
                             formats=(("png", 0.85), ("rgba", 0.15)), jpeg_quality=None),
    "latent_diffusion": dict(sizes=((256, 256, 0.5), (512, 512, 0.3), (384, 512, 0.2)),
                             formats=(("png", 0.6), ("jpeg", 0.4)), jpeg_quality=(75, 90)),
    "lsgm": dict(sizes=((256, 256, 0.7), (32, 32, 0.3)),
                 formats=(("png", 0.8), ("p", 0.1), ("l", 0.1)), jpeg_quality=None),
    "stylegan2": dict(sizes=((256, 256, 0.5), (512, 512, 0.3), (384, 512, 0.2)),
                      formats=(("png", 0.8), ("rgba", 0.1), ("png16", 0.1)), jpeg_quality=None),
    "stylegan3": dict(sizes=((512, 512, 0.85), (256, 256, 0.15)),
                      formats=(("jpeg", 0.85), ("png", 0.15)), jpeg_quality=(90, 95)),
    "taming_transformers": dict(sizes=((48, 48, 0.1), (64, 64, 0.15), (128, 128, 0.15), (256, 256, 0.2),
                                       (512, 512, 0.1), (1024, 1024, 0.05), (256, 768, 0.2), (333, 500, 0.05)),
                                formats=(("png", 0.6), ("jpeg", 0.3), ("p", 0.05), ("rgba", 0.05)),
                                jpeg_quality=(70, 85)),
}
# What each kind is on disk: (file format, Pillow mode after reading), for benchmark.json and the audit.
KINDS = {"png": ("PNG", "RGB"), "rgba": ("PNG", "RGBA"), "l": ("PNG", "L"), "p": ("PNG", "P"),
         "png16": ("PNG", "I;16"), "jpeg": ("JPEG", "RGB")}


def scaled(pixels: int, size: int) -> int:
    """A height or width stated for a 64-px crop, for a folder made for crop `size` (rounded half up, >= 1)."""
    return max(1, (pixels * size + REFERENCE_CROP // 2) // REFERENCE_CROP)


def spec(size: int) -> dict:
    """The `realistic` section of benchmark.json: every planted property, with sizes in pixels at `size`."""
    generators = {}
    for g, p in PROFILES.items():
        generators[g] = {
            "sizes": [{"height": scaled(h, size), "width": scaled(w, size), "share": s} for h, w, s in p["sizes"]],
            "formats": [{"kind": k, "format": KINDS[k][0], "mode": KINDS[k][1], "share": s} for k, s in p["formats"]],
            "jpeg_quality": list(p["jpeg_quality"]) if p["jpeg_quality"] else None,
            "heldout_images": g in REALISTIC_TEST,
        }
    return {"version": REALISTIC_VERSION, "reference_crop": REFERENCE_CROP,
            "note": "planted shortcuts: format, JPEG quality, size and aspect ratio differ by generator "
                    "(attrlib.simulator.realistic)", "generators": generators}


def _stratified(rng: np.random.Generator, n: int, shares) -> np.ndarray:
    """n category indices whose counts are within one of n * share, in random order."""
    cum = np.cumsum(np.asarray(shares, dtype=np.float64))
    picks = np.searchsorted(cum / cum[-1], (np.arange(n) + rng.uniform()) / n, side="right")
    return rng.permutation(np.minimum(picks, len(cum) - 1))


def plan_cell(generator: str, n: int, size: int, rng: np.random.Generator) -> list[dict]:
    """Per image of a cell: height, width, kind and JPEG quality (None for PNG), from the generator's profile."""
    p = PROFILES[generator]
    sizes = _stratified(rng, n, [s for _, _, s in p["sizes"]])
    kinds = _stratified(rng, n, [s for _, s in p["formats"]])
    lo, hi = p["jpeg_quality"] or (0, 0)
    quality = rng.integers(lo, hi + 1, n)
    plan = []
    for j in range(n):
        h, w, _ = p["sizes"][sizes[j]]
        kind = p["formats"][kinds[j]][0]
        plan.append({"height": scaled(h, size), "width": scaled(w, size), "kind": kind,
                     "quality": int(quality[j]) if kind == "jpeg" else None})
    return plan


def _side(height: int, width: int) -> int:
    """The square the content and fingerprint are made on: a multiple of 8 (the families' latent grid), >= 16."""
    return max(16, -(-max(height, width) // 8) * 8)


def write_cell(root: Path, params: dict, generator: str, subclass: str, split: str, n: int,
               rng: np.random.Generator, bar=None, instance: str | None = None,
               prefix: str | None = None) -> list[tuple]:
    """Make and write the n images (and masks) of one cell and split; return their manifest rows.
    Content `subclass`, rendered by the model of cell (generator, instance) (default: the subclass's own);
    files named <prefix>_<NNNNN> (default prefix: the split)."""
    instance, prefix = instance or subclass, prefix or split
    plan = plan_cell(generator, n, params["size"], rng)
    rows = [None] * n
    by_side: dict[int, list[int]] = {}
    for j, item in enumerate(plan):
        by_side.setdefault(_side(item["height"], item["width"]), []).append(j)
    for side in sorted(by_side):
        members = by_side[side]
        chunk = max(1, 64 * 64 * 64 // side ** 2)  # bounded memory (~0.5 GB) at any side
        for lo in range(0, len(members), chunk):
            batch = members[lo: lo + chunk]
            clean, masks = content.draw(subclass, len(batch), side, rng)
            images = families.render(generator, clean, params["strength"], rng, instance=instance,
                                     spread=params["instance_spread"], trace=params.get("trace", "additive"))
            masks = masks.numpy().astype(np.uint8) * 255
            for k, j in enumerate(batch):
                item = plan[j]
                h, w = item["height"], item["width"]
                top, left = (side - h) // 2 // 8 * 8, (side - w) // 2 // 8 * 8
                stem = f"{prefix}_{j:05d}"
                rel = f"{generator}/{subclass}/{stem}{'.jpg' if item['kind'] == 'jpeg' else '.png'}"
                rel_mask = f"_masks/{generator}/{subclass}/{stem}.png"
                encode(root / rel, images[k, top: top + h, left: left + w], item["kind"], item["quality"])
                encode(root / rel_mask, masks[k, top: top + h, left: left + w], "png")
                rows[j] = (rel, generator, subclass, split, rel_mask, item)
            if bar is not None:
                bar.update(len(batch))
    return rows


def encode(path: Path, array: np.ndarray, kind: str, quality: int | None = None) -> None:
    """Save an 8-bit RGB (or a mask's grey) array as `kind`; fixed settings and no metadata, so the bytes
    depend on the pixels only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(np.ascontiguousarray(array))
    if kind == "jpeg":
        im.save(path, format="JPEG", quality=quality, subsampling=2, optimize=False, progressive=False)
        return
    if kind == "rgba":
        im = Image.fromarray(np.dstack([array, np.full(array.shape[:2], 255, np.uint8)]))
    elif kind == "l":
        im = im.convert("L")
    elif kind == "p":
        im = im.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    elif kind == "png16":
        im = Image.fromarray(np.asarray(im.convert("L"), dtype=np.uint16) * 257)
    elif kind != "png":
        raise ValueError(f"unknown file kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    im.save(path, format="PNG", compress_level=6)


def summary(rows: list[tuple]) -> dict:
    """What was written, per generator: image count, kinds, JPEG qualities and sizes (height x width)."""
    out = {}
    for g in sorted({r[1] for r in rows}):
        items = [r[5] for r in rows if r[1] == g]
        quality = [it["quality"] for it in items if it["quality"] is not None]
        out[g] = {"n_images": len(items),
                  "kinds": dict(sorted(Counter(it["kind"] for it in items).items())),
                  "jpeg_quality": [min(quality), max(quality)] if quality else None,
                  "sizes": dict(sorted(Counter(f"{it['height']}x{it['width']}" for it in items).items(),
                                       key=lambda kv: -kv[1])),
                  "subclasses": dict(sorted(Counter(r[2] for r in rows if r[1] == g).items()))}
    return out
