"""Evaluation: metrics equal scikit-learn's, intervals, ECE, gap closed, LLR, robustness, and run folders."""
from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score, roc_auc_score

from attrlib import sweep, techniques, training
from attrlib.config import Config
from attrlib.errors import DataError
from attrlib.evaluation import (aggregate_over_seeds, bootstrap_ci, clean, confusion, down_up,
                                expected_calibration_error, gap_closed, gaussian_blur, heldout_predictions, jpeg,
                                llr_scores, load_predictions, load_run, per_generator_auc, robustness_summary,
                                robustness_table, run_metrics, seed_style_report, shortcut_gap, split_metrics,
                                standard_perturbations, summary_table)
from attrlib.reporting import COMPACT_GAIN, format_robustness, format_summary, llr_figure, save_table

GENS = ["a", "b", "c", "d"]


def _fixed_predictions(n: int = 200, seed: int = 0) -> pd.DataFrame:
    """Predictions of a mediocre classifier; generator "d" is never predicted (zero-division case)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 4, n)
    logits = rng.normal(0, 1, (n, 4))
    logits[np.arange(n), true] += 1.5
    logits[:, 3] -= 10
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    frame = pd.DataFrame({"path": [f"img{i}.png" for i in range(n)], "split": "test",
                          "generator": [GENS[i] for i in true], "subclass": "x",
                          "pred": [GENS[i] for i in probs.argmax(1)]})
    for i, g in enumerate(GENS):
        frame[f"p_{g}"] = probs[:, i]
    return frame


# --------------------------------------------------------------------------------------------- metrics
def test_seed_style_report_equals_scikit_learn():
    f = _fixed_predictions()
    rep = seed_style_report(f, GENS)
    ref = classification_report(f["generator"], f["pred"], labels=GENS, output_dict=True, zero_division=0)
    assert list(rep.index) == [*GENS, "average", "accuracy"]
    assert list(rep.columns) == ["precision", "recall", "f1", "support"]
    for g in GENS:
        assert rep.loc[g, "precision"] == pytest.approx(ref[g]["precision"])
        assert rep.loc[g, "recall"] == pytest.approx(ref[g]["recall"])
        assert rep.loc[g, "f1"] == pytest.approx(ref[g]["f1-score"])
        assert rep.loc[g, "support"] == ref[g]["support"]
    assert rep.loc["d", "precision"] == 0.0  # never predicted
    assert rep.loc["average", "f1"] == pytest.approx(ref["macro avg"]["f1-score"])
    assert rep.loc["average", "f1"] == pytest.approx(f1_score(f["generator"], f["pred"], labels=GENS, average="macro",
                                                              zero_division=0))
    assert rep.loc["accuracy", "f1"] == pytest.approx(accuracy_score(f["generator"], f["pred"]))
    assert rep.loc["average", "support"] == len(f) and np.isnan(rep.loc["accuracy", "precision"])


def test_split_metrics_are_scikit_learns_bit_for_bit():
    """split_metrics computes P/R/F1 from one confusion matrix: the very floats of classification_report, on
    random labels with generators never predicted, never present and an empty split."""
    from attrlib.evaluation.metrics import split_metrics

    draw = np.random.default_rng(0)
    for trial in range(40):
        k = int(draw.integers(2, 8))
        n = int(draw.integers(0, 60)) if trial else 0
        y = draw.integers(0, k, n)
        p = np.where(draw.random(n) < 0.5, y, draw.integers(0, max(1, k - 1), n))  # the last class rarely predicted
        gens = [f"g{i}" for i in range(k)]
        m = split_metrics(y, p, gens)
        if not n:
            assert m["n"] == 0 and np.isnan(m["accuracy"]) and np.isnan(m["balanced_accuracy"])
            continue
        ref = classification_report(y, p, labels=list(range(k)), target_names=gens, output_dict=True, zero_division=0)
        for g in gens:
            got = m["per_generator"][g]
            assert (got["precision"], got["recall"], got["f1"], got["support"]) == (
                ref[g]["precision"], ref[g]["recall"], ref[g]["f1-score"], ref[g]["support"]), (trial, g)
        present = sorted(set(y.tolist()))
        assert m["macro_f1"] == float(np.mean([ref[gens[i]]["f1-score"] for i in present]))
        assert m["accuracy"] == accuracy_score(y, p) and m["confusion"] == confusion_matrix(y, p, labels=list(range(k))).tolist()


def test_confusion_counts_and_row_normalised():
    f = _fixed_predictions()
    cm = confusion(f, GENS)
    assert (cm.to_numpy() == confusion_matrix(f["generator"], f["pred"], labels=GENS)).all()
    norm = confusion(f, GENS, normalize="true")
    assert np.allclose(norm.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="normalize"):
        confusion(f, GENS, normalize="all")


def test_unknown_generator_and_missing_column_are_named():
    f = _fixed_predictions()
    with pytest.raises(DataError, match="'e'"):
        seed_style_report(f.assign(pred="e"), GENS)
    with pytest.raises(DataError, match="pred"):
        seed_style_report(f.drop(columns="pred"), GENS)


def test_per_generator_auc_equals_scikit_learn_and_is_nan_without_positives():
    f = _fixed_predictions()
    auc = per_generator_auc(f, GENS)
    for g in GENS:
        assert auc[g] == pytest.approx(roc_auc_score(f["generator"] == g, f[f"p_{g}"]))
    only_abc = f[f["generator"] != "d"]
    assert np.isnan(per_generator_auc(only_abc, GENS)["d"])


def test_ece_on_a_hand_computed_case():
    # confidences 0.9, 0.9 (one right, one wrong) and 0.7, 0.7 (both right): bins (0.867, 0.933] and (0.667, 0.733]
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.3, 0.7]])
    y = np.array([0, 1, 1, 1])
    # 2/4 * |0.5 - 0.9| + 2/4 * |1.0 - 0.7| = 0.2 + 0.15
    assert expected_calibration_error(y, probs) == pytest.approx(0.35)
    # perfectly calibrated: confidence 1 and always right
    assert expected_calibration_error(np.array([0, 1]), np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(0.0)
    # two confidences in one bin (0.467, 0.533] are averaged before the difference: |0.5 - 0.515|
    probs = np.array([[0.51, 0.49], [0.52, 0.48]])
    assert expected_calibration_error(np.array([0, 1]), probs) == pytest.approx(abs(0.5 - 0.515))


def test_shortcut_gap():
    assert shortcut_gap({"val": {"accuracy": 0.95}, "heldout": {"accuracy": 0.49}}) == pytest.approx(0.46)
    with pytest.raises(DataError, match="val"):
        shortcut_gap({"heldout": {"accuracy": 0.5}})


# --------------------------------------------------------------------------------------------- intervals
def test_bootstrap_interval_contains_the_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(1)
    widths = []
    for n in (60, 2400):
        y = rng.integers(0, 4, n)
        p = np.where(rng.random(n) < 0.7, y, (y + 1) % 4)
        for metric in ("accuracy", "macro_f1"):
            ci = bootstrap_ci(y, p, metric, n_boot=300, seed=0, n_classes=4)
            assert ci.low <= ci.estimate <= ci.high
        ci = bootstrap_ci(y, p, "accuracy", n_boot=300, seed=0)
        assert ci.estimate == pytest.approx(accuracy_score(y, p))
        widths.append(ci.high - ci.low)
    assert widths[1] < widths[0] / 3  # about 1/sqrt(40) as wide
    assert bootstrap_ci(y, p, n_boot=100, seed=3) == bootstrap_ci(y, p, n_boot=100, seed=3)


def test_bootstrap_over_seeds_is_paired_and_averages_the_seeds():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 300)
    seeds = np.stack([np.where(rng.random(300) < q, y, (y + 1) % 3) for q in (0.6, 0.8)])
    ci = bootstrap_ci(y, seeds, "accuracy", n_boot=300)
    assert ci.estimate == pytest.approx(np.mean([accuracy_score(y, s) for s in seeds]))
    assert ci.low <= ci.estimate <= ci.high
    with pytest.raises(ValueError, match="unknown metric"):
        bootstrap_ci(y, seeds, "balanced")


def test_aggregate_over_seeds_dicts_and_frames():
    agg = aggregate_over_seeds([{"acc": 0.5, "f1": 0.4}, {"acc": 0.7, "f1": 0.6}])
    assert agg.loc["acc", "mean"] == pytest.approx(0.6) and agg.loc["acc", "n"] == 2
    assert agg.loc["acc", "std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert aggregate_over_seeds([{"acc": 0.5}]).loc["acc", "std"] == 0.0
    reports = [seed_style_report(_fixed_predictions(seed=s), GENS) for s in (0, 1, 2)]
    frame = aggregate_over_seeds(reports)
    assert frame.loc["a", ("f1", "mean")] == pytest.approx(np.mean([r.loc["a", "f1"] for r in reports]))
    assert np.isnan(frame.loc["accuracy", ("precision", "mean")])


# --------------------------------------------------------------------------------------------- gap closed
def test_a_std_over_one_seed_prints_n_a_not_zero():
    # summary numbers of two techniques: one trained with three seeds, one with a single seed (its std is 0.0
    # in the numbers, as aggregate_over_seeds gives it, but one value has no spread to print)
    table = pd.DataFrame({"accuracy": [0.637, 0.701], "accuracy_std": [0.0, 0.041], "accuracy_low": [0.6, 0.65],
                          "accuracy_high": [0.67, 0.75], "seeds": [1, 3], "probe_accuracy": [0.5, 0.4],
                          "probe_std": [0.0, 0.02], "probe_runs": [1, 3], "probe_chance": 0.25}, index=["one_seed", "three_seeds"])
    text = format_summary(table, digits=3)
    assert text.loc["one_seed", "accuracy"] == "0.637 ± n/a" and text.loc["one_seed", "subclass probe"] == "0.500 ± n/a"
    assert text.loc["three_seeds", "accuracy"] == "0.701 ± 0.041" and text.loc["three_seeds", "subclass probe"] == "0.400 ± 0.020"
    assert not text.apply(lambda c: c.astype(str).str.contains("± 0.000")).any().any()
    # the robustness table: one seed of the baseline, two of the other
    per_run = pd.DataFrame({"arm": ["baseline", "other", "other"], "heldout": "x", "seed": [0, 0, 1],
                            "perturbation": "clean", "accuracy": [0.5, 0.6, 0.7], "n": 10})
    wide = format_robustness(per_run)
    assert wide.loc["baseline", "clean"] == "0.50 ± n/a" and wide.loc["other", "clean"] == "0.65 ± 0.07"


def test_gap_closed_arithmetic_and_undefined_denominator():
    g = gap_closed(0.56, 0.49, 0.91)  # seed 002: adversarial debiasing against its fine-tuning
    assert g.value == pytest.approx(0.07 / 0.42) and g.note == ""
    assert gap_closed(0.91, 0.49, 0.91).value == pytest.approx(1.0)
    assert gap_closed(0.40, 0.49, 0.91).value < 0  # worse than the baseline: negative, not clipped
    for oracle in (0.49, 0.30):
        g = gap_closed(0.56, 0.49, oracle)
        assert math.isnan(g.value) and "does not beat the baseline" in g.note


# --------------------------------------------------------------------------------------------- LLR
def test_llr_scores_and_figure():
    f = _fixed_predictions(40)
    f.loc[0, ["p_a", "p_b", "p_c", "p_d"]] = [1.0, 0.0, 0.0, 0.0]  # no logp_ columns: recomputed from p, floored
    s = llr_scores(f, GENS, np.full(4, 0.25))
    assert len(s) == 4 * len(f) and np.isfinite(s["llr"]).all() and "recomputed" in s.attrs["note"]
    row = s[(s["path"] == "img1.png") & (s["scored"] == "b")].iloc[0]
    p = f.loc[1, [f"p_{g}" for g in GENS]].to_numpy(float)
    # uniform prior: log p_b - log(mean of the other three)
    assert row["llr"] == pytest.approx(math.log(p[1]) - math.log((p[0] + p[2] + p[3]) / 3))
    assert row["own"] == (f.loc[1, "generator"] == "b")
    assert s["llr"].max() > math.log((1 - 1e-6) / 1e-6)  # no longer cut at the clip's 13.8
    fig = llr_figure(s, GENS, title="test")
    assert len([ax for ax in fig.axes if ax.get_title()]) == len(GENS)
    plt.close(fig)


# --------------------------------------------------------------------------------------------- perturbations
def _textured(size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def _high_frequency_energy(img: np.ndarray) -> float:
    spec = np.abs(np.fft.fftshift(np.fft.fft2(img.astype(float).mean(2) - img.mean())))
    h, w = spec.shape
    yy, xx = np.mgrid[0:h, 0:w]
    far = np.hypot(yy - h / 2, xx - w / 2) > min(h, w) / 4
    return float((spec[far] ** 2).sum())


def test_perturbations_change_images_as_expected():
    img = _textured()
    assert np.array_equal(clean()(img), img)
    for p in standard_perturbations():
        out = p(img)
        assert out.shape == img.shape and out.dtype == np.uint8
    q50, q95 = jpeg(50)(img), jpeg(95)(img)
    assert not np.array_equal(q50, img)
    assert np.abs(q50.astype(int) - img).mean() > np.abs(q95.astype(int) - img).mean()
    e0 = _high_frequency_energy(img)
    e05, e10 = _high_frequency_energy(gaussian_blur(0.5)(img)), _high_frequency_energy(gaussian_blur(1.0)(img))
    assert e10 < e05 < e0
    assert _high_frequency_energy(down_up(0.75)(img)) < e0
    assert [p.name for p in standard_perturbations()] == ["clean", "jpeg_q95", "jpeg_q75", "jpeg_q50", "blur_s0.5",
                                                          "blur_s1", "resize_0.75"]
    with pytest.raises(ValueError, match="quality"):
        jpeg(100)


# --------------------------------------------------------------------------------------------- run folders
@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("eval_runs")
    base = Config(data=str(tiny_data), runs=str(root), image_size=32, batch_size=16, steps=4)
    return {name: [sweep.train(base.replace(technique=name, seed=s), progress=False) for s in seeds]
            for name, seeds in (("baseline", (0, 1)), ("adversarial_debiasing", (0,)))}


def test_load_run_reproduces_the_engines_predictions(runs):
    run_dir = runs["adversarial_debiasing"][0]
    run = load_run(run_dir)
    assert run.name == "adversarial_debiasing" and run.model.dual_head and not run.technique.training
    pred = heldout_predictions(run_dir)
    loader = training.make_loader(run.data.split("test"), run.data, run.config, train=False)
    probs = techniques.predict_probs(run.technique.predict, loader, torch.device("cpu"), run.technique.n_generators)
    assert np.allclose(probs, pred[[f"p_{g}" for g in run.generators]].to_numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["baseline", "adversarial_debiasing"])
def test_run_metrics_reproduce_the_runs_metrics_json(runs, name):
    run_dir = runs[name][0]
    written = json.loads((run_dir / "metrics.json").read_text())
    computed = run_metrics(load_predictions(run_dir), load_run(run_dir).generators, written["heldout"]["split"],
                           train_prior=written["train_prior"])
    assert set(computed) == {k for k, v in written.items() if isinstance(v, dict) and "accuracy" in v} | {
        "heldout_balanced_accuracy"}
    assert set(written["heldout"]["floors"]) == {"majority", "prior"}
    for split, numbers in computed.items():
        assert numbers == written[split], split  # exactly: the same function on the same labels


def test_seed_style_report_is_split_metrics_as_a_table():
    f = _fixed_predictions()
    rep = seed_style_report(f, GENS)
    m = split_metrics(f["generator"].map(GENS.index).to_numpy(), f["pred"].map(GENS.index).to_numpy(), GENS)
    assert rep.loc["accuracy", "f1"] == m["accuracy"] and rep.loc["average", "f1"] == m["macro_f1"]
    assert rep.loc["average", "support"] == m["n"]
    for g, v in m["per_generator"].items():
        assert list(rep.loc[g]) == [v["precision"], v["recall"], v["f1"], v["support"]]
    with pytest.raises(DataError, match="held-out split 'ft_test'"):
        run_metrics(f, GENS, "ft_test")


def test_summary_table_numbers_and_export(runs, tmp_path):
    table = summary_table(runs, baseline="baseline", oracle=0.95, n_boot=50)
    assert list(table.index) == ["baseline", "adversarial_debiasing"]
    assert table.loc["baseline", "seeds"] == 2 and table.loc["baseline", "gap_closed"] == pytest.approx(0.0)
    for name in table.index:
        row = table.loc[name]
        assert row.accuracy_low <= row.accuracy <= row.accuracy_high
        assert row.shortcut_gap == pytest.approx(row.val_accuracy - row.accuracy)
    # paired: adversarial_debiasing's one seed against the baseline's same seed (not the baseline's seed mean)
    acc, diff = table.loc["adversarial_debiasing", "accuracy"], table.loc["adversarial_debiasing", "difference"]
    base = acc - diff
    if 0.95 > base:
        assert table.loc["adversarial_debiasing", "gap_closed"] == pytest.approx(diff / (0.95 - base))
    no_oracle = format_summary(summary_table(runs, n_boot=20))
    assert "gap closed" not in no_oracle and not no_oracle["note"].str.contains("oracle").any()
    assert "Gap closed needs an oracle" in no_oracle.attrs["caption"]
    unknown = format_summary(summary_table(runs, oracle={"oracle": None}, n_boot=20))  # asked for, but there is none: NaN and why
    assert (unknown[COMPACT_GAIN] == "").all() and unknown["note"].str.contains("no oracle").all()
    assert "±" in no_oracle.loc["baseline", "accuracy"]
    paths = save_table(no_oracle, "10_summary", tmp_path)
    assert {p.suffix for p in paths} == {".csv", ".md", ".tex"}
    assert "\\toprule" in (tmp_path / "10_summary.tex").read_text()


def test_robustness_table_has_every_row(runs):
    subset = {"baseline": runs["baseline"][:1], "adversarial_debiasing": runs["adversarial_debiasing"]}
    table = robustness_table(subset, max_images=24)
    names = [p.name for p in standard_perturbations()]
    assert list(table.columns) == ["arm", "heldout", "seed", "perturbation", "accuracy", "n"]
    assert len(table) == 2 * len(names) and (table["n"] == 24).all()
    assert table["accuracy"].between(0, 1).all()
    clean_acc = table[(table.arm == "baseline") & (table.perturbation == "clean")]["accuracy"].iloc[0]
    pred = heldout_predictions(subset["baseline"][0]).sample(24, random_state=0)  # as iter_runs samples
    assert clean_acc == pytest.approx((pred["generator"] == pred["pred"]).mean())
    wide = robustness_summary(table)
    assert wide.shape == (2, len(names)) and list(wide.columns) == names
    text = format_robustness(table)
    assert text.shape == wide.shape and text.loc["baseline", "clean"] == f"{wide.loc['baseline', 'clean']:.2f} ± n/a"
    assert "mean ± std over 1 run(s)" in text.attrs["caption"]


def test_robustness_runs_that_read_alike_share_each_perturbed_data_set_and_get_their_own_numbers(runs, tmp_path,
                                                                                                 monkeypatch):
    import shutil

    from attrlib.evaluation import robustness
    from attrlib.runfolder import iter_runs
    # a copy of a run that reads the same images at 16 px (its model is fully convolutional): a group of its own
    small = shutil.copytree(runs["baseline"][0], tmp_path / "small")
    config = json.loads((small / "config.json").read_text())
    (small / "config.json").write_text(json.dumps({**config, "image_size": 16}))
    arms = {**runs, "baseline_16px": [small]}
    made = []
    real = robustness._perturbed_dataset
    monkeypatch.setattr(robustness, "_perturbed_dataset", lambda *a, **k: made.append((a[2].name, a[4])) or real(*a, **k))
    perturbations = [robustness.clean(), robustness.jpeg(50), robustness.gaussian_blur(1.0)]
    table = robustness_table(arms, perturbations=perturbations, max_images=24)
    loaded = list(iter_runs(arms, None, None, 24))
    assert len(loaded) == 4 and len({r.config.heldout.key for _, r, _ in loaded}) == 1
    # two groups (32 px: three runs; 16 px: one), each perturbed set built once per group
    assert sorted(made) == sorted((p.name, size) for p in perturbations for size in (32, 16))
    expected = pd.concat([robustness.perturbed_accuracy(run.technique, frame, run.data, perturbations,
                                                        run.config.input_policy, run.config.image_size,
                                                        patches=run.config.test_patches)
                          .assign(arm=name, seed=run.seed) for name, run, frame in loaded], ignore_index=True)
    assert table["arm"].tolist() == expected["arm"].tolist() and table["seed"].tolist() == expected["seed"].tolist()
    assert table["accuracy"].tolist() == expected["accuracy"].tolist() and (table["n"] == expected["n"]).all()
    assert table.groupby("perturbation", observed=True)["accuracy"].nunique().max() > 1  # runs differ: not one copy


def test_load_run_refuses_an_unfinished_run_and_shares_data_through_a_cache(runs, tmp_path):
    import shutil

    from attrlib.errors import CheckpointError

    cache = {}
    a, b = (load_run(d, cache=cache) for d in runs["baseline"])
    assert a.data is b.data and len(cache) == 1 and a.seed != b.seed
    cut = tmp_path / "cut"
    shutil.copytree(runs["baseline"][0], cut)
    (cut / "done").unlink()
    with pytest.raises(CheckpointError, match="did not finish"):
        load_run(cut)
    with pytest.raises(CheckpointError, match="config.json"):
        load_run(tmp_path)
