"""Open world (issue 22): a generator left out of training (Config.unknown_generators), the open-set scores and
metrics, and `attrlib predict` on new images."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

import attrlib
from attrlib import cli, records, runfolder, sweep
from attrlib.config import Config
from attrlib.data import ImageDataset, collate_patches, load_study_data
from attrlib.errors import DataError
from attrlib.evaluation import (fit_open_set, open_set_frame, open_set_metrics, oscr, paired_difference, predict_columns,
                                threshold_at_frr)
from attrlib.evaluation.openset import SCORE_PREFIX, SCORES, balanced_accuracy, known_shift_auroc, model_outputs
from attrlib.techniques import available, build_technique, predict_log_probs

from conftest import TINY_CELLS, TINY_HELDOUT, make_messy_data

UNKNOWN = "stylegan3"
# measured on tiny_data (seeds 0, 1): at 40 steps msp's mean still ranks the unknown images lower on one seed
# (AUROC 0.74), at 64 steps above (0.96-0.99), at 96 every score separates them (AUROC 1.00 on both seeds)
STEPS = 96


@pytest.fixture(scope="module")
def open_run(tiny_data, tmp_path_factory):
    """A tiny baseline run trained without UNKNOWN (its images form the `unknown` split)."""
    torch.set_num_threads(1)
    config = Config(data=str(tiny_data), runs=str(tmp_path_factory.mktemp("open_runs")), image_size=32,
                    batch_size=16, steps=STEPS, val_subclass="none", unknown_generators=(UNKNOWN,))
    return sweep.train(config, progress=False)


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    return make_messy_data(tmp_path_factory.mktemp("messy"))


# --- the data layer: leave one generator out ---------------------------------------------------------------
def test_unknown_generators_leave_every_split_but_unknown(tiny_data):
    closed = load_study_data(tiny_data, heldout=TINY_HELDOUT, val_subclass="auto")
    data = load_study_data(tiny_data, heldout=TINY_HELDOUT, val_subclass="auto", unknown_generators=(UNKNOWN,))
    assert UNKNOWN in closed.generators and UNKNOWN not in data.generators
    assert data.generators == [g for g in closed.generators if g != UNKNOWN]
    for split in ("train", "val", "valsub", "test"):
        assert UNKNOWN not in set(data.split(split)["generator"])
        known = closed.split(split)
        assert len(data.split(split)) == len(known[known["generator"] != UNKNOWN])
    unknown = data.split("unknown")
    # all of its images: its training subclass (seen content) and the held-out one (unseen content)
    assert set(unknown["generator"]) == {UNKNOWN}
    assert set(unknown["subclass"]) == {*TINY_CELLS[UNKNOWN], TINY_HELDOUT}
    labels = data.labels(unknown)
    assert (labels["generator"] == -1).all() and (labels["group"] == -1).all()
    assert len(closed.split("unknown")) == 0
    with pytest.raises(DataError, match="do not occur"):
        load_study_data(tiny_data, heldout=TINY_HELDOUT, unknown_generators=("midjourney",))


def test_unknown_generators_are_part_of_the_run_identity_only_when_set(tiny_data):
    base = Config(data=str(tiny_data))
    assert "unknown_generators" not in base.identity()  # closed-set runs keep the ids they had
    left = base.replace(unknown_generators=[UNKNOWN])
    assert left.unknown_generators == (UNKNOWN,) and left.identity()["unknown_generators"] == [UNKNOWN]
    assert runfolder.run_id(left) != runfolder.run_id(base)
    assert Config.from_dict(left.to_dict()) == left


def test_a_run_without_a_generator_never_predicts_it(open_run):
    predictions = runfolder.load_predictions(open_run)
    assert UNKNOWN not in runfolder.generators_of(predictions)
    assert UNKNOWN not in set(predictions["pred"]) and UNKNOWN not in set(predictions["generator"])


# --- scores, thresholds, metrics ---------------------------------------------------------------------------
def test_threshold_rejects_the_stated_share_of_known_validation_images(open_run):
    for frr in (0.05, 0.25):
        model = fit_open_set(open_run, frr=frr)
        val = model.score_frame(model.run.data.split("val"))
        n = len(val)
        for s in SCORES:
            rejected = model.flag(val, s).mean()
            assert frr - 1.0 / n - 1e-9 <= rejected <= frr + 1e-9, (s, frr, rejected)
    assert threshold_at_frr(np.arange(100.0), 0.0) == 99.0  # nothing flagged at a rate of 0


def test_left_out_generator_scores_higher_than_known_images_of_the_same_content(open_run):
    """Images of the generator the run never saw get higher unknown scores than known generators' validation
    images of the same (seen) subclasses: on average and ranked apart (AUROC) for every score (see STEPS)."""
    model = fit_open_set(open_run)
    data = model.run.data
    known = model.score_frame(data.split("val"))
    unknown = model.score_frame(data.split("unknown").query("subclass in @data.subclasses"))
    assert len(unknown) and set(unknown["generator"]) == {UNKNOWN}
    for s in SCORES:
        k, u = known[f"{SCORE_PREFIX}{s}"].to_numpy(), unknown[f"{SCORE_PREFIX}{s}"].to_numpy()
        assert u.mean() > k.mean(), s
        assert roc_auc_score(np.r_[np.zeros(len(k)), np.ones(len(u))], np.r_[k, u]) > 0.9, s


def test_oscr_bounds():
    known, unknown = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.8, 0.9])
    assert oscr(np.ones(4, bool), known, unknown) == pytest.approx(1.0)
    assert oscr(np.array([1, 1, 0, 0], bool), known, unknown) == pytest.approx(0.5)   # bounded by accuracy
    assert oscr(np.ones(4, bool), unknown.repeat(2), known[:2]) == pytest.approx(0.0)  # every unknown first


def test_open_set_metrics_on_a_run(open_run):
    model = fit_open_set(open_run)
    scored = open_set_frame(model)
    assert set(scored.loc[~scored["known"], "generator"]) == {UNKNOWN}
    table = open_set_metrics(scored, scored["known"].to_numpy(), model.thresholds, n_boot=50)
    assert list(table["score"]) == list(SCORES)
    assert ((table["auroc_low"] <= table["auroc"]) & (table["auroc"] <= table["auroc_high"])).all()
    assert (table["oscr"] <= table["accuracy"] + 1e-9).all()
    assert (table["accuracy_at_threshold"] <= table["accuracy"] + 1e-9).all()


def test_known_shift_auroc_ranks_new_content_knowns_against_the_calibration_images(open_run):
    """known_shift_auroc (why a score misses unknowns): the AUROC of known test images (the held-out subclass)
    against the images the thresholds came from, scikit-learn's; flipping the test images' scores flips it."""
    model = fit_open_set(open_run)
    scored = open_set_frame(model)
    assert model.calibration_scored is not None and set(model.calibration_scored["split"]) == {"val"}
    test = scored[scored["known"]]
    assert len(test) and not test["content_seen"].any()
    for s in SCORES:
        column = f"{SCORE_PREFIX}{s}"
        k, t = model.calibration_scored[column].to_numpy(), test[column].to_numpy()
        expected = roc_auc_score(np.r_[np.zeros(len(k)), np.ones(len(t))], np.r_[k, t])
        assert known_shift_auroc(model.calibration_scored, scored, s) == pytest.approx(expected)
        flipped = scored.assign(**{column: np.where(scored["known"], -scored[column], scored[column])})
        calibration = model.calibration_scored.assign(**{column: -model.calibration_scored[column]})
        assert known_shift_auroc(calibration, flipped, s) == pytest.approx(1 - expected)


# --- attrlib predict ---------------------------------------------------------------------------------------
def test_predict_cli_on_a_messy_folder(open_run, messy, tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert cli.main(["predict", "--run", str(open_run), str(messy), "--out", str(out), "--on-bad", "skip",
                     "--progress", "off"]) == 0
    table = pd.read_csv(out)
    generators = runfolder.generators_of(runfolder.load_predictions(open_run))
    assert list(table.columns) == predict_columns(generators)
    n_images = sum(1 for p in messy.rglob("*") if p.suffix in (".png", ".jpg"))
    assert len(table) == n_images - 2  # the truncated PNG and the text file named .jpg are left out
    assert not table["path"].str.contains("truncated|notes").any()
    p = table[[f"p_{g}" for g in generators]].to_numpy()
    assert np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert (table["pred"] == np.array(generators)[p.argmax(1)]).all()
    assert (table["unknown"] == (table["unknown_score"] > table["threshold"])).all()
    assert (table["run_id"] == open_run.name).all() and (table["technique"] == "baseline").all()
    assert "skipped" in capsys.readouterr().out


def test_predict_bad_files_raise_by_default_naming_them(open_run, messy, tmp_path, capsys):
    assert cli.main(["predict", "--run", str(open_run), str(messy), "--out", str(tmp_path / "p.csv"),
                     "--progress", "off"]) == 2
    err = capsys.readouterr().err
    assert "truncated.png" in err and "notes.jpg" in err and "on_bad='skip'" in err
    assert not (tmp_path / "p.csv").exists()


def test_predict_api_matches_the_runs_own_predictions(open_run, tmp_path):
    """The same kept model and patch aggregation as evaluation: predict on a manifest of the run's test images
    gives the probabilities in its predictions.csv, and keeps the manifest's generator as the truth."""
    test = runfolder.load_predictions(open_run, "test")
    names = [f"{i:03d}{Path(p).suffix}" for i, p in enumerate(test["path"])]
    (tmp_path / "new").mkdir()
    for p, name in zip(test["path"], names):
        shutil.copy(p, tmp_path / "new" / name)
    pd.DataFrame({"path": [f"new/{n}" for n in names], "generator": test["generator"]}).to_csv(
        tmp_path / "images.csv", index=False)
    table = attrlib.predict(open_run, tmp_path / "images.csv", progress=False)
    generators = runfolder.generators_of(test)
    assert list(table["generator"]) == list(test["generator"])
    assert np.allclose(table[[f"p_{g}" for g in generators]].to_numpy(),
                       test[[f"p_{g}" for g in generators]].to_numpy(), atol=1e-5)


