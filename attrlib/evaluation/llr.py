"""Seed 000's Figure 2 in numbers: each generator's log-likelihood ratio log(p_g / (1 - p_g)) on its own
images against the other generators' images (`attrlib.reporting.llr_figure` draws it)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .metrics import class_probs

LLR_CLIP = 1e-6


def llr_scores(pred_frame: pd.DataFrame, generators: Sequence[str], clip: float = LLR_CLIP) -> pd.DataFrame:
    """Long table of log(p_g / (1 - p_g)) for every image and every generator g, p clipped to [clip, 1 - clip].

    Columns: path, generator (the image's true generator), scored (g), own (image is g's), llr.
    """
    probs = np.clip(class_probs(pred_frame, generators, "llr_scores"), clip, 1.0 - clip)
    llr = np.log(probs) - np.log1p(-probs)
    true = pred_frame["generator"].to_numpy()
    parts = [pd.DataFrame({"path": pred_frame["path"].to_numpy(), "generator": true, "scored": g,
                           "own": true == g, "llr": llr[:, i]}) for i, g in enumerate(generators)]
    return pd.concat(parts, ignore_index=True)

