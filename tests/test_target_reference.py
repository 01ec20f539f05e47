"""Issue 17 §2 and §6: the target-data reference (ERM trained with the held-out subclass, cross-fitted over its
images, near-duplicate groups whole) and the per-model bias gap against each model's reference."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attrlib import runfolder, sweep, techniques
from attrlib.config import Config
from attrlib.data import cross_fit_folds, load_study_data
from attrlib.errors import DataError
from attrlib.evaluation import bias_gap_table, summary_table

from conftest import TINY_HELDOUT
from test_paired_statistics import _run
from test_real_folders import make_duplicates_folder


def test_folds_keep_near_duplicate_groups_whole_and_cover_every_test_image(tmp_path):
    data = load_study_data(make_duplicates_folder(tmp_path / "d"), heldout="h")
    test = data.split("test")
    assert (test.groupby("duplicate_group").size() > 1).any()  # the folder has groups in the test split
    for k in (2, 3, 5):
        fold = cross_fit_folds(test, k)
        assert set(fold) == set(range(k))  # every image in a fold, every fold used: the knob has its effect
        per_group = pd.Series(fold).groupby(test["duplicate_group"].to_numpy()).nunique()
        assert (per_group == 1).all()  # a group never straddles two folds
        counts = pd.crosstab(test["generator"], fold)
        assert (counts.max(axis=1) - counts.min(axis=1) <= 3).all()  # stratified by generator (groups of <= 3)
    assert np.array_equal(cross_fit_folds(test, 3), cross_fit_folds(test.iloc[::-1].reset_index(drop=True), 3)[::-1])
    with pytest.raises(DataError, match="at least 2 folds"):
        cross_fit_folds(test, 1)
    for i in range(3):  # fold i's model trains on the other folds' held-out images and never on its own groups
        view = data.cross_fit(i, 3)
        own, train = view.split("test"), view.split("train")
        assert not set(own["duplicate_group"]) & set(train["duplicate_group"])
        assert set(train["path"]) == set(data.split("train")["path"]) | (set(test["path"]) - set(own["path"]))
        assert view.generators == data.generators and view.subclasses == data.subclasses
        assert not len(view.split("ft_test"))


def test_each_heldout_image_is_scored_once_by_a_model_that_never_saw_it(tiny_data, tmp_path):
    config = Config(technique="target_reference", data=str(tiny_data), heldout=(TINY_HELDOUT,), runs=str(tmp_path),
                    image_size=16, batch_size=16, steps=2, device="cpu", technique_params={"folds": 3})
    assert techniques.get("target_reference").uses_target_data
    run = sweep.train(config, progress=False)
    metrics = runfolder.load_metrics(run)
    assert metrics["uses_target_data"] and metrics["heldout"]["split"] == "test" and len(metrics["folds"]) == 3
    data = load_study_data(tiny_data, heldout=TINY_HELDOUT)
    test = data.split("test")
    scored = runfolder.load_predictions(run, "test")
    assert sorted(scored["path"]) == sorted(test["path"])  # every held-out image, exactly once
    ft = runfolder.load_predictions(run, "ft_test")  # fine_tuning's split: the same predictions, for its column
    assert sorted(ft["path"]) == sorted(data.split("ft_test")["path"])
    assert ft.set_index("path")["pred"].equals(scored.set_index("path").loc[ft["path"], "pred"])
    seen = set()
    for i, name in enumerate(metrics["folds"]):
        fold = tmp_path / name
        assert runfolder.read_config(fold).technique_params == {"folds": 3, "fold": i}
        own = set(runfolder.load_predictions(fold, "test")["path"])
        view = data.cross_fit(i, 3)
        assert own == set(view.split("test")["path"])
        assert not own & set(view.split("train")["path"])  # the model that scored them never trained on them
        assert own - set(data.split("train")["path"]) and len(view.split("train")) > len(data.split("train"))
        assert not own & seen
        seen |= own
    assert seen == set(test["path"])
    assert sweep.train(config, progress=False) == run  # finished: reused


def test_gap_closed_against_the_target_reference(tmp_path):
    """Toy: 40 test images; baseline right on 10, the arm on 25, the reference on 30, the oracle on 40: gap closed
    vs the reference is (25 - 10) / (30 - 10) = 0.75 (vs the oracle 0.5); the reference itself closes 1."""
    root, data = tmp_path / "runs", tmp_path / "data"
    n = 40
    right = {name: (np.arange(n) < k).astype(float) for name, k in
             (("baseline", 10), ("arm", 25), ("target_reference", 30), ("oracle", 40))}
    runs = {name: [_run(root, name, data, "mv", 0, {"test": c})] for name, c in right.items()}
    table = summary_table({k: runs[k] for k in ("baseline", "arm", "target_reference")},
                          oracle={"oracle": runs["oracle"], "target_reference": "target_reference"}, n_boot=200)
    assert table.loc["arm", "gap_closed_target_reference"] == pytest.approx(0.75)
    assert table.loc["arm", "gap_closed_oracle"] == pytest.approx(0.5)
    assert table.loc["target_reference", "gap_closed_target_reference"] == pytest.approx(1.0)
    low, high = table.loc["arm", ["gap_closed_target_reference_low", "gap_closed_target_reference_high"]]
    assert low <= 0.75 <= high and low > 0  # paired by image: every replicate keeps the arm's 15 over 20
    assert table.attrs["target_reference_accuracy"] == pytest.approx(0.75)


def test_bias_gap_per_model_against_its_own_reference(tmp_path):
    """Model A: biased 0.5, reference 0.8 (gap -0.3); model B: biased 0.7, reference 0.7 (no gap)."""
    root, data = tmp_path / "runs", tmp_path / "data"
    n = 60
    pattern = {"a": 30, "a_ref": 48, "b": 42, "b_ref": 42}
    runs = {name: [_run(root, name, data, r, s, {"test": (np.roll(np.arange(n), s) < k).astype(float)})
                   for r in ("mv", "boat") for s in (0, 1)] for name, k in pattern.items()}
    table = bias_gap_table({"A": (runs["a"], runs["a_ref"]), "B": (runs["b"], runs["b_ref"])}, n_boot=200)
    assert table.loc["A", "bias_gap"] == pytest.approx(0.5 - 0.8)
    assert table.loc["A", "bias_gap_high"] < 0 and table.loc["A", "biased_accuracy"] == pytest.approx(0.5)
    assert table.loc["A", "reference_accuracy"] == pytest.approx(0.8)
    assert table.loc["B", "bias_gap"] == pytest.approx(0.0)
    assert table.loc["B", "bias_gap_low"] <= 0 <= table.loc["B", "bias_gap_high"]
    assert (table["rotations"] == 2).all() and (table["seeds"] == 2).all()
    assert "reference" in table.attrs["caption"]


def test_the_launcher_counts_the_reference_s_fold_runs():
    from attrlib.launch import run_steps

    config = Config(technique="target_reference", steps=10, technique_params={"folds": 4})
    assert run_steps(config) == 40 and run_steps(config.replace(technique_params={"folds": 4, "fold": 1})) == 10
    assert "target_reference" in techniques.available(references=True)
    assert "target_reference" not in techniques.available()  # no one model: the inspecting notebooks leave it out
