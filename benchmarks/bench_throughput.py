"""Figures 1 and 2: what the data path costs, and the engine against the seeds' plain loop.

1. engine_vs_bare_step: images/s of an engine epoch (ImageDataset from the default benchmark, the real
   loader and the baseline technique's update) / images/s of the same technique's update on random tensors
   already in memory (same model, batch size, precision). Target >= 0.9.
2. engine_vs_seed_loop: wall time of the engine (load the folder, decode, train E epochs) against a plain
   loop as the seeds' protocol reads (torchvision ImageFolder, PIL, Resize, ToTensor, DataLoader) on the
   same PNGs (the engine's training split), same architecture (plain PyTorch memory format, as the seeds
   build it) and E epochs. Target: engine >= 2x faster.

Measured in one process, interleaved, on the default profile's benchmark (data/benchmark, made if missing).
    python benchmarks/bench_throughput.py [--epochs 2] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import statistics

from _lib import Timer, emit

import torch
import torch.nn.functional as F


def engine_parts(config):
    from attrlib import techniques, training
    from attrlib.data import load_config_data

    data = load_config_data(config)
    technique = techniques.build_technique(config, data)
    loader = training.make_loader(data.split("train"), data, config, train=True,
                                sampler_weights=technique.sampler_weights,
                                generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    return data, technique, loader


def bare_steps(technique, n_images: int, batch_size: int, size: int, n_generators: int) -> float:
    """Seconds for the technique's update over n_images of random tensors already in memory."""
    xs = torch.rand(batch_size, 3, size, size)
    ys = torch.randint(0, n_generators, (batch_size,))
    batch = {"x": xs, "generator": ys, "subclass": torch.zeros_like(ys), "group": torch.zeros_like(ys),
             "index": torch.arange(batch_size)}
    technique.train()
    steps = -(-n_images // batch_size)
    with Timer() as t:
        for _ in range(steps):
            technique.update(batch)
    return t.seconds * n_images / (steps * batch_size)


def figure_1(config, rounds: int) -> None:
    from attrlib import training

    _, technique, loader = engine_parts(config)
    n = len(loader.dataset)
    bare_steps(technique, 4 * config.batch_size, config.batch_size, config.image_size, technique.n_generators)  # warm-up
    ratios, eng_ips, bare_ips, data_share = [], [], [], []
    for r in range(rounds):
        with Timer() as t_data:  # the data path alone: sampler, crops, uint8 -> float, collate
            for _ in loader:
                pass
        # alternate which side goes first: the machine's load drifts during a round
        if r % 2:
            bare = bare_steps(technique, n, config.batch_size, config.image_size, technique.n_generators)
        with Timer() as t:
            training.train_one_epoch(technique, loader, torch.device("cpu"), r, rounds, progress=False)
        if not r % 2:
            bare = bare_steps(technique, n, config.batch_size, config.image_size, technique.n_generators)
        data_share.append(t_data.seconds / t.seconds)
        eng_ips.append(n / t.seconds)
        bare_ips.append(n / bare)
        ratios.append(eng_ips[-1] / bare_ips[-1])
    ratio = statistics.median(ratios)
    emit("engine_vs_bare_step", ratio=round(ratio, 3), ratios=[round(r, 3) for r in ratios],
         engine_images_per_s=round(statistics.median(eng_ips), 1), bare_images_per_s=round(statistics.median(bare_ips), 1),
         images_per_epoch=n, batch_size=config.batch_size, image_size=config.image_size, backbone=config.backbone,
         bf16=config.bf16, threads=torch.get_num_threads(),
         data_path_share_of_epoch=round(statistics.median(data_share), 4),
         ratio_if_only_the_data_path_cost=round(1 - statistics.median(data_share), 3),
         target=">= 0.9", met=ratio >= 0.9)


class SeedLoop:
    """The seeds' protocol: ImageFolder over <generator>/..., PIL decode + Resize + ToTensor per item, a DataLoader."""

    def __init__(self, root, keep: set[str], size: int, batch_size: int, num_workers: int):
        from torch.utils.data import DataLoader
        from torchvision import datasets, transforms

        class Folder(datasets.ImageFolder):
            def find_classes(self, directory):  # generator folders only (the benchmark keeps masks in _masks)
                classes, _ = super().find_classes(directory)
                classes = [c for c in classes if not c.startswith(("_", "."))]
                return classes, {c: i for i, c in enumerate(classes)}

        tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor()])
        self.dataset = Folder(os.path.abspath(root), transform=tf, is_valid_file=lambda p: os.path.abspath(p) in keep)
        self.loader = DataLoader(self.dataset, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                                 persistent_workers=num_workers > 0)

    def epoch(self, model, optimizer) -> None:
        model.train()
        for x, y in self.loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def figure_2(config, epochs: int, workers: tuple[int, ...]) -> None:
    from attrlib import training
    from attrlib.models import build_model

    with Timer() as eng:
        data, technique, loader = engine_parts(config)
        for e in range(epochs):
            training.train_one_epoch(technique, loader, torch.device("cpu"), e, epochs, progress=False)
    keep = {os.path.abspath(p) for p in data.split("train")["path"]}
    seed, data_only = {}, {}
    for w in workers:
        torch.manual_seed(0)
        with Timer() as t:
            loop = SeedLoop(config.data, keep, config.image_size, config.batch_size, w)
            # the same architecture, as plain PyTorch builds and runs it: NCHW weights and activations (the
            # engine's model is channels-last throughout, one of the things this figure measures)
            model = build_model(config, len(loop.dataset.classes)).to(memory_format=torch.contiguous_format)
            model.channels_last = False
            opt = torch.optim.Adam(model.parameters(), lr=config.lr)
            for _ in range(epochs):
                loop.epoch(model, opt)
        assert len(loop.dataset) == len(keep), (len(loop.dataset), len(keep))
        seed[w] = t.seconds
        with Timer() as d:  # the seed loop's data path alone: decode, resize, collate, no model
            for _ in range(epochs):
                for _batch in loop.loader:
                    pass
        data_only[w] = d.seconds
    best_w = min(seed, key=seed.get)
    best = seed[best_w]
    speedup = best / eng.seconds
    # Amdahl: with the same model and memory format, an engine can at most remove the seed loop's data path
    data_share = data_only[best_w] / best
    emit("engine_vs_seed_loop", speedup=round(speedup, 2), engine_seconds=round(eng.seconds, 2),
         seed_loop_seconds={f"num_workers={w}": round(s, 2) for w, s in seed.items()},
         seed_loop_data_only_seconds={f"num_workers={w}": round(s, 2) for w, s in data_only.items()},
         seed_loop_data_share=round(data_share, 3),
         bound_from_the_data_path_alone=round(1 / max(1 - data_share, 1e-9), 2),
         epochs=epochs, images=len(keep), image_size=config.image_size,
         target=">= 2x (against the faster seed loop)", met=speedup >= 2.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=1, help="epochs of figure 2 (default 1)")
    p.add_argument("--only", type=int, choices=(1, 2), default=None, help="run one figure only")
    p.add_argument("--rounds", type=int, default=3, help="interleaved engine/bare rounds of figure 1 (default 3)")
    p.add_argument("--workers", default="0,2", help="num_workers of the seed loop, comma-separated (default 0,2)")
    args = p.parse_args()
    from attrlib.config import profile
    from attrlib.study import resolve_data

    config, _ = profile("default", device="cpu")
    config = config.replace(data=str(resolve_data("default", progress=False)))
    if args.only in (None, 1):
        figure_1(config, args.rounds)
    if args.only in (None, 2):
        figure_2(config, args.epochs, tuple(int(w) for w in args.workers.split(",")))


if __name__ == "__main__":
    main()
