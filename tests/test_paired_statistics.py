"""Issue 11, statistics and measurements: LLR from log-probabilities with the training prior removed, macro
averages over the generators present, "vs fine_tuning" on ft_test, and the paired hierarchical bootstrap."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import classification_report

from attrlib import runfolder, sweep, techniques
from attrlib.config import Config
from attrlib.data import load_config_data
from attrlib.evaluation import (MACRO_CONVENTION, hierarchical_bootstrap, llr_scores, log_likelihood_ratios,
                                paired_bootstrap, paired_comparison, rotation_table, runs_llr_scores,
                                seed_style_report, split_metrics, summary_table, training_prior, verdict)
from attrlib.reporting import format_summary, llr_figure, seed_table

GENS = ["a", "b", "c", "d"]


# --------------------------------------------------------------------------------------------- fake run folders
def _images(root: Path, rotation: str, n: int, salt: str = "", gens: list[str] = GENS) -> list[Path]:
    """n small files of `root`/<generator>/<rotation>/ (contents depend on `salt`: another variant's bytes)."""
    paths = []
    for i in range(n):
        p = root / gens[i % len(gens)] / rotation / f"{i:03d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_bytes(f"{rotation}-{i}-{salt}".encode())
        paths.append(p)
    return paths


def _run(root: Path, name: str, data: Path, rotation: str, seed: int, correct: dict[str, np.ndarray],
         heldout_split: str = "test", val: float = 0.9, salt: str = "", gens: list[str] = GENS) -> Path:
    """A finished run folder whose predictions are right exactly where `correct[split]` says (1 = right), over the
    generators `gens` (a rotation can run without some)."""
    run = root / name / f"{rotation}-{seed}"
    run.mkdir(parents=True)
    runfolder.write_config(run, Config(data=str(data), heldout=(rotation,), seed=seed, technique="baseline",
                                       runs=str(root)))
    parts = []
    for split, right in correct.items():
        paths = _images(data, rotation if split in ("test", "ft_test") else "train", len(right), salt, gens)
        if split == "ft_test":  # a part of the test images, as seed 002's 80/20 split
            paths = _images(data, rotation, 4 * len(right), salt, gens)[::4]
        true = np.array([gens.index(p.parent.parent.name) for p in paths])
        pred = np.where(np.asarray(right) > 0, true, (true + 1) % len(gens))
        logits = np.full((len(paths), len(gens)), -3.0)
        logits[np.arange(len(paths)), pred] = 3.0
        logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        frame = pd.DataFrame({"path": [str(p) for p in paths], "generator": [gens[t] for t in true],
                              "subclass": rotation})
        parts.append(runfolder.prediction_frame(frame, split, gens, log_probs=logp))
    runfolder.write_predictions(run, pd.concat(parts, ignore_index=True))
    metrics = runfolder.load_predictions(run)
    acc = {s: float((g["pred"] == g["generator"]).mean()) for s, g in metrics.groupby("split")}
    runfolder.write_metrics(run, {"heldout": {"split": heldout_split, "accuracy": acc[heldout_split]},
                                  "val": {"accuracy": val}, "seed": seed, "uses_target_data": heldout_split != "test",
                                  "train_prior": {g: 1 / len(gens) for g in gens}})
    runfolder.mark_done(run)
    return run


def _pattern(n: int, rate: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < rate).astype(float)


# --------------------------------------------------------------------------------------------- LLR
def test_llr_of_a_model_that_outputs_its_prior_is_zero_and_large_logits_do_not_saturate():
    prior = np.array([0.5, 0.25, 0.15, 0.10])  # an unbalanced training split
    log_probs = np.tile(np.log(prior), (5, 1))
    assert np.allclose(log_likelihood_ratios(log_probs, prior), 0.0, atol=1e-12)
    # the old posterior log-odds sit far from 0 for the same neutral image
    assert abs(math.log(prior[1] / (1 - prior[1]))) > 1
    logits = np.array([[60.0, 0.0, 0.0, 0.0], [0.0, -40.0, 0.0, 0.0]])
    llr = log_likelihood_ratios(logits - np.log(np.exp(logits).sum(1, keepdims=True)), np.full(4, 0.25))
    assert llr[0, 0] == pytest.approx(60.0) and llr[0, 0] > 13.9   # the clipped version stopped at 13.8
    assert llr[1, 1] == pytest.approx(-40.0)
    assert llr[0, 1] == pytest.approx(-60.0 + math.log(3))   # b against {a, c, d} weighted equally: a dominates
    # the same through a predictions frame, with the prior as a mapping
    frame = pd.DataFrame({"path": ["x", "y"], "split": "test", "generator": ["a", "b"], "subclass": "s"})
    frame = runfolder.prediction_frame(frame, "test", GENS, log_probs=np.tile(np.log(prior), (2, 1)))
    scores = llr_scores(frame, GENS, dict(zip(GENS, prior)))
    assert np.allclose(scores["llr"], 0.0, atol=1e-12) and scores.attrs["note"] == ""
    assert "log p(x|g) - log p(x|not g)" in scores.attrs["definition"]
    assert "weighted equally" in scores.attrs["definition"]


def test_old_run_folder_without_logp_columns_recomputes_and_says_so(tmp_path):
    logits = np.array([[30.0, 0.0, 0.0, 0.0], [0.0, 2.0, 1.0, 0.5]])
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    frame = runfolder.prediction_frame(pd.DataFrame({"path": ["x", "y"], "generator": ["a", "b"], "subclass": "s"}),
                                       "test", GENS, log_probs=logp)
    run = tmp_path / "run"
    run.mkdir()
    runfolder.write_predictions(run, frame)
    back = runfolder.load_predictions(run)
    assert np.array_equal(back[[f"logp_{g}" for g in GENS]].to_numpy(), logp)  # full precision on disk
    old = back[[c for c in back.columns if not c.startswith("logp_")]]
    new_s, old_s = llr_scores(back, GENS, np.full(4, 0.25)), llr_scores(old, GENS, np.full(4, 0.25))
    assert new_s.attrs["note"] == "" and "recomputed from the stored" in old_s.attrs["note"]
    assert np.allclose(new_s["llr"], old_s["llr"], atol=1e-4)  # float32 probabilities: close, not cut at 13.8
    assert new_s["llr"].max() == pytest.approx(30.0, abs=1e-6)
    fig = llr_figure(old_s, GENS)
    assert any("recomputed" in t.get_text() for t in fig.texts) and any("not g" in t.get_text() for t in fig.texts)
    plt.close(fig)


def test_engine_writes_logp_columns_and_the_training_prior(tiny_data, tmp_path):
    torch.set_num_threads(1)
    config = Config(data=str(tiny_data), runs=str(tmp_path), image_size=32, batch_size=16, steps=2)
    run = sweep.train(config, progress=False)
    pred = runfolder.load_predictions(run)
    gens = runfolder.generators_of(pred)
    logp = pred[[f"logp_{g}" for g in gens]].to_numpy()
    assert np.allclose(np.exp(logp), pred[[f"p_{g}" for g in gens]].to_numpy(), atol=1e-6)
    prior = json.loads((run / "metrics.json").read_text())["train_prior"]
    data = load_config_data(config)  # the split the engine trained on (a validation subclass left out)
    freq = data.split("train")["generator"].value_counts(normalize=True)
    assert prior == pytest.approx({g: freq[g] for g in gens})
    scores = runs_llr_scores([run])
    assert scores.attrs["note"] == "" and len(scores) == len(gens) * len(pred[pred.split == "test"])
    # a run from before train_prior was recorded: recomputed from its data and technique
    metrics = json.loads((run / "metrics.json").read_text())
    runfolder.write_metrics(run, {k: v for k, v in metrics.items() if k != "train_prior"})
    assert training_prior(run) == (pytest.approx(prior), "")
    # a weighted sampler draws every generator equally: that is the prior the model learns
    ws = techniques.build_technique(config.replace(technique="weighted_sampling"), data)
    assert ws.training_prior(data.split("train")) == pytest.approx(np.full(len(gens), 1 / len(gens)))
    assert not np.allclose(freq.reindex(gens).to_numpy(), 1 / len(gens))  # the data itself is unbalanced


# --------------------------------------------------------------------------------------------- macro averages
def test_macro_averages_are_over_the_generators_present():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)                     # "d" has no image in this split
    p = np.where(rng.random(120) < 0.7, y, rng.integers(0, 4, 120))
    m = split_metrics(y, p, GENS)
    ref = classification_report(y, p, labels=[0, 1, 2], output_dict=True, zero_division=0)
    assert m["macro_recall"] == pytest.approx(ref["macro avg"]["recall"])
    assert m["macro_f1"] == pytest.approx(ref["macro avg"]["f1-score"])
    assert m["macro_precision"] == pytest.approx(ref["macro avg"]["precision"])
    assert m["macro_over"] == ["a", "b", "c"] and m["per_generator"]["d"]["support"] == 0
    every = classification_report(y, p, labels=[0, 1, 2, 3], output_dict=True, zero_division=0)
    assert m["macro_recall"] > every["macro avg"]["recall"]  # the old convention counted d as recall 0
    frame = pd.DataFrame({"path": [f"{i}" for i in range(120)], "split": "test", "generator": [GENS[i] for i in y],
                          "subclass": "s", "pred": [GENS[i] for i in p], **{f"p_{g}": 0.25 for g in GENS}})
    assert seed_style_report(frame, GENS).loc["average", "recall"] == pytest.approx(m["macro_recall"])
    # hierarchical macro F1 over the present generators equals scikit-learn's on the full sample
    _, ci = hierarchical_bootstrap({"r": (y, p[None])}, "macro_f1", n_classes=4, n_boot=50)
    assert ci.estimate == pytest.approx(ref["macro avg"]["f1-score"])


