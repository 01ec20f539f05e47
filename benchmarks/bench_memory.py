"""Figure 4: peak resident memory training over 100,000 small images, streamed from disk (not cached).

Generates 100,000 32x32 PNGs (4 generators x 3 subclasses + a held-out subclass) once under
$ATTRLIB_BENCH_TMP (default /tmp/attrlib-bench-100k), then, in a fresh process, discovers and splits them
with the engine's data layer, builds the streaming ImageDataset (the in-memory cache disabled: the point is
to show streaming keeps memory flat) and trains the baseline for --steps steps (default 600 steps of 32 =
19,200 images: memory is flat well before; a full epoch is --steps 0). Target: peak RSS < 2 GB.
    python benchmarks/bench_memory.py [--images 100000] [--steps 600]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

from _lib import Timer, emit, peak_rss_mb

GENERATORS = ("gen_a", "gen_b", "gen_c", "gen_d")
SUBCLASSES = ("car", "face", "horse", "held")


def generate(root: Path, n: int) -> float:
    """n PNGs, 32x32, a per-generator stripe pattern over noise; returns seconds (0 when cached)."""
    import numpy as np
    from PIL import Image

    marker = root / f".complete-{n}"
    if marker.exists():
        return 0.0
    rng = np.random.default_rng(0)
    cells = [(g, s) for g in GENERATORS for s in SUBCLASSES]
    with Timer() as t:
        for i in range(n):
            g, s = cells[i % len(cells)]
            folder = root / g / s
            if i < len(cells):
                folder.mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            img[:, :: 2 + GENERATORS.index(g)] //= 2
            Image.fromarray(img).save(folder / f"{i:06d}.png", compress_level=1)
        marker.write_text("ok\n")
    return t.seconds


def child(root: str, steps: int, batch_size: int) -> None:
    import torch

    from attrlib import techniques, training
    from attrlib.data import load_config_data
    from attrlib.config import Config
    from attrlib.data import datasets

    datasets.CACHE_LIMIT_BYTES = 0  # stream: never decode the dataset into memory
    after_import = peak_rss_mb()
    config = Config(data=root, heldout=("held",), image_size=32, batch_size=batch_size, device="cpu", epochs=1)
    with Timer() as t_load:
        data = load_config_data(config)
    after_index = peak_rss_mb()
    technique = techniques.build_technique(config, data)
    loader = training.make_loader(data.split("train"), data, config, train=True, generator=torch.Generator().manual_seed(0))
    assert not loader.dataset.cached
    limited = itertools.islice(loader, steps) if steps else loader
    with Timer() as t:
        stats = training.train_one_epoch(technique, limited, torch.device("cpu"), 0, 1, progress=False)
    print(json.dumps(dict(peak_rss_mb=peak_rss_mb(), after_import_mb=after_import, after_index_mb=after_index,
                          index_seconds=t_load.seconds, train_seconds=t.seconds, images_trained=stats["images"],
                          rows=len(data.frame), train_rows=len(loader.dataset))))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--steps", type=int, default=600, help="training steps (0: a full epoch)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.steps, args.batch_size)
    root = Path(os.environ.get("ATTRLIB_BENCH_TMP", "/tmp/attrlib-bench-100k"))
    gen_seconds = generate(root, args.images)
    out = subprocess.run([sys.executable, __file__, "--child", str(root), "--steps", str(args.steps),
                          "--batch-size", str(args.batch_size)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    emit("peak_rss_streaming_100k", peak_rss_mb=round(r["peak_rss_mb"], 1),
         after_import_mb=round(r["after_import_mb"], 1), after_indexing_mb=round(r["after_index_mb"], 1),
         images_on_disk=r["rows"], train_rows=r["train_rows"], images_trained=r["images_trained"],
         steps=args.steps or "full epoch", index_seconds=round(r["index_seconds"], 1),
         train_images_per_s=round(r["images_trained"] / r["train_seconds"], 1),
         generate_seconds=round(gen_seconds, 1), target="< 2048 MB", met=r["peak_rss_mb"] < 2048)


if __name__ == "__main__":
    main()
