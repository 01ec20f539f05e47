"""Every figure of the study, each a function that returns a matplotlib Figure drawn from
`attrlib.evaluation`'s and `attrlib.inspection`'s numbers and maps (run folders in, a figure out);
`save_fig` writes it.

    data (notebook 01)   bias_heatmap, sample_grid, spectra_figure, sweep_figure, shortcut_audit_figure
    per technique        confusion_figure, confusion_grid, llr_figure / runs_llr_figure (seed 000 Figure 2)
    robustness           robustness_figure, radius_sweep_figure (runtime_adversarial's radius vs random noise)
    the README           headline_figure (held-out accuracy per arm with intervals, benchmark beside real data)
    Grad-CAM             cam_grid, run_cam_grid
"""
from __future__ import annotations

import os
import textwrap
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd
import seaborn as sns
import torch

from ..data import Audit, load_image
from ..evaluation import confusion, oscr_curve, runs_llr_scores
from .. import records
from ..runfolder import generators_of, load_predictions, pooled_predictions
from ..inspection.cam import run_cam_examples
from .draw import show_image, show_overlay



# --------------------------------------------------------------------------------------------- data
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



def shortcut_audit_figure(audit: Audit, note: str = "") -> plt.Figure:
    """The shortcut audit (`attrlib.data.shortcut_audit`) in three panels: file format shares per generator,
    image sizes per generator (a marker shape per generator, area: share of its images), and the balanced accuracy of
    each cue-only classifier against chance (red: the cue tells some generator apart)."""
    generators = audit.generators
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 0.35 * len(generators) + 3.0),
                             gridspec_kw={"width_ratios": [1, 1.1, 1.1]})
    ax = axes[0]
    formats = audit.formats.loc[generators[::-1]]
    formats.plot.barh(stacked=True, ax=ax, width=0.75, legend=False,
                      color=[f"C{i % 10}" for i in range(formats.shape[1])])
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of images")
    ax.set_ylabel("")
    ax.legend(title="format", fontsize=7, title_fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18),
              ncol=min(4, audit.formats.shape[1]), frameon=False)
    ax.set_title("File format per generator", fontsize=9)

    ax = axes[1]
    meta = audit.metadata
    cells = meta.groupby(["generator", "width", "height"]).size().rename("n").reset_index()
    cells["share"] = cells["n"] / cells["generator"].map(audit.counts)
    for i, g in enumerate(generators):
        c = cells[cells.generator == g]
        ax.scatter(c.width, c.height, s=30 + 270 * c.share, facecolors="none", edgecolors=f"C{i % 10}",
                   marker="os^Dv<>PX"[i % 9], linewidths=1.5, label=g)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    for axis, values in ((ax.xaxis, meta["width"]), (ax.yaxis, meta["height"])):
        if values.nunique() <= 8:   # few sizes: tick exactly them, in pixels
            axis.set_ticks(sorted(values.unique()))
        axis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.margins(0.2)
    ax.set_xlabel("width (px)")
    ax.set_ylabel("height (px)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=min(3, len(generators)), frameon=False)
    ax.set_title("Image sizes per generator", fontsize=9)

    ax = axes[2]
    cues = audit.cues.iloc[::-1]
    colours = ["C3" if len(f) else "0.55" for f in cues["flagged"]]
    ax.barh(cues.index, cues["balanced_accuracy"].fillna(0), color=colours)
    chance = float(cues["chance"].iloc[0])
    ax.axvline(chance, color="k", ls=":", lw=1, label=f"chance (1/{len(generators)})")
    ax.set_xlim(0, 1)
    ax.set_xlabel("balanced accuracy (cross-validated)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Generator predicted from one cue", fontsize=9)
    fig.suptitle(f"Shortcut audit, {audit.split} split" + (f" - {note}" if note else ""), fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------- per technique
def _confusion_of_runs(run_dirs: Sequence[str | os.PathLike], split: str, normalize: bool) -> pd.DataFrame:
    """Confusion counts of several runs summed (their rows pooled), row-normalised if asked."""
    frame = pooled_predictions(run_dirs, split)
    return confusion(frame, generators_of(frame), "true" if normalize else None)


def confusion_figure(run_dirs: Sequence[str | os.PathLike], split: str = "heldout", title: str = "",
                     normalize: bool = False) -> plt.Figure:
    """The confusion matrix of several seeds of one technique on `split`, counts summed over the seeds
    (normalize: each row divided by its total)."""
    data = _confusion_of_runs(run_dirs, split, normalize)
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    sns.heatmap(data, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", cbar=False, ax=ax)
    ax.set_title(title or f"confusion ({split}, {len(run_dirs)} seed(s) summed)")
    fig.tight_layout()
    return fig


def confusion_grid(runs: Mapping[str, Sequence[str | os.PathLike]], split: str = "heldout",
                   normalize: bool = True, cols: int = 3, title: str = "") -> plt.Figure:
    """One confusion matrix per technique (runs: name -> run folders; seeds summed), row-normalised or
    counts, in a grid."""
    names = list(runs)
    rows = max(1, -(-len(names) // cols))
    # constrained layout makes room for the figure's title above the panels' own (tight_layout ignores it)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False, layout="constrained")
    # seaborn's heatmap draws the whole figure once per panel (to rotate its own overlapping tick labels): the
    # layout engine is off and the panels already drawn are hidden during those draws, so each draw renders one
    # panel (13 panels: 13 draws of one panel, not of 1 to 13), and the rotation each panel gets is unchanged; the
    # layout is applied when the figure is saved
    constrained = fig.get_layout_engine()
    fig.set_layout_engine("none")
    for ax in axes.flat:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        data = _confusion_of_runs(runs[name], split, normalize)
        ax.set_visible(True)
        sns.heatmap(data, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", cbar=False, ax=ax,
                    vmin=0, vmax=1 if normalize else None, annot_kws={"size": 7})
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=7)
        ax.set_visible(False)
    for ax in axes.flat:
        ax.set_visible(True)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.set_layout_engine(constrained)
    return fig


def llr_figure(scores: pd.DataFrame, generators: Sequence[str], title: str = "", bins: int = 30, kde: bool = True,
               cols: int = 3) -> plt.Figure:
    """One panel per generator g: density of LLR_g(x) = log p(x|g) - log p(x|not g) (the other generators
    weighted equally; the training prior removed: `attrlib.evaluation.llr`) on g's own images against the
    other generators' images.

    0 is no evidence either way; seed 000's "happy box" is own images far right and others far left. The
    caption under the panels states the definition and any note of `scores.attrs` (e.g. an old run folder
    whose log-probabilities were recomputed from stored probabilities).
    """
    from scipy.stats import gaussian_kde

    rows = max(1, -(-len(generators) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows + 0.6), squeeze=False)
    lo, hi = float(scores["llr"].min()), float(scores["llr"].max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    for ax, g in zip(axes.flat, generators):
        panel = scores[scores["scored"] == g]
        for own, colour, label in ((True, "C2", "own images"), (False, "C3", "other generators")):
            values = panel.loc[panel["own"] == own, "llr"].to_numpy()
            if not len(values):
                continue
            ax.hist(values, bins=edges, density=True, histtype="stepfilled", color=colour, alpha=0.45, label=f"{label} (n={len(values)})")
            if kde and len(values) > 1 and np.ptp(values) > 0:  # a KDE of constant values is singular
                grid = np.linspace(edges[0], edges[-1], 200)
                ax.plot(grid, gaussian_kde(values)(grid), color=colour, lw=1.2)
        ax.axvline(0.0, color="0.4", ls=":", lw=1)
        ax.set_title(g, fontsize=9)
        ax.set_xlabel("LLR = log p(x|g) - log p(x|not g)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper left", framealpha=0.6)
    for ax in list(axes.flat)[len(generators):]:
        ax.axis("off")
    fig.suptitle(title or "Per-generator LLR score charts (dotted: LLR 0, no evidence)", fontsize=10)
    caption = scores.attrs.get("definition", "") + (f". Note: {scores.attrs['note']}" if scores.attrs.get("note") else "")
    if caption:
        fig.text(0.01, 0.005, textwrap.fill(caption, 160), fontsize=6.5, va="bottom", ha="left")
    fig.tight_layout(rect=(0, 0.04 + 0.02 * (len(caption) // 160), 1, 1))
    return fig


def runs_llr_figure(run_dirs: Sequence[str | os.PathLike], title: str = "", **kwargs) -> plt.Figure:
    """`llr_figure` of the held-out predictions of several runs of one technique (seeds, rotations) pooled,
    each run's training prior removed (`attrlib.evaluation.runs_llr_scores`)."""
    scores = runs_llr_scores(run_dirs)
    return llr_figure(scores, generators_of(load_predictions(run_dirs[0], "heldout")), title=title, **kwargs)


# --------------------------------------------------------------------------------------------- robustness
def headline_figure(panels: Mapping[str, pd.DataFrame], baseline: str = "baseline", note: str = "") -> plt.Figure:
    """The README's figure: held-out accuracy per arm with its 95 % interval, one panel per data source (the
    benchmark, real data where a study on it exists). panels: title -> a summary table's numbers (index: arm;
    accuracy, accuracy_low, accuracy_high), in the order to draw. The baseline's accuracy is a dashed line."""
    if not panels:
        raise ValueError("headline_figure needs at least one panel (a summary table's numbers)")
    rows = max(len(t) for t in panels.values())
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 0.34 * rows + 1.6), squeeze=False,
                             sharex=True)
    for ax, (title, table) in zip(axes[0], panels.items()):
        t = table.iloc[::-1]
        y = np.arange(len(t))
        acc = t["accuracy"].to_numpy(float)
        err = np.vstack([acc - t["accuracy_low"].to_numpy(float), t["accuracy_high"].to_numpy(float) - acc])
        ax.errorbar(acc, y, xerr=np.clip(err, 0, None), fmt="o", color="C0", ecolor="0.4", capsize=3, ms=4)
        if baseline in t.index:
            ax.axvline(float(t.loc[baseline, "accuracy"]), color="C3", ls="--", lw=1, label=f"{baseline}")
            ax.legend(loc="lower right", fontsize=8, frameon=False)
        ax.set_yticks(y, [str(i) for i in t.index], fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel("held-out accuracy (95 % interval)")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", color="0.9")
    if note:
        fig.text(0.01, 0.005, textwrap.fill(note, 130), fontsize=7, va="bottom")
    fig.tight_layout(rect=(0, 0.06 if note else 0, 1, 1))
    return fig


def robustness_figure(table: pd.DataFrame, title: str = "Held-out accuracy under post-processing (mean ± std over seeds)"
                      ) -> plt.Figure:
    """Mean accuracy (over seeds, with their spread) per perturbation, one line per technique."""
    fig, ax = plt.subplots(figsize=(7.2, 3.8))
    # error bars: the sample std over seeds (seaborn's "sd" is pandas' std, ddof=1)
    sns.pointplot(data=table, x="perturbation", y="accuracy", hue="arm", errorbar="sd", dodge=0.3,
                  markersize=4, linewidth=1.2, ax=ax)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("")
    ax.tick_params(axis="x", labelsize=8, rotation=20)
    ax.legend(fontsize=7, ncols=2)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def open_set_figure(table: pd.DataFrame, frames: Mapping[str, pd.DataFrame], score: str = "mahalanobis",
                    title: str = "Open-set trade-off: known images attributed vs unknown images accepted") -> plt.Figure:
    """The threshold trade-off of `score` (`evaluation.open_set_table`'s table and scored frames): left, the OSCR
    curve of each arm's first run (correct-classification rate of known images against the share of unknown
    images accepted as the threshold moves), the chosen threshold marked; right, the share of known images
    rejected and of unknown images flagged against the threshold's false-rejection rate on known images."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9.6, 3.8))
    rows = table[table["score"] == score].drop_duplicates("arm")
    column = f"score_{score}"
    for row in rows.itertuples():
        scored = frames[row.run]
        known = scored["known"].to_numpy()
        correct = (scored["pred"] == scored["generator"]).to_numpy()[known]
        values = scored[column].to_numpy(float)
        fpr, ccr, _ = oscr_curve(correct, values[known], values[~known])
        line, = ax.plot(fpr, ccr, lw=1.4, label=f"{row.arm} (OSCR {row.oscr:.2f}, AUROC {row.auroc:.2f})")
        at = values <= row.threshold
        ax.plot([at[~known].mean()], [(correct & at[known]).mean()], "o", color=line.get_color())
        grid = np.quantile(values, np.linspace(0, 1, 101))
        ax2.plot([(values[known] > t).mean() for t in grid], [(values[~known] > t).mean() for t in grid],
                 lw=1.4, color=line.get_color(), label=row.arm)
        ax2.plot([(~at[known]).mean()], [(~at[~known]).mean()], "o", color=line.get_color())
    ax.set_xlabel("unknown images accepted (false-positive rate)")
    ax.set_ylabel("known images attributed correctly")
    ax.set_xlim(0, 1), ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    ax2.plot([0, 1], [0, 1], ls=":", color="grey", lw=1)
    ax2.set_xlabel("known test images rejected")
    ax2.set_ylabel("unknown images flagged")
    ax.set_title("dot: the threshold chosen on validation", fontsize=8)
    fig.suptitle(f"{title} ({score})", fontsize=10)
    fig.tight_layout()
    return fig


def radius_sweep_figure(table: pd.DataFrame, title: str = "runtime_adversarial: attack vs random noise of its radius"
                        ) -> plt.Figure:
    """`attrlib.evaluation.radius_sweep_summary` drawn: left, held-out accuracy per radius with no change,
    under the attack and under the random-sign control (mean over runs, ± std over seeds); right, the paired
    differences attack - none, control - none, attack - control with their 95 % bootstrap intervals."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.6, 3.6))
    r = table["radius"].to_numpy(dtype=float)
    styles = {"none": ("0.45", "--"), "attack": ("C3", "-"), "control": ("C0", "-")}
    for c, (colour, line) in styles.items():
        left.errorbar(r, table[f"accuracy_{c}"], yerr=table[f"std_{c}"].fillna(0), color=colour, ls=line,
                      marker="o", ms=4, lw=1.3, capsize=2, label={"none": "no change", "attack": "attack (PGD)",
                                                                 "control": "random sign noise"}[c])
    left.set_ylabel("held-out accuracy")
    left.set_ylim(0, 1.02)
    for i, (name, colour) in enumerate((("attack_minus_none", "C3"), ("control_minus_none", "C0"),
                                        ("attack_minus_control", "C2"))):
        est = table[name].to_numpy()
        err = np.vstack([est - table[f"{name}_low"].to_numpy(), table[f"{name}_high"].to_numpy() - est])
        # a small horizontal offset per comparison, proportional on the symlog axis, so the bars do not overlap
        right.errorbar(r * (1 + 0.06 * (i - 1)) + 0.03 * (i - 1), est, yerr=err, color=colour, marker="o", ms=4,
                       lw=1.3, capsize=2, label=name.replace("_minus_", " − ").replace("none", "no change"))
    right.axhline(0, color="0.3", lw=0.8)
    right.set_ylabel("paired change in accuracy (95 % CI)")
    for ax in (left, right):
        ax.set_xscale("symlog", linthresh=0.5)
        ax.set_xticks(r)
        ax.set_xlim(-0.3, 1.35 * r.max() + 0.3)  # room for the offset bars at both ends
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.axvline(2, color="0.7", lw=0.8, ls=":")  # the simulated fingerprint's RMS, in grey levels
        ax.set_xlabel("L-inf radius (grey levels; dotted: fingerprint RMS)")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------- Grad-CAM
def cam_grid(images: torch.Tensor, cams: torch.Tensor, pred: Sequence[int], true: Sequence[int],
             generators: Sequence[str], title: str = "", alpha: float = 0.5) -> plt.Figure:
    """Two rows: the images, then their CAM overlays labelled "pred X / true Y" (green when right, red when
    wrong). Save with `attrlib.reporting.save_fig`."""
    n = len(images)
    if not n:
        raise ValueError("cam_grid needs at least one image")
    fig, axes = plt.subplots(2, n, figsize=(1.7 * n + 0.4, 4.3), squeeze=False)
    for k in range(n):
        img = show_image(axes[0, k], images[k])
        show_overlay(axes[1, k], img, cams[k, 0], alpha)
        p, t = int(pred[k]), int(true[k])
        axes[1, k].set_xlabel(f"pred {generators[p]}\ntrue {generators[t]}", fontsize=7,
                              color="tab:green" if p == t else "tab:red")
    axes[0, 0].set_ylabel("image", fontsize=8)
    axes[1, 0].set_ylabel("Grad-CAM", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def run_cam_grid(run_dir: str | os.PathLike, data=None, split: str | None = None, per_generator: int = 1,
                 target: str = "pred", seed: int = 0, label: str | None = None) -> plt.Figure:
    """The CAM grid of one run folder on `per_generator` images of each generator of `split` (default: the
    run's held-out split), titled with `label` (default: the run's technique; an arm of notebook 11 is a
    technique with other options, e.g. the baseline on another front end), the held-out rotation and the seed
    (`attrlib.inspection.run_cam_examples`)."""
    ex = run_cam_examples(run_dir, data=data, split=split, per_generator=per_generator, target=target, seed=seed)
    name = label or ex["arm"]
    held = records.read(run_dir).rotation
    return cam_grid(ex["x"], ex["cam"], ex["pred"], ex["true"], ex["generators"],
                    title=f"{name}{' (uses target data)' if ex['uses_target_data'] else ''} "
                          f"(held out {held}, seed {ex['seed']}), {ex['split']} split, CAM of the {ex['target']} generator")
