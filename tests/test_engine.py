"""The engine: run folders, reuse, determinism, resume, the fine-tuning chain."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from attrlib import runfolder, sweep, training
from attrlib.config import Config
from attrlib.errors import ConfigError

from conftest import train_whole_and_interrupted

TIMING = ("train_seconds", "train_images_per_second", "prepare_seconds", "device")


def _config(tiny_data, runs, **kw) -> Config:
    # 8 steps: an epoch of 5 and a cut one of 3; no validation subclass (its selection is tested in test_protocol.py)
    return Config(**{**dict(data=str(tiny_data), runs=str(runs), image_size=32, batch_size=16, steps=8,
                            val_subclass="none"), **kw})


def _metrics(run) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in TIMING}


def _history(run) -> list[dict]:
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows]


def test_run_folder_contents(tiny_data, tmp_path):
    config = _config(tiny_data, tmp_path)
    run = sweep.train(config, progress=False)
    assert run == tmp_path / "baseline" / runfolder.run_id(config)
    assert {p.name for p in run.iterdir()} == {"config.json", "history.jsonl", "train.log", "checkpoint.pt", "predictions.csv",
                                               "trajectory.csv", "metrics.json", "done"}
    # the training log is the run's, not the caller's output: one readable line per epoch of history.jsonl
    log = (run / "train.log").read_text().splitlines()
    assert len(log) == 2 and log[1].startswith("epoch 2 (step ") and "val acc " in log[1] and "img/s" in log[1]
    assert runfolder.run_id(Config.from_dict(json.loads((run / "config.json").read_text()))) == runfolder.run_id(config)
    history = _history(run)
    assert [h["epoch"] for h in history] == [0, 1] and all("loss" in h and "val_accuracy" in h for h in history)
    pred = pd.read_csv(run / "predictions.csv")
    generators = sorted(pred["generator"].unique())
    assert list(pred.columns) == ["path", "split", "generator", "subclass", "pred", *[f"p_{g}" for g in generators],
                                  *[f"logp_{g}" for g in generators]]
    assert set(pred["split"]) == {"val", "test", "ft_test"}
    assert (pred[[f"p_{g}" for g in generators]].sum(axis=1) - 1).abs().max() < 1e-4
    m = json.loads((run / "metrics.json").read_text())
    assert m["heldout"]["split"] == "test" and 0 <= m["heldout"]["accuracy"] <= 1 and "macro_f1" in m["heldout"]
    assert set(m["heldout"]["per_generator"]) == set(generators)
    assert set(m["heldout"]["per_generator"]["lsgm"]) == {"precision", "recall", "f1", "support"}
    assert "accuracy" in m["val"] and m["uses_target_data"] is False
    test = pred[pred["split"] == "test"]
    assert m["heldout"]["accuracy"] == pytest.approx((test["generator"] == test["pred"]).mean())


def test_same_seed_gives_identical_metrics_and_a_finished_run_is_reused(tiny_data, tmp_path, monkeypatch):
    a = sweep.train(_config(tiny_data, tmp_path / "a", technique="weighted_sampling"), progress=False)
    b = sweep.train(_config(tiny_data, tmp_path / "b", technique="weighted_sampling"), progress=False)
    assert _metrics(a) == _metrics(b) and _history(a) == _history(b)
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(training.engine, "train_one_epoch", no_training)
    assert sweep.train(_config(tiny_data, tmp_path / "a", technique="weighted_sampling"), progress=False) == a


def test_an_interrupted_run_resumes_to_the_same_metrics(tiny_data, tmp_path, monkeypatch):
    config = _config(tiny_data, tmp_path / "whole", steps=12, technique="group_dro")
    whole, config, cut = train_whole_and_interrupted(config, tmp_path, monkeypatch, epoch=2)
    assert not (cut / "done").exists() and torch.load(cut / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.undo()  # training as usual again
    assert sweep.train(config, progress=False) == cut
    assert _metrics(cut) == _metrics(whole) and _history(cut) == _history(whole)


def test_fine_tuning_starts_from_the_baseline_and_reports_ft_test(tiny_data, tmp_path):
    config = _config(tiny_data, tmp_path, technique="fine_tuning", technique_params={"steps": 9, "batch_size": 16})
    run = sweep.train(config, progress=False)
    baseline = runfolder.run_dir(config.replace(technique="baseline", technique_params={}))
    assert (baseline / "done").exists()
    m = json.loads((run / "metrics.json").read_text())
    assert m["uses_target_data"] is True and m["heldout"]["split"] == "ft_test" and m["steps"] == 9 and m["epochs"] == 3
    assert m["heldout"]["n"] == m["ft_test"]["n"] < m["test"]["n"]
    base = torch.load(baseline / "checkpoint.pt", weights_only=True)["technique"]
    ft = torch.load(run / "checkpoint.pt", weights_only=True)["technique"]
    assert torch.equal(base["model.backbone.layer3.conv1.weight"], ft["model.backbone.layer3.conv1.weight"])
    assert not torch.equal(base["model.generator_head.weight"], ft["model.generator_head.weight"])


def test_the_quick_profile_gives_fine_tuning_a_smoke_runs_budget():
    from attrlib.config import profile

    quick = profile("quick", technique="fine_tuning")[0]
    assert quick.technique_params == {"steps": 64}
    assert profile("quick", technique="baseline")[0].technique_params == {}
    # the seed's 2,700 steps everywhere else; a config's own parameters win over the profile's
    assert profile("default", technique="fine_tuning")[0].technique_params == {}
    assert profile("quick", technique="fine_tuning", technique_params={"steps": 5, "lr": 0.01})[0].technique_params \
        == {"steps": 5, "lr": 0.01}
    assert runfolder.run_id(quick) != runfolder.run_id(quick.replace(technique_params={}))


def test_the_kept_point_is_predicted_once_and_as_it_would_be_afresh(tiny_data, tmp_path, monkeypatch):
    """A technique whose prediction is its model's forward pass: val and test go through the model only at the
    scoring points (the kept point's scores are its predictions), ft_test once after training, and the
    predictions are those of the kept state predicted again from its checkpoint."""
    seen = []
    real = training.engine.predict_log_probs

    def counting(predict, loader, *args, **kwargs):
        seen.append(len(loader.dataset))
        return real(predict, loader, *args, **kwargs)

    monkeypatch.setattr(training.engine, "predict_log_probs", counting)
    run = sweep.train(_config(tiny_data, tmp_path, steps=12, checkpoints=3), progress=False)
    monkeypatch.undo()
    n = pd.read_csv(run / "predictions.csv")["split"].value_counts()
    points = sum("val_accuracy" in h for h in _history(run))
    assert points == 3 and sum(seen) == points * (n["val"] + n["test"]) + n["ft_test"]
    loaded = runfolder.load_run(run)
    again = training.predict_splits(loaded.technique, loaded.data, loaded.config, torch.device("cpu"))
    (tmp_path / "again").mkdir()
    runfolder.write_predictions(tmp_path / "again", again)
    assert (tmp_path / "again" / "predictions.csv").read_bytes() == (run / "predictions.csv").read_bytes()


def test_bad_parameters_fail_before_any_work(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="valid techniques"):
        sweep.train(_config(tiny_data, tmp_path, technique="nope"), progress=False)
    with pytest.raises(ConfigError, match="valid choices"):
        training.pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="not available"):
            sweep.train(_config(tiny_data, tmp_path, device="cuda"), progress=False)
    assert not (tmp_path / "baseline").exists() and not (tmp_path / "nope").exists()


def test_train_seeds_and_the_reporting_tables(tiny_data, tmp_path):
    from attrlib import evaluation, reporting

    runs = sweep.train_seeds("baseline", "quick", seeds=[0, 1], data=str(tiny_data), runs=str(tmp_path / "runs"),
                              progress=False)
    assert [json.loads((r / "config.json").read_text())["seed"] for r in runs] == [0, 1]
    assert json.loads((runs[0] / "config.json").read_text())["image_size"] == 32  # the quick profile's
    table = reporting.seed_table(runs)
    generators = sorted(json.loads((runs[0] / "metrics.json").read_text())["heldout"]["per_generator"])
    assert list(table.index) == [*generators, "average", "accuracy"] and "±" in table.loc["average", "f1"]
    numbers = reporting.seed_table(runs, fmt=False)
    accuracies = [json.loads((r / "metrics.json").read_text())["heldout"]["accuracy"] for r in runs]
    assert numbers.loc["accuracy", ("f1", "mean")] == pytest.approx(sum(accuracies) / 2)
    pooled = evaluation.pooled_predictions(runs)
    cm = evaluation.confusion(pooled, evaluation.generators_of(pooled))
    assert cm.to_numpy().sum() == 2 * json.loads((runs[0] / "metrics.json").read_text())["heldout"]["n"]
    summary = reporting.format_summary(evaluation.summary_table({"baseline": runs}))
    assert summary.loc["baseline", "seeds"] == 2
    written = reporting.save_fig(reporting.confusion_figure(runs), "02_test", tmp_path / "figures")
    assert [p.suffix for p in written] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in written)
    written = reporting.save_table(table, "02_test", tmp_path / "results")
    assert {p.suffix for p in written} == {".csv", ".md", ".tex"}


def test_train_seeds_resolves_the_rotation_on_the_data_it_is_given(tiny_data, tmp_path, monkeypatch):
    """A notebook's `train_seeds(..., data=<a user's folder>)` picks the validation subclass on that folder, not on
    the profile's default data (the benchmark, where it exists: its `animal_face` is no subclass of the user's)."""
    resolved_on, trained = [], []
    real = runfolder.resolved_rotation
    monkeypatch.setattr(runfolder, "resolved_rotation", lambda c: resolved_on.append(c.data) or real(c))
    monkeypatch.setattr(sweep, "train", lambda c, progress=True, wait=True: trained.append(c) or tmp_path)
    sweep.train_seeds("group_dro", "quick", seeds=[0], data=str(tiny_data), runs=str(tmp_path / "runs"),
                      technique_params={"eta": 0.02}, progress=False)
    assert resolved_on and set(resolved_on) == {str(tiny_data)}
    assert {c.data for c in trained} == {str(tiny_data)} and trained[0].technique_params.get("eta") == 0.02
    assert trained[0].heldout.val_subclass in {"car", "face", "horse", None}


def test_show_puts_the_saved_png_in_the_notebook_without_drawing_the_figure_again(tmp_path, monkeypatch):
    import IPython.display
    import matplotlib.pyplot as plt

    from attrlib import reporting
    from attrlib.reporting import save

    shown, draws, plain = [], [], []
    monkeypatch.setattr(save, "_inline", lambda: True)  # as in a Jupyter kernel with the inline backend
    monkeypatch.setattr(IPython.display, "display", shown.append)
    monkeypatch.setattr(plt, "show", lambda: plain.append(1))
    fig = plt.figure(figsize=(4, 3))
    fig.add_subplot().plot([0, 1], [1, 0])
    png, _ = reporting.save_fig(fig, "02_show", tmp_path)
    fig.canvas.mpl_connect("draw_event", lambda event: draws.append(event))
    reporting.show(fig)
    [image] = shown
    assert image.data == png.read_bytes() and not draws and not plain  # the written bytes, no new drawing
    assert image.width < 4 * 150 and not plt.fignum_exists(fig.number)  # on screen at 100 dpi; closed
    unsaved = plt.figure()
    reporting.show(unsaved)  # never saved: matplotlib's own show
    assert plain == [1] and len(shown) == 1
    plt.close(unsaved)


def test_the_budget_is_optimiser_steps_whatever_the_data_size(tiny_data, tmp_path):
    # 66 training images at batch 16: 5 steps an epoch, so 12 steps are 2 whole epochs and a cut one
    run = sweep.train(_config(tiny_data, tmp_path, steps=12), progress=False)
    history = _history(run)
    assert [h["steps"] for h in history] == [5, 5, 2] and [h["step"] for h in history] == [5, 10, 12]
    m = json.loads((run / "metrics.json").read_text())
    assert m["steps"] == 12 and m["epochs"] == 3
    # twice the batch: the same 12 steps take 4 epochs of 3 (the budget does not shrink with the epochs' size)
    halved = sweep.train(_config(tiny_data, tmp_path, steps=12, batch_size=32), progress=False)
    assert [h["steps"] for h in _history(halved)] == [3, 3, 3, 3]


def test_on_bad_skip_trains_without_a_broken_file_and_raise_names_it(tiny_data, tmp_path):
    import shutil

    from attrlib.errors import DataError

    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    good = (root / "lsgm" / "face" / "000.png").read_bytes()
    (root / "lsgm" / "face" / "broken.png").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"broken\.png"):
        sweep.train(_config(root, tmp_path / "raise"), progress=False)
    run = sweep.train(_config(root, tmp_path / "skip", on_bad="skip"), progress=False)
    assert "broken.png" not in (run / "predictions.csv").read_text()
    with pytest.raises(ConfigError, match="on_bad"):
        _config(root, tmp_path, on_bad="ignore")


def test_progress_bars_and_training_lines_show_in_a_terminal_only(capsys, monkeypatch):
    """attrlib.progress: drawn when stderr is a terminal (or ATTRLIB_PROGRESS=1), never into a captured or
    kernel stream, where a bar would stay as a stale "0%|" line (the run's train.log keeps the lines)."""
    from attrlib import progress

    monkeypatch.delenv("ATTRLIB_PROGRESS", raising=False)
    assert not progress.interactive()  # pytest's capture, like a Jupyter kernel's stream, is no terminal
    progress.say("epoch 1 (step 16): loss 1.0")
    assert list(progress.bar(range(3), desc="train", total=3)) == [0, 1, 2]
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("ATTRLIB_PROGRESS", "1")
    progress.say("epoch 1 (step 16): loss 1.0")
    list(progress.bar(range(3), desc="train", total=3))
    list(progress.bar(range(3), enabled=False, desc="off", total=3))  # the caller's own switch still holds
    err = capsys.readouterr().err
    assert "epoch 1 (step 16)" in err and "train: 100%|" in err and "off" not in err
