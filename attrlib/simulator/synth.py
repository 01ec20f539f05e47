"""Assemble the SIMULATED benchmark on disk: seed 002's biased generator x subclass matrix, scaled down.

`synthesize(out, ...)` writes

    out/<generator>/<subclass>/<split>_<NNNNN>.png          the images (8-bit RGB)
    out/_masks/<generator>/<subclass>/<split>_<NNNNN>.png   their object masks (8-bit, 255 = object)
    out/manifest.csv                                        path, generator, subclass, split, mask, instance
    out/benchmark.json                                      the parameters: the cache key

Splits: `train` and `val` (in-distribution: the variant's generator x subclass cells) and `pool`: a test
pool for EVERY subclass (the 7 training subclasses and seed 002's military vehicles) and every generator,
seed 002's military-vehicle counts each. The data loader makes the held-out subclass's pool the test set
and ignores the other pools, so any subclass can be held out (leave-one-subclass-out rotation). Pool images
come from one random stream whatever the variant: every variant holds byte-identical pools, so the
baseline and the oracles are scored on the same images.

Variants (training sets): `biased` follows seed 002's training matrix; `unbiased` spreads the same total
uniformly over all 6 x 7 generator x subclass cells (the oracle's training set); `matched` keeps the
biased variant's total per generator and its cell instances (each generator x subclass cell is its own model
of the family, `families.family`), but renders every training subclass's content through every one of
them, uniformly: the instance-matched oracle. The unbiased oracle sees each family through all 7 of its
instances where the biased training set sees 1-5, so "gap to the unbiased oracle" mixes content bias with
instance diversity; the matched oracle removes the content bias only. The manifest's `instance` column
names the subclass whose cell instance rendered the image (= subclass except in `matched`, whose names are
`<split>_<instance>_<NNNNN>.png`); a loader holding a subclass out drops the training rows of its instance
too, so in every rotation the matched oracle sees exactly the instances the biased baseline sees.
Images are a pure function of the parameters: the same seed gives byte-identical PNGs.

`realistic=True` writes the realistic variant instead (`attrlib.simulator.realistic`): the same generators,
subclasses and layout, with per-generator sizes and file formats (JPEG as `.jpg`), unequal counts and a
held-out subclass that some generators lack; benchmark.json then carries a `realistic` section (the planted
file properties, part of the cache key) and a `files` summary; its pools hold the held-out subclass only.
`trace="pipeline"` (CLI: `attrlib synth --trace pipeline`) writes the non-additive variant: the same files,
content and counts, but every image's high band passes through its family's pipeline instead of receiving an
added fingerprint (`families.pipeline_image`), so a high-pass residual moved to another image does not carry
a fingerprint that image could have; benchmark.json then carries `"trace": "pipeline"` (part of the cache
key). It combines with every variant and with `realistic`.
Generator version sim-5 (pools for every subclass, the matched variant, the instance column) left the biased
and unbiased variants' train and val images and the biased variant's military-vehicle images byte-identical
to sim-4's (their random streams are kept); the manifest and benchmark.json changed.
"""
from __future__ import annotations

import contextlib
import csv
import ctypes
import hashlib
import json
import math
import numbers
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.fingerprint import BENCHMARK_FILE, benchmark_file
from ..errors import ConfigError, DataError
from ..io import atomic_write_json
from ..progress import bar as progress_bar
from . import content, families, realistic as _realistic

# Bump when a change to content.py or families.py changes the images: it is part of the cache key.
GENERATOR_VERSION = "sim-5"

GENERATORS = families.GENERATORS
SUBCLASSES = ("animal_face", "bed", "car", "cat", "church", "face", "horse")
HELDOUT = ("military_vehicle",)
VARIANTS = ("biased", "unbiased", "matched")
TRACES = families.TRACES  # how the fingerprint meets the content: "additive" (the default) or "pipeline"
SPLITS = ("train", "val", "pool")  # the order fixes the random streams: pool is where test was up to sim-4

