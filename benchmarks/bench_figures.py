"""The cost of the study's heaviest figures, the way the notebooks make them and the way they were made before,
side by side in one process (CPU seconds of this process; the machine is shared, so read the ratios).

- A 13-panel confusion grid (notebooks 06, 07, 10): `reporting.confusion_grid` hides the panels already drawn
  while seaborn's heatmap draws the figure to check its tick labels, against every panel drawn at each check
  (seaborn's own behaviour, the code before). The saved PNGs are compared byte for byte.
- Showing a saved figure in a notebook: `reporting.show` (the PNG `save_fig` wrote) against the inline
  backend's own rendering (a tight bounding box, then the image: two more draws of the figure).
- notebook 10's LLR chart of one technique: bars drawn as one filled step per histogram against one patch
  per bar (the code before).
- `save_fig` of that chart as PNG and PDF (every profile but quick) against PNG only (quick's figure_formats).

    python benchmarks/bench_figures.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import hashlib
import io

import matplotlib

matplotlib.use("agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from _lib import Timer, emit  # noqa: E402

GENERATORS = ["guided_diffusion", "latent_diffusion", "lsgm", "stylegan2", "stylegan3", "taming_transformers"]


def _confusions(n: int, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    return {f"technique_{k:02d}": pd.DataFrame(rng.integers(0, 30, (6, 6)), index=GENERATORS, columns=GENERATORS)
            for k in range(n)}


def _grid_before(tables: dict[str, pd.DataFrame], cols: int = 3) -> plt.Figure:
    """The grid as it was built before: every seaborn check draws every panel built so far."""
    rows = -(-len(tables) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False, layout="constrained")
    constrained = fig.get_layout_engine()
    fig.set_layout_engine("none")
    for ax, (name, data) in zip(axes.flat, tables.items()):
        sns.heatmap(data, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax, vmin=0, annot_kws={"size": 7})
        ax.set_title(name, fontsize=10)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(tables):]:
        ax.axis("off")
    fig.set_layout_engine(constrained)
    return fig


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, bbox_inches="tight")
    return buf.getvalue()


def grid(repeat: int) -> None:
    from attrlib.reporting import figures

    tables = _confusions(13)
    names = {name: [name] for name in tables}
    original = figures._confusion_of_runs
    figures._confusion_of_runs = lambda runs, split, normalize: tables[runs[0]]
    try:
        before, after, same = [], [], True
        for _ in range(repeat):
            with Timer() as t:
                fig = _grid_before(tables)
            before.append(t.cpu_seconds)
            old = _png(fig)
            plt.close(fig)
            with Timer() as t:
                fig = figures.confusion_grid(names, normalize=False)
            after.append(t.cpu_seconds)
            same &= _png(fig) == old
            plt.close(fig)
    finally:
        figures._confusion_of_runs = original
    emit("confusion_grid_13_panels", build_cpu_s_before=round(min(before), 2), build_cpu_s=round(min(after), 2),
         speedup=round(min(before) / min(after), 1), png_identical=same)


def show(repeat: int) -> None:
    """What `reporting.show` no longer spends per figure: the inline backend's rendering on plt.show() (a tight
    box, then the image), against wrapping the PNG bytes save_fig already wrote."""
    from IPython.display import Image

    inline, saved = [], []
    for _ in range(repeat):
        fig = figures_llr()
        png = _png(fig)
        with Timer() as t:
            fig.savefig(io.BytesIO(), format="png", bbox_inches="tight")
        inline.append(t.cpu_seconds)
        with Timer() as t:
            Image(data=png, format="png", width=800)
        saved.append(t.cpu_seconds)
        plt.close(fig)
    emit("show_a_saved_llr_figure", inline_render_cpu_s=round(min(inline), 3),
         from_saved_png_cpu_s=round(min(saved), 4))


def figures_llr(histtype: str = "stepfilled") -> plt.Figure:
    """notebook 10's LLR chart of one technique on a default-size held-out pool (6 generators, 176 images)."""
    from attrlib.reporting import figures

    rng = np.random.default_rng(0)
    rows = [dict(scored=g, own=own, llr=rng.normal(1.0 if own else -1.0, 0.6))
            for g in GENERATORS for own in (True, False) for _ in range(30 if own else 146)]
    scores = pd.DataFrame(rows)
    if histtype == "stepfilled":
        return figures.llr_figure(scores, GENERATORS, title="LLR")
    original = plt.Axes.hist
    plt.Axes.hist = lambda self, *a, **kw: original(self, *a, **{**kw, "histtype": histtype})
    try:
        return figures.llr_figure(scores, GENERATORS, title="LLR")
    finally:
        plt.Axes.hist = original


def llr(repeat: int) -> None:
    costs = {}
    for histtype in ("bar", "stepfilled"):
        runs = []
        for _ in range(repeat):
            with Timer() as t:
                fig = figures_llr(histtype)
                _png(fig)
            runs.append(t.cpu_seconds)
            plt.close(fig)
        costs[histtype] = min(runs)
    emit("llr_figure_build_and_png", cpu_s_bars=round(costs["bar"], 2), cpu_s_stepfilled=round(costs["stepfilled"], 2),
         speedup=round(costs["bar"] / costs["stepfilled"], 2))


def formats(repeat: int) -> None:
    """What the quick profile's `figure_formats="png"` saves: `save_fig` of notebook 10's LLR chart as PNG and PDF
    (every other profile) against PNG only; the PNG bytes are the same either way."""
    import tempfile

    from attrlib import reporting

    costs, pngs = {}, {}
    with tempfile.TemporaryDirectory() as out:
        for label, kinds in (("png_pdf", ("png", "pdf")), ("png", ("png",))):
            runs = []
            for _ in range(repeat):
                fig = figures_llr()
                with Timer() as t:
                    paths = reporting.save_fig(fig, f"10_llr_{label}", out, formats=kinds)
                runs.append(t.cpu_seconds)
                pngs[label] = paths[0].read_bytes()
                plt.close(fig)
            costs[label] = min(runs)
    emit("save_fig_llr_png_pdf_vs_png_only", cpu_s_png_pdf=round(costs["png_pdf"], 2), cpu_s_png=round(costs["png"], 2),
         saved_share=round(1 - costs["png"] / costs["png_pdf"], 2), png_identical=pngs["png"] == pngs["png_pdf"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the fastest is reported")
    args = ap.parse_args()
    grid(args.repeat)
    show(args.repeat)
    llr(args.repeat)
    formats(args.repeat)


if __name__ == "__main__":
    main()
