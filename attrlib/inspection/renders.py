"""Images with a known fingerprint, for the inspection: fresh simulator renders as image files that a run's
`ImageDataset` reads like any other (same decoding, crop or resize, patch grid).

    with tempfile.TemporaryDirectory() as folder:
        frame = known_images(params, list(run.config.heldout), generators, n=30, folder=folder)
        ds = ImageDataset(frame, run.data, ..., with_mask=True)

Each content subclass gets n clean images, and the *same* clean images are rendered through every generator
(the content swap needs exactly that; content reliance uses the held-out rows). The fingerprint share inside
the object mask is measured on the whole rendered image, before the run's input policy.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from ..simulator.known import draw_content, fingerprint_energy, render_content

KNOWN_COLUMNS = ("path", "generator", "subclass", "mask", "item", "instance", "fingerprint_share", "mask_area")


def known_images(params: dict, contents: Sequence[str], generators: Sequence[str], n: int,
                 folder: str | os.PathLike, instance: str | None = None) -> pd.DataFrame:
    """Render n clean images of each subclass in `contents` through every generator and write them (and their
    object masks) under `folder` as PNG: `<generator>/<subclass>/<item>.png`, masks under `_masks/`.

    instance: the cell whose instance of each generator renders the images (a subclass name: the benchmark
    renders cell (g, s) with g's instance s); None: each content subclass's own cell (a held-out subclass:
    the test images' instance). Returns a frame (KNOWN_COLUMNS; absolute paths) one row per image:
    item = the index of its clean image within its subclass (the same clean image for every generator),
    fingerprint_share = share of the fingerprint energy (x - 255 c squared, summed over channels) inside the
    object mask, mask_area = share of the image the mask covers.
    """
    if n < 1:
        raise ValueError(f"n={n}: render at least one image per subclass and generator")
    folder = Path(folder)
    rows = []
    for sub in contents:
        clean, masks = draw_content(sub, n, params)
        m = masks.double()
        area = m.flatten(1).mean(1)
        for g in generators:
            cell = sub if instance is None else instance
            x = render_content(clean, g, params, instance=cell, stream=(sub,))
            energy = fingerprint_energy(x, clean, params)
            total = energy.flatten(1).sum(1)
            share = (energy * m).flatten(1).sum(1) / total.clamp_min(1e-12)
            share = share.where(total > 0, share.new_full(share.shape, float("nan")))
            for k in range(n):
                rel = Path(g) / sub / f"{k:05d}.png"
                mask = masks[k].numpy().astype(np.uint8) * 255
                for path, pixels in ((folder / rel, x[k]), (folder / "_masks" / rel, mask)):
                    path.parent.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(pixels).save(path, format="PNG", compress_level=1)  # a temporary file: speed
                rows.append((str(folder / rel), g, sub, str(folder / "_masks" / rel), k, cell, float(share[k]),
                             float(area[k])))
    return pd.DataFrame(rows, columns=list(KNOWN_COLUMNS))


def render_key(params: dict) -> tuple:
    """The benchmark parameters that decide a fresh render (not the variant: both variants render alike)."""
    return tuple(params.get(k) for k in ("seed", "size", "strength", "instance_spread", "generator_version", "trace"))