def test_hierarchical_bootstrap_resamples_clusters_together():
    """Images that are not independent (renders of one clean image) are drawn cluster by cluster: singleton clusters
    are the image-by-image bootstrap exactly; 20 clusters of 5 identical outcomes give a wider interval than 100
    independent images with the same outcomes, about sqrt(5) times; a wrong number of ids is refused."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 100)
    p = np.where(rng.random((2, 100)) < 0.6, y, (y + 1) % 3)
    plain = hierarchical_bootstrap({"r": (y, p)}, n_boot=300)[1]
    assert hierarchical_bootstrap({"r": (y, p)}, n_boot=300, clusters={"r": np.arange(100)})[1] == plain
    outcome = np.repeat(rng.random(20) < 0.5, 5).astype(int)  # one outcome per clean image, shared by its 5 renders
    ones = np.ones(100, int)
    independent = hierarchical_bootstrap({"r": (ones, outcome[None])}, n_boot=2000)[1]
    clustered = hierarchical_bootstrap({"r": (ones, outcome[None])}, n_boot=2000,
                                       clusters={"r": np.repeat(np.arange(20), 5)})[1]
    assert clustered.estimate == independent.estimate
    ratio = (clustered.high - clustered.low) / (independent.high - independent.low)
    assert 1.7 < ratio < 2.8  # sqrt(5) = 2.24
    with pytest.raises(ValueError, match="cluster ids"):
        hierarchical_bootstrap({"r": (ones, outcome[None])}, clusters={"r": np.arange(99)})


def test_captions_state_the_macro_convention(tmp_path):
    data = tmp_path / "data"
    run = _run(tmp_path / "runs", "baseline", data, "mv", 0, {"test": _pattern(40, 0.5, 0)})
    assert MACRO_CONVENTION in seed_table([run]).attrs["caption"]
    table = summary_table({"baseline": [run]}, n_boot=20)
    assert MACRO_CONVENTION[1:] in table.attrs["caption"] and MACRO_CONVENTION[1:] in format_summary(table).attrs["caption"]


# --------------------------------------------------------------------------------------------- paired bootstrap
def test_identical_technique_is_not_distinguishable_and_a_better_one_is():
    rng = np.random.default_rng(1)
    base = {"mv": (rng.random((3, 200)) < 0.5).astype(float)}
    same = paired_bootstrap(base, base, n_boot=500).overall
    assert same["difference_low"] <= 0 <= same["difference_high"] and same["verdict"] == "not distinguishable"
    better = {"mv": np.maximum(base["mv"], (rng.random((3, 200)) < 0.3))}
    out = paired_bootstrap(better, base, n_boot=500, names=("tech", "base")).overall
    assert out["difference_low"] > 0 and out["verdict"] == "tech beats base"
    worse = paired_bootstrap(base, better, n_boot=500, names=("tech", "base")).overall
    assert worse["verdict"] == "base beats tech"
    assert verdict(-0.1, 0.2) == "not distinguishable" and verdict(0.01, 0.2, "A", "B") == "A beats B"
    assert verdict(float("nan"), float("nan")) == "not distinguishable"


def test_pairing_matters():
    """The technique fixes 12 of the baseline's 100 errors and breaks none: alone, each accuracy's interval
    overlaps the other's; paired per image, the difference excludes 0."""
    n = 200
    base = (np.arange(n) % 2 == 0).astype(float)[None].repeat(2, 0)   # 0.5, the same images wrong for both seeds
    tech = base.copy()
    tech[:, np.flatnonzero(base[0] == 0)[:12]] = 1.0                    # 0.56
    out = paired_bootstrap({"mv": tech}, {"mv": base}, n_boot=1000).overall
    assert out["accuracy_low"] < out["baseline_accuracy_high"]          # unpaired: the intervals overlap
    assert out["difference_low"] > 0                                    # paired: it beats the baseline
    # the same numbers with the images shuffled in one arm (pairing lost): no longer distinguishable
    unpaired = paired_bootstrap({"mv": tech[:, np.random.default_rng(0).permutation(n)]}, {"mv": base},
                                n_boot=1000).overall
    assert unpaired["difference_low"] < 0 < unpaired["difference_high"]


