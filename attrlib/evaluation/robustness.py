"""Held-out accuracy under the forensic standard's post-processing (Wang et al. 2020; Corvi et al. 2023):
JPEG at quality 95, 75 and 50, Gaussian blur with sigma 0.5 and 1.0, and resizing down by 0.75 and back up.

A perturbation acts on the decoded uint8 image (H x W x 3), before the model's input policy (crop or resize),
as post-processing acts on a file before anyone attributes it. Accuracy uses the technique's own `predict`
(so a test-time defence runs as it does in the engine's evaluation).

    table = robustness_table({"baseline": dirs_b, "group_dro": dirs_g}, data)
    # columns: technique, seed, perturbation, accuracy, n
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..data import ImageDataset, collate_patches
from ..data.augment import gaussian_blur as blur_image, jpeg_compress
from ..runfolder import iter_runs, load_run
from ..techniques import predict_probs


@dataclass(frozen=True)
class Perturbation:
    """A named uint8 H x W x 3 -> uint8 H x W x 3 image transformation."""
    name: str
    fn: Callable[[np.ndarray], np.ndarray]

    def __call__(self, img: np.ndarray) -> np.ndarray:
        return self.fn(img)


def _identity(img: np.ndarray) -> np.ndarray:
    return img


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    return jpeg_compress(img, quality)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    return blur_image(t, sigma).permute(1, 2, 0).numpy().copy()


def _down_up(img: np.ndarray, scale: float) -> np.ndarray:
    h, w = img.shape[:2]
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    small = TF.resize(t, [max(1, round(h * scale)), max(1, round(w * scale))],
                      interpolation=InterpolationMode.BILINEAR, antialias=True)
    back = TF.resize(small, [h, w], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return back.permute(1, 2, 0).numpy().copy()


def clean() -> Perturbation:
    return Perturbation("clean", _identity)


def jpeg(quality: int) -> Perturbation:
    if not 1 <= int(quality) <= 95:
        raise ValueError(f"JPEG quality {quality!r} must lie in 1..95 (Pillow's useful range)")
    return Perturbation(f"jpeg_q{int(quality)}", partial(_jpeg, quality=int(quality)))


def gaussian_blur(sigma: float) -> Perturbation:
    if not sigma > 0:
        raise ValueError(f"blur sigma {sigma!r} must be positive")
    return Perturbation(f"blur_s{sigma:g}", partial(_blur, sigma=float(sigma)))


def down_up(scale: float) -> Perturbation:
    if not 0 < scale < 1:
        raise ValueError(f"resize scale {scale!r} must lie strictly between 0 and 1")
    return Perturbation(f"resize_{scale:g}", partial(_down_up, scale=float(scale)))


def standard_perturbations() -> list[Perturbation]:
    """clean, JPEG q95/75/50, blur sigma 0.5/1.0, down-up 0.75: the issue's list, in that order."""
    return [clean(), jpeg(95), jpeg(75), jpeg(50), gaussian_blur(0.5), gaussian_blur(1.0), down_up(0.75)]


def _perturbed_dataset(frame: pd.DataFrame, data, p: Perturbation, policy: str, size: int,
                       patches: int) -> ImageDataset:
    return ImageDataset(frame, data, policy=policy, size=size, train=False, pre_policy=p, patches=patches)


def _accuracy(technique, ds: ImageDataset, data, batch_size: int, device: torch.device) -> dict:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_patches)
    technique.eval()
    probs = predict_probs(technique.predict, loader, device, technique.n_generators)
    y = data.labels(ds.frame)["generator"]
    return {"accuracy": float((probs.argmax(1) == y).mean()) if len(y) else np.nan, "n": int(len(y))}


