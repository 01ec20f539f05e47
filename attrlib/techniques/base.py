"""The technique contract (DomainBed's `Algorithm`, BalancingGroups' `ERM`) and the plain ERM step.

A technique owns its model(s), optimiser(s) and loss; the engine owns data, epochs, evaluation and files.
What the engine needs, and nothing more:

    update(batch) -> dict[str, float]   one optimisation step; batch = dict(x, generator, subclass, group, index)
    predict(x) -> generator logits      x in [0, 1] pixel space, (B, 3, H, W)
    sampler_weights(frame)              per-row weights for sampling with replacement, or None (shuffling);
                                        the engine calls it once with the training frame, before the first
                                        step and before a resumed run's checkpoint is restored
    optimizers()                        found from the attributes: every torch optimiser the technique holds
    progress                            set by the engine: the share of the step budget done when the current
                                        epoch ends, in (0, 1]; schedules read it (gradient reversal's lambda)
    model                               the attribution model (validation, probes, CAMs read it)
    prepare(loader)                     called once with the training loader before the first step of a fresh
                                        run (not on resume; under torchrun rank 0's result is kept); the
                                        default does nothing. A technique fitted in closed form fits here and
                                        its `steps` is 0 (residual_stats' logistic regression)
    upstream(config) -> Config | None   the run this one needs finished first (the sweep trains or reuses it):
                                        by default `starts_from`'s run of the same config, its own defaults
    start_from(state)                   what this run takes from that run's technique state (`from_upstream`:
                                        the state its selection rule kept, or its last step's): by default its
                                        weights, as this technique's own

and data, not hooks: `defaults` (its hyper-parameters; `steps` and `batch_size` among them override the
config's budget and training batch size), `search_space` (the ranges a hyper-parameter search draws from:
`attrlib.hparams`), `dual_head`, `train_split` / `heldout_split` (which split it trains on and is judged on; training on a
split of the held-out subclass marks it `uses_target_data`), `starts_from` (the technique whose finished run
of the same config it starts from), `from_upstream`, `cross_fit` (its run is assembled from cross-fitted fold runs over the
held-out images: the target-data reference), `assembled` (its run averages other finished runs: the ensemble).
`test_inputs(x)` is the one optional override: a technique that transforms images at test time (a test-time
attack, a purification) says what the model then sees, so CAMs explain that. Adding a technique is one new module
with one `@register`-ed class.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from ..data import label_codes
from ..errors import ConfigError
from ..progress import bar as progress_bar
from ..models import build_model


class Technique(nn.Module):
    name: str = ""                  # set by @register
    description: str = ""           # one line, shown by `attrlib techniques`
    defaults: dict[str, Any] = {}   # the technique's own hyper-parameters; config.technique_params overrides
    search_space: dict[str, tuple] = {"lr": ("log", 3e-4, 3e-3)}  # ranges of the search (`attrlib.hparams`)
    dual_head: bool = False         # build the model with a subclass head
    train_split: str = "train"      # the split the engine trains on
    heldout_split: str = "test"     # the split metrics.json reports as `heldout`
    starts_from: str = ""           # a technique whose finished run (same config, its own defaults) this one starts from
    from_upstream: str = "kept"     # which state of that run `start_from` gets: "kept" (its selection rule's) | "last"
    cross_fit: bool = False         # its run is assembled from `folds` runs, run `fold` trained on
    #                                 `data.cross_fit(fold, folds)` (the held-out images of the other folds in train)
    assembled: bool = False         # its run is assembled from other finished runs' predictions (the ensemble):
    #                                 nothing is trained, no model of its own
    uses_target_data: bool = False  # derived: trains on images of the held-out subclass (not a fair comparison)
    predicts_with_model: bool = True  # derived: `predict` is the attribution model's forward pass (neither it nor
    # `test_inputs` overridden): no gradient at test time, and the engine's scores of the kept state are its predictions

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.uses_target_data = cls.train_split.startswith("ft_") or cls.cross_fit
        cls.predicts_with_model = cls.predict is Technique.predict and cls.test_inputs is Technique.test_inputs

    def __init__(self, config, generators: list[str], subclasses: list[str]):
        super().__init__()
        self.config = config
        self.generators, self.subclasses = list(generators), list(subclasses)
        self.n_generators, self.n_subclasses = len(self.generators), len(self.subclasses)
        self.n_groups = self.n_generators * self.n_subclasses
        self.check_params(config.technique_params)
        self.hparams = {**self.defaults, **config.technique_params}
        self.model = build_model(config, self.n_generators, self.n_subclasses, dual_head=self.dual_head)
        self.optimizer = self.make_optimizer(self.model.parameters())
        self.progress = 0.0

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Unknown hyper-parameters fail here, before any work (the engine calls this first)."""
        unknown = sorted(set(params) - set(cls.defaults))
        if unknown:
            raise ConfigError(f"technique {cls.name!r} has no parameter(s) {unknown}; "
                              f"valid: {sorted(cls.defaults) or 'none'}")
        for name, low in (("steps", 0), ("batch_size", 1)):
            value = params.get(name, low)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"technique parameter {name!r} of {cls.name!r} is {value!r}; "
                                  f"it must be an integer, {low} or more")

    # --- what the engine reads ---
    @property
    def steps(self) -> int:
        """The optimiser-step budget: `steps` among the technique's hyper-parameters (fine_tuning's), else the config's."""
        return int(self.hparams["steps"]) if "steps" in self.hparams else int(self.config.steps)

    @property
    def batch_size(self) -> int:
        """Images per training step: `batch_size` among the technique's hyper-parameters (fine_tuning's), else
        the config's. Evaluation batches stay the config's: they change no result."""
        return int(self.hparams["batch_size"]) if "batch_size" in self.hparams else int(self.config.batch_size)

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser the technique holds, by attribute name, so the engine checkpoints and resumes all of them."""
        return {k: v for k, v in vars(self).items() if isinstance(v, torch.optim.Optimizer)}

    def sampler_weights(self, frame: pd.DataFrame) -> np.ndarray | None:
        return None

    def training_prior(self, frame: pd.DataFrame) -> np.ndarray:
        """The generator shares (n_generators,) the model is trained on: what the loader draws from `frame`
        (the train split), i.e. the data's frequencies under plain shuffling, and the sampler's shares under
        `sampler_weights` (uniform for weighted_sampling). A classifier trained by cross entropy learns this
        prior into its posteriors; the LLR removes it. A technique that reweights its loss instead (Group DRO)
        shifts the prior further in a way this does not capture."""
        codes = frame["generator"].map({g: i for i, g in enumerate(self.generators)}).to_numpy()
        weights = self.sampler_weights(frame)
        weights = np.ones(len(frame)) if weights is None else np.asarray(weights, dtype=float)
        prior = np.bincount(codes, weights=weights, minlength=self.n_generators).astype(float)
        return prior / prior.sum()

    # --- the step ---
    def make_optimizer(self, params, lr: float | None = None) -> torch.optim.Optimizer:
        lr = self.config.lr if lr is None else lr
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=self.config.weight_decay)
        return torch.optim.Adam(params, lr=lr, weight_decay=self.config.weight_decay)

    def split_optimizers(self) -> None:
        """For adversarial dual-head techniques: `optimizer` over the backbone and generator head, and
        `subclass_optimizer` over the subclass head alone, so neither step can move the other's parameters."""
        m = self.model
        self.optimizer = self.make_optimizer([*m.body_parameters(), *m.generator_head.parameters()])
        self.subclass_optimizer = self.make_optimizer(m.subclass_head.parameters())

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(self.model(batch["x"]), batch["generator"])

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        loss = self.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"loss": loss.item()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.test_inputs(x))

    @classmethod
    def upstream(cls, config):
        """The Config of the run this technique's run starts from (trained or reused first by the sweep), or
        None: `starts_from`'s run of the same config with that technique's own defaults."""
        return config.replace(technique=cls.starts_from, technique_params={}) if cls.starts_from else None

    def start_from(self, state: dict[str, torch.Tensor]) -> None:
        """Take what this run needs from its upstream run's technique state (the engine reads it from that run's
        checkpoint, as `from_upstream` says): by default its weights, loaded as this technique's own."""
        self.load_state_dict(state)

    def prepare(self, loader) -> None:
        """One pass of work before the first optimiser step (the engine calls it once per fresh run with the
        training loader): nothing, unless the technique is fitted in closed form (residual_stats)."""

    def test_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """The images the attribution model sees at test time: `x` itself, unless the technique transforms its
        inputs (runtime_adversarial's attack). Grad-CAM and content reliance explain the model on these."""
        return x

    # --- helpers for techniques ---
    def group_of(self, frame: pd.DataFrame) -> np.ndarray:
        """generator_index * n_subclasses + subclass_index per row (-1 for a subclass outside training)."""
        return label_codes(frame, self.generators, self.subclasses)["group"]