# Seed 002, section 2: training images per generator and subclass (full size, as published).
SEED002_MATRIX = {
    "guided_diffusion":    {"horse": 7001, "bed": 6999},
    "latent_diffusion":    {"face": 14000, "bed": 7000, "church": 7000},
    "lsgm":                {"face": 8480},
    "stylegan2":           {"horse": 7000, "face": 7000, "church": 7000, "cat": 7000, "car": 7000},
    "stylegan3":           {"face": 14000, "animal_face": 7000},
    "taming_transformers": {"face": 14000, "cat": 3440},
}
# Seed 002, section 2: test images (military vehicles) per generator; every subclass's pool has as many.
SEED002_TEST_COUNTS = {"guided_diffusion": 29, "latent_diffusion": 30, "lsgm": 30, "stylegan2": 29,
                       "stylegan3": 29, "taming_transformers": 29}

DEFAULT_SCALE = 1 / 50
VAL_FRACTION = 0.2       # val images per cell = round(VAL_FRACTION * train images of the cell)
MIN_TEST_PER_GENERATOR = 3
# instance: the subclass whose generator x subclass cell model rendered the image (see the module docstring)
MANIFEST_COLUMNS = ("path", "generator", "subclass", "split", "mask", "instance")
# Fingerprint RMS in 8-bit grey levels (see families.py), and how far each generator x subclass cell's model is
# from its family's base model (families.family: the seeds' cells are separately trained models of one
# architecture). Chosen together with the trustworthiness checks (checks.py; default profile, baseline, seed 0):
#   spread 0,    s 1.5: biased val 0.94, held-out 0.73 (12 epochs)  -- fingerprints transfer too well
#   spread 0.5,  s 1.5: biased val 0.99, held-out 0.24; unbiased held-out 0.84  -- too hard
#   spread 0.25, s 1.5: biased val 0.98, held-out 0.51; unbiased held-out 0.89
#   spread 0.25, s 2.0: biased val 1.00, held-out 0.52; unbiased held-out 0.98  <- the default
# i.e. plain ERM fits the in-distribution cells yet fails the held-out subclass as seed 002's baseline did
# (0.49), while unbiased training at the same strength generalises. Re-measure with `checks.strength_sweep`
# after any change to content.py or families.py.
DEFAULT_STRENGTH = 2.0
DEFAULT_INSTANCE_SPREAD = 0.25


def _round(x: float) -> int:
    """Round half up (Python's round() rounds half to even, which would make counts depend on parity)."""
    return int(math.floor(x + 0.5))


def cell_counts(scale: float = DEFAULT_SCALE, variant: str = "biased",
                realistic: bool = False) -> dict[str, dict[str, dict[str, int]]]:
    """Images per split, generator and subclass: {split: {generator: {subclass: n}}} (zero cells left out),
    splits "train", "val" and "pool"; the subclass is the content, as the manifest's subclass column says
    (the matched variant's counts summed over instances: `instance_counts` has them per instance).

    biased: seed 002's matrix x scale (a non-empty cell keeps at least one image); unbiased: the same total
    spread as evenly as possible over every generator x training-subclass cell; matched: each generator's
    biased total spread as evenly as possible over (training subclass, biased cell instance) pairs. val:
    round(0.2 n) per cell, or per (subclass, instance) pair (at least one). pool: every subclass (training
    and held out) of every generator gets seed 002's military-vehicle count of the generator, scaled by
    scale/(1/50) when scale differs from the default, with at least MIN_TEST_PER_GENERATOR.
    realistic: the realistic variant's matrices (`realistic.REALISTIC_TRAIN`, `REALISTIC_TEST`, stated at the
    default scale) times scale/(1/50) instead of seed 002's; pools for the held-out subclass only, and
    generators without held-out images keep none.
    """
    out: dict = {}
    for split, rows in instance_counts(scale, variant, realistic).items():
        out[split] = {}
        for g, row in rows.items():
            cells: dict[str, int] = {}
            for (sc, _), n in row.items():
                cells[sc] = cells.get(sc, 0) + n
            out[split][g] = cells
    return out


