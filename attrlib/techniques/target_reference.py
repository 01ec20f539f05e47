"""Issue 17 §2: the target-data reference. Real data has no unbiased twin to train an oracle on, so the
reference is ERM (the baseline's loss, model and budget) trained *with* the held-out subclass, cross-fitted:
the held-out images are cut into `folds` folds (near-duplicate groups whole, stratified by generator:
`data.splits.cross_fit_folds`); fold run i trains on the training images plus the other folds' held-out
images and predicts fold i's. The sweep assembles the technique's run (`fold` = -1) from its fold runs:
every held-out image scored exactly once, by a model that never saw it or a near-duplicate of it, on the
same images as every arm. Gap closed against it = (arm - baseline) / (reference - baseline).

It trains on target data, so every table flags it (`uses_target_data`): a reference, not a competitor. Its
hyper-parameters are the baseline's (no search: a reference is not tuned on the data it is judged on).
"""
from . import register
from .baseline import Baseline


@register("target_reference")
class TargetReference(Baseline):
    description = ("ERM trained with the held-out subclass, cross-fitted over its images (k folds, near-duplicate "
                   "groups whole): the target-data reference; uses target data (issue 17)")
    defaults = {"folds": 5, "fold": -1}  # fold -1: the assembled run; 0..folds-1: one fold's model
    search_space = {}
    cross_fit = True
