"""Fresh renders whose clean content is known: what only a simulator can give the inspection.

An image of the benchmark is x = round8(255 c + s R_g(c)) (see `families`); its fingerprint is the residual
x - 255 c, which needs the clean content c. Rather than replay the benchmark's random streams (an internal of
`synth` that rotations and test pools may change), the inspection renders new images of the same
distribution: the parameters of the benchmark's benchmark.json, content of a subclass drawn from its own
stream, rendered through a generator family and the instance of a chosen cell. Nothing here writes or
changes the benchmark's files.

    params = benchmark_params(root)                       # None: not the embedded benchmark's default variant
    clean, masks = draw_content("military_vehicle", 30, params)
    x = render_content(clean, "lsgm", params, instance="military_vehicle")
    energy = fingerprint_energy(x, clean, params)         # (n, S, S): where the fingerprint is

On a benchmark with the non-additive trace (benchmark.json `"trace": "pipeline"`) the image's content is
transformed too, alike for every family: the fingerprint is then x minus the family-free image (`trace_free`),
which `fingerprint_residual` and `fingerprint_energy` subtract when given the benchmark's `params`.
"""
from __future__ import annotations

import os
import zlib
from typing import Sequence

import numpy as np
import torch

from ..data.fingerprint import benchmark_file
from ..errors import DataError
from . import content, families
from .synth import GENERATOR_VERSION, read_benchmark

# First key of every stream drawn here: keeps these draws apart from synth's per-cell streams (5 or 6 keys
# starting with the benchmark seed), so a fresh render never repeats a benchmark image.
INSPECTION_STREAM = 0x15EC7


def _keys(parts: Sequence[int | str]) -> list[int]:
    """Seed-sequence entries: integers as they are, names by their CRC-32 (stable across runs and machines)."""
    return [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]


def benchmark_params(root: str | os.PathLike | None) -> dict | None:
    """The simulator's parameters of the benchmark folder `root` (its benchmark.json), or None where fresh
    renders cannot stand in for its images: a user's folder (no benchmark.json) or the realistic variant (its
    files are re-encoded and resized per generator). A benchmark.json of another generator version raises:
    fresh renders would not follow that folder's distribution."""
    params = read_benchmark(root)
    if params is None or not params.get("simulated") or "realistic" in params:
        return None
    if params.get("generator_version") != GENERATOR_VERSION:
        raise DataError(f"{benchmark_file(root)} was written by simulator {params.get('generator_version')!r}, this "
                        f"code renders {GENERATOR_VERSION!r}: fresh renders would not match its images; synthesise the benchmark "
                        "again (attrlib.simulator.synthesize(..., force=True))")
    return params


def draw_content(subclass: str, n: int, params: dict,
                 stream: Sequence[int | str] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """n clean images of `subclass` at the benchmark's size (float64 (n, 3, S, S) in [0, 1]) and their object
    masks (bool (n, S, S)), from a stream of the benchmark seed, the subclass and `stream` (integers or names)."""
    if subclass not in content.SUBCLASS_DRAWERS:
        raise DataError(f"subclass {subclass!r} has no content drawer; valid: {', '.join(content.SUBCLASS_DRAWERS)}")
    rng = np.random.default_rng(_keys([params["seed"], INSPECTION_STREAM, subclass, *stream]))
    return content.draw(subclass, n, params["size"], rng)


def render_content(clean: torch.Tensor, generator: str, params: dict, instance: str = "",
                   stream: Sequence[int | str] = ()) -> np.ndarray:
    """Clean content (n, 3, S, S) rendered through `generator`'s instance of the cell `instance` (a subclass
    name; "" the family's base model) at the benchmark's strength and instance spread: 8-bit images
    (n, S, S, 3), as the benchmark writes them. The noise comes from a stream of the benchmark seed, the
    generator, the instance and `stream` (integers or names)."""
    if generator not in families.FAMILY_CLASSES:
        raise DataError(f"generator {generator!r} is not a simulated family; valid: {', '.join(families.GENERATORS)}")
    rng = np.random.default_rng(_keys([params["seed"], INSPECTION_STREAM, generator, instance, *stream]))
    return families.render(generator, clean, params["strength"], rng, instance=instance,
                           spread=params.get("instance_spread", 0.0), trace=params.get("trace", "additive"))


def trace_free(clean: torch.Tensor, params: dict | None = None) -> torch.Tensor:
    """What an image of clean content c (n, 3, S, S) would be without a fingerprint, in grey levels (float64):
    255 c for an additive benchmark, the family-free pipeline image for a pipeline one (`params` with
    "trace": "pipeline"; `families.pipeline_image`)."""
    if params is not None and params.get("trace", "additive") == "pipeline":
        return families.pipeline_image(clean, None, 0.0)
    return 255.0 * clean.double()


def fingerprint_residual(images: np.ndarray, clean: torch.Tensor, params: dict | None = None) -> torch.Tensor:
    """x - 255 c in grey levels (n, 3, S, S), float64: the fingerprint as the file holds it (after rounding to
    8 bits and clipping; the rounding adds about 0.29 grey levels RMS to a fingerprint of `strength` RMS).
    With the `params` of a pipeline benchmark, x minus the family-free image (`trace_free`) instead."""
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).double()
    if x.shape != clean.shape:
        raise ValueError(f"images {tuple(x.shape)} (as n, 3, S, S) and clean content {tuple(clean.shape)} differ")
    return x - trace_free(clean, params)


def fingerprint_energy(images: np.ndarray, clean: torch.Tensor, params: dict | None = None) -> torch.Tensor:
    """Where the fingerprint is: the squared residual summed over colour channels, per pixel (n, S, S)."""
    return fingerprint_residual(images, clean, params).pow(2).sum(1)
