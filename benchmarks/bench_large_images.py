"""Figure 5: large images must not make training slow, nor memory grow with the folder.

Generates (once, under benchmarks/data/large_images/) two folders of the same layout and count
(<root>/<generator>/<subclass>/NNNN.png, 6 generators x 2 training subclasses + the held-out subclass):
--images PNGs of 1024x1024 and as many of 64x64 (a smooth gradient per subclass, a small periodic pattern
per generator, a little noise: cheap to encode, moderately compressible). Then, in this process:

1. large_images_throughput: images/s and patches/s of `train_one_epoch` (compact backbone, batch 32, crop
   64, train_patches 4, cache="auto": the 64-px folder is decoded into memory, the 1024-px one streams from
   disk) over --steps steps, on the 64-px folder, on the 1024-px folder, on the 1024-px folder with
   num_workers=2 and with train_patches=1; for each, the data path alone (a pass over the loader, no model)
   and the model alone (the same batch `steps` times) say where the time goes.
   large_vs_small_images_per_s: 1024-px images/s / 64-px images/s. Target: no more than ~3x slower per image.
   A 64-px image is exactly one crop, so it gives one patch where a 1024-px image gives train_patches: the
   patches/s ratio, and the train_patches=1 run, compare the same model work.
2. large_images_decode_breakdown: milliseconds per 1024-px image of each stage of a streamed item (PIL
   decode to HxWx3 uint8, the CxHxW copy of `_prepare`, the crops and their float conversion).
3. peak_rss_large_images: in a fresh process, building the datasets (the header reads of the cache
   decision), --memory-steps training steps over the 1024-px folder (streamed) and the evaluation grid
   (test_patches 16, `predict_probs`) over --test-images held-out images. Target: peak RSS < 2048 MB.

Measured side by side in one run (the machine is shared: ratios, not absolute numbers).
    python benchmarks/bench_large_images.py [--images 2000] [--steps 40] [--quick]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

from _lib import Timer, emit, peak_rss_mb

GENERATORS = tuple(f"gen_{c}" for c in "abcdef")
SUBCLASSES = ("car", "face", "held")   # "held" is the held-out subclass: the test split
DATA = Path(__file__).resolve().parent / "data" / "large_images"
QUICK = dict(images=200, steps=4, memory_steps=4, test_images=24)
# --quick: 200 1024-px images would be decoded into memory (cache="auto" caches below 2 GB); this limit keeps
# the 64-px folder in memory and makes the 1024-px one stream, as the full-size run does
QUICK_CACHE_LIMIT_MB = 64


# --- the folders ------------------------------------------------------------------------------------
_BASES: dict = {}  # per worker: (size, generator, subclass) -> uint8 base image


def _base(size: int, g: int, s: int):
    """A smooth gradient (its direction per subclass) plus a periodic grid (its period per generator), <= 240."""
    import numpy as np

    key = (size, g, s)
    if key not in _BASES:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
        a = (s + 1) / (len(SUBCLASSES) + 1)
        img = np.stack([xx * a + yy * (1 - a), xx * (1 - a) + yy * a, (xx + yy) / 2], -1) * 200 + 10
        period = 3 + g
        line = (np.arange(size) % period == 0).astype(np.float32) * 8
        img += line[None, :, None] + line[:, None, None]
        _BASES[key] = np.clip(img, 0, 240).astype(np.uint8)
    return _BASES[key]


def _write(job: tuple[str, int, list[int]]) -> None:
    import numpy as np
    from PIL import Image

    root, size, indices = job
    cells = [(g, s) for g in range(len(GENERATORS)) for s in range(len(SUBCLASSES))]
    for i in indices:
        g, s = cells[i % len(cells)]
        rng = np.random.default_rng(i)
        # a little noise and a brightness offset per image: uint8 sums stay <= 240 + 3 + 12
        img = _base(size, g, s) + rng.integers(0, 4, (size, size, 3), dtype=np.uint8) + np.uint8(rng.integers(0, 13))
        path = Path(root) / GENERATORS[g] / SUBCLASSES[s] / f"{i:04d}.png"
        Image.fromarray(img).save(path, compress_level=1)


def generate(size: int, n: int) -> tuple[Path, float, float]:
    """The folder of n size x size PNGs (made once); (root, seconds spent making it now, megabytes on disk)."""
    root = DATA / f"{size}px-{n}"
    marker = root / ".complete"
    seconds = 0.0
    if not marker.exists():
        for g in GENERATORS:
            for s in SUBCLASSES:
                (root / g / s).mkdir(parents=True, exist_ok=True)
        workers = min(2, os.cpu_count() or 1)
        chunk = 25
        jobs = [(str(root), size, list(range(k, min(k + chunk, n)))) for k in range(0, n, chunk)]
        with Timer() as t:
            with multiprocessing.get_context("fork").Pool(workers) as pool:
                for _ in pool.imap_unordered(_write, jobs):
                    pass
        marker.write_text("ok\n")
        seconds = t.seconds
    megabytes = sum(p.stat().st_size for p in root.rglob("*.png")) / 1024 ** 2
    return root, seconds, megabytes


# --- throughput -------------------------------------------------------------------------------------
class _Steps:
    """`steps` batches of a loader, starting it again when an epoch ends; counts the patches it hands out.

    Used instead of train_one_epoch's max_steps, which draws one batch more than it trains on."""

    def __init__(self, loader, steps: int) -> None:
        self.loader, self.steps, self.patches = loader, steps, 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        done = 0
        while done < self.steps:
            for batch in self.loader:
                self.patches += int(batch["x"].shape[0])
                yield batch
                done += 1
                if done == self.steps:
                    return


