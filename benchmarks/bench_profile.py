"""Figure 6: where a training epoch's time goes (torch.profiler), for the engine and for the seeds' plain loop.

What bounds figures 1-3: each loop runs `--steps` training steps of the default profile's baseline on the
default benchmark under torch.profiler, with the data path ("data": fetching and collating the next batch)
and the model step ("step": forward, backward, Adam) marked by record_function. Reported per loop: the
share of wall time in each, the operators with the most self CPU time, and, for the seed loop, the
speed-up an engine with the same model could reach at most by removing the data path (Amdahl).
    python benchmarks/bench_profile.py [--steps 40]
"""
from __future__ import annotations

import argparse
import os
import time

from _lib import emit

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, record_function


def _profiled(batches, step, steps: int) -> tuple[dict, list]:
    """Run `steps` steps under the profiler; {data, step: seconds}, top operators by self CPU time."""
    it = iter(batches)
    seconds = {"data": 0.0, "step": 0.0}
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            t0 = time.perf_counter()
            with record_function("data"):
                batch = next(it)
            t1 = time.perf_counter()
            with record_function("step"):
                step(batch)
            seconds["data"] += t1 - t0
            seconds["step"] += time.perf_counter() - t1
    events = [e for e in prof.key_averages() if e.key not in ("data", "step")]
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    top = [{"op": e.key, "self_cpu_share": round(e.self_cpu_time_total / total, 3), "calls": e.count}
           for e in events[:8]]
    return seconds, top


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=40, help="profiled training steps per loop (default 40)")
    args = p.parse_args()
    from bench_throughput import SeedLoop, engine_parts

    from attrlib.config import profile as make_profile
    from attrlib.models import build_model
    from attrlib.study import resolve_data

    config, _ = make_profile("default", device="cpu")
    config = config.replace(data=str(resolve_data("default", progress=False)))
    data, technique, loader = engine_parts(config)
    technique.train()
    for _ in zip(range(3), loader):  # warm-up: the engine's cache fills, oneDNN picks its kernels
        pass
    seconds, top = _profiled(loader, technique.update, args.steps)
    total = sum(seconds.values())
    emit("profile_engine_epoch", steps=args.steps, batch_size=config.batch_size,
         data_share=round(seconds["data"] / total, 3), step_share=round(seconds["step"] / total, 3),
         images_per_second=round(args.steps * config.batch_size / total, 1), top_ops=top,
         reading="the model step is the time; the data path is what figure 1 charges to the engine")

    keep = {os.path.abspath(p) for p in data.split("train")["path"]}
    loop = SeedLoop(config.data, keep, config.image_size, config.batch_size, num_workers=0)
    model = build_model(config, len(loop.dataset.classes)).to(memory_format=torch.contiguous_format)
    model.channels_last = False
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    model.train()

    def seed_step(batch):
        x, y = batch
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _, b in zip(range(3), loop.loader):
        seed_step(b)
    seconds, top = _profiled(loop.loader, seed_step, args.steps)
    total = sum(seconds.values())
    share = seconds["data"] / total
    emit("profile_seed_loop", steps=args.steps, data_share=round(share, 3), step_share=round(1 - share, 3),
         images_per_second=round(args.steps * config.batch_size / total, 1), top_ops=top,
         amdahl_bound_without_its_data_path=round(1 / max(1 - share, 1e-9), 2),
         reading="an engine with this model, format and precision is at most this much faster than the seed "
                 "loop; beyond it only a cheaper model step (channels-last, bf16, a smaller model) helps")


if __name__ == "__main__":
    main()