def test_balanced_accuracy_is_scikit_learns_and_counts_a_rejection_as_wrong():
    truth, pred = np.array(list("aabbbc")), np.array(list("abbbcc"))
    assert balanced_accuracy(truth, pred) == pytest.approx(balanced_accuracy_score(truth, pred))
    assert balanced_accuracy(truth, np.array(["a", "<unknown>", "b", "b", "b", "c"])) == pytest.approx((0.5 + 1 + 1) / 3)


def test_paired_difference_of_a_run_with_itself_is_zero_and_with_a_reversed_score_is_negative(open_run):
    model = fit_open_set(open_run)
    scored = open_set_frame(model)
    same = paired_difference(scored, scored, "auroc", "mahalanobis", n_boot=50)
    assert same == (0.0, 0.0, 0.0)
    reversed_ = scored.assign(score_mahalanobis=-scored["score_mahalanobis"])
    d = paired_difference(reversed_, scored, "auroc", "mahalanobis", n_boot=50)
    auroc = open_set_metrics(scored, scored["known"].to_numpy(), scores=["mahalanobis"], n_boot=10)["auroc"].iat[0]
    assert d.estimate == pytest.approx((1 - auroc) - auroc)


@pytest.mark.parametrize("name", available())
def test_model_outputs_of_every_technique_match_its_predictions(name, tiny_data):
    """Every registered technique: the open-set pass gives the log-probabilities evaluation gives (patches
    averaged), one energy and one feature row per image (the head's input at its last call)."""
    torch.manual_seed(0)
    data = load_study_data(tiny_data, heldout=TINY_HELDOUT)
    technique = build_technique(Config(technique=name, image_size=16, batch_size=8, steps=1), data).eval()
    frame = data.split("test").head(6)
    dataset = ImageDataset(frame, data, size=16, train=False, patches=4)
    out = model_outputs(technique, dataset, batch_size=4)
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_patches)
    expected = predict_log_probs(technique.predict, loader, torch.device("cpu"), technique.n_generators)
    assert np.allclose(out.log_probs, expected, atol=1e-5)
    assert out.energy.shape == (6,) and out.features.shape == (6, technique.model.generator_head.in_features)


