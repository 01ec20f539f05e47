"""How much of a test-time attack's effect is the attack, and how much is noise of its size?

runtime_adversarial (seed 000) moves each test image within an L-inf ball of radius `eps` (4/255 by default)
towards a uniform subclass prediction, then attributes it. The simulated fingerprint's RMS is 2 grey levels,
so a 4-level perturbation can erase the very evidence attribution needs. This sweep re-runs the technique's
own test-time step (`technique.predict`, i.e. its `test_inputs`, with the radius hyper-parameter changed)
on its trained runs at several radii and sets beside it, on the same images (paired):

    none      the attribution model on the images themselves (what the attack is applied to)
    attack    the technique's prediction with `eps` = r (PGD's step size scaled with r, keeping the run's
              step_size / eps ratio, so every radius is reachable in the run's number of steps)
    control   the attribution model on the images plus random sign noise of the same L-inf radius: every
              pixel moved by +r or -r at random, clipped to [0, 1] (the same signs at every radius)

    per_image = radius_sweep(run_dirs, radii=(0, 0.5, 1, 2, 4, 8))      # radii in grey levels (/255)
    table = radius_sweep_summary(per_image)      # accuracies and paired differences with 95 % intervals

Radius 0 gives the unattacked predictions exactly (PGD clips its steps to the ball). Rows are keyed by
(heldout, seed, path), so runs of several held-out rotations pool correctly.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator, Sequence

import numpy as np
import pandas as pd
import torch

from ..data import ImageDataset, collate_patches
from ..errors import ConfigError
from ..runfolder import iter_runs
from ..techniques import image_logits

DEFAULT_RADII = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)  # grey levels (x / 255): around the fingerprint's RMS of 2
CONDITIONS = ("none", "attack", "control")
COMPARISONS = (("attack", "none"), ("control", "none"), ("attack", "control"))


def sign_noise(x: torch.Tensor, radius: float, signs: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """x in [0, 1] with every value moved by +radius or -radius (random signs, or the given +-1 `signs`),
    then clipped to [0, 1]: random noise on the L-inf sphere of the attack's radius."""
    if signs is None:
        signs = torch.randint(0, 2, x.shape, generator=generator, dtype=torch.int8).to(x.device) * 2 - 1
    return (x + radius * signs.to(x.dtype)).clamp_(0.0, 1.0)


@contextlib.contextmanager
def technique_params(technique, **params) -> Iterator:
    """The technique with some hyper-parameters changed for the duration (its test-time step reads them
    when it runs); an unknown name fails naming the ones it has."""
    unknown = sorted(set(params) - set(technique.hparams))
    if unknown:
        raise ConfigError(f"technique {technique.name!r} has no hyper-parameter(s) {unknown} to sweep; "
                          f"it has {sorted(technique.hparams)}")
    before = technique.hparams
    technique.hparams = {**before, **params}
    try:
        yield technique
    finally:
        technique.hparams = before


def _chunked(fn, x: torch.Tensor, chunk: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + chunk]).float() for i in range(0, len(x), chunk)])


def radius_sweep(runs: Sequence[str | os.PathLike], radii: Sequence[float] = DEFAULT_RADII, data=None,
                 split: str | None = None, max_images: int | None = None, batch_size: int = 64,
                 radius_param: str = "eps", step_param: str = "step_size", noise_seed: int = 0,
                 chunk: int = 256) -> pd.DataFrame:
    """One row per (run, image, radius, condition): heldout, seed, path, generator, radius (grey levels),
    condition (none / attack / control), pred, correct. runs: finished run folders of a technique whose
    test-time step reads `radius_param` (and `step_param`, scaled with it) from its hyper-parameters.
    split: default each run's held-out split; max_images: a fixed random sample per run (`iter_runs`)."""
    radii = [float(r) for r in radii]
    if any(r < 0 for r in radii):
        raise ValueError(f"radii {radii} must be 0 or more (grey levels)")
    parts = []
    for _, run, frame in iter_runs({"sweep": list(runs)}, data, split, max_images):
        technique, config = run.technique, run.config
        missing = [p for p in (radius_param, step_param) if p not in technique.hparams]
        if missing:
            raise ConfigError(f"run {run.dir} ({technique.name!r}) has no hyper-parameter(s) {missing}; "
                              f"the radius sweep needs a technique with a test-time step (runtime_adversarial)")
        # the step keeps the run's share of the radius (its technique's defaults' when the run's radius is 0)
        h = technique.hparams if float(technique.hparams[radius_param]) > 0 else type(technique).defaults
        ratio = float(h[step_param]) / float(h[radius_param])
        ds = ImageDataset(frame, run.data, policy=config.input_policy, size=config.image_size, train=False,
                          patches=config.test_patches)
        loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_patches)
        y = run.data.labels(ds.frame)["generator"]
        gen = torch.Generator().manual_seed(noise_seed)
        preds = {(c, r): [] for c in CONDITIONS for r in radii}
        technique.eval()
        with torch.no_grad():
            for batch in loader:
                x, owner = batch["x"], batch.get("owner")
                signs = torch.randint(0, 2, x.shape, generator=gen, dtype=torch.int8) * 2 - 1
                vote = lambda logits: image_logits(logits, owner).argmax(1).numpy()  # noqa: E731
                clean = vote(_chunked(technique.model, x, chunk))
                for r in radii:
                    eps = r / 255
                    with technique_params(technique, **{radius_param: eps, step_param: eps * ratio}):
                        preds[("attack", r)].append(vote(_chunked(technique.predict, x, chunk)))
                    preds[("control", r)].append(vote(_chunked(
                        technique.model, sign_noise(x, eps, signs), chunk)))
                    preds[("none", r)].append(clean)
        heldout = config.heldout.key
        for (condition, r), p in preds.items():
            p = np.concatenate(p) if p else np.zeros(0, dtype=int)
            parts.append(pd.DataFrame({"heldout": heldout, "seed": run.seed, "path": ds.frame["path"].to_numpy(),
                                       "generator": ds.frame["generator"].to_numpy(), "radius": r,
                                       "condition": condition, "pred": [technique.generators[i] for i in p],
                                       "correct": (p == y).astype(float)}))
    if not parts:
        raise ValueError("radius_sweep needs at least one run folder")
    return pd.concat(parts, ignore_index=True)


