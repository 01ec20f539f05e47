"""`ImageDataset`: rows of the study table as model inputs, under one of two input policies.

- `resize` is the seeds' protocol: the whole image resized to size x size (bilinear, antialias). It is
  deterministic, so the cache stores the resized uint8 image and an item costs one uint8->float copy.
- `crop` never resamples (resampling erases the high-frequency fingerprint): a random size x size crop
  to train, the centre crop to evaluate; an image smaller than size is padded first (reflect when the
  image is large enough to mirror, zeros otherwise). With `patches` > 1 (forensic detectors' practice,
  Chai et al. 2020, Corvi et al. 2023) a training item is up to `patches` random crops of its image and an
  evaluation item a grid of up to `patches` crops spread over the whole image; `collate_patches` makes a
  batch of all of them, with `owner` (the image each patch came from), and `attrlib.techniques.predict_probs`
  averages the patches' log-probabilities per image. An image the size of the crop has one patch.

Both paths quantise to uint8 before the float conversion, so a cached and a streamed dataset give the
same tensors. Randomness comes from torch's global RNG: `torch.manual_seed`, or a DataLoader with a
seeded generator (which seeds its workers), makes the crops reproducible.

Small datasets (while all the datasets a process holds stay below `CACHE_LIMIT_BYTES` decoded) are decoded once into memory, as one stacked
uint8 tensor when all images share a size, so the training loop pays no PIL cost per item. Decoding the
cache is also where bad files surface (all of them, before training starts); streamed datasets can do
the same with `verify_images`.
"""
from __future__ import annotations

import warnings
import weakref
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from ..errors import DataError
from ..progress import bar as progress_bar
from .images import image_size, load_image, load_mask
from .sources import format_problem

POLICIES = ("crop", "resize")
# cache="auto" keeps a dataset in memory while every dataset the process holds stays below this decoded size:
# a process-wide budget (a training set, its validation and test sets and a robustness pass together), sized so
# that a run on a folder of 2,000 1024-px images peaks under 2 GB with torch itself (~0.8 GB) loaded
CACHE_LIMIT_BYTES = 768 * 1024 ** 2
_held = {"bytes": 0}                # decoded bytes of the datasets alive in memory now
_CACHE_CHOICES = ("auto", "memory", "stream", True, False)
_PROGRESS_FROM = 2000               # progress=None shows a decoding bar above this many images
_SIZE_SAMPLE = 64                   # headers read to estimate the decoded size of a crop-policy dataset


def _release(size: int) -> None:
    _held["bytes"] -= size


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    return progress_bar(iterable, True, total=total, desc=desc, unit="img", leave=False)


def _read_row(path: str, mask_path: str, with_mask: bool, max_pixels: int | None):
    img = load_image(path, max_pixels)
    mask = None
    if with_mask:
        if mask_path:
            mask = load_mask(mask_path, max_pixels)
            if mask.shape != img.shape[:2]:
                raise DataError(f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image {path} is "
                                f"{img.shape[1]}x{img.shape[0]}; a mask must have its image's size")
        else:
            mask = np.zeros(img.shape[:2], dtype=np.uint8)
    return img, mask


def _decode_all(frame: pd.DataFrame, on_bad: str, progress: bool, with_mask: bool, max_pixels: int | None,
                consume, desc: str) -> tuple[list[int], list[tuple[str, str]]]:
    """Decode every row, hand it to `consume(position, image, mask)`; collect failures, raise or skip them."""
    if on_bad not in ("raise", "skip"):
        raise DataError(f"on_bad is {on_bad!r}; valid choices: raise, skip")
    bad: list[tuple[int, str, str]] = []
    paths = frame["path"].tolist()
    masks = frame["mask"].tolist() if "mask" in frame else [""] * len(paths)
    for pos in _progress(range(len(paths)), len(paths), desc, progress):
        try:
            img, mask = _read_row(paths[pos], masks[pos], with_mask, max_pixels)
        except DataError as e:
            bad.append((pos, paths[pos], str(e)))
            continue
        consume(pos, img, mask)
    if bad and on_bad == "raise":
        raise DataError(format_problem(f"{len(bad)} of {len(paths)} image(s) cannot be decoded", [m for _, _, m in bad],
                                 "fix or delete those files, or load with on_bad='skip' to leave them out"))
    # In skip mode the advice to use on_bad='skip' is moot: keep the reason only.
    return [pos for pos, _, _ in bad], [(p, m.replace(" (or load with on_bad='skip')", "")) for _, p, m in bad]


