"""Shared fixtures. `tiny_data`: a few hundred 32x32 PNGs in the layout attrlib reads, made once per session.

Six generators, three training subclasses with a generator x subclass bias (as in seed 002, some cells are
empty) and one held-out subclass seen by every generator. Each generator adds its own periodic pattern
(the "fingerprint"); each subclass is a flat colour plus a blob (the "content").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

TINY_GENERATORS = ("guided_diffusion", "latent_diffusion", "lsgm", "stylegan2", "stylegan3", "taming_transformers")
TINY_SUBCLASSES = ("car", "face", "horse")
TINY_HELDOUT = "military_vehicle"
# generator -> training subclasses it has (every one has the held-out subclass too, for the test split)
TINY_CELLS = {
    "guided_diffusion": ("horse",),
    "latent_diffusion": ("face", "horse"),
    "lsgm": ("face",),
    "stylegan2": ("car", "face", "horse"),
    "stylegan3": ("face",),
    "taming_transformers": ("car", "face"),
}
TINY_PER_CELL = 8


def make_tiny_data(root: Path, per_cell: int = TINY_PER_CELL, size: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    colours = {s: rng.uniform(0.2, 0.8, 3) for s in (*TINY_SUBCLASSES, TINY_HELDOUT)}
    for gi, gen in enumerate(TINY_GENERATORS):
        period = 2 + gi % 3
        pattern = (((xx // (1 + gi // 3)) % period == 0).astype(float) - 0.5)[..., None] * rng.uniform(0.5, 1.0, 3)
        for sub in (*TINY_CELLS[gen], TINY_HELDOUT):
            folder = root / gen / sub
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_cell):
                cy, cx = rng.integers(8, size - 8, 2)
                blob = (((yy - cy) ** 2 + (xx - cx) ** 2) < 36).astype(float)[..., None]
                img = colours[sub] + 0.25 * blob + 0.12 * pattern + rng.normal(0, 0.03, (size, size, 3))
                Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"{k:03d}.png")
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    return make_tiny_data(tmp_path_factory.mktemp("tiny_data"))
