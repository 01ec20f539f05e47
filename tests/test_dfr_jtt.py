"""DFR (last layer re-fitted on group-balanced data) and JTT (ERM's training errors up-weighted): each one's
defining property, on the tiny data."""
from __future__ import annotations

import json
import types

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from attrlib import runfolder, sweep
from attrlib.config import Config
from attrlib.data import ImageDataset, collate_patches, load_study_data
from attrlib.errors import ConfigError
from attrlib.techniques import build_technique
from attrlib.techniques.dfr import DFR
from attrlib.techniques.jtt import JTT

from conftest import train_whole_and_interrupted

TIMING = ("train_seconds", "train_images_per_second", "prepare_seconds", "device")


@pytest.fixture(scope="module")
def data(tiny_data):
    return load_study_data(tiny_data)


def _run_config(tiny_data, runs, **kw) -> Config:
    # 5 steps an epoch of 16 images; no validation subclass (its selection is tested in test_protocol.py)
    return Config(**{**dict(data=str(tiny_data), runs=str(runs), image_size=32, batch_size=16, steps=8,
                            val_subclass="none", device="cpu"), **kw})


def _loader(frame, data, shuffle=False, batch_size=8):
    ds = ImageDataset(frame, data, size=32, train=True)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, collate_fn=collate_patches,
                                       generator=torch.Generator().manual_seed(0))


def _metrics(run) -> dict:
    return {k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k not in TIMING}


def _history(run) -> list[dict]:
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_second")} for r in rows]


# --- DFR ---

def test_dfr_keeps_the_baselines_body_bit_for_bit_and_refits_the_head(tiny_data, tmp_path):
    config = _run_config(tiny_data, tmp_path, technique="dfr")
    run = sweep.train(config, progress=False)
    baseline = runfolder.run_dir(config.replace(technique="baseline", technique_params={}))
    assert (baseline / "done").exists() and run.name != baseline.name
    m = json.loads((run / "metrics.json").read_text())
    assert m["uses_target_data"] is False and m["steps"] == 0 and m["heldout"]["split"] == "test"
    base = torch.load(baseline / "checkpoint.pt", weights_only=True)["technique"]
    dfr = torch.load(run / "checkpoint.pt", weights_only=True)["technique"]
    assert set(base) == set(dfr)
    body = [k for k in base if not k.startswith("model.generator_head.")]
    assert any("running_mean" in k for k in body) and any("running_var" in k for k in body)
    assert [k for k in body if not torch.equal(base[k], dfr[k])] == []  # parameters and BatchNorm buffers
    assert not torch.equal(base["model.generator_head.weight"], dfr["model.generator_head.weight"])
    assert not torch.equal(base["model.generator_head.bias"], dfr["model.generator_head.bias"])


def test_dfr_fits_its_head_with_every_cell_weighing_the_same(data, monkeypatch):
    frame = data.split("train")
    cells = frame["generator"] + "|" + frame["subclass"]
    small = cells == cells.iloc[0]
    frame = pd.concat([frame[~small], frame[small].iloc[:2]])  # one cell of 2 images, the others of 5-7
    seen = {}
    monkeypatch.setattr(DFR, "fit_head", lambda self, X, y, w: seen.update(X=X, y=y, w=w))
    t = build_technique(Config(technique="dfr", image_size=32), data)
    loader = _loader(frame, data)
    t.prepare(loader)
    rows = loader.dataset.frame
    assert len(seen["w"]) == len(rows) and np.array_equal(seen["y"], data.labels(rows)["generator"])
    per_cell = pd.Series(seen["w"]).groupby((rows["generator"] + "|" + rows["subclass"]).to_numpy()).sum()
    assert np.allclose(per_cell.to_numpy(), 2.0)  # every cell weighs as much as the smallest cell's 2 images
    assert seen["w"].max() > seen["w"].min()  # so rows of the larger cells weigh less
    prior = t.training_prior(rows)  # the prior it reports: the cells' shares, not the images'
    per_generator = rows.groupby("generator")["subclass"].nunique().reindex(data.generators).to_numpy()
    assert np.allclose(prior, per_generator / per_generator.sum())


