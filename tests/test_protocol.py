"""The evaluation protocol: leave-one-subclass-out rotations, the validation subclass, model selection during
training, hyper-parameter draws and the search."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from attrlib import hparams, records, runfolder, selection, sweep, techniques
from attrlib.config import Config
from attrlib.data import assign_splits, choose_val_subclass, eligible_rotations, load_study_data
from attrlib.errors import CheckpointError, ConfigError, DataError
from attrlib.training import engine
from attrlib.training.engine import scoring_epochs

# generator -> training subclasses (lsgm has only face: face can never be held out)
CELLS = {"g1": ("face", "horse"), "g2": ("face",), "g3": ("car", "face", "horse")}
POOLED = ("car", "face", "horse", "mv")


def frame(pools: bool = True, matched: bool = False) -> pd.DataFrame:
    rows = []
    for g, subs in CELLS.items():
        for s in subs:
            instances = subs if matched else (s,)
            for inst in instances:
                for k in range(5):
                    rows.append(dict(path=f"{g}/{s}/{inst}_{k}.png", generator=g, subclass=s, split="",
                                     mask="", instance="" if not matched else inst, line=0))
        for s in POOLED if pools else ("mv",):
            for k in range(3):
                rows.append(dict(path=f"{g}/{s}/pool_{k}.png", generator=g, subclass=s,
                                 split="pool" if pools else "", mask="", instance="", line=0))
    return pd.DataFrame(rows)


def test_eligible_rotations_keep_every_generator_trainable():
    assert eligible_rotations(frame()) == ["car", "horse", "mv"]  # face is g2's only training subclass


def test_validation_subclass_rule_prefers_a_subclass_without_training_images():
    f = frame()
    assert choose_val_subclass(f, ["horse"]) == "mv"     # pool only: costs no training image
    assert choose_val_subclass(f, ["mv"]) == "car"       # fewest training images (5) whose removal keeps all
    assert choose_val_subclass(f, ["car"]) == "mv"


def test_a_rotation_tests_on_the_pool_and_drops_the_cells_of_the_heldout_and_validation_subclasses():
    df = assign_splits(frame(), ["horse"], val_subclass="mv")
    test, valsub = df[df.split == "test"], df[df.split == "valsub"]
    assert set(test.subclass) == {"horse"} and test.path.str.contains("pool").all() and len(test) == 9
    assert set(valsub.subclass) == {"mv"} and len(valsub) == 9
    training = df[df.split.isin(["train", "val"])]
    assert not training.subclass.isin(["horse", "mv"]).any() and not training.path.str.contains("pool").any()
    # the other subclasses' pools are not used at all
    assert len(df) == len(training) + 18


def test_matched_instances_of_the_heldout_subclass_leave_training():
    df = assign_splits(frame(matched=True), ["horse"], val_subclass="mv")
    training = df[df.split.isin(["train", "val"])]
    assert not (training.instance == "horse").any() and (training.instance == "face").any()


def test_without_pools_the_heldout_images_are_the_test_set_and_a_training_row_of_it_still_raises():
    f = frame(pools=False)
    df = assign_splits(f, ["mv"])
    assert set(df.loc[df.split == "test", "subclass"]) == {"mv"} and len(df[df.split == "test"]) == 9
    f.loc[f.subclass == "mv", "split"] = "train"
    with pytest.raises(DataError, match="put a held-out subclass into training"):
        assign_splits(f, ["mv"])
    with pytest.raises(DataError, match="validation subclass 'mv' is also held out"):
        assign_splits(frame(), ["mv"], val_subclass="mv")


def test_scoring_epochs_spread_evenly_and_always_include_the_last():
    assert scoring_epochs(6, 5) == {1, 2, 3, 4, 5}
    assert scoring_epochs(3, 5) == {0, 1, 2}
    assert scoring_epochs(10, 1) == {9} and scoring_epochs(0, 5) == set()
    assert selection.applicable("valsub", {"val": 1}) == "val" and selection.applicable("valsub", {}) == "last"
    assert selection.applicable("valsub", {"valsub": 1, "val": 1}) == "valsub"


def _config(tiny_data, runs, **kw) -> Config:
    return Config(**{**dict(data=str(tiny_data), runs=str(runs), image_size=32, batch_size=16, steps=12,
                            checkpoints=3), **kw})


def test_a_run_is_scored_during_training_and_predicts_with_the_state_its_rule_kept(tiny_data, tmp_path):
    run = sweep.train(_config(tiny_data, tmp_path), progress=False)
    m = runfolder.load_metrics(run)
    data = load_study_data(tiny_data, val_subclass="auto")
    assert m["val_subclass"] == data.val_subclass == "car"   # the rule's pick on the tiny data
    sel = m["selection"]
    assert sel["requested"] == "valsub" and sel["rule"] == "valsub"
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    scored = [h for h in history if "valsub_accuracy" in h]
    assert len(scored) == 3 and all("val_accuracy" in h and "test_accuracy" in h for h in scored)
    best = max(h["valsub_accuracy"] for h in scored)
    assert sel["score"] == best and sel["step"] == max(h["step"] for h in scored if h["valsub_accuracy"] == best)
    trajectory = runfolder.read_trajectory(run)
    assert sorted(trajectory["step"].unique()) == [h["step"] for h in scored]
    # the baseline predicts with its model: predictions.csv's test rows are the selected point's trajectory rows
    pred = runfolder.load_predictions(run, "test").reset_index(drop=True)
    at = trajectory[trajectory["step"] == sel["step"]].drop(columns="step").reset_index(drop=True)
    assert (pred["pred"] == at["pred"]).all()
    assert set(pred["subclass"]) == {"military_vehicle"}
    # the rules side by side: (b) is the run's own choice, (c) the best test accuracy of any point
    from attrlib.evaluation import rule_accuracies, selection_table
    rules = rule_accuracies(run)
    assert rules["valsub"] == [h for h in scored if h["step"] == sel["step"]][0]["test_accuracy"]
    assert rules["oracle"] == max(h["test_accuracy"] for h in scored) >= rules["valsub"]
    assert rules["last"] == scored[-1]["test_accuracy"]
    table = selection_table({"baseline": [run]})
    assert table.loc[0, "valsub"] == rules["valsub"] and table.loc[0, "heldout"] == "military_vehicle"
    # the validation subclass never reaches training
    assert not data.split("train")["subclass"].eq("car").any() and set(data.split("valsub")["subclass"]) == {"car"}


def test_a_new_rule_applies_to_a_finished_run_without_training_again(tiny_data, tmp_path, monkeypatch):
    run = sweep.train(_config(tiny_data, tmp_path), progress=False)
    done = (run / "done").read_text()
    # Config.selection is not part of a run's identity: asking for another rule finds the same run, trains nothing
    monkeypatch.setattr(sweep, "fit", lambda *a, **k: pytest.fail("a new rule must not train again"))
    for rule in ("val", "last"):
        assert sweep.train(_config(tiny_data, tmp_path, selection=rule), progress=False) == run
        assert runfolder.run_id(_config(tiny_data, tmp_path, selection=rule)) == run.name
    assert (run / "done").read_text() == done
    rec = records.read(run)
    scored = [h for h in rec.history if "test_accuracy" in h]
    kept = rec.metrics["selection"]
    assert kept["rule"] == "valsub"   # the engine keeps rule (b)'s point whatever the rule
    # rule (b), the run's own: the kept point, scored by the run's predictions (metrics.json)
    own = rec.score()
    assert own.kept and own.step == kept["step"] and own.value == rec.metrics["valsub"]["accuracy"]
    # rule (a) on the finished run: the point of best validation accuracy (ties: the later), from the history
    best = max(h["val_accuracy"] for h in scored)
    at = [h for h in scored if h["val_accuracy"] == best][-1]
    val = rec.score("val")
    assert (val.rule, val.split, val.step) == ("val", "val", at["step"])
    assert val.value == (rec.metrics["val"]["accuracy"] if val.kept else at["val_accuracy"])
    assert rec.score("last").step == scored[-1]["step"]
    # a record read under a Config.selection is scored by that rule
    other = records.Record(rec.arm, rec.folder, rec.config.replace(selection="val"), rec.metrics, rec.history)
    assert other.score() == val
    with pytest.raises(ValueError, match="oracle"):
        rec.score("oracle")


def test_another_rules_test_predictions_are_read_from_the_finished_run(tiny_data, tmp_path, monkeypatch):
    run = sweep.train(_config(tiny_data, tmp_path, seed=1), progress=False)  # seed 1: rules (a) and last move
    for trainer in (sweep, engine):  # nothing trains again: the predictions are read from the run's files
        monkeypatch.setattr(trainer, "fit", lambda *a, **k: pytest.fail("another rule must not train again"))
    rec = records.read(run)
    own = rec.test_predictions()  # rule (b), the run's own point: predictions.csv's test rows
    pd.testing.assert_frame_equal(own, runfolder.load_predictions(run, "test"))
    trajectory = runfolder.read_trajectory(run)
    moved = [rule for rule in ("val", "last") if not rec.score(rule).kept]
    assert moved, "the tiny run's rules all pick the kept point: nothing to read from trajectory.csv"
    for rule in moved:
        step = rec.score(rule).step
        got = records.read(run).test_predictions(rule)
        assert got["path"].tolist() == own["path"].tolist() and set(got["split"]) == {"test"}
        assert got["pred"].tolist() == trajectory.loc[trajectory["step"] == step, "pred"].tolist()
        # the point's own predictions: their accuracy is the history's test accuracy there, not the kept point's
        at = next(h for h in rec.history if h.get("step") == step)
        assert (got["pred"] == got["generator"]).mean() == pytest.approx(at["test_accuracy"])
        p = [c for c in own.columns if c.startswith(runfolder.PROBABILITY_PREFIX)]
        assert not np.allclose(got[p].to_numpy(), own[p].to_numpy())
    (run / runfolder.TRAJECTORY).unlink()  # a run written before trajectory.csv: said, not guessed
    with pytest.raises(CheckpointError, match="trajectory.csv"):
        rec.test_predictions(moved[0])


def test_the_rule_asked_for_decides_the_point_and_the_choice():
    from types import SimpleNamespace

    history = [{"step": 4, "val_accuracy": 0.9, "valsub_accuracy": 0.5, "test_accuracy": 0.3},
               {"step": 8, "val_accuracy": 0.7, "valsub_accuracy": 0.6, "test_accuracy": 0.4}]
    a = SimpleNamespace(history=history, metrics={"selection": {"rule": "valsub", "step": 8},
                                                  "valsub": {"accuracy": 0.65}, "val": {"accuracy": 0.7}})
    assert selection.score(a, "valsub") == (0.65, "valsub", "valsub", 8, True)   # the run's own predictions
    assert selection.score(a, "val") == (0.9, "val", "val", 4, False)           # the recorded point of rule (a)
    assert selection.score(a, "last")[:4] == (0.65, "valsub", "last", 8)
    flat = [{"step": 4, "val_accuracy": 0.8, "valsub_accuracy": 0.7, "test_accuracy": 0.9}]
    b = SimpleNamespace(history=flat, metrics={"selection": {"rule": "valsub", "step": 4},
                                               "valsub": {"accuracy": 0.7}, "val": {"accuracy": 0.8}})
    scores = lambda rule: {name: selection.score(r, rule).value for name, r in (("a", a), ("b", b))}
    assert selection.choose(scores("valsub")) == "b" and selection.choose(scores("val")) == "a"
    assert selection.heldout_accuracy(history, "oracle") == 0.4 and selection.heldout_accuracy(history, "val") == 0.3
    # ties go to the candidate listed first; NaN never wins; nothing scored: None
    assert selection.choose({"x": 0.5, "y": 0.5}) == "x" and selection.choose({"x": float("nan"), "y": 0.1}) == "y"
    assert selection.choose({"x": float("nan")}) is None


def test_rotations_expand_rotation_major_and_each_run_holds_out_its_subclass(tiny_data, tmp_path):
    dirs = sweep.train_seeds("baseline", "quick", seeds=(0,), rotations=("military_vehicle", "car"),
                             data=str(tiny_data), runs=str(tmp_path), steps=4, val_subclass="none")
    assert [runfolder.read_config(d).heldout for d in dirs] == [("military_vehicle",), ("car",)]
    test = runfolder.load_predictions(dirs[1], "test")
    assert set(test["subclass"]) == {"car"}


def test_plan_resolves_each_rotation_once_and_carries_its_validation_subclass_into_every_run(tiny_data, tmp_path,
                                                                                             monkeypatch):
    from attrlib.data import study_data
    calls = []
    pick = study_data.choose_val_subclass
    monkeypatch.setattr(study_data, "choose_val_subclass", lambda frame, held: calls.append(tuple(held)) or pick(frame, held))
    study_data._auto_val_subclass.cache_clear()
    arms = sweep.plan(["baseline", "group_dro", "weighted_sampling"], "quick", seeds=(0, 1),
                      rotations=("military_vehicle", "horse"), data=str(tiny_data), runs=str(tmp_path))
    assert sorted(calls) == [("horse",), ("military_vehicle",)]  # once per rotation, whatever the arms and seeds
    picked = {"military_vehicle": pick(load_study_data(tiny_data).frame, ["military_vehicle"]),
              "horse": pick(load_study_data(tiny_data, heldout=("horse",)).frame, ["horse"])}
    for arm in arms:
        for config in (*arm.draws, *arm.runs()):
            name = picked[config.heldout.key] or "none"
            assert config.heldout.val_subclass == config.val_subclass == name
            # the run id is the one "auto" gives on the same data: carrying the subclass changed no run
            auto = Config.from_dict({**config.to_dict(), "val_subclass": "auto"})
            assert auto.heldout.val_subclass is None and runfolder.run_id(auto) == runfolder.run_id(config)
    assert len(calls) == 2  # the run ids of the "auto" configs found the resolution in the cache


def test_draw_zero_is_the_defaults_and_draws_are_reproducible_and_inside_their_ranges():
    cls = techniques.get("adversarial_debiasing")
    assert hparams.draw(cls, 0) == {}
    a, b = hparams.draw(cls, 3), hparams.draw(cls, 3)
    assert a == b and a != hparams.draw(cls, 4)
    for d in range(1, 20):
        lr = hparams.draw(cls, d)["lr"]
        assert 3e-4 <= lr <= 3e-3
    with pytest.raises(ConfigError, match="draw -1"):
        hparams.draw(cls, -1)


def test_search_keeps_the_draw_with_the_best_selection_score_never_the_test_score(tiny_data, tmp_path, monkeypatch):
    real = runfolder.load_metrics
    scores = {}

    def fake(run):
        m = real(run)
        # draw 1 is best by the selection rule, draw 2 by the test set: the search must take draw 1
        lr = runfolder.read_config(run).lr
        # the search scores a run by its own validation-subclass predictions (selection.score)
        m["valsub"] = {"accuracy": scores.setdefault(lr, [0.5, 0.9, 0.1][len(scores)])}
        m["heldout"]["accuracy"] = [0.1, 0.2, 0.99][list(scores).index(lr)]
        return m

    monkeypatch.setattr(runfolder, "load_metrics", fake)
    chosen, dirs = sweep.search({"technique": "baseline"}, "quick", ("military_vehicle",), 3,
                                data=str(tiny_data), runs=str(tmp_path), steps=2)
    assert len(dirs) == 3 and chosen == {"technique": "baseline", **hparams.draw(techniques.get("baseline"), 1)}


@pytest.mark.parametrize("name", list(techniques.available()))
def test_every_technique_declares_a_valid_search_space(name):
    cls = techniques.get(name)
    hparams.check_space(cls)
    drawn = hparams.draw(cls, 1)
    cls.check_params(drawn.get("technique_params", {}))  # a draw is a valid override of the technique
    Config(**{k: v for k, v in drawn.items() if k != "technique_params"})


def test_a_technique_hyper_parameter_never_shadows_the_step_budget():
    """runtime_adversarial's attack steps were once called `steps`, which the engine reads as the budget."""
    for name in techniques.available():
        cls = techniques.get(name)
        if "steps" in cls.defaults:
            assert cls.defaults["steps"] >= 100, f"{name}: a `steps` default is an optimiser budget"
