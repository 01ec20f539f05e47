"""Finished runs read once as records (attrlib.records), a rotation as a value (attrlib.rotation), and the arm
choice under another rule applied to finished runs (attrlib.selection)."""
from __future__ import annotations

import pickle
from pathlib import Path

from attrlib import records, runfolder
from attrlib.config import Config
from attrlib.evaluation import runs_without, select_arm, selected_runs
from attrlib.rotation import Rotation, parse_rotations, rotations_text


def test_a_rotation_is_parsed_once_and_keyed_one_way():
    r = Rotation.parse(" car + face ")
    assert r == ("car", "face") and r.key == "car+face" and str(r) == "car+face" and Rotation(r.key) == r
    assert parse_rotations(" a, b+c ,") == (("a",), ("b", "c")) and parse_rotations(["a", ("b", "c")])[1].key == "b+c"
    assert rotations_text(parse_rotations("a,b+c")) == "a,b+c" and parse_rotations("") == ()
    assert pickle.loads(pickle.dumps(r)) == r and isinstance(pickle.loads(pickle.dumps(r)), Rotation)
    config = Config(heldout=("car", "face"))
    assert isinstance(config.heldout, Rotation) and Config(heldout="car").heldout.key == "car"
    assert config.to_dict()["heldout"] == ["car", "face"] and Config.from_dict(config.to_dict()).heldout == r


def test_a_rotation_carries_its_validation_subclass_down_into_the_config_and_back_up_from_the_run(tmp_path):
    r = Rotation.parse("car+face")
    carried = r.resolved("boat")
    assert r.val_subclass is None and carried.val_subclass == "boat" and r.resolved(None).val_subclass == "none"
    assert carried == r and hash(carried) == hash(r) and carried.key == "car+face"  # a rotation is what it holds out
    assert pickle.loads(pickle.dumps(carried)).val_subclass == "boat" and Rotation(carried).val_subclass == "boat"
    # down: the Config takes the carried subclass; a subclass the Config names is what the rotation carries
    config = Config(heldout=carried)
    assert config.val_subclass == "boat" and config.heldout.val_subclass == "boat"
    assert config.replace(seed=3).heldout.val_subclass == "boat" and config.to_dict()["heldout"] == ["car", "face"]
    assert Config(heldout=carried, val_subclass="none").heldout.val_subclass == "none"
    assert Config(heldout=r).val_subclass == "auto" and Config(heldout=r).heldout.val_subclass is None
    # the run id reads the carried subclass: "auto" resolved to it and the name itself are one run, another is not
    assert runfolder.resolved_rotation(config) is config.heldout
    assert runfolder.run_id(config) == runfolder.run_id(Config(heldout=r, val_subclass="boat")) \
        != runfolder.run_id(Config(heldout=r, val_subclass="cat"))
    # up: a record's rotation carries the subclass its run left out (metrics.json), whatever its config said
    run = _run(tmp_path, "a", "car+face", 0, _points((0.6,), (0.8,)), 4)
    rec = records.read(run)
    assert rec.config.val_subclass == "auto" and rec.rotation.val_subclass == "car" == rec.val_subclass
    runfolder.write_metrics(run, {**rec.metrics, "val_subclass": None})
    assert records.read(run).rotation.val_subclass == "none" and records.read(run).val_subclass is None


def _run(root: Path, arm: str, heldout: str, seed: int, history: list[dict], kept_step: int, **kw) -> Path:
    run = root / arm / f"{heldout}-{seed}"
    run.mkdir(parents=True)
    runfolder.write_config(run, Config(data=str(root), heldout=Rotation.parse(heldout), seed=seed, **kw))
    kept = next(h for h in history if h["step"] == kept_step)
    runfolder.write_history(run, [{"epoch": i, "loss": 1.0, **h} for i, h in enumerate(history)])
    runfolder.write_metrics(run, {"selection": {"rule": "valsub", "step": kept_step},
                                  "valsub": {"accuracy": kept["valsub_accuracy"]}, "val": {"accuracy": kept["val_accuracy"]},
                                  "val_subclass": "car", "heldout": {"accuracy": kept["test_accuracy"]}})
    return run


def _points(val: tuple, valsub: tuple) -> list[dict]:
    return [{"step": 4 * (i + 1), "val_accuracy": v, "valsub_accuracy": s, "test_accuracy": 0.5}
            for i, (v, s) in enumerate(zip(val, valsub))]


def test_records_are_read_once_queried_and_scored_under_any_rule(tmp_path):
    # arm a: best on the validation subclass; arm b: best on in-distribution validation (at its first point)
    runs = {"a": [_run(tmp_path, "a", h, s, _points((0.6, 0.7), (0.8, 0.9)), 8) for h in ("mv", "x+y") for s in (0, 1)],
            "b": [_run(tmp_path, "b", h, s, _points((0.95, 0.6), (0.5, 0.4)), 4) for h in ("mv", "x+y") for s in (0, 1)]}
    recs = records.collect(runs)
    assert records.collect(recs) is recs and len(recs) == 8
    assert list(recs.by_rotation()) == [Rotation(["mv"]), Rotation(["x", "y"])]
    assert recs.folders_by_rotation()["x+y"] == runs["a"][2:] + runs["b"][2:]
    assert recs.filter(arm="b", seed=1).folders() == [runs["b"][1], runs["b"][3]] and recs.runs() == runs
    assert recs[0].upstream is None and recs[0].val_subclass == "car"
    ft = records.read(runs["a"][0], "ft")
    assert records.Record("ft", ft.folder, ft.config.replace(technique="fine_tuning"), ft.metrics, ft.history).upstream \
        == runfolder.run_dir(ft.config.replace(technique="baseline", technique_params={}))
    # the study's rule (b) picks arm a in each rotation; rule (a), applied to the same finished runs, picks b
    assert select_arm(runs)["chosen"].tolist() == ["a", "a"]
    by_val = select_arm(recs, rule="val")
    assert by_val["chosen"].tolist() == ["b", "b"] and by_val["score b"].tolist() == [0.95, 0.95]
    assert by_val["heldout"].tolist() == ["mv", "x+y"] and "rule(s) val (applied to the finished runs)" in \
        by_val.attrs["caption"] and "by rule (b):" in select_arm(runs).attrs["caption"]
    assert selected_runs(runs, by_val) == runs["b"]
    assert runs_without(runs, ["x+y"]) == {"a": runs["a"][:2], "b": runs["b"][:2]}
    assert runs_without(runs, [Rotation(["mv"])]) == {"a": runs["a"][2:], "b": runs["b"][2:]}


def test_the_search_chooses_a_draw_by_the_rule_asked_for_on_finished_runs(tmp_path):
    from attrlib import sweep

    draws = [_run(tmp_path, "d0", "mv", 0, _points((0.6, 0.7), (0.8, 0.9)), 8),
             _run(tmp_path, "d1", "mv", 0, _points((0.95, 0.6), (0.5, 0.4)), 4)]
    assert sweep.best_draw(draws) == 0 and sweep.best_draw(draws, "val") == 1
    assert sweep.best_draw(draws, "last") == 0   # compared on the validation subclass at the last point