def instance_counts(scale: float = DEFAULT_SCALE, variant: str = "biased",
                    realistic: bool = False) -> dict[str, dict[str, dict[tuple[str, str], int]]]:
    """Images per split, generator and (content subclass, instance subclass) pair:
    {split: {generator: {(subclass, instance): n}}}, where `instance` names the generator x subclass cell
    whose model renders the images. instance == subclass except in the matched variant. See `cell_counts`."""
    _check_scale(scale)
    _check_variant(variant)
    factor = 1.0 if abs(scale - DEFAULT_SCALE) < 1e-12 else scale / DEFAULT_SCALE
    if realistic:
        matrix, pool_counts, per_image = _realistic.REALISTIC_TRAIN, _realistic.REALISTIC_TEST, factor
    else:
        matrix, pool_counts, per_image = SEED002_MATRIX, SEED002_TEST_COUNTS, scale
    biased = {g: {sc: max(1, _round(n * per_image)) for sc, n in row.items()} for g, row in matrix.items()}
    if variant == "biased":
        train = {g: {(sc, sc): n for sc, n in row.items()} for g, row in biased.items()}
    elif variant == "unbiased":
        total = sum(sum(row.values()) for row in biased.values())
        cells = [(g, sc) for g in GENERATORS for sc in SUBCLASSES]
        base, extra = divmod(total, len(cells))
        train = {g: {} for g in GENERATORS}
        for i, (g, sc) in enumerate(cells):
            train[g][(sc, sc)] = base + (1 if i < extra else 0)
    else:  # matched
        train = {g: _spread(sum(row.values()), SUBCLASSES, tuple(row)) for g, row in biased.items()}
    train = {g: {cell: n for cell, n in row.items() if n > 0} for g, row in train.items()}
    val = {g: {cell: max(1, _round(VAL_FRACTION * n)) for cell, n in row.items()} for g, row in train.items()}
    pooled = HELDOUT if realistic else SUBCLASSES + HELDOUT
    pool = {g: {(sc, sc): max(MIN_TEST_PER_GENERATOR, _round(n * factor)) for sc in pooled}
            for g, n in pool_counts.items()}
    return {"train": train, "val": val, "pool": pool}


