"""Issue 11: runtime_adversarial's radius swept against random noise of the same radius, and the
content-blind residual-statistics baseline (a technique fitted in closed form through the engine's hook)."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch

matplotlib.use("Agg")

from attrlib import runfolder, sweep  # noqa: E402
from attrlib.config import Config  # noqa: E402
from attrlib.data import ImageDataset  # noqa: E402
from attrlib.evaluation import radius_sweep, radius_sweep_summary, sign_noise  # noqa: E402
from attrlib.evaluation.runtime_sweep import technique_params  # noqa: E402
from attrlib.reporting import radius_sweep_figure  # noqa: E402
from attrlib.techniques import build_technique  # noqa: E402
from attrlib.techniques.residual_stats import FEATURES, residual_statistics  # noqa: E402


def _config(tiny_data, tmp_path, technique, **kw) -> Config:
    return Config(data=str(tiny_data), technique=technique, image_size=32, batch_size=16, runs=str(tmp_path),
                  device="cpu", **kw)


@pytest.fixture(scope="module")
def residual_run(tiny_data, tmp_path_factory):
    return sweep.train(_config(tiny_data, tmp_path_factory.mktemp("runs"), "residual_stats"), progress=False)


@pytest.fixture(scope="module")
def attack_run(tiny_data, tmp_path_factory):
    return sweep.train(_config(tiny_data, tmp_path_factory.mktemp("runs"), "runtime_adversarial", steps=8),
                       progress=False)


# --------------------------------------------------------------------------------------------- residual_stats
def test_residual_stats_is_fitted_in_closed_form_and_beats_chance(residual_run):
    metrics = json.loads((residual_run / "metrics.json").read_text())
    assert metrics["steps"] == 0 and metrics["epochs"] == 0  # no optimiser step: the fit is the engine's prepare
    # the tiny data plants a periodic pattern per generator; chance is 1/6 on the held-out subclass
    assert metrics["heldout"]["accuracy"] >= 0.6, metrics["heldout"]
    preds = runfolder.load_predictions(residual_run, "heldout")
    assert len(preds) == metrics["heldout"]["n"] and {"path", "pred"} <= set(preds.columns)


def test_residual_stats_checkpoint_round_trips_the_regression(residual_run, tiny_data):
    run = runfolder.load_run(residual_run)
    state = run.technique.state_dict()
    assert {"model.mean", "model.scale", "model.generator_head.weight", "model.generator_head.bias"} <= set(state)
    assert state["model.generator_head.weight"].abs().sum() > 0 and not torch.all(state["model.scale"] == 1)
    fresh = build_technique(run.config, run.data)  # unfitted: uniform probabilities
    ds = ImageDataset(run.data.split("test"), run.data, size=32, train=False)
    x = torch.stack([ds[i]["x"] for i in range(12)])
    with torch.no_grad():
        assert torch.allclose(fresh.predict(x), torch.full((12, 6), -np.log(6.0)))
        fresh.load_state_dict(state)
        logits = fresh.predict(x)
        assert torch.equal(logits, run.technique.predict(x))
    assert torch.allclose(logits.exp().sum(1), torch.ones(12), atol=1e-5)  # log-probabilities of the regression
    # the engine's predictions.csv came from the same fitted model
    saved = runfolder.load_predictions(residual_run, "test").set_index("path")
    probs = saved.loc[ds.frame["path"].iloc[:12], [f"p_{g}" for g in run.generators]].to_numpy()
    assert np.allclose(probs, logits.exp().numpy(), atol=1e-5)


def test_residual_statistics_see_a_checkerboard_and_a_quarter_period():
    torch.manual_seed(0)
    noise = 0.5 + 0.02 * torch.randn(4, 3, 32, 32)
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    checker = noise + 0.02 * ((-1.0) ** (yy + xx))
    quarter = noise + 0.02 * torch.cos(torch.pi / 2 * xx)  # 0.25 cycles/pixel along x
    f = {name: residual_statistics(x - torch.nn.functional.avg_pool2d(
        torch.nn.functional.pad(x, (1, 1, 1, 1), mode="circular"), 3, stride=1), x).mean(0)
        for name, x in (("noise", noise), ("checker", checker), ("quarter", quarter))}
    assert f["noise"].shape == (len(FEATURES),)
    i = FEATURES.index
    assert f["checker"][i("nyq_diag")] > f["noise"][i("nyq_diag")] + 2  # log share: many times the noise's
    assert f["quarter"][i("quarter_horiz")] > f["noise"][i("quarter_horiz")] + 2
    assert abs(f["checker"][i("quarter_horiz")] - f["noise"][i("quarter_horiz")]) < 1


# --------------------------------------------------------------------------------------------- radius sweep
def test_radius_zero_is_the_unattacked_model_and_the_radius_is_what_the_attack_uses(attack_run):
    run = runfolder.load_run(attack_run)
    t = run.technique
    ds = ImageDataset(run.data.split("test"), run.data, size=32, train=False)
    x = torch.stack([ds[i]["x"] for i in range(16)])
    with torch.no_grad():
        with technique_params(t, eps=0.0, step_size=0.0):
            assert torch.equal(t.test_inputs(x), x)
            assert torch.equal(t.predict(x), t.model(x))
        with technique_params(t, eps=2 / 255, step_size=0.5 / 255):
            moved = (t.test_inputs(x) - x).abs().max().item()
    assert abs(moved - 2 / 255) < 1e-6  # the attack reaches its ball's surface, and no further
    assert t.hparams["eps"] == 4 / 255  # restored after the sweep
    with pytest.raises(Exception, match="radius"):
        with technique_params(t, radius=1.0):
            pass


def test_control_moves_every_pixel_by_exactly_the_radius_clipped():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 16, 16, generator=g)
    x[0, 0, 0, :4] = torch.tensor([0.0, 1.0, 0.001, 0.999])
    r = 4 / 255
    y = sign_noise(x, r, generator=g)
    delta = y - x
    inside = ((x + r) <= 1) & ((x - r) >= 0)
    assert torch.allclose(delta[inside].abs(), torch.full_like(delta[inside], r), atol=1e-7)
    assert 0.4 < (delta[inside] > 0).float().mean() < 0.6  # random signs
    assert y.min() >= 0 and y.max() <= 1
    assert torch.all((y[~inside] == 0) | (y[~inside] == 1) | torch.isclose(delta[~inside].abs(), torch.tensor(r)))
    assert torch.equal(sign_noise(x, 0.0, generator=g), x)


def test_radius_sweep_pairs_conditions_on_the_same_images(attack_run):
    per = radius_sweep([attack_run], radii=(0, 2, 8), max_images=24)
    assert set(per["condition"]) == {"none", "attack", "control"} and set(per["radius"]) == {0.0, 2.0, 8.0}
    wide = per.pivot_table(index=["heldout", "seed", "path", "radius"], columns="condition", values="pred",
                           aggfunc="first")
    assert len(wide) == 24 * 3 and not wide.isna().any().any()
    at0 = wide.xs(0.0, level="radius")
    assert (at0["attack"] == at0["none"]).all() and (at0["control"] == at0["none"]).all()
    table = radius_sweep_summary(per, n_boot=200)
    row0 = table.set_index("radius").loc[0.0]
    assert row0["attack_minus_none"] == 0 and row0["attack_minus_none_low"] == 0 == row0["attack_minus_none_high"]
    assert list(table["radius"]) == [0.0, 2.0, 8.0] and "grey levels" in table.attrs["caption"]
    fig = radius_sweep_figure(table)
    assert len(fig.axes) == 2
    matplotlib.pyplot.close(fig)


def test_radius_sweep_summary_says_where_the_attack_helps():
    rng = np.random.default_rng(0)
    rows = []
    for seed in (0, 1, 2):
        for k in range(60):
            truth = rng.random() < 0.5
            for r, c, ok in ((1.0, "none", truth), (1.0, "attack", True), (1.0, "control", truth),
                             (4.0, "none", truth), (4.0, "attack", truth), (4.0, "control", False)):
                rows.append(dict(heldout="h", seed=seed, path=f"p{k}", radius=r, condition=c, correct=float(ok)))
    summary = radius_sweep_summary(pd.DataFrame(rows), n_boot=300)
    caption, table = summary.attrs["caption"], summary.set_index("radius")
    assert table.loc[1.0, "attack_minus_none_low"] > 0 and table.loc[1.0, "attack_minus_control_low"] > 0
    assert table.loc[4.0, "attack_minus_none"] == 0 and table.loc[4.0, "control_minus_none_high"] < 0
    assert "above no change at 1 and" in caption and "noise alone raises accuracy at no radius and lowers it at 4" in caption
