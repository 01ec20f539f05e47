"""Grad-CAM with captum, and content reliance measured with the benchmark's object masks.

    with GradCam(model) as cam:                  # generator head; a dual-head model works the same way
        maps, targets = cam(x)                   # (B, 1, H, W) in [0, 1], targets = predicted generators
    share = mask_share(maps, masks)              # CAM mass inside the object, per image

`GradCam` wraps captum's `LayerGradCam` on `model.cam_layer` (every backbone exposes it) and runs it on
`HeadSelector(model, head)`, so the CAM explains one head's logits. Maps are upsampled to the input size
(`LayerAttribution.interpolate`, bilinear), ReLU-ed and scaled per image to [0, 1] (an all-zero map stays
zero). captum adds its hooks for one `attribute` call and removes them itself; the context manager puts the
model back in the train/eval mode it had and clears the gradients the backward pass left.

Content reliance of a model: mean share of CAM mass inside the object mask, read against two references:

- the mask's area (`ratio_to_area`): what a map spread evenly over the image scores. Not what a fingerprint
  reader scores: the simulated fingerprint, like a real one, follows content edges, so on military vehicles
  (mask area 0.18) 0.40-0.55 of its energy lies inside the object for five families (0.09 for stylegan2),
  and a perfect fingerprint reader scores about 2.2 on this ratio at 64 px (1.8 at the quick profile's 32 px).
- the fingerprint's energy inside the mask (`ratio_to_fingerprint`): the share of (x - clean)^2 inside the
  mask, known only where the clean content is, so it is measured on fresh simulator renders of the held-out
  subclass (`attrlib.inspection.renders`; the embedded benchmark's default variant). A model that reads the
  fingerprint scores about 1, one that reads the object more than the fingerprint is there scores above 1.
  Both are ratios of means over images (mean share / mean reference); the fingerprint's share is measured on
  the whole rendered image, the CAM's on the patches the run sees (the same pixels when the grid tiles it).
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from ..data import ImageDataset, collate_patches
from ..errors import DataError
from ..models import HeadSelector
from ..runfolder import heldout_split, iter_runs, load_run
from ..simulator.known import benchmark_params
from ..techniques import image_logits, image_starts, per_image
from .renders import known_images, render_key


class GradCam:
    """Grad-CAM of one head of an `AttributionModel`. Call it inside `with` (or call `close()`)."""

    def __init__(self, model: nn.Module, head: str = "generator", layer: nn.Module | None = None):
        self.model = model
        self.head = HeadSelector(model, head)
        self.layer = layer if layer is not None else model.cam_layer
        self._cam = LayerGradCam(self.head, self.layer)
        self._was_training: bool | None = None

    def __enter__(self) -> "GradCam":
        self._was_training = self.model.training
        self.model.eval()  # BatchNorm statistics fixed: a CAM must not change the model
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._was_training is not None:
            self.model.train(self._was_training)
            self._was_training = None
        self.model.zero_grad(set_to_none=True)

    def __call__(self, x: torch.Tensor, target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """CAMs (B, 1, H, W) in [0, 1] of x (B, 3, H, W) in [0, 1] for `target` class indices (default: the
        head's prediction); returns (maps, targets)."""
        if x.dim() != 4:
            raise ValueError(f"x must be a batch (B, 3, H, W); got shape {tuple(x.shape)}")
        x = x.detach()
        if target is None:
            with torch.no_grad():
                target = self.head(x).argmax(1)
        target = torch.as_tensor(target, device=x.device).long().reshape(-1)
        if len(target) != len(x):
            raise ValueError(f"{len(target)} targets for {len(x)} images; give one class index per image")
        with torch.enable_grad():
            raw = self._cam.attribute(x, target=target, relu_attributions=True)
        up = LayerAttribution.interpolate(raw.detach().float(), tuple(x.shape[-2:]), interpolate_mode="bilinear")
        return normalize_maps(up), target


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """ReLU, then each map divided by its maximum: values in [0, 1]; an all-zero (or non-finite) map becomes 0."""
    maps = torch.nan_to_num(maps.float(), nan=0.0, posinf=0.0, neginf=0.0).clamp_min(0.0)
    peak = maps.flatten(1).amax(1).view(-1, *([1] * (maps.dim() - 1)))
    return torch.where(peak > 0, maps / peak.clamp_min(1e-12), torch.zeros_like(maps)).clamp_(0.0, 1.0)


def grad_cam(model: nn.Module, x: torch.Tensor, target: torch.Tensor | None = None, head: str = "generator",
             layer: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One-shot `GradCam`: (maps (B, 1, H, W) in [0, 1], targets)."""
    with GradCam(model, head=head, layer=layer) as cam:
        return cam(x, target)


def mask_share(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Share of each map's mass inside its mask: sum(map * mask) / sum(map), per image (B,).

    masks: (B, 1, H, W) in [0, 1] (soft masks weigh by their value). NaN where a map is all zero.
    """
    if maps.shape != masks.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in shape")
    total = maps.flatten(1).sum(1)
    inside = (maps * masks).flatten(1).sum(1)
    return torch.where(total > 0, inside / total.clamp_min(1e-12), torch.full_like(total, float("nan")))


def mask_area(masks: torch.Tensor) -> torch.Tensor:
    """Share of the image each mask covers (B,): the mask share of a map spread evenly over the image."""
    return masks.flatten(1).float().mean(1)


# --------------------------------------------------------------------------------------------- per dataset
def content_reliance(model: nn.Module, dataset, generators: Sequence[str], target: str = "pred",
                     batch_size: int = 32, head: str = "generator", device: str | torch.device = "cpu",
                     inputs: Callable[[torch.Tensor], torch.Tensor] | None = None) -> pd.DataFrame:
    """Per image of `dataset` (an `ImageDataset(..., with_mask=True)`): the CAM's share inside the object mask
    and the mask's area. target: "pred" (explain the prediction) or "true" (explain the true generator).
    inputs: what the model sees at test time (a technique's `test_inputs`, e.g. runtime_adversarial's
    attacked images; the object mask stays the clean image's); default the images themselves.

    Columns: path, generator, pred, target, share_in_mask, mask_area, fingerprint_share (the dataset frame's
    column of that name, e.g. from `known_images`; NaN without it). Images with an empty mask (no object
    known) get NaN and are left out of `summarize_reliance`. A dataset of patches (`ImageDataset(...,
    patches=k)`) explains each image's prediction (its patches' log-probabilities averaged) on every patch
    and pools the patches: share = CAM mass inside the mask over CAM mass, summed over the image's patches.
    """
    if target not in ("pred", "true"):
        raise ValueError(f"target={target!r}; valid choices: 'pred', 'true'")
    if not getattr(dataset, "with_mask", False):
        raise DataError("content_reliance needs masks: build the dataset with ImageDataset(..., with_mask=True)")
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_patches)
    rows = []
    fingerprint = (dataset.frame["fingerprint_share"].to_numpy(float) if "fingerprint_share" in dataset.frame
                   else np.full(len(dataset.frame), np.nan))
    model = model.to(device)
    with GradCam(model, head=head) as cam:
        for batch in loader:
            x, masks = batch["x"].to(device), batch["mask"].to(device)
            owner = batch.get("owner")
            if inputs is not None:
                x = inputs(x)
            with torch.no_grad():
                logits = image_logits(cam.head(x), owner)
            pred = logits.argmax(1) if owner is None else logits.argmax(1)[owner]  # each patch: its image's
            maps, used = cam(x, pred if target == "pred" else batch["generator"].to(device))
            if owner is None:
                area = mask_area(masks)
                share = torch.where(area > 0, mask_share(maps, masks), torch.full_like(area, float("nan")))
            else:  # pooled over each image's patches
                total = per_image(maps.flatten(1).sum(1), owner, mean=False)
                inside = per_image((maps * masks).flatten(1).sum(1), owner, mean=False)
                area = per_image(mask_area(masks), owner)
                share = torch.where((area > 0) & (total > 0), inside / total.clamp_min(1e-12),
                                    torch.full_like(area, float("nan")))
                first = image_starts(owner)
                batch = {k: batch[k][first] for k in ("index", "generator")}
                pred, used = pred[first], used[first.to(used.device)]
            for k in range(len(area)):
                i = int(batch["index"][k])
                rows.append({"path": dataset.frame["path"].iloc[i], "generator": generators[int(batch["generator"][k])],
                             "pred": generators[int(pred[k])], "target": generators[int(used[k])],
                             "share_in_mask": float(share[k]), "mask_area": float(area[k]),
                             "fingerprint_share": float(fingerprint[i])})
    return pd.DataFrame(rows, columns=["path", "generator", "pred", "target", "share_in_mask", "mask_area",
                                       "fingerprint_share"])


def summarize_reliance(per_image: pd.DataFrame) -> dict:
    """Means over the images counted (those with a mask and a non-zero CAM) of the share in mask, the mask
    area and the fingerprint share (NaN when unknown), and the two ratios of means:
    ratio_to_area = share / area (1: no preference for the object over the rest of the image) and
    ratio_to_fingerprint = share / fingerprint share (1: the CAM is inside the object as much as the
    fingerprint's energy is; a CAM equal to the fingerprint's energy map scores exactly 1)."""
    ok = per_image.dropna(subset=["share_in_mask"])
    ok = ok[ok["mask_area"] > 0]
    share, area = float(ok["share_in_mask"].mean()), float(ok["mask_area"].mean())
    fp = float(ok["fingerprint_share"].mean()) if "fingerprint_share" in ok and ok["fingerprint_share"].notna().all() \
        else float("nan")
    return {"share_in_mask": share, "mask_area": area, "fingerprint_share": fp,
            "ratio_to_area": share / area if len(ok) and area > 0 else float("nan"),
            "ratio_to_fingerprint": share / fp if len(ok) and fp > 0 else float("nan"), "n_images": int(len(ok))}


def heldout_renders(run, params: dict, folder: str | os.PathLike, max_images: int | None = None) -> pd.DataFrame:
    """`known_images` standing in for a run's held-out split: each held-out subclass rendered through every
    generator with that cell's instance (as the test images are), as many images per generator as the test
    split has (at most `max_images` in all). Every run of the same benchmark and held-out subclasses gets the
    same images."""
    contents = list(run.data.heldout)
    cells = len(contents) * len(run.generators)
    n = max(1, math.ceil(len(run.data.split("test")) / cells))
    if max_images is not None:
        n = min(n, max(1, max_images // cells))
    return known_images(params, contents, run.generators, n, folder)


def content_reliance_table(runs: Mapping[str, Sequence[str | os.PathLike]], data=None, split: str | None = None,
                           target: str = "pred", batch_size: int = 32, max_images: int | None = None,
                           renders: bool | None = None) -> pd.DataFrame:
    """Content reliance per technique (runs: name -> run folders), averaged over runs (seeds, rotations;
    `attrs["per_seed"]` names each run's held-out subclass).

    Each run is rebuilt on the CPU (`load_run`) and its CAMs computed under the run's input policy and size,
    on fresh simulator renders of its held-out subclass(es) whose fingerprint is known (`heldout_renders`)
    or on the files of `split` (default: the run's own held-out split, test or ft_test; the fingerprint
    columns are then NaN). renders: None renders where that is possible and meaningful (the embedded
    benchmark's default variant, no `split` given); True insists (a DataError elsewhere); False never.

    Columns: share_in_mask (mean over seeds), share_std (ddof=1), mask_area, fingerprint_share,
    ratio_to_area (share / area, the measure of old), ratio_to_fingerprint (share / fingerprint share),
    images ("renders" or "files"), n_images (per seed), seeds. Per-seed rows in `table.attrs["per_seed"]`.
    """
    per_seed = []
    with tempfile.TemporaryDirectory(prefix="attrlib-renders-") as tmp:
        made: dict = {}  # one set of renders per benchmark and held-out subclasses, shared by every run
        for name, run, frame in iter_runs(runs, data, split, max_images):
            params = None if renders is False or (renders is None and split is not None) \
                else benchmark_params(run.data.root)
            if renders and params is None:
                raise DataError(f"renders=True, but the data of run {run.dir} ({run.data.root}) is not the embedded "
                                "benchmark's default variant: only there is the fingerprint known; pass renders=None")
            if params is not None:
                key = (render_key(params), tuple(run.data.heldout), tuple(run.generators))
                if key not in made:
                    made[key] = heldout_renders(run, params, Path(tmp) / str(len(made)), max_images)
                frame = made[key]
            ds = ImageDataset(frame, run.data, policy=run.config.input_policy, size=run.config.image_size,
                              train=False, with_mask=True, patches=run.config.test_patches)
            s = summarize_reliance(content_reliance(run.model, ds, run.generators, target, batch_size,
                                                    inputs=run.technique.test_inputs))
            per_seed.append({"arm": name, "seed": run.seed, "heldout": run.config.heldout.key,
                             "images": "files" if params is None else "renders", **s})
    seeds = pd.DataFrame(per_seed)
    g = seeds.groupby("arm", sort=False)
    table = pd.DataFrame({"share_in_mask": g["share_in_mask"].mean(),
                          "share_std": g["share_in_mask"].std(ddof=1).fillna(0.0),
                          "mask_area": g["mask_area"].mean(), "fingerprint_share": g["fingerprint_share"].mean(),
                          "ratio_to_area": g["ratio_to_area"].mean(),
                          "ratio_to_fingerprint": g["ratio_to_fingerprint"].mean(),
                          "images": g["images"].first(), "n_images": g["n_images"].first(), "seeds": g.size()})
    table.attrs["per_seed"] = seeds
    table.attrs["caption"] = _reliance_caption(table)
    return table


def _reliance_caption(table: pd.DataFrame) -> str:
    renders = (table["images"] == "renders").any()
    where = ("fresh simulator renders of the held-out subclass (same parameters and generator instances as the "
             "test images, clean content known)" if renders else "the held-out images")
    text = (f"Content reliance on {where}: share of Grad-CAM mass inside the object mask (share_in_mask), mean "
            "and std (share_std, sample std, ddof=1) over runs (seeds, rotations). ratio_to_area = share_in_mask / "
            "mask_area, mask_area being the share of the image the mask covers (what a map spread evenly scores). "
            "ratio_to_fingerprint = share_in_mask / fingerprint_share, fingerprint_share being the share of the "
            "fingerprint's energy (x - clean)^2 inside the mask (what a perfect fingerprint reader scores): about "
            "1 for a model that reads the fingerprint, above 1 for one that looks at the object more than the "
            "fingerprint is there.")
    if renders:
        known = table[table["images"] == "renders"]
        reader = float(known["fingerprint_share"].mean() / known["mask_area"].mean())
        text += (f" The simulated fingerprint follows content edges: a perfect fingerprint reader scores "
                 f"{reader:.2f} on ratio_to_area, so ratio_to_area above 1 does not show content reliance.")
    else:
        text += (" The fingerprint is not known on these files (only fresh renders of the embedded benchmark's default "
                 "variant have a known clean content): ratio_to_fingerprint is NaN.")
    return text


# --------------------------------------------------------------------------------------------- examples
def cam_examples(model: nn.Module, dataset, indices: Sequence[int], target: str = "pred",
                 head: str = "generator", inputs: Callable[[torch.Tensor], torch.Tensor] | None = None
                 ) -> dict[str, torch.Tensor]:
    """Images (B, 3, H, W), CAMs (B, 1, H, W), predicted and true class indices of `dataset[indices]`
    (inputs: see `content_reliance`; the images returned are the ones the model saw). One crop per image:
    the centre crop (build the dataset with patches=1)."""
    batch = torch.utils.data.default_collate([dataset[int(i)] for i in indices])
    x = batch["x"] if inputs is None else inputs(batch["x"])
    with GradCam(model, head=head) as cam:
        with torch.no_grad():
            pred = cam.head(x).argmax(1)
        maps, _ = cam(x, pred if target == "pred" else batch["generator"])
    return {"x": x, "cam": maps, "pred": pred, "true": batch["generator"]}


def pick_examples(frame: pd.DataFrame, generators: Sequence[str], per_generator: int = 1, seed: int = 0) -> list[int]:
    """Row positions of `frame`: `per_generator` images of each generator (fixed seed), for comparable grids."""
    rng = np.random.default_rng(seed)
    out = []
    for g in generators:
        rows = np.flatnonzero(frame["generator"].to_numpy() == g)
        out += sorted(rng.choice(rows, size=min(per_generator, len(rows)), replace=False).tolist())
    return out


def run_cam_examples(run_dir: str | os.PathLike, data=None, split: str | None = None, per_generator: int = 1,
                     target: str = "pred", seed: int = 0) -> dict:
    """`cam_examples` of one run folder on `per_generator` images of each generator of `split` (default: the
    run's held-out split), with what a caption needs: generators, technique, seed, split, target,
    uses_target_data. `attrlib.reporting.run_cam_grid` draws it."""
    run = load_run(run_dir, data=data)
    split = split or heldout_split(run_dir)
    frame = run.data.split(split)
    ds = ImageDataset(frame, run.data, policy=run.config.input_policy, size=run.config.image_size, train=False)
    ex = cam_examples(run.model, ds, pick_examples(ds.frame, run.generators, per_generator, seed), target=target,
                      inputs=run.technique.test_inputs)
    return {**ex, "generators": run.generators, "arm": run.name, "seed": run.seed, "split": split,
            "target": target, "uses_target_data": bool(run.technique.uses_target_data)}