def test_gap_closed_of_the_oracle_is_one_and_fixed_oracle_works():
    rng = np.random.default_rng(2)
    base = {"r1": (rng.random((3, 150)) < 0.5).astype(float), "r2": (rng.random((3, 90)) < 0.4).astype(float)}
    oracle = {k: np.maximum(v, rng.random(v.shape) < 0.7) for k, v in base.items()}
    out = paired_bootstrap(oracle, base, oracle, n_boot=300)
    assert out.overall["gap_closed"] == pytest.approx(1.0)
    assert out.overall["gap_closed_low"] == pytest.approx(1.0) and out.overall["gap_closed_high"] == pytest.approx(1.0)
    assert out.per_rotation["gap_closed"].tolist() == pytest.approx([1.0, 1.0]) and list(out.per_rotation.index) == ["r1", "r2"]
    assert out.overall["rotations"] == 2
    # the mean over rotations is the mean of the per-rotation accuracies (rotations equally weighted)
    assert out.overall["accuracy"] == pytest.approx(out.per_rotation["accuracy"].mean())
    base_only = paired_bootstrap(base, base, 0.95, n_boot=100).overall
    assert base_only["gap_closed"] == pytest.approx(0.0) and base_only["oracle_pairing"] == "fixed"


def test_bootstrap_is_fast():
    rng = np.random.default_rng(3)
    t, b, o = ((rng.random((3, 200)) < q).astype(float) for q in (0.55, 0.5, 0.9))
    paired_bootstrap({"r": t}, {"r": b}, {"r": o}, n_boot=50)
    start = time.perf_counter()
    paired_bootstrap({"r": t}, {"r": b}, {"r": o}, n_boot=1000)
    assert time.perf_counter() - start < 0.5


