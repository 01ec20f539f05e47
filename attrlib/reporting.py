"""What the notebooks show, computed once here: seed-style tables over seeds, confusion matrices, and the
one figure writer (`save_fig`) and table writer (`save_table`) of the project.

A run folder (see `attrlib.engine`) holds metrics.json (scikit-learn metrics per split) and
predictions.csv; everything here reads those files only, so a notebook can show runs another made.
"""
from __future__ import annotations

import io as _io
import json
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from .io import atomic_open, atomic_write_bytes, atomic_write_text

METRICS = ("precision", "recall", "f1", "support")


def load_metrics(run_dir: str | os.PathLike) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def load_predictions(run_dir: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "predictions.csv")


def _split_metrics(run_dir, split: str) -> dict:
    m = load_metrics(run_dir)
    if split not in m:
        raise KeyError(f"{run_dir}: metrics.json has no split {split!r}; it has {sorted(k for k in m if isinstance(m[k], dict))}")
    return m[split]


def seed_table(run_dirs: Sequence[str | os.PathLike], split: str = "heldout", fmt: bool = True,
               digits: int = 2) -> pd.DataFrame:
    """Seed 002's per-technique table over seeds: one row per generator (precision, recall, F1, support),
    then the macro average and the accuracy; cells "mean ± std" over the runs (sample std; 0 for one run).

    fmt=False returns the numbers: columns (metric, "mean"|"std").
    """
    per_run = []
    for d in run_dirs:
        m = _split_metrics(d, split)
        rows = {g: v for g, v in m["per_generator"].items()}
        rows["average"] = {"precision": m["macro_precision"], "recall": m["macro_recall"], "f1": m["macro_f1"],
                           "support": m["n"]}
        rows["accuracy"] = {"precision": np.nan, "recall": np.nan, "f1": m["accuracy"], "support": m["n"]}
        per_run.append(pd.DataFrame(rows).T[list(METRICS)].astype(float))
    if not per_run:
        raise ValueError("seed_table needs at least one run folder")
    stack = np.stack([t.to_numpy() for t in per_run])
    mean = pd.DataFrame(stack.mean(0), index=per_run[0].index, columns=METRICS)
    std = pd.DataFrame(stack.std(0, ddof=1) if len(stack) > 1 else np.zeros_like(stack[0]),
                       index=per_run[0].index, columns=METRICS)  # sample std over seeds
    if not fmt:
        return pd.concat({"mean": mean, "std": std}, axis=1).swaplevel(axis=1).sort_index(axis=1)
    out = pd.DataFrame(index=mean.index, columns=METRICS, dtype=object)
    for r in mean.index:
        for c in METRICS:
            mu, sd = mean.loc[r, c], std.loc[r, c]
            if np.isnan(mu):
                out.loc[r, c] = ""
            elif c == "support":
                out.loc[r, c] = f"{mu:.0f}"
            else:
                out.loc[r, c] = f"{mu:.{digits}f} ± {sd:.{digits}f}"
    out.index.name = "generator"
    return out


def summary_table(runs: Mapping[str, Sequence[str | os.PathLike]], digits: int = 3) -> pd.DataFrame:
    """Seed 002 §3.5 over techniques: average precision, recall, F1, accuracy on the held-out split (mean ±
    std over seeds), beside in-distribution validation accuracy (the shortcut gap) and the target-data flag."""
    rows = {}
    for name, dirs in runs.items():
        ms = [load_metrics(d) for d in dirs]
        rows[name] = {"avg precision": _mean_std(ms, "heldout", "macro_precision", digits),
                      "avg recall": _mean_std(ms, "heldout", "macro_recall", digits),
                      "avg F1": _mean_std(ms, "heldout", "macro_f1", digits),
                      "accuracy": _mean_std(ms, "heldout", "accuracy", digits),
                      "val accuracy": _mean_std(ms, "val", "accuracy", digits),
                      "held-out split": ms[0]["heldout"]["split"], "seeds": len(ms),
                      "uses target data": bool(ms[0].get("uses_target_data", False))}
    out = pd.DataFrame(rows).T
    out.index.name = "technique"
    return out


def _mean_std(metrics: list[dict], split: str, key: str, digits: int) -> str:
    v = np.array([m[split][key] for m in metrics if split in m], dtype=float)
    if not len(v):
        return ""
    return f"{v.mean():.{digits}f} ± {(v.std(ddof=1) if len(v) > 1 else 0.0):.{digits}f}"


def confusion(run_dirs: Sequence[str | os.PathLike], split: str = "heldout") -> pd.DataFrame:
    """Confusion counts summed over runs (rows true generator, columns predicted), from predictions.csv."""
    total = None
    for d in run_dirs:
        split_name = load_metrics(d)["heldout"]["split"] if split == "heldout" else split
        p = load_predictions(d)
        p = p[p["split"] == split_name]
        gens = [c[2:] for c in p.columns if c.startswith("p_")]
        cm = confusion_matrix(p["generator"], p["pred"], labels=gens)
        total = cm if total is None else total + cm
    if total is None:
        raise ValueError("confusion needs at least one run folder")
    return pd.DataFrame(total, index=pd.Index(gens, name="true"), columns=pd.Index(gens, name="predicted"))


def confusion_figure(run_dirs: Sequence[str | os.PathLike], split: str = "heldout", title: str = "",
                     normalize: bool = False) -> plt.Figure:
    import seaborn as sns

    cm = confusion(run_dirs, split)
    data = cm.div(cm.sum(1).replace(0, 1), axis=0) if normalize else cm
    fig, ax = plt.subplots(figsize=(6.4, 5.2))
    sns.heatmap(data, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", cbar=False, ax=ax)
    ax.set_title(title or f"confusion ({split}, {len(run_dirs)} seed(s) summed)")
    fig.tight_layout()
    return fig


def confusion_grid(runs: Mapping[str, Sequence[str | os.PathLike]], split: str = "heldout",
                   normalize: bool = True, cols: int = 3) -> plt.Figure:
    """One row-normalised confusion matrix per technique (runs: name -> run folders), in a grid."""
    import seaborn as sns

    names = list(runs)
    rows = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        cm = confusion(runs[name], split)
        data = cm.div(cm.sum(1).replace(0, 1), axis=0) if normalize else cm
        sns.heatmap(data, annot=True, fmt=".2f" if normalize else "d", cmap="Blues", cbar=False, ax=ax,
                    vmin=0, vmax=1 if normalize else None, annot_kws={"size": 7})
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
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


def save_table(table: pd.DataFrame, name: str, results_dir: str | os.PathLike = "results") -> list[Path]:
    """`results/<name>.csv`, `.md` and `.tex` (booktabs), each written atomically."""
    d = Path(results_dir)
    with atomic_open(d / f"{name}.csv", "w", encoding="utf-8", newline="") as fh:
        table.to_csv(fh)
    md = atomic_write_text(d / f"{name}.md", table.to_markdown() + "\n")
    tex = atomic_write_text(d / f"{name}.tex", table.to_latex(escape=True) + "\n")
    return [d / f"{name}.csv", md, tex]