def test_list_images_reads_folders_and_manifests_with_or_without_labels(messy, tmp_path):
    from attrlib.data import list_images

    folder = list_images(messy)
    assert len(folder.frame) == sum(1 for p in messy.rglob("*") if p.suffix in (".png", ".jpg"))
    assert (folder.frame["generator"] == "").all()
    (tmp_path / "a.png").write_bytes((messy / "jpeg" / "cat" / "0.jpg").read_bytes())
    pd.DataFrame({"path": ["a.png", "missing.png"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match="missing.png"):
        list_images(tmp_path / "m.csv")
    kept = list_images(tmp_path / "m.csv", on_bad="skip")
    assert list(kept.frame["path"]) == [str(tmp_path / "a.png")] and "missing.png" in kept.skipped[0][0]
    pd.DataFrame({"file": ["a.png"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="no 'path' column"):
        list_images(tmp_path / "bad.csv")


def test_selected_run_is_the_arm_rule_b_picks(open_run):
    """The study form of predict: the arm with the best validation score in the rotation (here scored on val)."""
    from attrlib.evaluation import selected_run

    config = runfolder.read_config(open_run)
    other = sweep.train(config.replace(steps=2, seed=1), progress=False)
    scores = {d: records.read(d).score().value for d in (open_run, other)}
    assert scores[open_run] != scores[other]
    best = max(scores, key=scores.get)
    assert selected_run({"forty_steps": [open_run], "two_steps": [other]}) == best


def test_pooled_comparison_over_rotations_and_seeds(open_run):
    """The arm-level table: with one rotation and one seed its intervals are stats.bootstrap_ci's (the same
    draws); a second seed with the same scores leaves it unchanged; a reversed score is worse by (1 - a) - a."""
    from attrlib.evaluation import bootstrap_ci, pooled_versus_reference
    from attrlib.evaluation.openset import _auroc, _pair

    scored = open_set_frame(fit_open_set(open_run))
    reversed_ = scored.assign(score_mahalanobis=-scored["score_mahalanobis"])
    frames = {"a": scored, "b": reversed_}
    rows = [dict(arm=arm, heldout=TINY_HELDOUT, unknown=UNKNOWN, seed=0, score="mahalanobis", run=run)
            for arm, run in (("baseline", "a"), ("reversed", "b"))]
    one = pooled_versus_reference(pd.DataFrame(rows), frames, n_boot=50).set_index("arm")
    pair = _pair(reversed_, scored, "mahalanobis")  # the pair as one prediction: stats.bootstrap_ci's replicates
    d = bootstrap_ci(np.arange(len(pair)), pair[None], lambda _, p: _auroc(p[:, 0].astype(int), p[:, 2])
                     - _auroc(p[:, 1].astype(int), p[:, 3]), n_boot=50)
    assert tuple(paired_difference(reversed_, scored, "auroc", "mahalanobis", n_boot=50)) == pytest.approx(tuple(d))
    assert tuple(one.loc["reversed", ["auroc - baseline", "auroc - baseline low", "auroc - baseline high"]]) == \
        pytest.approx(tuple(d))
    own = open_set_metrics(scored, scored["known"].to_numpy(), scores=["mahalanobis"], n_boot=50).iloc[0]
    for metric in ("auroc", "oscr"):
        assert tuple(one.loc["baseline", [metric, f"{metric}_low", f"{metric}_high"]]) == pytest.approx(
            (own[metric], own[f"{metric}_low"], own[f"{metric}_high"]))
    assert np.isnan(one.loc["baseline"].get("auroc - baseline", np.nan))  # the reference: no difference
    two = pooled_versus_reference(pd.DataFrame(rows + [dict(r, seed=1) for r in rows]), frames, n_boot=50)
    assert two.set_index("arm")["runs"].tolist() == [2, 2]
    assert np.allclose(two.drop(columns="runs").select_dtypes(float).to_numpy(),
                       one.reset_index().drop(columns="runs").select_dtypes(float).to_numpy(), equal_nan=True)


def test_open_world_jobs_add_notebook_11s_arms_as_the_profile_says():
    from attrlib.config import PROFILES
    from attrlib.errors import ConfigError
    from attrlib.study.closing import ARMS
    from attrlib.study.open_world import open_world_jobs

    techniques = "baseline,weighted_sampling"
    assert open_world_jobs(techniques) == {"baseline": {"technique": "baseline"},
                                           "weighted_sampling": {"technique": "weighted_sampling"}}
    quick = open_world_jobs(techniques, PROFILES["quick"]["notebook"]["open_world_arms"])
    assert list(quick) == ["baseline", "weighted_sampling", "residual_stats"]
    assert quick["residual_stats"] == ARMS["residual_stats"]
    default = open_world_jobs(techniques, PROFILES["default"]["notebook"]["open_world_arms"])
    assert len(default) == len(quick) + 1
    every = open_world_jobs(techniques, PROFILES["thorough"]["notebook"]["open_world_arms"])
    assert list(every) == ["baseline", "weighted_sampling", *[a for a in ARMS if a != "baseline"]]
    with pytest.raises(ConfigError, match="unknown arm.*local_srm_rgb_mix"):
        open_world_jobs(techniques, "local_cnn")


def test_launch_s_copy_of_notebook_12_s_techniques_is_the_notebook_s_default():
    import ast
    import json

    from attrlib.study.open_world import TECHNIQUES

    notebook = Path(__file__).resolve().parents[1] / "notebooks" / "12_open_world.ipynb"
    cell = next(c for c in json.loads(notebook.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
    defaults = {n.target.id: ast.literal_eval(n.value) for n in ast.parse("".join(cell["source"])).body
                if isinstance(n, ast.AnnAssign)}
    assert defaults["techniques"] == TECHNIQUES


def test_auroc_from_ranks_is_scikit_learns():
    from attrlib.evaluation.openset import _UNKNOWN, _auroc

    rng = np.random.default_rng(0)
    for n in (4, 37, 200):
        codes = np.r_[_UNKNOWN, 2, rng.integers(0, 3, n)]
        for scores in (rng.normal(size=n + 2), rng.integers(0, 4, n + 2).astype(float)):  # with ties, too
            assert _auroc(codes, scores) == pytest.approx(roc_auc_score(codes == _UNKNOWN, scores), abs=1e-12)
    assert np.isnan(_auroc(np.full(5, _UNKNOWN), np.arange(5.0)))
