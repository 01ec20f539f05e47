"""Issue 11, measurements that mean what they say: adv_weight moves the model, group DRO weights only the
cells that have images and logs q, gradient reversal logs lambda, fine_tuning takes seed 002's steps."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from attrlib import sweep, training
from attrlib.config import Config
from attrlib.data import load_config_data
from attrlib.errors import ConfigError
from attrlib.techniques import build_technique, get

from conftest import TINY_ALL_CELLS as TINY_CELLS, TINY_GENERATORS, TINY_SUBCLASSES


def _config(tiny_data, runs, **kw) -> Config:
    return Config(**{**dict(data=str(tiny_data), runs=str(runs), image_size=32, batch_size=16, steps=8,
                            val_subclass="none"), **kw})  # every tiny cell trains


def _history(run) -> list[dict]:
    return [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]


def _trained_weights(tiny_data, tmp_path, data, adv_weight: float) -> torch.Tensor:
    config = _config(tiny_data, tmp_path / f"w{adv_weight}", technique="adversarial_debiasing",
                     technique_params={"adv_weight": adv_weight})
    fitted = training.fit(config, data, tmp_path / f"w{adv_weight}" / "run", progress=False)
    return torch.cat([p.detach().flatten() for p in fitted.technique.model.parameters()])


def test_adv_weight_moves_the_model_in_proportion(tiny_data, tmp_path):
    """Adam is invariant to a loss's scale: before, W = 10 moved the weights no more than W = 1.001 did (the
    norm of the difference: 0.052 and 0.049 here). The norm, not the largest entry: Adam's first steps are
    about lr x sign(gradient), so a parameter whose gradient is near zero flips with any perturbation."""
    data = load_config_data(_config(tiny_data, tmp_path))
    w1, w1001, w10 = (_trained_weights(tiny_data, tmp_path, data, w) for w in (1.0, 1.001, 10.0))
    small, large = (w1001 - w1).norm().item(), (w10 - w1).norm().item()
    print(f"||dw||: W 1 -> 1.001: {small:.3g}, W 1 -> 10: {large:.3g}, ratio {large / max(small, 1e-12):.0f}")
    assert large > 20 * small
    with pytest.raises(ConfigError, match="adv_weight"):
        build_technique(Config(technique="adversarial_debiasing", image_size=32,
                               technique_params={"adv_weight": -1.0}), data)


def _nonempty_groups(technique) -> set[int]:
    subs = sorted(TINY_SUBCLASSES)
    return {gi * len(subs) + subs.index(s) for gi, g in enumerate(sorted(TINY_GENERATORS)) for s in TINY_CELLS[g]}


def test_group_dro_weights_only_cells_with_images(tiny_data, tmp_path):
    config = _config(tiny_data, tmp_path, technique="group_dro", technique_params={"eta": 1.0})
    data = load_config_data(config)
    t = build_technique(config, data)
    nonempty = _nonempty_groups(t)
    assert len(nonempty) < t.n_groups  # the tiny data has empty cells, as the benchmark has
    assert t.sampler_weights(data.split("train")) is None  # sampled as ERM
    q = t.q.numpy()
    assert set(np.flatnonzero(q)) == nonempty and q.sum() == pytest.approx(1.0)
    loader = training.make_loader(data.split("train"), data, config, train=True,
                                  generator=torch.Generator().manual_seed(0))
    for batch in loader:
        stats = t.update(batch)
    q = t.q.numpy()
    assert set(np.flatnonzero(q)) == nonempty and q.sum() == pytest.approx(1.0)
    assert len(set(q[sorted(nonempty)].round(6))) > 1  # eta = 1 has moved it off uniform
    assert {k for k in stats if k.startswith("q/")} == {f"q/{g}|{s}" for g in TINY_GENERATORS for s in TINY_CELLS[g]}


def test_history_logs_group_dro_q_and_gradient_reversal_lambda(tiny_data, tmp_path):
    dro = _history(sweep.train(_config(tiny_data, tmp_path, technique="group_dro"), progress=False))
    cells = {f"q/{g}|{s}" for g in TINY_GENERATORS for s in TINY_CELLS[g]}
    for epoch in dro:
        assert {k for k in epoch if k.startswith("q/")} == cells
        assert sum(epoch[k] for k in cells) == pytest.approx(1.0, abs=1e-5)  # an epoch's mean of q is a distribution
    grl = _history(sweep.train(_config(tiny_data, tmp_path, technique="gradient_reversal"), progress=False))
    assert len(grl) == 2  # two epochs of the 8 steps: lambda at the share of the budget each ends at (Ganin's schedule)
    assert 0 < grl[0]["step"] < grl[1]["step"] == 8
    assert [h["grl_lambda"] for h in grl] == pytest.approx([2 / (1 + math.exp(-10 * h["step"] / 8)) - 1 for h in grl])


def test_fine_tuning_takes_seed_002s_steps_at_its_own_batch(tiny_data, tmp_path):
    ft = get("fine_tuning")
    assert ft.defaults["batch_size"] == 4 and ft.defaults["steps"] == 75 * math.ceil(143 / 4) == 2700
    # the technique's batch reaches the loader, whatever the config's (16 here): 3 steps are 12 images
    run = sweep.train(_config(tiny_data, tmp_path, technique="fine_tuning", technique_params={"steps": 3}),
                      progress=False)
    history = _history(run)
    assert sum(h["steps"] for h in history) == 3 and sum(h["images"] for h in history) == 12
    with pytest.raises(ConfigError, match="'batch_size' of 'fine_tuning' is 0"):
        ft.check_params({"batch_size": 0})
