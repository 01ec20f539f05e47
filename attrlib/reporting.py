"""What the notebooks show, from run folders: seed-style tables over seeds, confusion figures, and the one
figure writer (`save_fig`) and table writer (`save_table`) of the project.

The numbers come from `attrlib.evaluation` (scikit-learn metrics, intervals, gap closed); this module only
arranges and writes them. Everything here reads run folders (metrics.json, predictions.csv), so a notebook
can show runs another made. One convention for every table: mean ± sample std (ddof=1; 0 for one seed)
over the seeds, said in the table's caption.
"""
from __future__ import annotations

import io as _io
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .evaluation import metrics as _metrics
from .runfolder import generators_of, heldout_split, load_metrics, load_predictions
from .io import atomic_open, atomic_write_bytes, atomic_write_text

METRICS = ("precision", "recall", "f1", "support")
TARGET_DATA_MARK = " (target data)"


def _split_rows(run_dir, split: str) -> pd.DataFrame:
    return load_predictions(run_dir, heldout_split(run_dir) if split == "heldout" else split)


def seed_table(run_dirs: Sequence[str | os.PathLike], split: str = "heldout", fmt: bool = True,
               digits: int = 2) -> pd.DataFrame:
    """Seed 002's per-technique table over seeds: one row per generator (precision, recall, F1, support),
    then the macro average and the accuracy; cells "mean ± std" over the runs (sample std; 0 for one run).

    split: "heldout" (each run's own held-out split) or a split name. fmt=False returns the numbers:
    columns (metric, "mean"|"std"). `table.attrs["caption"]` says so.
    """
    if not len(run_dirs):
        raise ValueError("seed_table needs at least one run folder")
    reports = []
    for d in run_dirs:
        rows = _split_rows(d, split)
        reports.append(_metrics.seed_style_report(rows, generators_of(rows)))
    numbers = _metrics.aggregate_over_seeds(reports)
    caption = f"{split} split, mean ± std over {len(run_dirs)} seed(s) (sample std, ddof=1)"
    if not fmt:
        numbers.attrs["caption"] = caption
        return numbers
    out = pd.DataFrame(index=numbers.index, columns=list(METRICS), dtype=object)
    for r in numbers.index:
        for c in METRICS:
            mu, sd = numbers.loc[r, (c, "mean")], numbers.loc[r, (c, "std")]
            if np.isnan(mu):
                out.loc[r, c] = ""
            elif c == "support":
                out.loc[r, c] = f"{mu:.0f}"
            else:
                out.loc[r, c] = f"{mu:.{digits}f} ± {sd:.{digits}f}"
    out.index.name = "generator"
    out.attrs["caption"] = caption
    return out


def summary_table(runs: Mapping[str, Sequence[str | os.PathLike]], **kwargs) -> pd.DataFrame:
    """`attrlib.evaluation.summary_table` (the one summary table: intervals, gap closed); kept for callers
    that import it from here."""
    return _metrics.summary_table(runs, **kwargs)


def label_target_data(runs: Mapping[str, Sequence[str | os.PathLike]]) -> dict[str, list]:
    """The same runs, with TARGET_DATA_MARK added to the name of every technique that trains on target data
    (its runs' metrics.json say `uses_target_data`), so every table and figure keyed by name marks it."""
    return {name + (TARGET_DATA_MARK if any(load_metrics(d).get("uses_target_data") for d in dirs) else ""): list(dirs)
            for name, dirs in runs.items()}


def confusion(run_dirs: Sequence[str | os.PathLike], split: str = "heldout", normalize: str | None = None
              ) -> pd.DataFrame:
    """Confusion counts summed over runs (rows true generator, columns predicted), from predictions.csv;
    normalize="true" divides each row of the sum by its total (`attrlib.evaluation.confusion`)."""
    if not len(run_dirs):
        raise ValueError("confusion needs at least one run folder")
    frames = [_split_rows(d, split) for d in run_dirs]
    gens = generators_of(frames[0])
    total = sum(_metrics.confusion(f, gens) for f in frames)
    if normalize == "true":
        total = total.div(total.sum(1).replace(0, 1), axis=0)
    elif normalize is not None:
        raise ValueError(f"normalize={normalize!r}; valid choices: None (counts), 'true' (row-normalised)")
    return total


def confusion_figure(run_dirs: Sequence[str | os.PathLike], split: str = "heldout", title: str = "",
                     normalize: bool = False) -> plt.Figure:
    import seaborn as sns

    data = confusion(run_dirs, split, "true" if normalize else None)
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    sns.heatmap(data, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", cbar=False, ax=ax)
    ax.set_title(title or f"confusion ({split}, {len(run_dirs)} seed(s) summed)")
    fig.tight_layout()
    return fig


def confusion_grid(runs: Mapping[str, Sequence[str | os.PathLike]], split: str = "heldout",
                   normalize: bool = True, cols: int = 3, title: str = "") -> plt.Figure:
    """One confusion matrix per technique (runs: name -> run folders; seeds summed), row-normalised or
    counts, in a grid."""
    import seaborn as sns

    names = list(runs)
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        data = confusion(runs[name], split, "true" if normalize else None)
        sns.heatmap(data, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", cbar=False, ax=ax,
                    vmin=0, vmax=1 if normalize else None, annot_kws={"size": 7})
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def save_fig(fig: plt.Figure, name: str, figures_dir: str | os.PathLike = "figures",
             formats: Iterable[str] = ("png", "pdf"), dpi: int = 150) -> list[Path]:
    """The one figure writer: `figures/<name>.png` and `.pdf`, each written atomically. Prefix names with
    the notebook number (e.g. "02_confusion")."""
    out = []
    for ext in formats:
        buf = _io.BytesIO()
        fig.savefig(buf, format=ext, dpi=dpi, bbox_inches="tight")
        out.append(atomic_write_bytes(Path(figures_dir) / f"{name}.{ext}", buf.getvalue()))
    return out


def save_table(table: pd.DataFrame, name: str, results_dir: str | os.PathLike = "results",
               caption: str | None = None) -> list[Path]:
    """`results/<name>.csv`, `.md` and `.tex` (booktabs), each written atomically. caption (default: the
    table's `attrs["caption"]`, if any) goes under the Markdown table and into the LaTeX table."""
    d = Path(results_dir)
    caption = table.attrs.get("caption") if caption is None else caption
    with atomic_open(d / f"{name}.csv", "w", encoding="utf-8", newline="") as fh:
        table.to_csv(fh)
    md = atomic_write_text(d / f"{name}.md", table.to_markdown() + (f"\n\n{caption}" if caption else "") + "\n")
    latex = table.to_latex(escape=True, caption=caption or None, label=f"tab:{name}" if caption else None)
    tex = atomic_write_text(d / f"{name}.tex", latex + "\n")
    return [d / f"{name}.csv", md, tex]