def _spread(total: int, contents: tuple[str, ...], instances: tuple[str, ...]) -> dict[tuple[str, str], int]:
    """`total` images over every (content, instance) pair, max - min <= 1 per pair. The remainder goes
    round-robin over contents and over instances at once (pair k = (content k mod C, instance (k + k // L)
    mod I), L = lcm(C, I), enumerates every pair once), so no content and no instance gets more than one
    image above another: the matched oracle must carry no content bias of its own."""
    c, m = len(contents), len(instances)
    lcm = c * m // math.gcd(c, m)
    order = [(contents[k % c], instances[(k + k // lcm) % m]) for k in range(c * m)]
    base, extra = divmod(total, c * m)
    return {pair: base + (1 if k < extra else 0) for k, pair in enumerate(order)}


def synthesize(out: str | os.PathLike = "data/benchmark", scale: float = DEFAULT_SCALE, size: int = 64,
               strength: float = DEFAULT_STRENGTH, seed: int = 0, variant: str = "biased",
               instance_spread: float | None = None, force: bool = False, progress: bool = True,
               realistic: bool | dict = False, trace: str = "additive", texture: float = 0.0) -> Path:
    """Write the simulated benchmark to `out` and return `out`.

    trace: "additive" (the default: x = 255 c + s R_g(c)) or "pipeline" (the non-additive variant: the whole
    image's high band passes through the family's pipeline, `families.pipeline_image`). Only a non-default
    trace is written to benchmark.json (as `trace`), so additive benchmarks made before it existed keep their
    parameters and stay cached. Both traces draw the same random numbers from the same streams: a pipeline
    benchmark holds the same content (and noise draws) as the additive one of its parameters, rendered
    differently.

    texture: grey levels (RMS) of a fine texture each subclass carries in the fingerprint's band (periods of 2-5 px,
    a spectrum of its own per subclass, fresh noise per image; `subclass_texture`), added to the content before
    the generator renders it, so the content is visible to a high-pass front end too (issue 18 §5: with the
    pipeline trace, the coupled configuration, where a high-pass front end keeps a bias gap). 0 (the default):
    none, and nothing is drawn. Only a non-zero texture is written to benchmark.json. Its noise has streams of
    its own, so the content and the fingerprint's noise are those of the benchmark without it.

    realistic: write the realistic variant (see the module docstring and `attrlib.simulator.realistic`);
    `size` is then the model crop the folder is made for (image sizes scale with size/64). A benchmark.json's
    `realistic` section counts as True, so `synthesize(out, **params_of_a_benchmark_json)` round-trips.

    Cached: when out/benchmark.json holds these parameters (and the generator version) and the manifest exists,
    nothing is done. Otherwise the benchmark is generated in a temporary sibling folder and swapped in with
    renames, so a reader never sees a half-written benchmark; an interrupted run leaves the old one intact.
    """
    spread = DEFAULT_INSTANCE_SPREAD if instance_spread is None else instance_spread
    params = _params(scale, size, strength, seed, variant, spread, trace, texture)
    if realistic:
        if texture:
            raise ConfigError("benchmark parameters 'realistic' and 'texture' cannot be combined: the realistic "
                              "variant's files are written without the subclass texture; choose one")
        params["realistic"] = _realistic.spec(size)
    out = Path(out)
    if not force and _cached(out, params):
        return out
    if out.exists() and any(out.iterdir()) and not (out / BENCHMARK_FILE).exists():
        raise DataError(f"{out} exists and is not a benchmark folder (no benchmark.json); refusing to replace it. "
                        "Choose another --out or remove the folder.")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the benchmark is ordinary data
    try:
        with _one_thread(), _keep_freed_memory():
            _generate(tmp, params, progress)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def files_digest(root: str | os.PathLike) -> str:
    """SHA-256 over every file under `root` (images, masks, manifest.csv, benchmark.json): the lines
    "<relative path> <sha256 of its bytes>", sorted by path. Two folders with the same digest hold the same
    files, byte for byte: how a faster synthesis is shown to write the same benchmark."""
    root = Path(root)
    lines = sorted(f"{p.relative_to(root).as_posix()} {hashlib.sha256(p.read_bytes()).hexdigest()}\n"
                   for p in root.rglob("*") if p.is_file())
    return hashlib.sha256("".join(lines).encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ internals
def _check_scale(scale) -> None:
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not scale > 0 or not math.isfinite(scale):
        raise ConfigError(f"benchmark parameter 'scale' is {scale!r}; it must be a positive number "
                          "(the fraction of seed 002's image counts, default 1/50)")


def _check_variant(variant) -> None:
    if variant not in VARIANTS:
        raise ConfigError(f"benchmark parameter 'variant' is {variant!r}; valid values: {', '.join(VARIANTS)}")


def _params(scale, size, strength, seed, variant, instance_spread=0.0, trace="additive", texture=0.0) -> dict:
    _check_scale(scale)
    _check_variant(variant)
    if not isinstance(size, int) or isinstance(size, bool) or size < 16 or size % 8:
        raise ConfigError(f"benchmark parameter 'size' is {size!r}; it must be a multiple of 8, at least 16 "
                          "(the generator families upsample by 8 from a latent grid)")
    if not isinstance(strength, (int, float)) or isinstance(strength, bool) or not math.isfinite(strength) \
            or strength < 0:
        raise ConfigError(f"benchmark parameter 'strength' is {strength!r}; it must be 0 or more "
                          f"(fingerprint RMS in grey levels, default {DEFAULT_STRENGTH})")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"benchmark parameter 'seed' is {seed!r}; it must be a non-negative integer")
    if not isinstance(instance_spread, (int, float)) or isinstance(instance_spread, bool) \
            or not 0 <= instance_spread <= 1:
        raise ConfigError(f"benchmark parameter 'instance_spread' is {instance_spread!r}; it must lie in [0, 1] "
                          "(0: one model per generator family, 1: unrelated models of the same architecture)")
    if trace not in TRACES:
        raise ConfigError(f"benchmark parameter 'trace' is {trace!r}; valid values: {', '.join(TRACES)} "
                          "(additive: the fingerprint is added to the content; pipeline: the whole image passes "
                          "through the family's pipeline)")
    params = {"scale": float(scale), "size": size, "strength": float(strength), "seed": seed,
              "variant": variant, "instance_spread": float(instance_spread), "generator_version": GENERATOR_VERSION,
              "simulated": True}
    if not isinstance(texture, numbers.Real) or isinstance(texture, bool) or not math.isfinite(texture) \
            or not 0 <= texture <= 64:
        raise ConfigError(f"benchmark parameter 'texture' is {texture!r}; it must lie in [0, 64] (grey levels RMS of "
                          "each subclass's fine texture; 0: none, the default)")
    if trace != "additive":
        params["trace"] = trace  # only then: the parameters (and the cache key) of additive benchmarks stay as they were
    if texture:
        params["texture"] = float(texture)  # likewise
    return params


def read_benchmark(root: str | os.PathLike | None) -> dict | None:
    """The parameters `synthesize` wrote to the benchmark folder `root` (its benchmark.json), or None when `root`
    is not a benchmark folder (a user's folder or manifest). The one reader of the file."""
    path = benchmark_file(root)
    if path is None:
        return None
    try:
        params = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path} cannot be read as the simulator's parameters ({e}); synthesise the benchmark "
                        "again (attrlib synth --force, or remove the folder)") from None
    if not isinstance(params, dict):
        raise DataError(f"{path} holds no parameter object; synthesise the benchmark again (attrlib synth --force)")
    return params


def _cached(out: Path, params: dict) -> bool:
    try:
        stored = read_benchmark(out)
    except DataError:
        return False
    if stored is None:
        return False
    # a realistic folder never stands in for the default benchmark (params without "realistic") or vice versa,
    # nor a pipeline folder for an additive one (params without "trace")
    return (out / "manifest.csv").is_file() and {k: stored.get(k) for k in params} == params \
        and ("realistic" in stored) == ("realistic" in params) and ("trace" in stored) == ("trace" in params) \
        and ("texture" in stored) == ("texture" in params)


def _generate(root: Path, params: dict, progress: bool) -> None:
    realistic = "realistic" in params
    cells = instance_counts(params["scale"], params["variant"], realistic)
    total = sum(n for split in cells.values() for row in split.values() for n in row.values())
    write_cell = _realistic.write_cell if realistic else _write_cell
    rows, manifest = [], []
    with progress_bar(None, progress, total=total, desc="synthesising benchmark (simulated)", unit="img") as bar:
        for split in SPLITS:
            for g in GENERATORS:
                for (sc, instance), n in cells[split].get(g, {}).items():
                    rng = np.random.default_rng(_stream(params["seed"], params["variant"], split, g, sc, instance,
                                                        realistic))
                    # the matched variant has several instances per cell: the name carries the instance
                    prefix = f"{split}_{instance}" if params["variant"] == "matched" and split != "pool" else split
                    written = write_cell(root, params, g, sc, split, n, rng, bar, instance=instance, prefix=prefix)
                    rows += written
                    manifest += [row[:5] + (instance,) for row in written]
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(MANIFEST_COLUMNS)
        w.writerows(manifest)
    note = ("SIMULATED benchmark: procedural content and simulated generator fingerprints "
            "(attrlib.simulator); not images from the real generators")
    extra = {}
    if params["variant"] == "matched":
        # which content each instance renders: {split: {generator: {instance: {subclass: n}}}}
        per_instance: dict = {}
        for split in ("train", "val"):
            for g, row in cells[split].items():
                for (sc, instance), n in row.items():
                    per_instance.setdefault(split, {}).setdefault(g, {}).setdefault(instance, {})[sc] = n
        extra["instance_counts"] = per_instance
    if realistic:
        note += ("; realistic variant: file format, JPEG quality, size and aspect ratio differ by generator on "
                 "purpose (shortcuts planted for the audit; see the `realistic` section and `files`)")
        extra["files"] = _realistic.summary(rows)
    if "trace" in params:
        note += ("; non-additive trace: each image's high band passed through its family's pipeline "
                 "(attrlib.simulator.families.pipeline_image)")
    if "texture" in params:
        note += (f"; each subclass carries a fine texture of {params['texture']:g} grey levels RMS in the "
                 "fingerprint's band (attrlib.simulator.synth.subclass_texture)")
    counts = cell_counts(params["scale"], params["variant"], realistic)
    atomic_write_json(root / BENCHMARK_FILE, {**params, "note": note, "counts": counts, "n_images": total, **extra})


def _stream(seed: int, variant: str, split: str, g: str, sc: str, instance: str, realistic: bool) -> list[int]:
    """The key of one cell's random stream: one independent stream per cell and split, so adding a cell
    never changes the others.

    [seed, variant, split, generator, subclass] for train and val, as up to sim-4 (the biased and unbiased
    images stay byte-identical); matched adds the instance. The trace is not part of the key: a pipeline
    benchmark draws the same content as the additive one and renders it differently. Pools take the biased variant's key whatever
    the variant (so every variant holds the same pools, and the biased military vehicles are sim-4's test
    images). The realistic variant's keys end in 1: its own streams. No key is another with zeros appended
    (numpy's SeedSequence would give both the same stream)."""
    names = SUBCLASSES + HELDOUT
    own = VARIANTS.index("biased") if split == "pool" else VARIANTS.index(variant)
    key = [seed, own, SPLITS.index(split), GENERATORS.index(g), names.index(sc)]
    if variant == "matched" and split != "pool":
        key.append(names.index(instance))
    return key + ([1] if realistic else [])


def _write_cell(root: Path, params: dict, g: str, sc: str, split: str, n: int, rng: np.random.Generator,
                bar, instance: str | None = None, prefix: str | None = None) -> list[tuple]:
    """The default benchmark's n images (and masks) of one cell and split, all of side `size`, as 8-bit RGB PNGs:
    content `sc` rendered by the model of cell (g, instance) (default: sc's own), named <prefix>_<NNNNN>.png."""
    instance, prefix = instance or sc, prefix or split
    rows = []
    chunk = max(4, 64 * 64 * 64 // params["size"] ** 2)  # bounded memory (~0.5 GB) at any size
    for lo in range(0, n, chunk):
        m = min(chunk, n - lo)
        clean, masks = content.draw(sc, m, params["size"], rng)
        if params.get("texture"):  # the subclass's fine texture, from streams of its own (the content is unchanged)
            # every variant draws the same texture for a cell and chunk (the twins differ in content, not in this);
            # the matched variant's instances each their own
            own = [(SUBCLASSES + HELDOUT).index(instance)] if params["variant"] == "matched" and split != "pool" else []
            tex_rng = np.random.default_rng([params["seed"], TEXTURE_STREAM, SPLITS.index(split), GENERATORS.index(g),
                                             (SUBCLASSES + HELDOUT).index(sc), lo, *own, 2])
            clean = clean + subclass_texture(sc, m, params["size"], tex_rng) * (params["texture"] / 255.0)
        # every generator x subclass cell is its own model of the family (seed 000, Table 1)
        images = families.render(g, clean, params["strength"], rng, instance=instance,
                                 spread=params["instance_spread"], trace=params.get("trace", "additive"))
        masks = masks.numpy().astype(np.uint8) * 255
        for j in range(m):
            name = f"{prefix}_{lo + j:05d}.png"
            rel = f"{g}/{sc}/{name}"
            rel_mask = f"_masks/{g}/{sc}/{name}"
            _write_png(root / rel, images[j])
            _write_png(root / rel_mask, masks[j])
            rows.append((rel, g, sc, split, rel_mask))
        bar.update(m)
    return rows


TEXTURE_STREAM = 3  # the second element of the texture's stream keys: no variant index is 3 (`_stream`)


def subclass_texture(subclass: str, n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """(n, 3, size, size) float64, zero mean, unit RMS: white noise (one plane, the same in R, G and B) filtered by
    the subclass's own 5x5 kernel, zero-mean (no DC: nothing a thumbnail sees), drawn once from the subclass's name.
    Every image gets fresh noise, so the texture is a spectrum (periods of 2-5 px, an orientation of its own), not a
    pattern to memorise: the fingerprint's band carries content, as fine texture does in real images."""
    k = np.random.default_rng([TEXTURE_STREAM, (SUBCLASSES + HELDOUT).index(subclass), 9]).standard_normal((5, 5))
    kernel = torch.from_numpy(k - k.mean()).view(1, 1, 5, 5)
    noise = torch.from_numpy(rng.standard_normal((n, 1, size + 4, size + 4)))
    t = torch.nn.functional.conv2d(noise, kernel)
    t = t / t.pow(2).mean().sqrt().clamp_min(1e-12)
    return t.expand(n, 3, size, size).clone()


@contextlib.contextmanager
def _one_thread():
    """Generate on one thread: the work is many small tensor operations, for which torch's thread pool costs
    more than it gains (measured: about 10x slower with 2 threads on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4


@contextlib.contextmanager
def _keep_freed_memory():
    """Let glibc keep freed memory for the next tensor while generating, and give it back at the end.

    By default glibc unmaps every freed block above its mmap threshold (at most 32 MB) and trims the heap's
    free top, so the next tensor of that size faults its pages in afresh. The synthesis allocates and frees
    thousands of tensors of 10-90 MB (a batch of 96-px images in float64, its mirrored FFT input), and that
    churn was half of its CPU time (measured on the default benchmark: 30 of 61 s, all of it system time).
    Afterwards the thresholds are set where glibc's own sliding thresholds end after such a run (32 MB, trim
    at twice that) and the freed memory is returned. Elsewhere than glibc (no mallopt, or musl's, which
    refuses) this does nothing."""
    libc = ctypes.CDLL(None) if os.name == "posix" else None   # the process's own symbols, libc's among them
    mallopt, trim = getattr(libc, "mallopt", None), getattr(libc, "malloc_trim", None)
    if mallopt is None or trim is None or not mallopt(_M_MMAP_MAX, 0):
        yield
        return
    mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1)
    try:
        yield
    finally:
        mallopt(_M_MMAP_MAX, 65536)
        mallopt(_M_MMAP_THRESHOLD, 32 * 2 ** 20)
        mallopt(_M_TRIM_THRESHOLD, 64 * 2 ** 20)
        trim(0)


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # fixed settings and no metadata: the bytes depend on the pixels only
    Image.fromarray(array).save(path, format="PNG", compress_level=6)


def _swap(tmp: Path, out: Path) -> None:
    """Move the finished `tmp` to `out`; an existing `out` is first renamed aside, then deleted."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.rmdir(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
