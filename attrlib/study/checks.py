"""The checks that make the SIMULATED benchmark trustworthy (benchmark.md, "Checks"): the ones that train.

They train through the sweep (`attrlib.sweep.train`) and read each run's metrics.json, so they sit in the
study layer, above training; the simulator (`attrlib.simulator`) and its image statistics
(`attrlib.simulator.stats`) train nothing.

1. strength 0, unbiased training -> held-out accuracy at chance (nothing leaks through content, file
   format or ordering).
2. default strength, unbiased training -> high held-out accuracy (the fingerprint is learnable and does not
   depend on the subclass).
3. 8x8 thumbnails (`stats.thumbnail_check`) predict the subclass, not the generator.
4. default strength, plain ERM on the biased variant -> high in-distribution validation accuracy but
   held-out accuracy near seed 002's 0.49 (the benchmark reproduces the problem).
5. per-generator pixel statistics match (`stats.pixel_stats`).

`second_configuration`, `nonadditive_configuration` and `realistic_configuration` make the other benchmark
configurations a conclusion is checked on (another data seed; a fingerprint that is not added to the content;
files that look like a user's folder).

`strength_sweep` trains the points (held-out accuracy against strength, biased and unbiased);
`checks_table` reads checks 1, 2 and 4 off it, runs 3 and 5, and gives one verdict per check.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..simulator import DEFAULT_STRENGTH, GENERATOR_VERSION, HELDOUT, read_benchmark, synthesize
from ..simulator.stats import pixel_stats, thumbnail_check
from ..simulator.synth import DEFAULT_INSTANCE_SPREAD
from .. import records
from ..config import Config
from ..errors import DataError
from ..sweep import train
from .session import checks_apply  # the one definition of the benchmark's default variant

# Thresholds of the issue. Chance for 6 generators is 1/6; 0.25 leaves room for the noise of 176 test images.
CHANCE_MAX = 0.25
UNBIASED_MIN = 0.90
THUMB_SUBCLASS_MIN = 0.98
BIASED_VAL_MIN = 0.90
BIASED_HELDOUT_WINDOW = (0.35, 0.65)   # around seed 002's baseline accuracy, 0.49


def sweep_points(strengths: str) -> list[float]:
    """The fingerprint strengths a sweep trains, from a comma-separated list ("0,1"): those, plus 0 and the
    default strength, which the checks read (their runs at the default strength are the study's own baseline
    and oracle, reused). Empty: none (the checks are skipped)."""
    if not strengths.strip():
        return []
    try:
        given = {float(s) for s in strengths.split(",") if s.strip()}
    except ValueError:
        raise ValueError(f"sweep strengths {strengths!r} must be comma-separated numbers, e.g. \"0,1\"") from None
    return sorted(given | {0.0, DEFAULT_STRENGTH})


def check_benchmark(data_dir: str | os.PathLike, variant: str, strength: float, seed: int = 0, scale: float = 1 / 50,
                    size: int = 64, instance_spread: float = DEFAULT_INSTANCE_SPREAD, progress: bool = False,
                    reuse: Iterable[str | os.PathLike] = ()) -> Path:
    """The benchmark a check trains or measures on, cached under `data_dir` by its parameters; or one of the
    `reuse` folders (the study's own benchmark and its unbiased twin) when it was made with the same ones."""
    wanted = dict(variant=variant, strength=float(strength), seed=seed, scale=float(scale), size=size,
                  instance_spread=float(instance_spread), generator_version=GENERATOR_VERSION)
    for root in reuse:
        try:
            made = read_benchmark(root) or {}  # {}: not a benchmark folder, never a match
        except DataError:
            continue
        # the realistic variant and the pipeline trace have the same parameters but other images: never a
        # check's benchmark
        if all(made.get(k) == v for k, v in wanted.items()) and "realistic" not in made and "trace" not in made:
            return Path(root)
    name = f"{variant}-s{strength:g}-i{instance_spread:g}-n{size}-scale{scale:g}-seed{seed}"
    return synthesize(Path(data_dir) / name, scale=scale, size=size, strength=strength, seed=seed, variant=variant,
                      instance_spread=instance_spread, progress=progress)


def train_benchmark(strength: float, variant: str, seed: int = 0, data_dir: str | os.PathLike = "data/checks",
                    scale: float = 1 / 50, size: int = 64, progress: bool = False,
                    instance_spread: float = DEFAULT_INSTANCE_SPREAD, reuse: Iterable[str | os.PathLike] = (),
                    **config) -> dict:
    """Synthesise the benchmark at `strength` and `variant` (or reuse an identical one, see `check_benchmark`),
    train through the sweep (`Config` fields in `config`, e.g. technique="baseline", steps=468) and
    return val and held-out accuracy. On reused data the run is reused too (run ids hash the data's
    benchmark.json, not its path)."""
    root = check_benchmark(data_dir, variant, strength, seed, scale, size, instance_spread, progress, reuse)
    cfg = Config(**{"data": str(root), "seed": seed, **config})
    run = Path(train(cfg, progress=progress))
    metrics = records.read(run).metrics
    return {"strength": strength, "instance_spread": instance_spread, "variant": variant, "seed": seed,
            "val_accuracy": _get(metrics, "val.accuracy"), "heldout_accuracy": _get(metrics, "heldout.accuracy"),
            "run": str(run)}


def _get(metrics: dict, dotted: str) -> float:
    """metrics["heldout"]["accuracy"] for "heldout.accuracy" (or a flat "heldout.accuracy" key); NaN if absent."""
    if dotted in metrics:
        return metrics[dotted]
    node = metrics
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return float("nan")
        node = node[key]
    return node


def strength_sweep(strengths: Iterable[float] = (0.0, 0.75, 1.5, 3.0),
                   variants: Iterable[str] = ("biased", "unbiased"), seeds: Iterable[int] = (0,),
                   **kwargs) -> pd.DataFrame:
    """Held-out (and val) accuracy against fingerprint strength for biased and unbiased training: one row
    per strength, variant and seed (notebook 01 plots it)."""
    rows = [train_benchmark(s, v, seed=seed, **kwargs) for s in strengths for v in variants for seed in seeds]
    return pd.DataFrame(rows)


def check_thumbnails(data_dir: str | os.PathLike = "data/checks", strength: float = DEFAULT_STRENGTH,
                     seed: int = 0, scale: float = 1 / 50, size: int = 64,
                     instance_spread: float = DEFAULT_INSTANCE_SPREAD, reuse: Iterable[str | os.PathLike] = ()) -> dict:
    root = check_benchmark(data_dir, "unbiased", strength, seed, scale, size, instance_spread, reuse=reuse)
    r = thumbnail_check(root, seed=seed)
    passed = r["subclass_accuracy"] >= THUMB_SUBCLASS_MIN and r["generator_accuracy"] <= CHANCE_MAX
    return {**r, "check": "3 8x8 thumbnails: subclass high, generator at chance",
            "threshold": f"subclass >= {THUMB_SUBCLASS_MIN}, generator <= {CHANCE_MAX}", "passed": bool(passed)}


def check_pixel_stats(data_dir: str | os.PathLike = "data/checks", strength: float = DEFAULT_STRENGTH,
                      seed: int = 0, scale: float = 1 / 50, size: int = 64,
                      instance_spread: float = DEFAULT_INSTANCE_SPREAD, max_mean_gap: float = 2.0,
                      max_hist_tv: float = 0.05, reuse: Iterable[str | os.PathLike] = ()) -> dict:
    """Check 5 on the unbiased variant (where every generator has the same content): per-generator means
    within `max_mean_gap` grey levels of each other and histograms within `max_hist_tv` of the pooled one."""
    root = check_benchmark(data_dir, "unbiased", strength, seed, scale, size, instance_spread, reuse=reuse)
    stats = pixel_stats(root)
    gap = float(stats["mean"].max() - stats["mean"].min())
    tv = float(stats["hist_tv"].max())
    return {"check": "5 per-generator pixel statistics match", "mean_gap": gap, "std_gap":
            float(stats["std"].max() - stats["std"].min()), "max_hist_tv": tv,
            "threshold": f"mean gap <= {max_mean_gap}, hist TV <= {max_hist_tv}",
            "passed": bool(gap <= max_mean_gap and tv <= max_hist_tv)}


def checks_table(sweep: pd.DataFrame, spec: dict, strength: float = DEFAULT_STRENGTH) -> pd.DataFrame:
    """The five checks as one table, reading the training checks (1, 2, 4) off a `strength_sweep` result
    (mean over its seeds) and running the two data checks (3, 5) on the unbiased benchmark of the same
    scale and size. `spec` is what `attrlib.study.benchmark_spec` returns."""

    def point(s: float, variant: str) -> pd.DataFrame:
        rows = sweep[(sweep.variant == variant) & np.isclose(sweep.strength, s)]
        if rows.empty:
            raise ValueError(f"the sweep has no {variant} run at strength {s:g}; include it in the strengths")
        return rows

    zero, unbiased, biased = point(0.0, "unbiased"), point(strength, "unbiased"), point(strength, "biased")
    lo, hi = BIASED_HELDOUT_WINDOW
    data = dict(data_dir=spec.get("data_dir", "data/checks"), strength=strength, scale=spec["scale"], size=spec["size"],
                instance_spread=spec.get("instance_spread", DEFAULT_INSTANCE_SPREAD), reuse=spec.get("reuse", ()))
    thumbs, stats = check_thumbnails(**data), check_pixel_stats(**data)
    rows = [
        dict(check="1 strength 0, unbiased training: held-out at chance", threshold=f"held-out <= {CHANCE_MAX}",
             measured=f"held-out {zero.heldout_accuracy.mean():.3f}", passed=bool(zero.heldout_accuracy.mean() <= CHANCE_MAX)),
        dict(check=f"2 strength {strength:g}, unbiased training: fingerprint learnable", threshold=f"held-out >= {UNBIASED_MIN}",
             measured=f"held-out {unbiased.heldout_accuracy.mean():.3f}",
             passed=bool(unbiased.heldout_accuracy.mean() >= UNBIASED_MIN)),
        dict(check="3 8x8 thumbnails: subclass easy, generator at chance", threshold=thumbs["threshold"],
             measured=f"subclass {thumbs['subclass_accuracy']:.3f}, generator {thumbs['generator_accuracy']:.3f}",
             passed=thumbs["passed"]),
        dict(check=f"4 strength {strength:g}, biased ERM: fits val, fails held-out like seed 002 (0.49)",
             threshold=f"val >= {BIASED_VAL_MIN}, {lo} <= held-out <= {hi}",
             measured=f"val {biased.val_accuracy.mean():.3f}, held-out {biased.heldout_accuracy.mean():.3f}",
             passed=bool(biased.val_accuracy.mean() >= BIASED_VAL_MIN and lo <= biased.heldout_accuracy.mean() <= hi)),
        dict(check="5 per-generator pixel statistics match (unbiased)", threshold=stats["threshold"],
             measured=f"mean gap {stats['mean_gap']:.2f}, hist TV {stats['max_hist_tv']:.3f}", passed=stats["passed"]),
    ]
    seeds = sorted(set(sweep.seed))
    return pd.DataFrame(rows).assign(seeds=", ".join(map(str, seeds)))


# The second benchmark configuration (issue 11): the default's strength and spread were calibrated on the test
# subclass (the baseline's held-out accuracy aimed at seed 002's 0.49), so conclusions are to be checked on a
# configuration no knob was tuned on: another data seed and a larger instance spread.
SECOND_SEED_OFFSET = 1
SECOND_INSTANCE_SPREAD = 0.35


def second_configuration(root: str | os.PathLike, progress: bool = False) -> Path:
    """The second configuration of the embedded benchmark `root` (same scale, size and strength; data seed + 1,
    instance spread 0.35), synthesised in `<root>-second` if missing; its unbiased and matched twins come from
    `attrlib.study.session.variant_twin` like the first one's."""
    params = _biased_default_params(root, "second configuration")
    return synthesize(Path(root).parent / f"{Path(root).name}-second", scale=params["scale"], size=params["size"],
                      strength=params["strength"], seed=int(params["seed"]) + SECOND_SEED_OFFSET,
                      instance_spread=SECOND_INSTANCE_SPREAD, progress=progress)


def _biased_default_params(root: str | os.PathLike, what: str) -> dict:
    params = read_benchmark(root)
    if params is None or not checks_apply(root) or params.get("variant", "biased") != "biased":
        raise ValueError(f"{root} is not the embedded benchmark's biased default variant; the {what} is made "
                         "from that one")
    return params


def nonadditive_configuration(root: str | os.PathLike, progress: bool = False) -> Path:
    """The benchmark `root` with the same content, counts and strength but a fingerprint that is not added to the
    content (`trace="pipeline"`: the whole image passes through the family, `attrlib.simulator.families`),
    synthesised in `<root>-pipeline` if missing; its unbiased twin comes from `variant_twin` as usual. A
    technique that transplants high-pass residuals is favoured on the additive default by construction; this
    is where that is checked."""
    params = _biased_default_params(root, "non-additive variant")
    return synthesize(Path(root).parent / f"{Path(root).name}-pipeline", scale=params["scale"], size=params["size"],
                      strength=params["strength"], seed=int(params["seed"]),
                      instance_spread=params.get("instance_spread", DEFAULT_INSTANCE_SPREAD), trace="pipeline",
                      progress=progress)


# the realistic variant's one rotation: only the simulator's held-out subclass is pooled there
REALISTIC_ROTATIONS = (HELDOUT,)


def realistic_configuration(root: str | os.PathLike, progress: bool = False) -> Path:
    """The realistic variant (`attrlib.simulator.realistic`: per-generator sizes and formats, unequal counts, a
    held-out subclass some generators lack) at the scale, crop size, strength and seed of `root`, synthesised
    in `<root>-realistic` if missing. Only military vehicles are pooled there: its one rotation
    (`REALISTIC_ROTATIONS`)."""
    params = _biased_default_params(root, "realistic variant")
    return synthesize(Path(root).parent / f"{Path(root).name}-realistic", scale=params["scale"], size=params["size"],
                      strength=params["strength"], seed=int(params["seed"]),
                      instance_spread=params.get("instance_spread", DEFAULT_INSTANCE_SPREAD), realistic=True,
                      progress=progress)