def _paired_interval(diff: dict[str, np.ndarray], n_boot: int, rng: np.random.Generator,
                     alpha: float = 0.05) -> tuple[float, float, float]:
    """Mean of per-(seed, image) differences, averaged over held-out rotations, with a hierarchical percentile
    bootstrap: each replicate resamples the seeds, then the images (the same images for every seed)."""
    estimate = float(np.mean([d.mean() for d in diff.values()]))
    reps = np.zeros(n_boot)
    for d in diff.values():  # d: (seeds, images)
        s, n = d.shape
        per_seed = d[:, rng.integers(0, n, (n_boot, n))].mean(2)          # (seeds, n_boot)
        pick = rng.integers(0, s, (n_boot, s))                              # seeds drawn per replicate
        reps += per_seed[pick, np.arange(n_boot)[:, None]].mean(1)
    reps /= len(diff)
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return estimate, float(low), float(high)


def radius_sweep_summary(per_image: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per radius (grey levels): held-out accuracy with no change, under the attack and under the control
    (mean over runs; `std_*` over seeds), and the paired differences attack - none, control - none and
    attack - control with 95 % hierarchical bootstrap intervals (`*_low`, `*_high`). attrs["caption"] says
    where the attack helps, if anywhere."""
    rng = np.random.default_rng(seed)
    rows = []
    for r, at in per_image.groupby("radius", sort=True):
        wide = at.pivot_table(index=["heldout", "seed", "path"], columns="condition", values="correct")
        row = {"radius": r, "n_images": int(at.groupby("heldout")["path"].nunique().sum()),
               "n_runs": int(at[["heldout", "seed"]].drop_duplicates().shape[0])}
        per_run = wide.groupby(level=["heldout", "seed"]).mean()
        for c in CONDITIONS:
            row[f"accuracy_{c}"] = float(per_run[c].mean())
            row[f"std_{c}"] = float(per_run[c].std(ddof=1)) if len(per_run) > 1 else float("nan")
        for a, b in COMPARISONS:
            diff = {h: (g[a] - g[b]).unstack("path").to_numpy() for h, g in wide.groupby(level="heldout")}
            name = f"{a}_minus_{b}"
            row[name], row[f"{name}_low"], row[f"{name}_high"] = _paired_interval(diff, n_boot, rng)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["caption"] = _caption(table)
    return table


def _where(table: pd.DataFrame, name: str, sign: int) -> str:
    hits = table[(table[f"{name}_low"] > 0) if sign > 0 else (table[f"{name}_high"] < 0)]["radius"]
    return ", ".join(f"{r:g}" for r in hits) or "no radius"


def _caption(table: pd.DataFrame) -> str:
    runs, images = int(table["n_runs"].max()), int(table["n_images"].max())
    w = lambda name, sign: _where(table, name, sign)  # noqa: E731
    return (f"Held-out accuracy of the attribution model with no change, under the technique's test-time attack, "
            f"and under random sign noise of the same L-inf radius (in grey levels; the embedded benchmark's "
            f"simulated fingerprint has an RMS of 2), on the same {images} image(s) of {runs} run(s). The attack "
            f"raises accuracy above no change at {w('attack_minus_none', 1)} and lowers it at "
            f"{w('attack_minus_none', -1)}; it beats random noise of its radius at {w('attack_minus_control', 1)} "
            f"and falls below it at {w('attack_minus_control', -1)}; random noise alone raises accuracy at "
            f"{w('control_minus_none', 1)} and lowers it at {w('control_minus_none', -1)} (paired differences, "
            f"95 % hierarchical bootstrap over seeds and images; elsewhere not distinguishable from zero).")