def training_images_in_order(loader, patches: int) -> torch.utils.data.DataLoader:
    """The images of a training loader once each, in the order of its dataset's frame (`index` is the row),
    cropped as for evaluation (a grid of up to `patches` crops, no random draw: no random state is used): what
    a technique reads when it featurises or scores its own training set in `prepare` (dfr, jtt). Shares the
    training dataset's decoded images."""
    view = copy.copy(loader.dataset)
    view.train = False
    view.augment = None  # the images themselves, not a random blur or JPEG of them
    view.patches = patches if view.policy == "crop" else 1
    return torch.utils.data.DataLoader(view, batch_size=2 * loader.batch_size, shuffle=False,
                                       collate_fn=loader.collate_fn, num_workers=loader.num_workers)


ABSENT_LOGIT = -1e4  # the logit of a generator a closed-form head never saw: never predicted


def linear_head_rows(X: np.ndarray, y: np.ndarray, n_classes: int, make_lr,
                     sample_weight: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(weight (n_classes, D), bias (n_classes,)) of a logistic regression `make_lr()` fitted on X (N, D) and class
    indices y, one row per class whatever classes y holds: an absent class gets ABSENT_LOGIT, a single class a
    constant head, two classes scikit-learn's one row of log-odds (classes[1] against classes[0])."""
    classes = np.unique(y)
    weight = np.zeros((n_classes, X.shape[1]))
    bias = np.full(n_classes, ABSENT_LOGIT)
    if len(classes) == 1:
        bias[classes[0]] = 0.0
        return weight, bias
    lr = make_lr()
    lr.fit(X, y, sample_weight=sample_weight)
    if len(classes) == 2:
        weight[classes[1]], bias[classes[0]], bias[classes[1]] = lr.coef_[0], 0.0, lr.intercept_[0]
    else:
        weight[lr.classes_], bias[lr.classes_] = lr.coef_, lr.intercept_
    return weight, bias


def per_image(values: torch.Tensor, owner: torch.Tensor, mean: bool = True) -> torch.Tensor:
    """Rows of `values` (one per patch) summed, or averaged, per image (`owner`: the image of each patch)."""
    owner = owner.to(values.device)
    out = torch.zeros(int(owner[-1]) + 1, *values.shape[1:], dtype=values.dtype, device=values.device)
    out.index_add_(0, owner, values)
    return out / torch.bincount(owner).view(-1, *([1] * (values.dim() - 1))) if mean else out


def image_starts(owner: torch.Tensor) -> torch.Tensor:
    """True at each image's first patch: picks per-image labels out of per-patch ones."""
    first = torch.ones_like(owner, dtype=torch.bool)
    first[1:] = owner[1:] != owner[:-1]
    return first


def image_logits(logits: torch.Tensor, owner: torch.Tensor | None) -> torch.Tensor:
    """One row per image: the logits themselves when every image is one patch, else the mean of each image's
    patches' log-probabilities (forensic patch voting: Chai et al. 2020; Corvi et al. 2023)."""
    if owner is None or len(owner) == int(owner[-1]) + 1:
        return logits
    return per_image(torch.log_softmax(logits, dim=1), owner)


@torch.no_grad()
def predict_log_probs(predict, loader, device: torch.device, n_classes: int, progress: bool = False,
                      desc: str = "predict", chunk: int = 256) -> np.ndarray:
    """Log-probabilities (N, n_classes), float64, of `predict(x) -> logits` over a loader of batches with `x`,
    in its order: log_softmax of the logits, or for a batch of patches (`owner`: the image of each patch,
    `attrlib.data.collate_patches`) of the mean of each image's patches' log-probabilities, renormalised.
    Kept in log space so that the log-likelihood ratios (`attrlib.evaluation.llr`) do not saturate where a
    probability rounds to 0 or 1. `predict` sees at most `chunk` crops at once (a batch of 64 images of 16
    patches would hold the activations of 1,024 crops)."""
    out = []
    for batch in progress_bar(loader, progress, desc=desc, leave=False):
        x = batch["x"]
        logits = torch.cat([predict(x[i:i + chunk].to(device, non_blocking=True)).double()
                            for i in range(0, len(x), chunk)])
        out.append(torch.log_softmax(image_logits(logits, batch.get("owner")), dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, n_classes), dtype=np.float64)


def predict_probs(predict, loader, device: torch.device, n_classes: int, progress: bool = False,
                  desc: str = "predict", chunk: int = 256) -> np.ndarray:
    """Softmax probabilities (N, n_classes), float32: the exp of `predict_log_probs` (the engine's
    validation, robustness under perturbations)."""
    return np.exp(predict_log_probs(predict, loader, device, n_classes, progress, desc, chunk)).astype(np.float32)


def confusion_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross entropy towards the uniform distribution (Alvi et al., "Turning a Blind Eye", 2018)."""
    return -F.log_softmax(logits, dim=1).mean(dim=1).mean()