def verify_images(frame: pd.DataFrame, on_bad: str = "raise", progress: bool = True, with_mask: bool = True,
                  max_pixels: int | None = None) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Decode every image (and mask) of `frame`; return (the rows that decode, [(path, reason)] skipped).

    With on_bad="raise" a DataError lists the first few bad files (all are tried first). Use it before a
    long streamed training run so a bad file does not stop it half-way.
    """
    bad, skipped = _decode_all(frame, on_bad, progress, with_mask, max_pixels, lambda *a: None, "verifying images")
    good = frame.drop(index=frame.index[bad]).reset_index(drop=True) if bad else frame.reset_index(drop=True)
    if skipped:
        warnings.warn(f"verify_images: skipped {len(skipped)} unusable file(s): "
                      + "; ".join(r for _, r in skipped[:3]) + ("; ..." if len(skipped) > 3 else ""), stacklevel=2)
    return good, skipped


class ImageDataset(torch.utils.data.Dataset):
    """Items: dict(x=float32 3xSxS in [0, 1], generator, subclass (-1 held out), group (-1), index[, mask]).

    frame: rows of `data.frame` (e.g. `data.split("train")`); `index` is the row position in `self.frame`,
    which equals `frame` unless on_bad="skip" dropped undecodable rows (then use `self.frame`).
    cache: "auto" (memory below CACHE_LIMIT_BYTES), "memory"/True, or "stream"/False.
    verify: decode everything up front when streaming (default: only with on_bad="skip").
    progress: a tqdm bar while decoding (default: only above 2000 images).
    pre_policy: a callable applied to every decoded uint8 H x W x 3 image before the input policy (e.g. a
    JPEG re-compression for robustness checks); it must return a uint8 H' x W' x 3 image. Masks are not
    passed through it.
    augment: a callable applied to a training item's whole uint8 C x H x W image each time it is drawn, before
    the crop (`attrlib.data.augment`: blur and JPEG); ignored when train=False.
    patches: crop policy only: the most patches an item holds (random crops to train, a grid over the image
    to evaluate); 1 (default) keeps items of one 3xSxS crop. Above 1, items are kxSxS... stacks (x: k x 3 x S
    x S, mask: k x 1 x S x S) with `patches` = k; batch them with `collate_patches`.
    """

    def __init__(self, frame: pd.DataFrame, data: Any, policy: str = "crop", size: int = 64, train: bool = True,
                 with_mask: bool = False, cache: str | bool = "auto", on_bad: str | None = None,
                 progress: bool | None = None, verify: bool | None = None, max_pixels: int | None = None,
                 pre_policy: Callable[[np.ndarray], np.ndarray] | None = None, patches: int = 1,
                 augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if policy not in POLICIES:
            raise DataError(f"input policy {policy!r} is unknown; valid policies: {', '.join(POLICIES)}")
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise DataError(f"image size {size!r} must be a positive integer")
        if not isinstance(patches, int) or isinstance(patches, bool) or patches < 1:
            raise DataError(f"patches={patches!r} must be a positive integer (the most crops an item holds)")
        if cache not in _CACHE_CHOICES:
            raise DataError(f"cache={cache!r} is unknown; valid choices: auto, memory, stream (or True/False)")
        self.data = data
        self.policy, self.size, self.train, self.with_mask = policy, size, bool(train), bool(with_mask)
        self.patches = patches if policy == "crop" else 1
        self.on_bad = on_bad or getattr(data, "on_bad", "raise")
        self.max_pixels = max_pixels
        if pre_policy is not None and not callable(pre_policy):
            raise DataError(f"pre_policy={pre_policy!r} is not callable; pass a function of a uint8 HxWx3 image")
        self.pre_policy = pre_policy
        self.augment = augment if train else None
        self.frame = frame.reset_index(drop=True)
        if "mask" not in self.frame:
            self.frame = self.frame.assign(mask="")
        self._set_labels()
        self._stack: torch.Tensor | None = None        # N x 3 x H x W uint8 when every image has one size
        self._items: list[torch.Tensor] | None = None  # per-image 3 x H x W uint8 otherwise
        self._mask_stack: torch.Tensor | None = None
        self._mask_items: list[torch.Tensor] | None = None
        if progress is None:  # a bar only when decoding takes long enough to wonder about
            progress = len(self.frame) > _PROGRESS_FROM
        size = self.estimated_bytes() if cache == "auto" else 0
        self.cached = cache in ("memory", True) or (cache == "auto" and _held["bytes"] + size < CACHE_LIMIT_BYTES)
        if self.cached and size:
            _held["bytes"] += size
            weakref.finalize(self, _release, size)
        if self.cached:
            self._fill_cache(progress)
        elif verify or (verify is None and self.on_bad == "skip"):
            good, skipped = verify_images(self.frame, self.on_bad, progress, self.with_mask, max_pixels)
            if skipped:
                self._record_skipped(skipped)
                self.frame = good
                self._set_labels()

    # --- labels -------------------------------------------------------------------------------------
    def _set_labels(self) -> None:
        labels = self.data.labels(self.frame)
        # Python ints per item: default_collate turns them into int64 tensors.
        self._gen = labels["generator"].tolist()
        self._sub = labels["subclass"].tolist()
        self._group = labels["group"].tolist()
        self._paths = self.frame["path"].tolist()
        self._mask_paths = self.frame["mask"].tolist()

    def _record_skipped(self, skipped: list) -> None:
        if hasattr(self.data, "skipped"):
            self.data.skipped.extend(skipped)
        warnings.warn(f"ImageDataset: skipped {len(skipped)} unusable image(s) (listed in data.skipped): "
                      + "; ".join(r for _, r in skipped[:3]) + ("; ..." if len(skipped) > 3 else ""),
                      stacklevel=3)

    # --- cache --------------------------------------------------------------------------------------
    def estimated_bytes(self) -> int:
        """Decoded size of the cache (images and masks), estimated from a sample of headers for `crop`."""
        n = len(self.frame)
        per_pixel = 3 + (1 if self.with_mask else 0)
        if self.policy == "resize" or n == 0:
            return n * per_pixel * self.size * self.size
        step = max(1, n // _SIZE_SAMPLE)
        areas = []
        for path in self._paths[::step][:_SIZE_SAMPLE]:
            try:
                h, w = image_size(path, self.max_pixels)
            except DataError:
                continue  # reported with a proper message when the image is decoded
            areas.append(max(h, self.size) * max(w, self.size))
        mean_area = float(np.mean(areas)) if areas else float(self.size * self.size)
        return int(n * per_pixel * mean_area)

    def _fill_cache(self, progress: bool) -> None:
        n = len(self.frame)
        images, masks = _Store(n), (_Store(n) if self.with_mask else None)

        def consume(pos: int, img: np.ndarray, mask: np.ndarray | None) -> None:
            x, m = self._prepare(img, mask)
            images.put(pos, x)
            if masks is not None:
                masks.put(pos, m)

        bad, skipped = _decode_all(self.frame, self.on_bad, progress, self.with_mask, self.max_pixels,
                                   consume, "decoding images")
        keep = sorted(set(range(n)) - set(bad))
        self._stack, self._items = images.finish(keep)
        if masks is not None:
            self._mask_stack, self._mask_items = masks.finish(keep)
        if skipped:
            self._record_skipped(skipped)
            self.frame = self.frame.iloc[keep].reset_index(drop=True)
            self._set_labels()

    # --- pixels -------------------------------------------------------------------------------------
    def _prepare(self, img: np.ndarray, mask: np.ndarray | None):
        """The deterministic part of the policy: padding (crop) or resizing (resize), as uint8 CxHxW."""
        if self.pre_policy is not None:
            img = self.pre_policy(img)
        s = self.size
        if self.policy == "crop":
            x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
            m = None if mask is None else torch.from_numpy(np.ascontiguousarray(mask))[None]
            h, w = img.shape[:2]
            if h < s or w < s:
                top, left = max(0, s - h) // 2, max(0, s - w) // 2
                bottom, right = max(0, s - h) - top, max(0, s - w) - left
                # reflect needs a pad shorter than the side it mirrors; else pad with zeros
                mode = "reflect" if max(top, bottom) < h and max(left, right) < w else "constant"
                x = TF.pad(x, [left, top, right, bottom], padding_mode=mode)
                if m is not None:
                    m = TF.pad(m, [left, top, right, bottom], padding_mode=mode)
            return x.contiguous(), (None if m is None else m.contiguous())
        x = torch.from_numpy(img).permute(2, 0, 1)  # HWC memory: torchvision's uint8 resize path, as always
        m = None if mask is None else torch.from_numpy(mask)[None]
        if x.shape[1:] != (s, s):
            x = TF.resize(x, [s, s], interpolation=InterpolationMode.BILINEAR, antialias=True)
            if m is not None:
                m = TF.resize(m, [s, s], interpolation=InterpolationMode.BILINEAR, antialias=True)
        return x.contiguous(), (None if m is None else m.contiguous())

    def _pixels(self, i: int):
        if self.cached:
            if self._stack is not None:
                x = self._stack[i]
                m = self._mask_stack[i] if self.with_mask else None
            else:
                x = self._items[i]
                m = self._mask_items[i] if self.with_mask else None
            return x, m
        try:
            img, mask = _read_row(self._paths[i], self._mask_paths[i], self.with_mask, self.max_pixels)
        except DataError as e:
            raise DataError(f"{e}\n  -> this dataset streams from disk; run attrlib.data.verify_images(frame) "
                            "before training (or build the dataset with verify=True, on_bad='skip') to find "
                            "every bad file up front") from None
        return self._prepare(img, mask)

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, i: int) -> dict[str, Any]:
        i = int(i)
        x, m = self._pixels(i)
        if self.augment is not None:
            x = self.augment(x)
        item = {"generator": self._gen[i], "subclass": self._sub[i], "group": self._group[i], "index": i}
        if self.policy == "crop":
            corners = self._corners(x.shape[1], x.shape[2])
            s = self.size
            # our own draws, not v2.RandomCrop's (two randint calls) or CenterCrop's (rounds half to even): the
            # same crops, and so the same results, as every run trained before
            xs = [TF.crop(x, top, left, s, s) for top, left in corners]
            ms = None if m is None else [TF.crop(m, top, left, s, s) for top, left in corners]
            if self.patches == 1:
                x, m = xs[0], (None if ms is None else ms[0])
            else:
                x, m = torch.stack(xs), (None if ms is None else torch.stack(ms))
                item["patches"] = len(corners)
        item["x"] = x.float().div_(255.0)
        if self.with_mask:
            item["mask"] = m.float().div_(255.0)
        return item

    def _corners(self, h: int, w: int) -> list[tuple[int, int]]:
        """(top, left) of the item's crops in a padded h x w image: random to train, a grid to evaluate."""
        s, k = self.size, self.patches
        if self.train:
            # one draw of 2 numbers per patch from torch's global RNG: reproducible under torch.manual_seed and
            # a DataLoader's seeded workers; as many patches as distinct positions, at most k
            k = min(k, (h - s + 1) * (w - s + 1))
            u = torch.rand(k, 2)
            return [(min(int(a * (h - s + 1)), h - s), min(int(b * (w - s + 1)), w - s)) for a, b in u.tolist()]
        rows, cols = grid_shape(h, w, s, k)
        return [(top, left) for top in _spread(h - s, rows) for left in _spread(w - s, cols)]

    def __repr__(self) -> str:
        where = "memory" if self.cached else "disk"
        return (f"ImageDataset({len(self)} images, policy={self.policy}, size={self.size}, train={self.train}, "
                f"with_mask={self.with_mask}, from {where})")


