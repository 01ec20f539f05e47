"""The cost of `attrlib synth` for the default benchmark (with the pools): CPU and wall time, and its bytes.

Runs the command a user runs (`python -m attrlib synth --out <tmp> --force`, defaults otherwise: scale 1/50,
64 px, seed 0, the biased variant with a pool for every subclass) in a fresh process under a temporary
folder, so nothing cached is reused; CPU is that process's user + system time (imports included), from
getrusage. Then digests every file it wrote (`attrlib.simulator.files_digest`) and compares the digest
with the one the code before the faster synthesis wrote (issue 19): a speed-up must not move a byte.
Target: <= 45 s of CPU (73 s measured in issue 19, 61 s here before the change), images byte-identical.
    python benchmarks/bench_synth.py
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _lib import ROOT, Timer, emit

# files_digest of the default benchmark (generator version sim-5) as the code before issue 19's change wrote it
SIM5_DEFAULT_SHA256 = "598e9246de585d7cf105c4c8d6c9d351113d1de9a3551ae732d05ccf91f5ecfc"
TARGET_CPU_SECONDS = 45.0


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.parse_args()
    from attrlib.simulator import GENERATOR_VERSION, files_digest

    with tempfile.TemporaryDirectory(prefix="attrlib-bench-synth-") as tmp:
        out = Path(tmp) / "benchmark"
        before = children_cpu()
        with Timer() as t:
            subprocess.run([sys.executable, "-m", "attrlib", "synth", "--out", str(out), "--force"], cwd=ROOT,
                           check=True, capture_output=True, text=True)
        cpu = children_cpu() - before
        digest = files_digest(out)
        n_files = sum(1 for f in out.rglob("*") if f.is_file())
    same = digest == SIM5_DEFAULT_SHA256 if GENERATOR_VERSION == "sim-5" else None
    emit("synth_default_benchmark", cpu_seconds=round(cpu, 1), wall_seconds=round(t.seconds, 1), files=n_files,
         files_sha256=digest, byte_identical_to_sim5=same, target=f"<= {TARGET_CPU_SECONDS:.0f} s CPU, same bytes",
         met=cpu <= TARGET_CPU_SECONDS and same is not False)


if __name__ == "__main__":
    main()
