"""The audit of a real folder must stay quick: `attrlib audit` on realdev (650 images, 64 to 1024 px).

Measured in one process, each stage in wall-clock seconds and in this process's CPU seconds (the machine is
shared: CPU seconds say what the work costs, wall seconds what a user waits on a busy machine):

1. realdev_audit_seconds: load_study_data (discovery, the perceptual hash of every image for the near-duplicate
   groups, the splits of the `face` rotation), then shortcut_audit of its training split (headers, blockiness,
   one cue classifier per cue; the pixel statistics come from the process cache), then the whole again in a
   fresh cache. Target: the whole audit under 30 s.

    python benchmarks/bench_realdev_audit.py [--data ../shared/realdev/images] [--heldout face]
"""
from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from _lib import ROOT, Timer, emit

TARGET_SECONDS = 30.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "realdev" / "images"))
    parser.add_argument("--heldout", default="face")
    args = parser.parse_args()
    from attrlib.data import ShortcutWarning, load_study_data, pixels, shortcut_audit

    if not Path(args.data).is_dir():
        raise SystemExit(f"{args.data} does not exist; pass --data <realdev>/images")
    pixels._CACHE.clear()
    cpu0 = time.process_time()
    with Timer() as load:
        data = load_study_data(args.data, heldout=args.heldout, val_subclass="auto")
    cpu1 = time.process_time()
    with Timer() as audit_time, warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortcutWarning)
        audit = shortcut_audit(data)
    cpu2 = time.process_time()
    total = load.seconds + audit_time.seconds
    emit("realdev_audit_seconds", images=len(data.frame) + len(data.set_aside),
         load_seconds=round(load.seconds, 2), load_cpu_seconds=round(cpu1 - cpu0, 2),
         audit_seconds=round(audit_time.seconds, 2), audit_cpu_seconds=round(cpu2 - cpu1, 2),
         total_seconds=round(total, 2), total_cpu_seconds=round(cpu2 - cpu0, 2),
         duplicate_groups=len(audit.duplicates), jpeg_history=audit.cues.at["jpeg_history", "flagged"],
         dropped=data.dropped_generators, target=f"< {TARGET_SECONDS:.0f} s", met=total < TARGET_SECONDS)


if __name__ == "__main__":
    main()
