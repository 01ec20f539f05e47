"""Issue 17 §6: the per-model bias gap. For each front end / backbone M, how far M trained on the biased data
stays from M's own reference: the unbiased oracle (M by ERM on the benchmark's unbiased twin) or, on a real
folder, the target-data reference (M by ERM with the held-out subclass, cross-fitted: `target_reference`).
The number says whether a benchmark poses the problem real images pose: a gap near 0 leaves nothing to close.

    bias_gap_table   one row per model: biased accuracy, reference accuracy, bias gap = biased - reference,
                     each with its paired interval (`stats.paired_comparison`: by rotation, seed and image)
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import pandas as pd

from .stats import CONVENTION, paired_comparison, verdict

Runs = Sequence[str | os.PathLike]


def bias_gap_table(models: Mapping[str, tuple[Runs, Runs]], n_boot: int = 1000, alpha: float = 0.05,
                   seed: int = 0) -> pd.DataFrame:
    """models: label -> (the model's runs on the biased data, its reference's runs), each over the same rotations
    and seeds. Columns: biased_accuracy, reference_accuracy, bias_gap (biased - reference: negative when the bias
    costs accuracy), each with _low/_high (the paired hierarchical bootstrap, `stats.CONVENTION`: the reference
    paired by image where it scored the same images, else by rotation and seed: `pairing`), verdict (of the gap),
    rotations, seeds, images, note. `attrs["caption"]` says it."""
    rows = {}
    for label, (biased, reference) in models.items():
        # the biased runs against themselves, the reference as the oracle: its pairing rules (same images or
        # identical bytes: by image; other images: by rotation and seed) are the study's, written once
        comp = paired_comparison(list(biased), list(biased), list(reference), n_boot=n_boot, alpha=alpha, seed=seed)
        o = comp.overall
        row = {"biased_accuracy": o["baseline_accuracy"], "biased_accuracy_low": o["baseline_accuracy_low"],
               "biased_accuracy_high": o["baseline_accuracy_high"], "reference_accuracy": o["oracle_accuracy"],
               "reference_accuracy_low": o["oracle_accuracy_low"], "reference_accuracy_high": o["oracle_accuracy_high"],
               "bias_gap": -o["oracle_gap"], "bias_gap_low": -o["oracle_gap_high"], "bias_gap_high": -o["oracle_gap_low"]}
        row["verdict"] = verdict(row["bias_gap_low"], row["bias_gap_high"], "biased", "reference")
        notes = [n.replace("oracle", "reference") for n in comp.notes if "gap closed" not in n]
        row.update(pairing=o["oracle_pairing"], rotations=int(o["rotations"]), seeds=int(o["seeds"]),
                   images=int(o["images"]), note="; ".join(dict.fromkeys(notes)))
        rows[label] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model"
    level = f"{100 * (1 - alpha):.0f}%"
    table.attrs.update(alpha=alpha, n_boot=n_boot, caption=(
        "Per-model bias gap: the model trained on the biased data minus the same model's reference (the unbiased "
        "oracle on the benchmark; on a real folder the target-data reference, ERM trained with the held-out "
        f"subclass, cross-fitted), mean over rotations of the mean over seeds; {level} intervals by {CONVENTION} "
        f"({n_boot} resamples), paired by rotation, seed and image where the reference scored the same images "
        "(pairing: image), else by rotation and seed (pairing: seed). A gap whose interval holds 0 leaves no "
        "bias to close for that model."))
    return table
