"""Notebook 11's ensemble of rule (b)'s best arms: the `ensemble` technique averages finished runs' probabilities
(nothing trained), `ranked_arms` ranks arms by their validation-subclass scores only, and the `ensemble_top` knob
changes which arms are averaged (k = 1 is the selected arm again)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from attrlib import runfolder, selection, sweep, techniques
from attrlib.config import Config
from attrlib.errors import CheckpointError, ConfigError, DataError
from attrlib.evaluation import ranked_arms, select_arm
from attrlib.study import closing

from conftest import TINY_HELDOUT


@pytest.fixture(scope="module")
def three_arms(tiny_data, tmp_path_factory):
    """Three finished runs of one rotation and seed on the tiny folder (two short ERM trainings and the closed-form
    residual statistics), and one of another seed."""
    runs = tmp_path_factory.mktemp("runs")
    common = dict(data=str(tiny_data), heldout=(TINY_HELDOUT,), runs=str(runs), image_size=16, batch_size=16,
                  steps=3, checkpoints=1, device="cpu")
    arms = {"baseline": dict(technique="baseline"), "srm": dict(technique="baseline", stem="srm"),
            "residual_stats": dict(technique="residual_stats")}
    folders = {name: [sweep.train(Config(**common, **o), progress=False)] for name, o in arms.items()}
    other_seed = sweep.train(Config(**common, technique="baseline", seed=1), progress=False)
    return runs, folders, other_seed


def _ensemble(runs, members, seed=0):
    config = runfolder.read_config(members[0]).replace(
        technique="ensemble", runs=str(runs), seed=seed,
        technique_params={"members": [f"{m.parent.name}/{m.name}" for m in members]})
    return sweep.train(config, progress=False)


def test_the_ensemble_top_knob_is_checked_before_any_work_and_reaches_the_notebook(tiny_data):
    from attrlib.study import session
    assert session(profile="quick", data=str(tiny_data), heldout=TINY_HELDOUT).knobs.ensemble_top == 3
    assert session(profile="quick", data=str(tiny_data), heldout=TINY_HELDOUT, ensemble_top=2).knobs.ensemble_top == 2
    with pytest.raises(ConfigError, match="notebook knob 'ensemble_top' is -1"):
        session(profile="quick", data=str(tiny_data), heldout=TINY_HELDOUT, ensemble_top=-1)


def test_the_ensemble_averages_its_members_probabilities_and_trains_nothing(three_arms, tiny_data):
    runs, folders, _ = three_arms
    members = [folders["baseline"][0], folders["srm"][0], folders["residual_stats"][0]]
    run = _ensemble(runs, members)
    got = runfolder.load_predictions(run).set_index(["split", "path"])
    generators = runfolder.generators_of(got)
    columns = [f"p_{g}" for g in generators]
    means = np.mean([runfolder.load_predictions(m).set_index(["split", "path"]).loc[got.index, columns].to_numpy()
                     for m in members], axis=0)
    assert np.allclose(got[columns].to_numpy(), means, atol=1e-6)  # every split, every image
    assert (got["pred"].to_numpy() == np.array(generators)[means.argmax(1)]).all()
    assert np.allclose(np.exp(got[[f"logp_{g}" for g in generators]].to_numpy()), means, atol=1e-6)
    assert set(got.index.get_level_values("split")) == set(runfolder.load_predictions(members[0])["split"])
    metrics = runfolder.load_metrics(run)
    assert metrics["members"] == [f"{m.parent.name}/{m.name}" for m in members]
    assert metrics["uses_target_data"] is False
    assert not (run / "checkpoint.pt").exists()  # nothing trained: no model of its own
    test = got.xs("test", level="split")
    assert metrics["heldout"]["accuracy"] == pytest.approx(float((test["pred"] == test["generator"]).mean()))
    # an assembled technique is never offered as a technique to train or inspect
    assert "ensemble" not in techniques.available(references=True)
    assert _ensemble(runs, members) == run  # the same members: the same run, reused
    with pytest.raises(CheckpointError, match="no model of its own to load; load one of its members"):
        runfolder.load_run(run)


def test_the_ensemble_refuses_members_of_another_seed_unfinished_runs_and_bad_parameters(three_arms, tmp_path):
    runs, folders, other_seed = three_arms
    with pytest.raises(ConfigError, match="rotation .* and seed 0"):
        _ensemble(runs, [folders["baseline"][0], other_seed])
    missing = folders["baseline"][0].parent / "000000000000"
    with pytest.raises(ConfigError, match="not finished"):
        _ensemble(runs, [folders["baseline"][0], missing])
    for bad in ([], ["no-slash"], "baseline/abc", ["baseline/abc", "baseline/abc"]):
        with pytest.raises(ConfigError, match="'members' of 'ensemble'"):
            techniques.get("ensemble").check_params({"members": bad})


def test_averaged_predictions_names_a_run_that_predicted_other_images(three_arms, tmp_path):
    _, folders, _ = three_arms
    member = folders["baseline"][0]
    short = tmp_path / "short"
    short.mkdir()
    frame = runfolder.load_predictions(member)
    runfolder.write_predictions(short, frame.iloc[1:])
    generators = runfolder.generators_of(frame)
    with pytest.raises(DataError, match="short.*does not predict the same images"):
        runfolder.averaged_predictions([member, short], generators)
    runfolder.write_predictions(short, pd.concat([frame, frame.iloc[:1]]))
    with pytest.raises(DataError, match="short.*predicts an image twice"):
        runfolder.averaged_predictions([member, short], generators)


def test_ranked_arms_reads_validation_scores_only_and_k_changes_the_members(three_arms):
    runs, folders, _ = three_arms
    choice = select_arm(folders)
    scores = {a: float(choice[f"score {a}"].iloc[0]) for a in folders}
    order = selection.ranked(scores)
    ranked = ranked_arms(choice, 3)
    assert list(ranked.values())[0] == order and order[0] == choice["chosen"].iloc[0]
    assert list(ranked_arms(choice, 1).values())[0] == [choice["chosen"].iloc[0]]
    # the validation scores decide: the last arm made the best on validation leads the ranking
    raised = choice.assign(**{f"score {order[-1]}": max(scores.values()) + 0.1})
    assert list(ranked_arms(raised, 3).values())[0] == [order[-1], *order[:-1]]
    with pytest.raises(ValueError, match="integer, 1 or more"):
        ranked_arms(choice, 0)
    # ties go to the arm listed first, NaN is never ranked
    assert selection.ranked({"a": 0.5, "b": 0.7, "c": 0.5, "d": float("nan")}) == ["b", "a", "c"]
    assert selection.ranked({"a": 0.5, "b": 0.7}, 1) == ["b"] == [selection.choose({"a": 0.5, "b": 0.7})]

    # the knob: k = 1 is the selected arm's predictions again; k = 3 averages all three
    one = closing.ensemble_runs(folders, choice, 1)
    chosen = folders[choice["chosen"].iloc[0]][0]
    columns = [c for c in runfolder.load_predictions(chosen).columns if c.startswith("p_")]
    pd.testing.assert_frame_equal(runfolder.load_predictions(one[0])[columns],
                                  runfolder.load_predictions(chosen)[columns], atol=1e-6, check_dtype=False)
    three = closing.ensemble_runs(folders, choice, 3)
    assert runfolder.load_metrics(three[0])["members"] == [
        f"{folders[a][0].parent.name}/{folders[a][0].name}" for a in order]
    assert closing.ensemble_label(3) == "top-3 of rule (b), averaged"
    assert closing.is_ensemble_label("top-12 of rule (b), averaged") and not closing.is_ensemble_label("top-3")
    # more than the arms there: the ensemble averages those it has, and says so
    with pytest.warns(UserWarning, match="fewer than ensemble_top=5"):
        five = closing.ensemble_runs(folders, choice, 5)
    assert five == three


def test_the_test_split_never_moves_the_ranking(three_arms, tmp_path):
    """Make the arm ranked last on validation perfect on the test split and every other arm wrong there: the
    ranking, hence the ensemble's members, stay as they were."""
    import shutil
    _, folders, _ = three_arms
    before = ranked_arms(select_arm(folders), 3)
    last = list(before.values())[0][-1]
    copies = {}
    for arm, (folder,) in folders.items():
        copy = tmp_path / folder.parent.name / folder.name
        shutil.copytree(folder, copy)
        frame = runfolder.load_predictions(copy)
        test = frame["split"] == "test"
        frame.loc[test, "pred"] = frame.loc[test, "generator"] if arm == last else "nobody"
        runfolder.write_predictions(copy, frame)
        metrics = runfolder.load_metrics(copy)
        metrics["heldout"]["accuracy"] = 1.0 if arm == last else 0.0
        runfolder.write_metrics(copy, metrics)
        copies[arm] = [copy]
    assert ranked_arms(select_arm(copies), 3) == before