def grid_shape(h: int, w: int, size: int, most: int) -> tuple[int, int]:
    """Rows x columns of the evaluation grid of an h x w image: enough size x size crops to cover it (ceil(h /
    size) x ceil(w / size)), thinned evenly to at most `most` when it needs more (then they are spread over the
    whole image without covering it)."""
    rows, cols = -(-h // size), -(-w // size)
    while rows * cols > most:
        if rows >= cols and rows > 1 or cols == 1:
            rows -= 1
        else:
            cols -= 1
    return rows, cols


def _spread(span: int, n: int) -> list[int]:
    """n offsets from 0 to span, evenly spaced; one offset is the centre (the single centre crop)."""
    if n == 1:
        return [span // 2]
    return [round(span * j / (n - 1)) for j in range(n)]


def collate_patches(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch of `ImageDataset` items of one patch (default stacking) or of several (all patches one after
    the other, labels repeated per patch, `owner` = the position of each patch's image in the batch)."""
    if "patches" not in items[0]:
        return torch.utils.data.default_collate(items)
    counts = torch.tensor([it["patches"] for it in items])
    batch = {"x": torch.cat([it["x"] for it in items]), "owner": torch.repeat_interleave(torch.arange(len(items)), counts)}
    for key in ("generator", "subclass", "group", "index"):
        batch[key] = torch.repeat_interleave(torch.tensor([it[key] for it in items]), counts)
    if "mask" in items[0]:
        batch["mask"] = torch.cat([it["mask"] for it in items])
    return batch


class _Store:
    """uint8 tensors of n rows: one pre-allocated stack while all share a shape (no second copy), else a list."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.stack: torch.Tensor | None = None
        self.items: list | None = None
        self.filled: list[int] = []

    def put(self, pos: int, x: torch.Tensor) -> None:
        if self.items is None:
            if self.stack is None:
                self.stack = torch.empty((self.n, *x.shape), dtype=torch.uint8)
            if x.shape == self.stack.shape[1:]:
                self.stack[pos] = x
                self.filled.append(pos)
                return
            # Mixed sizes: switch to a list, copying out what the stack holds.
            self.items = [None] * self.n
            for k in self.filled:
                self.items[k] = self.stack[k].clone()
            self.stack = None
        self.items[pos] = x

    def finish(self, keep: list[int]) -> tuple[torch.Tensor | None, list | None]:
        """(stack, None) or (None, list) holding the rows `keep`, in order."""
        if self.items is not None:
            return None, [self.items[k] for k in keep]
        if self.stack is None:
            return None, []
        if len(keep) == self.n:
            return self.stack, None
        return self.stack[torch.as_tensor(keep, dtype=torch.long)].contiguous(), None
