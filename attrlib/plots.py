"""Figures of the study that more than one notebook (or the CLI) can draw. Each returns a matplotlib Figure;
saving goes through `attrlib.reporting.save_fig`, the one figure writer.
"""
from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

SIMULATED_NOTE = "simulated benchmark (not real generator images)"


def bias_heatmap(table: pd.DataFrame, title: str = "Training images per generator x subclass",
                 note: str = "") -> plt.Figure:
    """Seed 002's generator x subclass matrix as a heat map; empty cells are where the shortcut lives."""
    fig, ax = plt.subplots(figsize=(1.1 * table.shape[1] + 2.5, 0.55 * table.shape[0] + 1.6))
    sns.heatmap(table, annot=True, fmt="d", cmap="Blues", cbar=False, linewidths=0.5, linecolor="0.85",
                mask=table.to_numpy() == 0, ax=ax)
    ax.set_xlabel("subclass (content)")
    ax.set_ylabel("generator")
    ax.set_title(title + (f"\n{note}" if note else ""), fontsize=10)
    fig.tight_layout()
    return fig


def sample_grid(data, split_order=("train", "val", "test"), note: str = "") -> plt.Figure:
    """One image per generator x subclass cell (blank where the data has none): rows generators, columns subclasses."""
    from .data import load_image

    frame = data.frame
    subclasses = list(data.subclasses) + [s for s in data.heldout if s in set(frame.subclass)]
    fig, axes = plt.subplots(len(data.generators), len(subclasses),
                             figsize=(1.25 * len(subclasses) + 0.8, 1.25 * len(data.generators) + 0.8),
                             squeeze=False)
    for i, g in enumerate(data.generators):
        for j, s in enumerate(subclasses):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            cell = frame[(frame.generator == g) & (frame.subclass == s)]
            if len(cell):
                cell = cell.assign(_o=cell.split.map({k: n for n, k in enumerate(split_order)})).sort_values(["_o", "path"])
                ax.imshow(load_image(cell.path.iloc[0]), interpolation="nearest")
            else:
                ax.set_facecolor("0.93")
            if i == 0:
                ax.set_title(s + (" (held out)" if s in data.heldout else ""), fontsize=8)
            if j == 0:
                ax.set_ylabel(g, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle("Samples per generator x subclass" + (f" - {note}" if note else ""), fontsize=10)
    fig.tight_layout()
    return fig


def spectra_figure(spectra: Mapping[str, np.ndarray], note: str = "") -> plt.Figure:
    """Per-generator mean residual spectra (log magnitude, DC at the centre), one shared colour scale."""
    names = list(spectra)
    vmin = min(float(np.percentile(s, 1)) for s in spectra.values())
    vmax = max(float(np.percentile(s, 99.5)) for s in spectra.values())
    fig, axes = plt.subplots(1, len(names), figsize=(2.3 * len(names), 2.7), squeeze=False)
    for ax, name in zip(axes[0], names):
        im = ax.imshow(spectra[name], cmap="magma", vmin=vmin, vmax=vmax,
                       extent=(-0.5, 0.5, 0.5, -0.5))
        ax.set_title(name, fontsize=9)
        ax.set_xticks([-0.5, 0, 0.5]), ax.set_yticks([-0.5, 0, 0.5])
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel("cycles / pixel", fontsize=8)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="log |FFT(x - denoise(x))|")
    fig.suptitle("Mean residual spectra per generator" + (f" - {note}" if note else ""), fontsize=10)
    return fig


def sweep_figure(sweep: pd.DataFrame, seed002: float = 0.49, chance: float | None = None,
                 note: str = "") -> plt.Figure:
    """Held-out accuracy against fingerprint strength, for biased and unbiased training.

    `sweep` has columns strength, variant, heldout_accuracy (one row per run; seeds are averaged, with
    their spread as error bars).
    """
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for variant, rows in sweep.groupby("variant"):
        agg = rows.groupby("strength").heldout_accuracy.agg(["mean", "std"]).reset_index()
        ax.errorbar(agg.strength, agg["mean"], yerr=agg["std"].fillna(0), marker="o", capsize=3,
                    label=f"trained on {variant}")
    if chance is not None:
        ax.axhline(chance, color="0.5", ls=":", lw=1, label=f"chance ({chance:.2f})")
    ax.axhline(seed002, color="C3", ls="--", lw=1, label=f"seed 002 baseline ({seed002:.2f})")
    ax.set_xlabel("fingerprint strength s")
    ax.set_ylabel("held-out subclass accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Held-out accuracy vs fingerprint strength" + (f"\n{note}" if note else ""), fontsize=10)
    fig.tight_layout()
    return fig
