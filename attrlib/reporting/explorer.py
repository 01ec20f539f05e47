"""An ipywidgets explorer for notebook 08: pick a technique and an image, see the image, the generator
probabilities and the Grad-CAM overlay. `explain_figure` draws one view and is usable without widgets.

    cam_explorer({"baseline": run_dir_b, "adversarial_debiasing": run_dir_a}, data)   # the last line of a cell
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..data import ImageDataset
from ..inspection import grad_cam
from ..runfolder import heldout_split, load_run
from .draw import show_image, show_overlay

# Set for the kernels a study runs (`attrlib study` sets it): notebooks draw static figures instead of live
# widgets there (nbclient can wait forever on a cell whose output widget it captures: jupyter/nbclient#312,
# nteract/papermill#723).
HEADLESS_ENV = "ATTRLIB_HEADLESS"


@torch.no_grad()
def _probabilities(technique, x: torch.Tensor) -> np.ndarray:
    # as the engine's predict_probs: a test-time defence enables the gradients it needs inside predict
    return torch.softmax(technique.predict(x).float(), 1)[0].cpu().numpy()


def explain_figure(technique, x: torch.Tensor, true: int, generators: Sequence[str], target: str = "pred",
                   title: str = "") -> plt.Figure:
    """Image, generator probabilities (the technique's own `predict`; true generator in green) and the CAM
    overlay of the attribution model for one image x (3, H, W) in [0, 1]."""
    if target not in ("pred", "true"):
        raise ValueError(f"target={target!r}; valid choices: 'pred', 'true'")
    technique.eval()
    xb = x.unsqueeze(0)
    probs = _probabilities(technique, xb)
    pred = int(probs.argmax())
    seen = technique.test_inputs(xb)  # what the attribution model sees (runtime_adversarial: the attacked image)
    cam, _ = grad_cam(technique.model, seen, torch.tensor([pred if target == "pred" else int(true)]))
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), gridspec_kw={"width_ratios": [1, 1.4, 1]})
    img = show_image(axes[0], x)
    axes[0].set_title(f"true: {generators[int(true)]}", fontsize=9)
    colours = ["tab:green" if i == int(true) else ("tab:red" if i == pred else "0.6") for i in range(len(generators))]
    axes[1].barh(list(generators), probs, color=colours)
    axes[1].set_xlim(0, 1)
    axes[1].invert_yaxis()
    axes[1].tick_params(labelsize=8)
    axes[1].set_title(f"predicted: {generators[pred]} ({probs[pred]:.2f})", fontsize=9)
    show_overlay(axes[2], img, cam[0, 0])
    axes[2].set_title(f"Grad-CAM of the {target} generator", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def cam_explorer(runs: Mapping[str, str | os.PathLike], data=None, split: str | None = None, mode: str = "auto"):
    """Widgets over one run folder per technique (runs: name -> run folder) on `split` (default: each run's
    held-out split). Returns an ipywidgets box; display it as a cell's last value.

    mode: "live" (the widgets), "static" (the figure the widgets open on: first technique, first image; a
    Matplotlib figure, no widgets), or "auto": static when the environment variable ATTRLIB_HEADLESS is set
    (attrlib study sets it), live otherwise. Headless runs need static: nbclient, which papermill drives,
    can wait forever on a cell whose output widget it is capturing (jupyter/nbclient#312, papermill#723).
    """
    if mode not in ("auto", "live", "static"):
        raise ValueError(f"mode={mode!r}; valid choices: 'auto', 'live', 'static'")
    if mode == "auto":
        mode = "static" if os.environ.get(HEADLESS_ENV) else "live"

    loaded, datasets, cache = {}, {}, {}
    for name, d in runs.items():
        run = loaded[name] = load_run(d, data=data, cache=cache)
        datasets[name] = ImageDataset(run.data.split(split or heldout_split(d)), run.data,
                                      policy=run.config.input_policy, size=run.config.image_size, train=False)
        if mode == "static":
            break
    first = next(iter(runs))
    if mode == "static":
        item, ds = datasets[first][0], datasets[first]
        return explain_figure(loaded[first].technique, item["x"], item["generator"], loaded[first].generators,
                              title=f"{first}: {os.path.basename(ds.frame['path'].iloc[item['index']])} "
                                    "(static: open the notebook in JupyterLab for the explorer)")

    import ipywidgets as widgets
    from IPython.display import display

    technique = widgets.Dropdown(options=list(runs), value=first, description="arm")
    index = widgets.IntSlider(value=0, min=0, max=len(datasets[first]) - 1, description="image")
    target = widgets.ToggleButtons(options=["pred", "true"], value="pred", description="CAM of")
    out = widgets.Output()

    def show(_=None):
        ds = datasets[technique.value]
        index.max = len(ds) - 1
        item = ds[min(index.value, len(ds) - 1)]
        run = loaded[technique.value]
        with out:
            out.clear_output(wait=True)
            fig = explain_figure(run.technique, item["x"], item["generator"], run.generators, target.value,
                                 title=f"{technique.value}: {os.path.basename(ds.frame['path'].iloc[item['index']])}")
            display(fig)
            plt.close(fig)

    for w in (technique, index, target):
        w.observe(show, names="value")
    show()
    return widgets.VBox([widgets.HBox([technique, target]), index, out])