def test_dfr_head_does_not_follow_a_cells_size():
    """Balanced weights: tripling one cell's images leaves the fit where it was; unweighted, it moves."""
    rng = np.random.default_rng(0)
    t = build_technique(Config(technique="dfr", image_size=32), types.SimpleNamespace(generators=["a", "b", "c"],
                                                                                      subclasses=["x", "y"]))
    X, y, groups = [], [], []
    for g, s, n in [(0, 0, 60), (0, 1, 6), (1, 0, 6), (1, 1, 60), (2, 0, 30), (2, 1, 30)]:
        f = rng.normal(0, 1, (n, t.model.generator_head.in_features))
        f[:, g] += 1.0
        f[:, 3] += 2.0 * s  # the subclass: spuriously predictive of the generator in the big cells
        X.append(f), y.extend([g] * n), groups.extend([2 * g + s] * n)
    X, y, groups = np.concatenate(X), np.array(y), np.array(groups)
    frame = lambda rows: pd.DataFrame({"generator": np.array(["a", "b", "c"])[y[rows]],  # noqa: E731
                                       "subclass": np.array(["x", "y"])[groups[rows] % 2]})

    def head(rows, weights):
        with torch.no_grad():
            t.fit_head(X[rows], y[rows], weights)
        return torch.cat([t.model.generator_head.weight.flatten(), t.model.generator_head.bias]).clone()

    rows = np.arange(len(y))
    tripled = np.concatenate([rows, np.flatnonzero(groups == 0), np.flatnonzero(groups == 0)])
    balanced = head(rows, t.fit_weights(frame(rows)))
    assert torch.allclose(balanced, head(tripled, t.fit_weights(frame(tripled))), atol=1e-3)
    plain = head(rows, np.ones(len(rows)))
    assert (plain - head(tripled, np.ones(len(tripled)))).abs().max() > 0.05
    assert (plain - balanced).abs().max() > 0.05


# --- JTT ---

def test_jtt_identification_model_is_the_baselines_run_cut_to_id_steps(tiny_data, tmp_path, data):
    config = _run_config(tiny_data, tmp_path, technique="jtt", technique_params={"id_steps": 3, "upweight": 20.0})
    run = sweep.train(config, progress=False)
    upstream = runfolder.run_dir(config.replace(technique="baseline", technique_params={}, steps=3))
    assert runfolder.run_dir(JTT.upstream(config)) == upstream and (upstream / "done").exists()
    # trained by the engine like any run (its history, checkpoint, lock and resume): 3 steps
    assert json.loads((upstream / "metrics.json").read_text())["steps"] == 3 and _history(upstream)[-1]["step"] == 3
    last = torch.load(upstream / "checkpoint.pt", weights_only=True)["technique"]
    t = build_technique(config, data)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    loader = _loader(data.split("train"), data)
    t.start_from(last)  # the identification model's weights after its last step
    t.prepare(loader)
    assert all(torch.equal(v, t.model.state_dict()[k]) for k, v in before.items())  # the final model: from scratch
    assert t.error_set.shape == (len(loader.dataset),) and 0 < int(t.error_set.sum()) < len(loader.dataset)
    assert torch.equal(t.error_set, torch.load(run / "checkpoint.pt", weights_only=True)["technique"]["error_set"])
    with pytest.raises(ConfigError, match="identification model"):  # built outside the sweep: no upstream run
        build_technique(config, data).prepare(loader)


def test_jtt_upweights_its_error_set(data):
    t = build_technique(Config(technique="jtt", image_size=32, technique_params={"id_steps": 3, "upweight": 20.0}),
                        data)
    loader = _loader(data.split("train"), data, shuffle=True)
    t.error_set = (torch.arange(len(loader.dataset)) % 4 == 0).to(torch.uint8)
    w = t.row_weights()
    assert torch.isclose(w.mean(), torch.tensor(1.0))
    assert torch.allclose(w[t.error_set.bool()] / w[~t.error_set.bool()][0], torch.tensor(20.0))
    t.train()
    assert t.update(next(iter(loader)))["error_set"] == float(t.error_set.sum())


