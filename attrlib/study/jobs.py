"""Every training run the study's notebooks ask for, as the sweep's arms, without running a notebook: what
`attrlib launch` trains on a cluster (`attrlib.launch`) so that `attrlib study` then finds them finished.

    study_jobs("thorough") -> [sweep.Arm]   (a job on a rotation: its hyper-parameter draws, then its seeds)

The arms are those of the notebooks' `sweep.train_many` calls, with the notebooks' own arguments (the same
`session`, so the same run ids): every technique and the two oracles (02-10), notebook 07's front-end
ablation on its rotations, notebook 10's second configuration, notebook 11's candidate arms and, on the
non-additive and realistic variants, its baseline, checked arms and oracle, and notebook 12's arms without each
left-out generator (its default `techniques` and the profile's `open_world_arms`). A technique's upstream run
(fine_tuning's baseline) is trained by `sweep.train` inside its task.

Left to the study (they depend on what it finds, or are not sweeps): notebook 01's strength sweep (a few
baselines on benchmarks of their own) and, in notebook 11, the runs of the arm rule (b) chooses in each
rotation on other data (the chosen arm on the two variants). A profile that names its `notebooks` (`claims`:
notebook 11 only) trains only theirs: notebook 12's runs without a generator, for one, are not a claims run's.
`only` (`attrlib launch --only`, as `attrlib study --only`) plans for the notebooks whose name starts with one of
its prefixes instead: `only=("11",)` on the default profile is notebook 11 with all its arms.
"""
from __future__ import annotations

import os
from typing import Any, Iterable

from .. import sweep, techniques
from ..config import PROFILES
from ..errors import ConfigError
from . import checks, closing, open_world
from .runner import chosen_notebooks, notebooks_in
from .session import checks_apply, session, unbiased_variant


def study_jobs(profile: str = "default", data: str = "", heldout: str | Iterable[str] = "",
               seeds: Iterable[int] = (), runs: str = "runs", device: str = "auto",
               on_bad: str = "raise", only: Iterable[str] = (), notebooks: str | os.PathLike = "notebooks"
               ) -> list[sweep.Arm]:
    """The arms the notebooks of a study with these options train, each once (the options of `attrlib study`;
    the profile's embedded benchmark and its twins are made when `data` is empty and they are missing). `only`:
    prefixes of the names of the notebooks (in `notebooks`) to plan for, as `attrlib study --only`: they replace
    the profile's own `notebooks`; a prefix that matches none fails, naming the notebooks."""
    s = session(profile=profile, data=data, heldout=heldout, seeds=seeds, runs=runs, device=device, on_bad=on_bad,
                progress=False)
    oracle = {"oracle": {"technique": "baseline", "data": str(s.oracle_data)}} if s.oracle_data else {}
    matched = {"matched_oracle": {"technique": "baseline", "data": str(s.matched_data)}} if s.oracle_data else {}
    # the notebooks planned for, as `attrlib study` chooses them: those whose name starts with one of `only`, else the
    # profile's own (`notebooks`: claims runs 11), else all
    if only:
        kept = {nb.name[:2] for nb in chosen_notebooks(notebooks, only)}
        if not kept:
            raise ConfigError(f"--only {', '.join(only)} matches no notebook in {str(notebooks)!r}; the notebooks: "
                              f"{', '.join(nb.name for nb in notebooks_in(notebooks))}")
    else:
        kept = set(PROFILES[profile].get("notebooks", ()))
    runs_any = lambda *numbers: not kept or bool(kept & set(numbers))  # noqa: E731
    arms = []
    if runs_any("02", "03", "04", "05", "06", "07", "08", "09", "10"):  # notebooks 02-10
        arms += _plan(s, {**{name: {"technique": name} for name in techniques.available()}, **oracle, **matched})
        half = s.config.image_size // 2  # notebook 07: crop vs resize at half the image size
        arms += _plan(s, {"baseline_srm": {"technique": "baseline", "stem": "srm"},
                          "baseline_npr": {"technique": "baseline", "stem": "npr"},
                          f"crop_{half}px": {"technique": "baseline", "image_size": half},
                          f"resize_{half}px": {"technique": "baseline", "image_size": half, "input_policy": "resize"}},
                      rotations=s.rotations[:s.knobs.ablation_rotations or None])
    configs = closing.arm_configs(*closing.chosen_arms(s.knobs.closing_arms))
    if runs_any("11"):
        arms += _plan(s, {**configs, **oracle})  # notebook 11
    if s.oracle_data and runs_any("11"):  # notebook 11: every arm's own model by ERM on the unbiased twin
        own = closing.model_oracle_configs(closing.model_arms(configs), configs, s.oracle_data)
        arms += _plan(s, {f"oracle_{m}": c for m, c in own.items()})
    if runs_any("11"):  # notebook 11: each model's references (the target-data ones unless the profile drops them)
        target = closing.target_references_on(s.knobs.target_references, s.oracle_data)
        arms += _plan(s, closing.reference_jobs(oracle_data=s.oracle_data, target=target))
    if runs_any("10"):  # notebook 10: the baseline's target-data reference
        arms += _plan(s, {"target_reference": {"technique": "target_reference"}})
    if s.knobs.second_config in (True, "yes") and checks_apply(s.data) and runs_any("10"):  # notebook 10
        second = checks.second_configuration(s.data)
        arms += _plan(s, {**{name: {"technique": name} for name in techniques.available()},
                          "oracle": {"technique": "baseline", "data": str(unbiased_variant(second))}}, data=str(second))
    if s.knobs.closing_variants in (True, "yes") and checks_apply(s.data) and runs_any("11"):  # 11's variants
        checked = {k: configs[k] for k in closing.CHECKED_ARMS if k in configs}
        pipeline = checks.nonadditive_configuration(s.data)
        arms += _plan(s, {"baseline": configs["baseline"], **checked,
                          "oracle": {"technique": "baseline", "data": str(unbiased_variant(pipeline))}},
                      rotations=(closing.unexplored(s.rotations, closing.EXPLORED) or s.rotations)
                      [:s.knobs.closing_variant_rotations or None], data=str(pipeline))
        arms += _plan(s, {"baseline": configs["baseline"], **checked}, rotations=list(checks.REALISTIC_ROTATIONS),
                      data=str(checks.realistic_configuration(s.data)))
    twelve = open_world.open_world_jobs(open_world.TECHNIQUES, s.knobs.open_world_arms)  # notebook 12
    if runs_any("12"):  # its arms on every generator (02-11's runs when those run too) and without each left out
        arms += _plan(s, twelve)
        for generator in open_world.unknown_rotations(s.data, s.heldout, s.knobs.open_world_generators):
            arms += _plan(s, twelve, unknown_generators=(generator,))
    unique: dict[str, sweep.Arm] = {}
    for arm in arms:
        unique.setdefault(repr([sorted(c.to_dict().items()) for c in arm.draws] + [arm.seeds]), arm)
    return list(unique.values())


def _plan(s, jobs: dict[str, dict[str, Any]], **overrides: Any) -> list[sweep.Arm]:
    return sweep.plan(jobs, s.profile, s.seeds, **{**s.common, **overrides})
