"""Training: one loop for every technique, and the one run it trains.

    loop          devices, seeding, loaders, one epoch, predictions
    checkpoint    the technique's, its optimisers' and the random states, saved and restored (resume)
    engine        `fit(config, data, run)`: train one run into its folder (resumed after its last finished
                  epoch) and write its predictions; the sweep (`attrlib.sweep`) locks, reuses and scores runs
    distributed   torchrun: process group, disjoint samples, gradient averaging
"""
from .checkpoint import checkpoint_state, load_checkpoint
from .engine import Fitted, fit, predict_splits
from .loop import make_loader, pick_device, seed_everything, train_one_epoch

__all__ = ["Fitted", "checkpoint_state", "fit", "load_checkpoint", "make_loader", "pick_device", "predict_splits",
           "seed_everything", "train_one_epoch"]