def test_jtt_upweighting_changes_the_loss_and_the_gradient(data):
    loader = _loader(data.split("train"), data, batch_size=24)
    batch = next(iter(loader))
    errors = torch.zeros(len(loader.dataset), dtype=torch.uint8)
    errors[batch["index"][::3]] = 1  # a third of the batch in the error set

    def loss_and_grad(upweight):
        torch.manual_seed(0)
        t = build_technique(Config(technique="jtt", image_size=32, technique_params={"upweight": upweight}), data)
        t.error_set = errors.clone()
        t.eval()  # BatchNorm in eval mode: the same forward pass whatever the weights
        loss = t.loss(batch)
        loss.backward()
        return loss.detach(), t.model.generator_head.weight.grad.clone(), t

    l1, g1, t = loss_and_grad(1.0)
    with torch.no_grad():
        plain = F.cross_entropy(t.model(batch["x"]), batch["generator"])
    assert torch.isclose(l1, plain)  # upweight 1 is ERM
    l20, g20, t = loss_and_grad(20.0)
    with torch.no_grad():
        per = F.cross_entropy(t.model(batch["x"]), batch["generator"], reduction="none")
    w = 1 + 19 * errors.float()
    assert torch.isclose(l20, (per * w[batch["index"]]).mean() / w.mean())
    assert not torch.isclose(l20, l1) and (g20 - g1).abs().max() > 1e-4


def test_a_resumed_jtt_run_keeps_its_error_set(tiny_data, tmp_path, monkeypatch):
    config = _run_config(tiny_data, tmp_path / "whole", steps=12, technique="jtt", technique_params={"id_steps": 4})
    whole, config, cut = train_whole_and_interrupted(config, tmp_path, monkeypatch, epoch=2)
    assert torch.load(cut / "checkpoint.pt", weights_only=True)["epoch"] == 1

    def no_identification(self, loader):
        raise AssertionError("a resumed run identified its error set again")

    monkeypatch.undo()  # training as usual again
    monkeypatch.setattr(JTT, "prepare", no_identification)
    assert sweep.train(config, progress=False) == cut
    errors = [torch.load(r / "checkpoint.pt", weights_only=True)["technique"]["error_set"] for r in (whole, cut)]
    assert errors[0].sum() > 0 and torch.equal(errors[0], errors[1])
    assert _metrics(cut) == _metrics(whole) and _history(cut) == _history(whole)
    assert {h["error_set"] for h in _history(cut)} == {float(errors[0].sum())}


def test_an_interrupted_identification_run_resumes_to_the_same_jtt_run(tiny_data, tmp_path, monkeypatch):
    # 12 identification steps: 3 epochs of 5 steps (the last cut short), the kill comes in its third
    config = _run_config(tiny_data, tmp_path / "whole", technique="jtt", technique_params={"id_steps": 12})
    whole, config, cut = train_whole_and_interrupted(config, tmp_path, monkeypatch, epoch=2)
    identification = runfolder.run_dir(JTT.upstream(config))
    assert torch.load(identification / "checkpoint.pt", weights_only=True)["epoch"] == 1 and not cut.exists()
    monkeypatch.undo()
    assert sweep.train(config, progress=False) == cut
    assert _history(identification) == _history(runfolder.run_dir(JTT.upstream(config.replace(runs=str(tmp_path / "whole")))))
    assert _metrics(cut) == _metrics(whole) and _history(cut) == _history(whole)
    assert (cut / "predictions.csv").read_bytes() == (whole / "predictions.csv").read_bytes()


def test_jtt_parameters_are_checked(data, tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="id_steps"):
        build_technique(Config(technique="jtt", technique_params={"id_steps": 0}), data)
    with pytest.raises(ConfigError, match="upweight"):
        build_technique(Config(technique="jtt", technique_params={"upweight": -1.0}), data)
    with pytest.raises(ConfigError, match="id_steps"):  # before any work: no identification run trained either
        sweep.train(_run_config(tiny_data, tmp_path, technique="jtt", technique_params={"id_steps": 0}), progress=False)
    assert not any(tmp_path.iterdir())