# --------------------------------------------------------------------------------------------- run folders
@pytest.fixture()
def study(tmp_path):
    """Two rotations x 3 seeds: baseline 0.5, a technique that fixes errors, fine_tuning, and two oracles:
    one on the same test files, one on another data folder whose test images are other images."""
    root, data, other = tmp_path / "runs", tmp_path / "data", tmp_path / "data-unbiased"
    runs: dict[str, list] = {"baseline": [], "better": [], "same": [], "fine_tuning": [], "oracle": [],
                             "oracle_other": []}
    for rotation, n in (("mv", 120), ("boat", 80)):
        base = (np.arange(n) % 2 == 0).astype(float)
        better = base.copy()
        better[np.flatnonzero(base == 0)[: n // 5]] = 1.0
        oracle = np.maximum(base, np.arange(n) % 4 == 1)
        ft_base = np.array([1, 0, 0, 0] * (n // 16))
        for s in (0, 1, 2):
            slip = _pattern(n, 0.05, s) * better  # seeds differ a little: a few of the technique's right answers lost
            runs["baseline"].append(_run(root, "baseline", data, rotation, s,
                                         {"test": base, "ft_test": ft_base}))
            runs["same"].append(_run(root, "same", data, rotation, s, {"test": base, "ft_test": ft_base}))
            runs["better"].append(_run(root, "better", data, rotation, s,
                                       {"test": better - slip, "ft_test": ft_base * 0 + 1}))
            runs["fine_tuning"].append(_run(root, "fine_tuning", data, rotation, s,
                                            {"test": oracle, "ft_test": np.array([1, 1, 1, 0] * (n // 16))},
                                            heldout_split="ft_test"))
            runs["oracle"].append(_run(root, "oracle", data, rotation, s, {"test": oracle, "ft_test": ft_base}))
            runs["oracle_other"].append(_run(root, "oracle_other", other, rotation, s,
                                             {"test": oracle, "ft_test": ft_base}, salt="unbiased"))
    return runs


def test_paired_comparison_from_run_folders(study):
    same = paired_comparison(study["same"], study["baseline"], study["oracle"], n_boot=300)
    assert same.overall["difference"] == 0 and same.overall["verdict"] == "not distinguishable"
    better = paired_comparison(study["better"], study["baseline"], study["oracle"], n_boot=300)
    assert better.overall["difference_low"] > 0 and better.overall["oracle_pairing"] == "image"
    assert list(better.per_rotation.index) == ["boat", "mv"] and (better.per_rotation["seeds"] == 3).all()
    itself = paired_comparison(study["oracle"], study["baseline"], study["oracle"], n_boot=300).overall
    assert itself["gap_closed"] == pytest.approx(1.0) and itself["gap_closed_low"] == pytest.approx(1.0)
    # other images under the same names: paired by rotation and seed only, and said
    other = paired_comparison(study["better"], study["baseline"], study["oracle_other"], n_boot=300)
    assert other.overall["oracle_pairing"] == "seed" and "rotation and seed only" in other.note
    assert other.overall["gap_closed"] == pytest.approx(better.overall["gap_closed"])  # same accuracies
    # a seed the baseline lacks is left out, and said
    fewer = paired_comparison(study["better"], study["baseline"][:2] + study["baseline"][3:5], n_boot=100)
    assert (fewer.per_rotation["seeds"] == 2).all() and "left out" in fewer.note


def test_vs_fine_tuning_scores_every_technique_on_ft_test(study):
    runs = {k: study[k] for k in ("baseline", "better", "fine_tuning")}
    table = summary_table(runs, oracle={"oracle": study["oracle"], "fine_tuning": "fine_tuning"}, n_boot=200)
    assert table.attrs["fine_tuning_split"] == "ft_test" and table.attrs["oracle_split"] == "test"
    # on ft_test: baseline 0.25, better 1.0, fine_tuning 0.75 -> better closes 150 % of the way
    assert table.attrs["fine_tuning_accuracy"] == pytest.approx(0.75)
    assert table.loc["better", "gap_closed_fine_tuning"] == pytest.approx((1.0 - 0.25) / (0.75 - 0.25))
    assert table.loc["fine_tuning", "gap_closed_fine_tuning"] == pytest.approx(1.0)
    assert table.loc["baseline", "gap_closed_fine_tuning"] == pytest.approx(0.0)
    # its own row: fine_tuning on ft_test against the baseline on the same ft_test images
    assert table.loc["fine_tuning", "heldout_split"] == "ft_test"
    assert table.loc["fine_tuning", "difference"] == pytest.approx(0.75 - 0.25)
    assert "ft_test" in table.attrs["caption"]
    assert table.loc["better", "verdict"] == "better beats baseline"
    assert table.loc["baseline", "rotations"] == 2 and table.loc["baseline", "seeds"] == 3
    text = format_summary(table)
    assert text.loc["better", "verdict"] == "better beats baseline"
    assert text.loc["fine_tuning", "gap closed vs fine_tuning"].startswith("100 %")


def test_summary_and_rotation_tables_carry_the_selection_rule(study):
    runs = {k: study[k] for k in ("baseline", "same", "better")}
    table = summary_table(runs, oracle=study["oracle"], n_boot=100, selection="val_subclass")
    assert (table["selection"] == "val_subclass").all() and "val_subclass" in table.attrs["caption"]
    assert table.loc["same", "verdict"] == "not distinguishable"
    assert table.loc["same", "difference_low"] <= 0 <= table.loc["same", "difference_high"]
    assert table.loc["better", "accuracy_low"] <= table.loc["better", "accuracy"] <= table.loc["better", "accuracy_high"]
    # by default, what the runs record (these predate selection: the last epoch)
    assert "last (the last epoch)" in summary_table(runs, n_boot=20).attrs["caption"]
    metrics = json.loads((runs["better"][0] / "metrics.json").read_text())
    for d in runs["better"]:
        runfolder.write_metrics(d, {**metrics, "selection": {"requested": "valsub", "rule": "valsub", "step": 5}})
    recorded = summary_table(runs, n_boot=20)
    assert recorded.loc["better", "selection"] == "valsub" and recorded.loc["same", "selection"] == "last"
    assert "differ between techniques" in recorded.attrs["caption"]
    per = rotation_table(runs, oracle=study["oracle"], n_boot=100, selection="val_subclass")
    assert set(per.index) == {(t, r) for t in runs for r in ("mv", "boat")}
    assert per.loc[("better", "mv"), "difference"] > 0 and "val_subclass" in per.attrs["caption"]
    assert per.loc[("better", "mv"), "gap_closed"] == pytest.approx(
        (per.loc[("better", "mv"), "accuracy"] - per.loc[("baseline", "mv"), "accuracy"])
        / (0.75 - per.loc[("baseline", "mv"), "accuracy"]))
    assert "selection" in format_summary(per).columns


def test_a_generator_the_model_never_trained_on_has_no_llr_and_the_others_still_do():
    from attrlib.evaluation.llr import llr_scores, log_likelihood_ratios

    log_probs = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]]))
    llr = log_likelihood_ratios(log_probs, [0.5, 0.5, 0.0])
    assert np.isnan(llr[:, 2]).all() and np.isfinite(llr[:, :2]).all()
    # with two seen generators, LLR_a = log p(x|a) - log p(x|b): the unseen one is no alternative
    assert llr[0, 0] == pytest.approx(np.log(0.7 / 0.2))
    frame = pd.DataFrame({"path": ["a.png", "b.png"], "split": "test", "generator": ["a", "b"], "subclass": "s",
                          "pred": ["a", "b"], "p_a": [0.7, 0.1], "p_b": [0.2, 0.6], "p_c": [0.1, 0.3],
                          "logp_a": log_probs[:, 0], "logp_b": log_probs[:, 1], "logp_c": log_probs[:, 2]})
    scores = llr_scores(frame, ["a", "b", "c"], {"a": 0.5, "b": 0.5, "c": 0.0})
    assert set(scores["scored"]) == {"a", "b"} and "c: no training image" in scores.attrs["note"]


# --------------------------------------------------------------------------------------------- rotations random
def test_rotations_random_interval_is_wide_where_rotations_disagree_and_a_crossed_pair_counts_once():
    from attrlib.evaluation import rotation_bootstrap
    n = 2000
    base = (np.arange(n) % 2 == 0).astype(float)[None]
    up, down = base.copy(), base.copy()
    up[0, np.flatnonzero(base[0] == 0)[: n // 4]] = 1.0     # +0.25 in this rotation
    down[0, np.flatnonzero(base[0] == 1)[: n // 4]] = 0.0   # -0.25 in that one
    tech = {"a": up, "b": up, "c": down}
    comp = paired_bootstrap(tech, {k: base for k in tech}, n_boot=400)
    fixed = rotation_bootstrap(comp)
    # rotations fixed: every replicate holds a, b and c; the interval sits near +0.083 and is narrow
    assert fixed["difference"] == pytest.approx(0.25 / 3)
    assert fixed["difference_low"] > 0.05 and fixed["units"] == 3
    # rotations random: a replicate may draw only c; the interval reaches below 0
    assert fixed["difference_rot_low"] < 0 < fixed["difference_rot_high"]
    # a and b are one training (a crossed pair): counted once, the point is the mean of +0.25 and -0.25
    crossed = rotation_bootstrap(comp, {"a": "a+b", "b": "a+b", "c": "c"})
    assert crossed["units"] == 2 and crossed["rotations"] == 3
    assert crossed["difference"] == pytest.approx(0.0)
    # one training: no interval over rotations (n/a), the fixed one stays
    one = rotation_bootstrap(paired_bootstrap({"a": up}, {"a": base}, n_boot=100))
    assert np.isnan(one["difference_rot_low"]) and np.isfinite(one["difference_low"])


def test_rotation_bootstrap_resamples_seeds_and_gives_technique_minus_reference():
    from attrlib.evaluation import rotation_bootstrap
    rng = np.random.default_rng(5)
    base = (rng.random((1, 400)) < 0.5).astype(float)
    oracle = np.maximum(base, rng.random(base.shape) < 0.5)
    # seeds that disagree widen the interval: the same mean, five seeds half right and half wrong
    steady = np.repeat(np.maximum(base, rng.random(base.shape) < 0.2), 4, axis=0)
    spread = steady.copy()
    spread[:2] = np.maximum(spread[:2], oracle)
    spread[2:] = base
    one = lambda t: rotation_bootstrap(paired_bootstrap({"r": t}, {"r": np.repeat(base, 4, 0)},  # noqa: E731
                                                        {"r": np.repeat(oracle, 4, 0)}, n_boot=500))
    a, b = one(steady), one(spread)
    assert (b["difference_high"] - b["difference_low"]) > 1.5 * (a["difference_high"] - a["difference_low"])
    # vs_reference = technique - oracle, paired: the oracle against itself is exactly 0
    same = rotation_bootstrap(paired_bootstrap({"r": oracle}, {"r": base}, {"r": oracle}, n_boot=100))
    assert same["vs_reference"] == 0 and same["vs_reference_low"] == 0 and same["vs_reference_high"] == 0
    assert same["gap_closed"] == pytest.approx(1.0)
    assert a["vs_reference"] == pytest.approx(a["accuracy"] - a["oracle_accuracy"])


def test_within_model_gap_closed_uses_each_arms_own_model(study, tmp_path):
    from attrlib.evaluation import training_units, within_model_table
    from attrlib.reporting import format_within_model
    # "better" is its own model here; its oracle is "oracle"; against the compact ("baseline") model's oracle too
    runs = {k: study[k] for k in ("baseline", "same", "better")}
    table = within_model_table(runs, {"same": "baseline", "better": "baseline", "baseline": "baseline"},
                               {"baseline": study["oracle"]}, compact_oracle=study["oracle"], n_boot=200)
    assert table.loc["baseline", "gap_closed_within"] == pytest.approx(0.0)
    assert table.loc["same", "model"] == "baseline" and table.loc["same", "gap_closed_within"] == pytest.approx(0.0)
    # on test: baseline 0.5, oracle 0.75; better differs by seed but closes part of the way
    expected = (table.loc["better", "accuracy"] - 0.5) / (0.75 - 0.5)
    assert table.loc["better", "gap_closed_within"] == pytest.approx(expected)
    assert table.loc["better", "vs_model_oracle"] == pytest.approx(table.loc["better", "accuracy"] - 0.75)
    assert table.loc["better", "gain_over_compact"] == pytest.approx(expected)
    # another arm's model: "better" as the model of "same" -> "same" is below its model (negative)
    other = within_model_table({"same": study["same"], "better": study["better"]}, {"same": "better"},
                               {"better": study["oracle"]}, n_boot=100)
    assert list(other.index) == ["same"] and other.loc["same", "model_accuracy"] == pytest.approx(
        table.loc["better", "accuracy"])
    # two rotations, each its own training here (no validation subclass recorded)
    assert training_units(study["better"]) == {"mv": "mv", "boat": "boat"}
    assert table.loc["better", "units"] == 2
    text = format_within_model(table)
    assert "above 100 %" in text.attrs["caption"] and text.loc["baseline", "gap closed within M [fixed] / [rotations random]"].startswith("0 %")


def test_within_model_table_without_any_oracle_is_empty_and_says_why(study):
    """A user's folder has no unbiased twin: no arm has its model's oracle, the table is empty, keeps its note
    column (notebook 11 drops it before saving) and its text says why."""
    from attrlib.evaluation import within_model_table
    from attrlib.reporting import format_within_model

    table = within_model_table({k: study[k] for k in ("baseline", "better")}, {"better": "baseline"}, {}, n_boot=20)
    assert len(table) == 0 and "note" in table and table.drop(columns="note").empty
    text = format_within_model(table)
    assert len(text) == 0 and "No arm has an oracle of its own model" in text.attrs["caption"]


def test_within_model_table_against_target_data_references_says_so(study):
    """On a folder without an unbiased twin each model's reference is its target-data reference (notebook 11 via
    `closing.own_references`): the numbers are the same arithmetic, the caption and the column labels name it."""
    from attrlib.evaluation import within_model_table
    from attrlib.reporting import format_within_model
    from attrlib.study import closing

    runs = {k: study[k] for k in ("baseline", "better")}
    kwargs = dict(models={"better": "baseline", "baseline": "baseline"}, n_boot=50)
    as_oracle = within_model_table(runs, oracles={"baseline": study["oracle"]}, **kwargs)
    as_target = within_model_table(runs, oracles={"baseline": study["oracle"]}, reference="target_reference", **kwargs)
    assert as_target["gap_closed_within"].equals(as_oracle["gap_closed_within"])
    assert as_target.attrs["reference"] == "target_reference" and "with the held-out subclass" in as_target.attrs["caption"]
    text = format_within_model(as_target)
    assert "ERM_M biased / with target data" in text and "arm - reference_M [fixed] / [rotations random]" in text
    assert "ERM_M biased / unbiased" in format_within_model(as_oracle)
    with pytest.raises(ValueError, match="reference 'twin'"):
        within_model_table(runs, oracles={}, reference="twin", **kwargs)
    # notebook 11's choice of references: the oracles where the data has a twin, else the target-data references
    refs = {"baseline target_reference": ["b"], "local_srm_rgb target_reference": ["l"], "baseline oracle": ["o"]}
    assert closing.own_references({"baseline": ["o"]}, refs) == ({"baseline": ["o"]}, "oracle")
    assert closing.own_references({}, refs) == ({"baseline": ["b"], "local_srm_rgb": ["l"]}, "target_reference")


def test_a_crossed_pair_is_one_training(study):
    from attrlib.evaluation import training_units
    for d in study["better"]:
        config = runfolder.read_config(d)
        metrics = json.loads((d / "metrics.json").read_text())
        runfolder.write_metrics(d, {**metrics, "val_subclass": "boat" if config.heldout == ("mv",) else "mv"})
    assert training_units(study["better"]) == {"mv": "boat+mv", "boat": "boat+mv"}
    # the summary: two rotations, one training -> no interval over rotations (n/a), the fixed one stays
    table = summary_table({k: study[k] for k in ("baseline", "better")}, oracle=study["oracle"], n_boot=100)
    assert table.loc["better", "units"] == 1 and table.loc["better", "rotations"] == 2
    assert np.isnan(table.loc["better", "difference_rot_low"]) and table.loc["better", "difference_low"] > 0
    assert format_summary(table).loc["better", "vs baseline, rotations random"] == "n/a (one training)"
    # where they are two trainings, the interval over rotations exists and holds the point
    apart = summary_table({k: study[k] for k in ("baseline", "same")}, n_boot=100)
    assert apart.loc["same", "units"] == 2
    assert apart.loc["same", "difference_rot_low"] <= apart.loc["same", "difference"] <= apart.loc["same", "difference_rot_high"]


def test_macro_f1_interval_over_rotations_that_keep_different_generators(tmp_path):
    """A rotation can run without a generator (realdev's face: two generators have no other training subclass), so
    its class indices span fewer generators: the macro-F1 bootstrap must size its classes for every rotation (it
    took the last rotation's count, and an index of another rotation's fifth generator fell outside it)."""
    data, runs = tmp_path / "data", tmp_path / "runs"
    five = [*GENS, "e"]
    dirs = [_run(runs, "baseline", data, "r1", seed, {"test": _pattern(40, 0.6, seed)}, gens=five) for seed in (0, 1)]
    dirs += [_run(runs, "baseline", data, "r2", seed, {"test": _pattern(30, 0.7, seed)}, gens=GENS) for seed in (0, 1)]
    table = summary_table({"baseline": dirs}, n_boot=50)
    row = table.loc["baseline"] if "baseline" in table.index else table.iloc[0]
    assert 0 < row["f1_low"] <= row["f1_high"] < 1
