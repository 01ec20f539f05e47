"""Figure 7: the model step against the machine's limit: FLOPs per training step, achieved GFLOP/s and the
share of the matmul peak, per backbone, dtype and memory format.

One training step of the attribution model (`attrlib.models.build_model`: forward, cross entropy, backward,
Adam) on random tensors already in memory, as the engine trains it: batch 32 at 64 px by default, float32 or
bf16 autocast over the backbone body (`Config.bf16`; the input stem stays float32), channels-last activations
(the engine's format) or plain NCHW. FLOPs come from torch's `FlopCounterMode` (matmuls and convolutions,
forward and backward; Adam's element-wise work is not counted); seconds are the median of --steps timed steps
after --warmup, wall and CPU. The peak of each dtype is a 1024 x 1024 matmul at the same thread count (bf16:
bf16 tensors, the compute autocast hands to oneDNN), measured just before each case. fraction_of_peak =
achieved / peak (wall seconds; fraction_of_peak_cpu: per CPU second, which other processes on a shared
machine distort less): near 1, only less work makes a step cheaper. Grouped convolutions (EfficientNet's depthwise
ones) are over-counted: FlopCounterMode's convolution_backward formula drops the group division of the weight
gradient (pytorch/pytorch PR 183405), so for efficientnet_lite0 read the seconds, not the FLOPs (its forward is
0.063 GFLOP an image at 64 px; the counter reports 84 GFLOP for a step of 32, about 14 times 3 x 32 x 0.063).
    python benchmarks/bench_flops.py [--backbones compact local resnet18] [--threads 1] [--batch 32]
                                     [--size 64] [--steps 3] [--warmup 2]
"""
from __future__ import annotations

import argparse
import statistics

from _lib import Timer, emit

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

N_GENERATORS = 6  # the embedded benchmark's generators: the head's width (its FLOPs are negligible)


def bf16_supported() -> bool:
    """The CPU has native bf16 dot products (AVX512-BF16 / AMX): otherwise bf16 is emulated and slower."""
    capability = torch.backends.cpu.get_cpu_capability()
    return capability in ("AVX512", "AVX512_BF16", "AMX") and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def matmul_peak(dtype: torch.dtype, n: int = 1024, repeats: int = 20) -> tuple[float, float]:
    """(GFLOP per wall second, GFLOP per CPU second) of an n x n matmul in `dtype`: the best of `repeats`, after
    a warm-up."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    for _ in range(3):
        torch.mm(a, b)
    wall = cpu = float("inf")
    for _ in range(repeats):
        with Timer() as t:
            torch.mm(a, b)
        wall, cpu = min(wall, t.seconds), min(cpu, max(t.cpu_seconds, 1e-9))
    return 2 * n ** 3 / wall / 1e9, 2 * n ** 3 / cpu / 1e9


def step_parts(backbone: str, bf16: bool, channels_last: bool, batch: int, size: int):
    from attrlib.config import Config
    from attrlib.models import build_model

    model = build_model(Config(backbone=backbone, bf16=bf16, image_size=size, batch_size=batch), N_GENERATORS)
    if not channels_last:  # as bench_profile.py builds the seeds' plain loop
        model = model.to(memory_format=torch.contiguous_format)
        model.channels_last = False
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, N_GENERATORS, (batch,))

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def measure(backbone: str, bf16: bool, channels_last: bool, batch: int, size: int, steps: int, warmup: int) -> dict:
    """FLOPs of one step, its median wall and CPU seconds, and the same dtype's matmul peak measured just
    before (the machine is shared: a peak taken minutes apart would compare two different loads)."""
    step = step_parts(backbone, bf16, channels_last, batch, size)
    for _ in range(warmup):  # oneDNN picks its kernels, Adam allocates its state
        step()
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    peak, peak_cpu = matmul_peak(torch.bfloat16 if bf16 else torch.float32)
    wall, cpu = [], []
    for _ in range(steps):
        with Timer() as t:
            step()
        wall.append(t.seconds)
        cpu.append(t.cpu_seconds)
    gflop = counter.get_total_flops() / 1e9
    achieved, achieved_cpu = gflop / statistics.median(wall), gflop / statistics.median(cpu)
    return dict(gflop_per_step=round(gflop, 2), seconds_per_step=round(statistics.median(wall), 4),
                cpu_seconds_per_step=round(statistics.median(cpu), 4), achieved_gflops=round(achieved, 1),
                peak_gflops=round(peak, 1), fraction_of_peak=round(achieved / peak, 2),
                # per CPU second: what time slices taken by other processes do not distort
                achieved_gflops_cpu=round(achieved_cpu, 1), peak_gflops_cpu=round(peak_cpu, 1),
                fraction_of_peak_cpu=round(achieved_cpu / peak_cpu, 2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbones", nargs="+", default=["compact", "local", "resnet18"],
                   help="backbones to measure (default: compact local resnet18)")
    p.add_argument("--threads", nargs="+", type=int, default=[1],
                   help="torch CPU thread counts, each measured in turn (default: 1; 2 threads on a 2-core machine "
                        "others use too measure the contention, not the model)")
    p.add_argument("--batch", type=int, default=32, help="images per training step (default 32)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per case; the median is kept (default 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before timing (default 2)")
    p.add_argument("--no-bf16", action="store_true", help="float32 only (default: bf16 too where the CPU has it)")
    args = p.parse_args()

    dtypes = [False] + ([True] if bf16_supported() and not args.no_bf16 else [])
    before = torch.get_num_threads()
    rows = []
    try:
        for threads in args.threads:
            torch.set_num_threads(threads)
            peaks = {bf16: matmul_peak(torch.bfloat16 if bf16 else torch.float32)[0] for bf16 in dtypes}
            emit("matmul_peak", threads=threads, n=1024, fp32_gflops=round(peaks[False], 1),
                 bf16_gflops=round(peaks[True], 1) if True in peaks else None,
                 bf16_over_fp32=round(peaks[True] / peaks[False], 2) if True in peaks else None)
            for backbone in args.backbones:
                for bf16 in dtypes:
                    for channels_last in (True, False):
                        row = dict(backbone=backbone, dtype="bf16" if bf16 else "float32",
                                   memory_format="channels_last" if channels_last else "nchw", threads=threads,
                                   **measure(backbone, bf16, channels_last, args.batch, args.size, args.steps,
                                             args.warmup))
                        rows.append(row)
                        emit("step_vs_peak", batch=args.batch, size=args.size, **row)
    finally:
        torch.set_num_threads(before)
    print(f"\n{'backbone':<9} {'dtype':<8} {'format':<13} {'thr':>3} {'GFLOP/step':>10} {'s/step':>7} "
          f"{'GFLOP/s':>7} {'peak':>6} {'of peak':>7} {'(cpu s)':>7}")
    for r in rows:
        print(f"{r['backbone']:<9} {r['dtype']:<8} {r['memory_format']:<13} {r['threads']:>3} "
              f"{r['gflop_per_step']:>10} {r['seconds_per_step']:>7} {r['achieved_gflops']:>7} "
              f"{r['peak_gflops']:>6} {r['fraction_of_peak']:>7} {r['fraction_of_peak_cpu']:>7}")
    print("of peak: achieved GFLOP/s over the 1024^2 matmul's of the same dtype and threads, wall time; "
          "(cpu s): the same per CPU second")
    if len(dtypes) == 1:
        print("bf16 not measured: " + ("--no-bf16" if args.no_bf16 else "this CPU has no native bf16"))


if __name__ == "__main__":
    main()
