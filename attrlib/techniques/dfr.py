"""Deep Feature Reweighting (Kirichenko, Izmailov & Wilson, "Last Layer Re-Training is Sufficient for Robustness
to Spurious Correlations", ICLR 2023): the baseline's features are kept, its last layer is fitted again on
data where the spurious attribute no longer predicts the label.

Here: the engine loads the finished baseline run of the same config (`starts_from`); stem and backbone stay
frozen (eval mode: their BatchNorm statistics are the baseline's, bit for bit); `prepare` computes the
features of every training image once and replaces the generator head by an L1-regularised logistic
regression on them (standardised features, as the paper's code; multinomial, by scikit-learn's saga, where
the paper's liblinear is one-vs-rest for its two-class tasks), folded back into the linear head. Fitted in closed form, like residual_stats: `steps` is 0.

What is adapted, and why:
- Balanced data. The paper fits on a group-balanced subsample of a held-out set (DFR^Tr_Val). A held-out
  set of the training cells would be taken from training, and the validation subclass must stay unseen
  (it chooses hyper-parameters), so this is the paper's DFR^Tr_Tr: the training set itself, reweighted.
  Instead of averaging fits on several random balanced subsamples (each cell cut to the smallest cell's
  size), one fit weights every row by min_g N_g / N_g(i): the same balanced objective in expectation, no
  draw, and each generator x subclass cell weighs as much as the smallest cell's images (group_balanced's
  cell weights, rescaled so that C keeps the paper's meaning for a subsample of that size).
- Crops. Features are those of the evaluation grid (one crop per image on the embedded benchmark); every
  crop is a row, weighted by its image's weight over its image's crops.
- C: the paper picks it from {1, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01} on worst-group validation accuracy; here
  the search space spans that range and the sweep's selection rule (the validation subclass) picks.
"""
from __future__ import annotations

import numpy as np
import sklearn
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from . import register
from .base import Technique, linear_head_rows, training_images_in_order
from .group_balanced import cell_balanced_weights

# a pure L1 penalty: scikit-learn 1.8 deprecated `penalty` for `l1_ratio`, which before 1.8 acts only with elasticnet
_L1 = dict(l1_ratio=1.0) if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 8) else dict(penalty="l1")


@register("dfr")
class DFR(Technique):
    description = ("baseline's frozen features, generator head re-fitted by L1 logistic regression on "
                   "group-balanced training data (DFR, Kirichenko et al. 2023)")
    defaults = {"C": 0.3, "max_iter": 1000}  # inverse L1 strength (the paper's grid's middle); saga's most epochs
    search_space = {"C": ("log", 0.01, 1.0)}  # the paper's grid's range (no learning rate: no steps)
    starts_from = "baseline"

    def __init__(self, config, generators, subclasses):
        super().__init__(config, generators, subclasses)
        for p in self.model.body_parameters():
            p.requires_grad_(False)
        # never stepped by the engine (steps 0); `update` exists for the contract and moves the head alone
        self.optimizer = self.make_optimizer(self.model.generator_head.parameters())

    @property
    def steps(self) -> int:
        """Fitted in closed form by `prepare`: no optimiser step, whatever the config's budget."""
        return 0

    def train(self, mode: bool = True):
        super().train(mode)
        self.model.stem.eval()  # the baseline's BatchNorm statistics stay as they are
        self.model.backbone.eval()
        return self

    def sampler_weights(self, frame):
        """The shares the head is fitted with (uniform over cells): what `training_prior` reports."""
        return cell_balanced_weights(self.group_of(frame))

    def fit_weights(self, frame) -> np.ndarray:
        """Per-row weights of the fit: every cell of `frame` sums to the smallest cell's size."""
        groups = self.group_of(frame)
        weights = cell_balanced_weights(groups)
        return weights * len(np.unique(groups)) * np.unique(groups, return_counts=True)[1].min()

    def loss(self, batch):
        with torch.no_grad():
            feats = self.model.features(batch["x"])
        return F.cross_entropy(self.model.generator_head(feats), batch["generator"])

    @torch.no_grad()
    def prepare(self, loader) -> None:
        mode = self.training
        self.eval()
        device = self.model.generator_head.weight.device
        feats, labels, rows = [], [], []
        for batch in training_images_in_order(loader, self.config.test_patches):
            feats.append(self.model.features(batch["x"].to(device)).double().cpu())
            labels.append(batch["generator"])
            rows.append(batch["index"])
        X, y, rows = torch.cat(feats).numpy(), torch.cat(labels).numpy(), torch.cat(rows).numpy()
        crops = np.bincount(rows, minlength=len(loader.dataset))  # crops per image: an image weighs as one
        self.fit_head(X, y, self.fit_weights(loader.dataset.frame)[rows] / crops[rows])
        self.train(mode)

    def fit_head(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray) -> None:
        """Replace the generator head by the weighted L1 logistic regression of generators y (N,) on features
        X (N, D), the scaler folded into the head (logits = W (x - mean) / scale + b)."""
        scaler = StandardScaler().fit(X, sample_weight=weights)
        coef, bias = linear_head_rows(
            scaler.transform(X), y, self.n_generators, sample_weight=weights,
            make_lr=lambda: LogisticRegression(C=float(self.hparams["C"]), solver="saga",
                                               max_iter=int(self.hparams["max_iter"]), random_state=self.config.seed,
                                               **_L1))
        present = np.isin(np.arange(self.n_generators), np.unique(y))
        coef = coef / scaler.scale_
        bias[present] -= coef[present] @ scaler.mean_
        head = self.model.generator_head
        head.weight.copy_(torch.as_tensor(coef, dtype=head.weight.dtype, device=head.weight.device))
        head.bias.copy_(torch.as_tensor(bias, dtype=head.bias.dtype, device=head.bias.device))
