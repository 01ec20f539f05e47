"""A control for content reliance (issue 18 §8): does the measure tell a model that reads content from one that reads
the fingerprint? Two control models whose inputs decide what they can read, measured exactly as notebooks 08 and 10
measure every technique (`inspection.content_reliance_table`: Grad-CAM mass inside the object mask on fresh renders
of the held-out subclass, against the share of the fingerprint's energy there):

- **content only**: the compact baseline trained on the *clean twin* of the benchmark: the same content, the same
  generator x subclass bias, fingerprint strength 0 (`synthesize(..., strength=0)`, in `<benchmark>-clean`). The
  generator can only be told from the content its biased subclasses carry.
- **fingerprint only**: the compact baseline trained on the *unbiased twin* (every generator on every subclass: the
  content says nothing about the generator), i.e. the study's oracle run.

Both are then explained on the same renders *with* their fingerprints (the benchmark's own), beside the baseline
and notebook 11's front end `local_srm_rgb` trained on the biased benchmark: renders of the held-out subclass (where
the notebooks measure every technique) and renders of the training subclasses (content the content-only model
learned; on the held-out subclass it is near chance, so the class its CAM explains is close to a guess). A valid
measure puts the content-only control clearly above the fingerprint-only one (ratio_to_fingerprint: about 1 for a
fingerprint reader, above 1 for a model that looks at the object more than the fingerprint is there).

    python benchmarks/bench_reliance_control.py [--rotations bed,car,cat,church,face,horse] [--seeds 0,1]
                                                [--profile claims] [--max-images 96] [--out docs/reliance_control.md]

Runs go to ./runs (the claims study's baseline, oracle and local_srm_rgb runs are reused; the content-only controls
are trained, one per rotation and seed). Intervals: 95 % percentile, two-stage bootstrap (10,000 resamples:
rotations, then seeds within each), paired by rotation and seed for the differences. Writes --out (Markdown, with the command and
the commit) and prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _lib import ROOT, emit

FP = "fingerprint only (unbiased twin)"
CONTENT = "content only (clean twin)"


def _interval(frame, column: str, n_boot: int = 10_000):
    """Mean over rotations of the mean over seeds of `column`, with a 95 % percentile interval from a two-stage
    bootstrap: rotations resampled, then seeds within each (runs of a rotation share their renders, so they are
    not independent). frame: columns heldout, seed, `column`."""
    import numpy as np
    groups = [g[column].to_numpy(float) for _, g in frame.groupby("heldout")]
    point = float(np.mean([g.mean() for g in groups]))
    if len(groups) < 2:
        return point, float("nan"), float("nan")
    rng = np.random.default_rng(0)
    reps = np.empty(n_boot)
    for b in range(n_boot):
        reps[b] = np.mean([rng.choice(groups[k], len(groups[k])).mean()
                           for k in rng.integers(0, len(groups), len(groups))])
    low, high = np.percentile(reps, [2.5, 97.5])
    return point, float(low), float(high)


def _trained_renders(run, params: dict, folder, max_images: int):
    """Fresh renders of the run's *training* subclasses through every generator (each cell's own instance), as
    many per cell as `max_images` allows: content the run was trained on, where a content reader can read it."""
    import math

    from attrlib.inspection.renders import known_images
    contents = [s for s in run.data.subclasses if s not in run.data.heldout]
    n = max(1, math.floor(max_images / (len(contents) * len(run.generators))))
    return known_images(params, contents, run.generators, n, folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rotations", default="bed,car,cat,church,face,horse",
                    help="held-out subclasses, one rotation each (default: the claims profile's, never read while "
                         "designing)")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--profile", default="claims")
    ap.add_argument("--max-images", type=int, default=96, help="held-out renders per run (notebook 10: 96)")
    ap.add_argument("--out", default="docs/reliance_control.md")
    args = ap.parse_args()

    import pandas as pd
    import torch

    from attrlib import sweep
    from attrlib.data import ImageDataset, load_config_data
    from attrlib.inspection import content_reliance, content_reliance_table, summarize_reliance
    from attrlib.runfolder import generators_of, load_run, read_config
    from attrlib.simulator import read_benchmark, synthesize
    from attrlib.study import closing
    from attrlib.study.session import STUDY_BENCHMARKS, project_path, resolve_data

    torch.set_num_threads(1)
    began = time.perf_counter()
    rotations = [r.strip() for r in args.rotations.split(",") if r.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    biased = resolve_data(args.profile, "", progress=False)
    unbiased = resolve_data(args.profile, "", progress=False, variant="unbiased")
    spec = {k: v for k, v in STUDY_BENCHMARKS[args.profile].items() if k != "out"}
    params = read_benchmark(biased)
    clean = synthesize(project_path(STUDY_BENCHMARKS[args.profile]["out"] + "-clean"), strength=0.0,
                       seed=params["seed"], instance_spread=params["instance_spread"], progress=False, **spec)
    arms = {CONTENT: {"technique": "baseline", "data": str(clean)},
            FP: {"technique": "baseline", "data": str(unbiased)},
            "baseline": {"technique": "baseline", "data": str(biased)},
            "local_srm_rgb": {**closing.ARMS["local_srm_rgb"], "data": str(biased)}}
    trained, start_wall = time.perf_counter(), time.time()
    dirs = sweep.train_many(arms, args.profile, seeds, progress=False, rotations=[(r,) for r in rotations],
                            runs=str(project_path("runs")))
    trained = time.perf_counter() - trained
    fresh = sum((Path(d) / "done").stat().st_mtime >= start_wall for ds in dirs.values() for d in ds)
    control_seconds = sum(json.loads((Path(d) / "metrics.json").read_text())["train_seconds"]
                          for d in dirs[CONTENT]) / len(dirs[CONTENT])
    per_seed, skipped, learned, floors = [], [], [], []
    for i, rotation in enumerate(rotations):
        # every run explained on the biased benchmark's renders of this rotation (fingerprints on); a rotation
        # that leaves a generator untrained on the biased data (face: lsgm) cannot explain the oracle, which
        # knows that generator, on the same images: left out, and said so
        sl = slice(i * len(seeds), (i + 1) * len(seeds))
        data = load_config_data(read_config(dirs["baseline"][sl][0]))
        oracle_generators = generators_of(pd.read_csv(Path(dirs[FP][sl][0]) / "predictions.csv", nrows=0))
        if list(oracle_generators) != list(data.generators):
            skipped.append(f"{rotation} (the biased data leaves "
                           f"{', '.join(sorted(set(oracle_generators) - set(data.generators)))} untrained)")
            continue
        floors.append(data.split("val")["generator"].value_counts(normalize=True).max())
        table = content_reliance_table({a: d[sl] for a, d in dirs.items()}, data=data, max_images=args.max_images)
        per_seed.append(table.attrs["per_seed"].assign(where="held-out subclass"))
        with tempfile.TemporaryDirectory(prefix="attrlib-control-") as tmp:
            frame = None
            for a, d in dirs.items():
                for run_dir in d[sl]:
                    run = load_run(run_dir, data=data)
                    if frame is None:
                        frame = _trained_renders(run, read_benchmark(biased), tmp, args.max_images)
                    c = run.config
                    ds = ImageDataset(frame, data, policy=c.input_policy, size=c.image_size, train=False,
                                      with_mask=True, patches=c.test_patches)
                    s = summarize_reliance(content_reliance(run.model, ds, run.generators, "pred",
                                                            inputs=run.technique.test_inputs))
                    per_seed.append(pd.DataFrame([{"arm": a, "seed": run.seed, "heldout": c.heldout.key,
                                                   "where": "training subclasses", **s}]))
                    m = json.loads((Path(run_dir) / "metrics.json").read_text())
                    learned.append({"arm": a, "val": m["val"]["accuracy"], "heldout": m["heldout"]["accuracy"]})
    runs = pd.concat(per_seed, ignore_index=True)
    rows = []
    for where, at in runs.groupby("where", sort=False):
        reference = at[at.arm == FP][["heldout", "seed", "ratio_to_fingerprint"]]
        for arm in arms:
            mine = at[at.arm == arm]
            paired = mine.merge(reference, on=["heldout", "seed"], suffixes=("", "_fp"), validate="1:1")
            assert len(paired) == len(mine) == len(reference), f"{arm}: runs not paired with the control's"
            paired = paired.assign(diff=paired["ratio_to_fingerprint"] - paired["ratio_to_fingerprint_fp"])
            acc = pd.DataFrame(learned).query("arm == @arm")
            rows.append({"where": where, "model": arm, "runs": len(mine), "val": acc["val"].mean(),
                         "heldout": acc["heldout"].mean(), "share_in_mask": mine["share_in_mask"].mean(),
                         "mask_area": mine["mask_area"].mean(), "fingerprint_share": mine["fingerprint_share"].mean(),
                         "ratio_to_fingerprint": _interval(mine, "ratio_to_fingerprint"),
                         "ratio_to_area": _interval(mine, "ratio_to_area"),
                         "vs fingerprint only": _interval(paired, "diff") if arm != FP else (float("nan"),) * 3})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()

    def fmt(t):
        m, lo, hi = t
        return "" if m != m else (f"{m:.2f}" if lo != lo else f"{m:.2f} [{lo:.2f}, {hi:.2f}]")

    def sfmt(t):
        m, lo, hi = t
        return "" if m != m else (f"{m:+.2f}" if lo != lo else f"{m:+.2f} [{lo:+.2f}, {hi:+.2f}]")

    def row(where, model):
        return next(r for r in rows if r["where"] == where and r["model"] == model)

    floor = sum(floors) / len(floors)
    lines = [
        "# Content reliance: a control",
        "",
        "Generated by `python benchmarks/bench_reliance_control.py " + " ".join(sys.argv[1:]) + f"` at commit "
        f"`{commit}`{' (with uncommitted changes)' if dirty else ''} (never typed by hand). What it does and why: the "
        "script's docstring. Profile `" + args.profile + "`'s budget and defaults; rotations " + ", ".join(rotations)
        + " (never read while notebook 11's arms were designed), seeds " + ", ".join(map(str, seeds))
        + f"; at most {args.max_images} renders per run and place, the same renders for every model of a rotation."
        + (f" Left out: {'; '.join(skipped)}." if skipped else ""),
        "",
        "Each model is explained where notebooks 08 and 10 explain it, on renders of the held-out subclass, and also on "
        "renders of the subclasses it was trained on, where a content reader has content it learned to read. "
        "Accuracies are each model's own (metrics.json: in-distribution validation and held-out, on its own data). "
        "Intervals: 95 % percentile, two-stage bootstrap (rotations, then seeds within each); the last column is "
        "paired by rotation and seed.",
        "",
        "| renders of | model (compact unless named) | runs | val acc | held-out acc | share of CAM in the object | "
        "ratio_to_fingerprint | ratio_to_area | ratio_to_fingerprint minus fingerprint only, paired |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['where']} | {r['model']} | {r['runs']} | {r['val']:.2f} | {r['heldout']:.2f} | "
                     f"{r['share_in_mask']:.3f} | {fmt(r['ratio_to_fingerprint'])} | {fmt(r['ratio_to_area'])} | "
                     f"{sfmt(r['vs fingerprint only'])} |")
    verdicts = {}
    for where in dict.fromkeys(r["where"] for r in rows):
        content, area = row(where, CONTENT), row(where, CONTENT)["ratio_to_area"]
        verdicts[where] = content["vs fingerprint only"][1] > 0
        spread = ("no more than an even spread would (its ratio_to_area interval holds 1)" if area[1] <= 1 <= area[2]
                  else "less than an even spread would" if area[2] < 1 else "more than an even spread would")
        lines += ["", f"On renders of the {where}: the object covers {content['mask_area']:.3f} of an image and holds "
                  f"{content['fingerprint_share']:.3f} of the fingerprint's energy; the content-only model puts "
                  f"{content['share_in_mask']:.3f} of its Grad-CAM mass on it, favouring it {spread}. "
                  + ("**The measure passes the control here**: the content-only model's ratio_to_fingerprint is above "
                     "the fingerprint-only model's, by a paired interval that excludes 0." if verdicts[where] else
                     "**The measure fails the control here**: the content-only model's ratio_to_fingerprint is not "
                     "above the fingerprint-only model's by a paired interval that excludes 0.")]
    passed = [w for w, ok in verdicts.items() if ok]
    if not passed:
        conclusion = ("**Conclusion**: content reliance tells a content reader from a fingerprint reader on none of "
                      "the renders tried, so it stays out of the headline, reported as descriptive only.")
    elif verdicts.get("held-out subclass"):
        conclusion = ("**Conclusion**: the measure separates the controls where notebooks 08 and 10 read it (the "
                      "held-out subclass).")
    else:
        conclusion = ("**Conclusion**: the measure separates the controls on renders of the " + ", ".join(passed)
                      + " only; on the held-out subclass, where notebooks 08 and 10 read it, it does not, so it stays "
                      "out of the headline there.")
    lines += [
        "",
        f"The content-only model learned its content: in-distribution validation accuracy "
        f"{row(next(iter(verdicts)), CONTENT)['val']:.2f}, against {floor:.2f} for naming the largest generator of the "
        f"validation split; on the held-out subclass its accuracy is {row(next(iter(verdicts)), CONTENT)['heldout']:.2f} "
        f"(chance {1 / len(data.generators):.2f}), so there its prediction, the class the CAM explains, is close to a "
        "guess: hence the renders of the training subclasses.",
        "",
        conclusion,
        "",
        f"This invocation trained {fresh} of the {sum(len(d) for d in dirs.values())} runs (the others were reused) in "
        f"{trained:.0f} s and took {time.perf_counter() - began:.0f} s in all; a content-only control trains in "
        f"{control_seconds:.0f} s on average (metrics.json's train_seconds), on this machine.",
        "",
    ]
    out = project_path(args.out)
    from attrlib.io import atomic_write_text
    atomic_write_text(out, "\n".join(lines))
    emit("reliance_control", rotations=rotations, skipped=skipped, seeds=seeds, separates=verdicts,
         **{f"{r['where']}: {r['model']}": r["ratio_to_fingerprint"] for r in rows},
         train_seconds=round(trained), out=str(out))


if __name__ == "__main__":
    main()