def _parts(config):
    import torch

    from attrlib import techniques, training
    from attrlib.data import load_config_data

    torch.manual_seed(0)
    data = load_config_data(config)
    technique = techniques.build_technique(config, data)
    loader = training.make_loader(data.split("train"), data, config, train=True,
                                  generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    return technique, loader


def measure(config, steps: int) -> dict:
    """images/s and patches/s of training, of the data path alone and of the model alone, over `steps` steps."""
    import torch

    from attrlib import training

    technique, loader = _parts(config)
    cpu = torch.device("cpu")
    training.train_one_epoch(technique, _Steps(loader, 2), cpu, 0, 1, progress=False)  # warm-up (and workers)
    run = _Steps(loader, steps)
    stats = training.train_one_epoch(technique, run, cpu, 0, 1, progress=False)
    images, seconds = stats["images"], stats["seconds"]
    data_only = _Steps(loader, steps)
    with Timer() as t_data:  # decode (or cache read), crops, uint8 -> float, collate
        for batch in data_only:
            pass
    technique.train()
    with Timer() as t_model:  # the same batch, already in memory, `steps` times
        for _ in range(steps):
            technique.update(batch)
    batch_images = int(batch["owner"][-1]) + 1 if "owner" in batch else int(batch["x"].shape[0])
    return dict(images_per_s=images / seconds, patches_per_s=run.patches / seconds,
                patches_per_image=run.patches / images, seconds=seconds, images=images,
                data_only_seconds=t_data.seconds, model_only_seconds=t_model.seconds * images / (steps * batch_images),
                cached=loader.dataset.cached, train_rows=len(loader.dataset))


def decode_breakdown(root: Path, samples: int = 16) -> dict:
    """Milliseconds per image of each stage of a streamed crop-policy training item (1024-px folder)."""
    import torch
    from torchvision.transforms.v2 import functional as TF

    from attrlib.data import ImageDataset, load_study_data
    from attrlib.data.images import load_image

    data = load_study_data(root, heldout=("held",))
    ds = ImageDataset(data.split("train").head(samples), data, policy="crop", size=64, train=True, patches=4,
                      cache="stream")
    paths = ds.frame["path"].tolist()
    torch.manual_seed(0)
    with Timer() as t_decode:
        images = [load_image(p) for p in paths]
    with Timer() as t_prepare:
        prepared = [ds._prepare(img, None)[0] for img in images]
    del images
    with Timer() as t_crops:  # what __getitem__ does after _prepare: draw corners, crop, stack, float
        for x in prepared:
            corners = ds._corners(x.shape[1], x.shape[2])
            torch.stack([TF.crop(x, top, left, 64, 64) for top, left in corners]).float().div_(255.0)
    del prepared
    with Timer() as t_item:
        for i in range(len(ds)):
            ds[i]
    ms = 1000 / len(paths)
    return dict(decode_ms=t_decode.seconds * ms, chw_copy_ms=t_prepare.seconds * ms,
                crops_and_float_ms=t_crops.seconds * ms, item_ms=t_item.seconds * ms)


def throughput(root64: Path, root1024: Path, steps: int) -> None:
    import torch

    from attrlib.config import Config

    base = Config(data=str(root64), heldout=("held",), backbone="compact", batch_size=32, image_size=64,
                  input_policy="crop", train_patches=4, device="cpu")
    cases = {"64px": base, "1024px": base.replace(data=str(root1024)),
             "1024px_workers2": base.replace(data=str(root1024), num_workers=2),
             "1024px_patches1": base.replace(data=str(root1024), train_patches=1)}
    results = {}
    for name, config in cases.items():
        r = results[name] = measure(config, steps)
        emit("large_images_throughput", case=name, images_per_s=round(r["images_per_s"], 1),
             patches_per_s=round(r["patches_per_s"], 1), patches_per_image=round(r["patches_per_image"], 2),
             data_only_seconds=round(r["data_only_seconds"], 2), model_only_seconds=round(r["model_only_seconds"], 2),
             train_seconds=round(r["seconds"], 2), data_path_share=round(r["data_only_seconds"] / r["seconds"], 3),
             images=r["images"], steps=steps, cached=r["cached"], train_rows=r["train_rows"],
             num_workers=config.num_workers, train_patches=config.train_patches, threads=torch.get_num_threads())
    small, large = results["64px"], results["1024px"]
    slowdown = small["images_per_s"] / large["images_per_s"]
    emit("large_vs_small_images_per_s", ratio=round(1 / slowdown, 3), slower_per_image=round(slowdown, 2),
         patches_per_s_ratio=round(large["patches_per_s"] / small["patches_per_s"], 3),
         workers2_vs_workers0=round(results["1024px_workers2"]["images_per_s"] / large["images_per_s"], 2),
         patches1_slower_per_image=round(small["images_per_s"] / results["1024px_patches1"]["images_per_s"], 2),
         data_path_share_1024px=round(large["data_only_seconds"] / large["seconds"], 3),
         data_path_share_64px=round(small["data_only_seconds"] / small["seconds"], 3),
         target="<= 3x slower per image", met=slowdown <= 3.0)
    b = decode_breakdown(root1024)
    emit("large_images_decode_breakdown", **{k: round(v, 2) for k, v in b.items()},
         model_ms_per_image=round(1000 * large["model_only_seconds"] / large["images"], 2),
         decode_share_of_item=round(b["decode_ms"] / b["item_ms"], 3))


# --- peak memory (a fresh process) ----------------------------------------------------------------------
def _own_peak_mb() -> float:
    """VmHWM: the peak RSS of this process's own address space. ru_maxrss (peak_rss_mb) is not reset by
    fork + exec on Linux: a child's starts at its parent's RSS, so the child runs before anything big."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(root: str, steps: int, test_images: int) -> None:
    import torch

    from attrlib import techniques, training
    from attrlib.config import Config
    from attrlib.data import datasets, load_config_data

    cpu = torch.device("cpu")
    after_import = peak_rss_mb()
    config = Config(data=root, heldout=("held",), backbone="compact", batch_size=32, image_size=64,
                    input_policy="crop", train_patches=4, test_patches=16, device="cpu")
    data = load_config_data(config)
    with Timer() as t_build:  # header reads for the cache decision (and the decode when it caches)
        train = training.make_loader(data.split("train"), data, config, train=True,
                                     generator=torch.Generator().manual_seed(0), device=cpu)
        test = training.make_loader(data.split("test").head(test_images), data, config, train=False, device=cpu)
    after_build = peak_rss_mb()
    technique = techniques.build_technique(config, data)
    stats = training.train_one_epoch(technique, train, cpu, 0, 1, progress=False, max_steps=steps)
    after_train = peak_rss_mb()
    technique.eval()
    with Timer() as t_eval:
        probs = techniques.predict_probs(technique.predict, test, cpu, technique.n_generators)
    print(json.dumps(dict(peak_rss_mb=peak_rss_mb(), vm_hwm_mb=_own_peak_mb(), after_import_mb=after_import, after_datasets_mb=after_build,
                          after_train_mb=after_train, build_seconds=t_build.seconds, train_images=stats["images"],
                          train_steps=stats["steps"], train_cached=train.dataset.cached, test_cached=test.dataset.cached,
                          test_images=len(probs), eval_seconds=t_eval.seconds, rows=len(data.frame),
                          cache_limit_mb=datasets.CACHE_LIMIT_BYTES / 2 ** 20)))


def memory(root: Path, steps: int, test_images: int, cache_limit_mb: float | None) -> None:
    extra = [] if cache_limit_mb is None else ["--cache-limit-mb", str(cache_limit_mb)]
    out = subprocess.run([sys.executable, __file__, "--child", str(root), "--memory-steps", str(steps),
                          "--test-images", str(test_images), *extra], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"the memory child failed:\n{out.stderr}")
    r = json.loads(out.stdout.strip().splitlines()[-1])
    peak = max(r["peak_rss_mb"], r["vm_hwm_mb"])
    emit("peak_rss_large_images", peak_rss_mb=round(r["peak_rss_mb"], 1), vm_hwm_mb=round(r["vm_hwm_mb"], 1),
         after_import_mb=round(r["after_import_mb"], 1),
         after_datasets_mb=round(r["after_datasets_mb"], 1), after_train_mb=round(r["after_train_mb"], 1),
         datasets_seconds=round(r["build_seconds"], 2), images_on_disk=r["rows"], train_steps=r["train_steps"],
         train_images=r["train_images"], train_cached=r["train_cached"], test_images=r["test_images"],
         test_patches=16, test_cached=r["test_cached"], eval_seconds=round(r["eval_seconds"], 1),
         cache_limit_mb=cache_limit_mb or f"default ({r['cache_limit_mb']:.0f})", target="< 2048 MB", met=peak < 2048)


def set_cache_limit(megabytes: float | None) -> None:
    if megabytes is not None:
        from attrlib.data import datasets

        datasets.CACHE_LIMIT_BYTES = int(megabytes * 1024 ** 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=None, help="images per folder (default 2000; 200 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="timed training steps per case (default 40; 10 with --quick)")
    p.add_argument("--memory-steps", type=int, default=None,
                   help="training steps of the peak-memory run (default 30; 10 with --quick)")
    p.add_argument("--test-images", type=int, default=None,
                   help="held-out images predicted in the peak-memory run (default 300; 60 with --quick)")
    p.add_argument("--only", choices=("throughput", "memory"), default=None, help="run one part only (default both)")
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run of about a minute: {QUICK}, --cache-limit-mb {QUICK_CACHE_LIMIT_MB}")
    p.add_argument("--cache-limit-mb", type=float, default=None,
                   help="attrlib.data.CACHE_LIMIT_BYTES for this run, in MB (default: the library's, 768)")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    defaults = QUICK if args.quick else dict(images=2000, steps=40, memory_steps=30, test_images=300)
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.quick and args.cache_limit_mb is None:
        args.cache_limit_mb = QUICK_CACHE_LIMIT_MB
    if args.child:
        set_cache_limit(args.cache_limit_mb)
        return child(args.child, args.memory_steps, args.test_images)
    roots = {}
    for size in (64, 1024):
        roots[size], seconds, megabytes = generate(size, args.images)
        emit("large_images_folder", image_size=size, images=args.images, generate_seconds=round(seconds, 1),
             folder_mb=round(megabytes, 1), root=str(roots[size]))
    # the memory child first: ru_maxrss carries this process's RSS over into it
    if args.only in (None, "memory"):
        memory(roots[1024], args.memory_steps, args.test_images, args.cache_limit_mb)
    if args.only in (None, "throughput"):
        set_cache_limit(args.cache_limit_mb)  # imports torch: after the memory child, not before
        throughput(roots[64], roots[1024], args.steps)


if __name__ == "__main__":
    main()