def perturbed_accuracy(technique, frame: pd.DataFrame, data, perturbations: Sequence[Perturbation],
                       policy: str = "crop", size: int = 64, batch_size: int = 64,
                       device: str | torch.device = "cpu", patches: int = 1) -> pd.DataFrame:
    """Accuracy of `technique.predict` on `frame` under each perturbation: columns perturbation, accuracy, n.
    patches: the grid of crops per image whose log-probabilities are averaged (the run's `test_patches`)."""
    device = torch.device(device)
    return pd.DataFrame([{"perturbation": p.name,
                          **_accuracy(technique, _perturbed_dataset(frame, data, p, policy, size, patches), data,
                                      batch_size, device)}
                         for p in perturbations])


def robustness_table(runs: Mapping[str, Sequence[str | os.PathLike]], data=None,
                     perturbations: Sequence[Perturbation] | None = None, split: str | None = None,
                     max_images: int | None = None, batch_size: int = 64) -> pd.DataFrame:
    """Tidy table (technique, heldout rotation, seed, perturbation, accuracy, n) of every run (runs: name -> run folders) on
    `split` (default: each run's held-out split) under every perturbation (default: `standard_perturbations`),
    each run rebuilt on the CPU under its own input policy and size.

    The runs that read the same images the same way (one data, the same rows, input policy, size and test patches:
    every arm and seed of a rotation) share each perturbed data set, built once for them, one perturbation at a
    time, with only that group's techniques loaded. A data set small enough for the in-memory cache
    (`ImageDataset(cache="auto")`) is then decoded and perturbed once, not once per run (on a folder of large
    images about half of the table's CPU time); a larger one streams, decoding as it goes. The numbers are
    `perturbed_accuracy`'s, run by run (tested)."""
    perturbations = list(perturbations or standard_perturbations())
    order, groups, datas = [], {}, {}
    for name, run, frame in iter_runs(runs, data, split, max_images):   # the techniques are dropped as we go
        c = run.config
        datas[id(run.data)] = run.data       # kept alive: the key's id stays its own
        key = (id(run.data), tuple(frame["path"]), c.input_policy, c.image_size, c.test_patches)
        groups.setdefault(key, {"frame": frame, "config": c, "members": []})["members"].append(len(order))
        order.append((name, run.dir, c.heldout.key, run.seed))
    rows: list[list[dict]] = [[] for _ in order]
    cpu = torch.device("cpu")
    for key, group in groups.items():
        shared, c = datas[key[0]], group["config"]
        members = {i: load_run(order[i][1], data=shared).technique for i in group["members"]}
        for p in perturbations:
            ds = _perturbed_dataset(group["frame"], shared, p, c.input_policy, c.image_size, c.test_patches)
            for i, technique in members.items():
                rows[i].append({"perturbation": p.name, **_accuracy(technique, ds, shared, batch_size, cpu)})
            del ds
        del members
    parts = [pd.DataFrame(r).assign(arm=name, heldout=heldout, seed=seed)
             for r, (name, _, heldout, seed) in zip(rows, order)]
    table = pd.concat(parts, ignore_index=True)[["arm", "heldout", "seed", "perturbation", "accuracy", "n"]]
    order_p = [p.name for p in perturbations]
    table["perturbation"] = pd.Categorical(table["perturbation"], categories=order_p, ordered=True)
    return table


def robustness_stats(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """technique x perturbation frames of `robustness_table`'s accuracy over seeds: "mean", "std" (sample std,
    ddof=1; NaN for one seed) and "count" (seeds)."""
    return {stat: table.pivot_table(index="arm", columns="perturbation", values="accuracy", aggfunc=stat,
                                    sort=False, observed=True) for stat in ("mean", "std", "count")}


def robustness_summary(table: pd.DataFrame) -> pd.DataFrame:
    """technique x perturbation: mean accuracy over seeds (the wide view of `robustness_table`);
    `attrlib.reporting.format_robustness` writes "mean ± std" cells."""
    wide = robustness_stats(table)
    seeds = "/".join(str(int(n)) for n in sorted(set(wide["count"].to_numpy().ravel())))
    wide["mean"].attrs["caption"] = (f"Held-out accuracy under post-processing, mean over {seeds} seed(s); "
                                     f"n = {int(table['n'].max())} images per run at most.")
    return wide["mean"]
