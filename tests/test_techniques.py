"""Techniques: one test over the whole registry, then each technique's defining property."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from attrlib import runfolder, training
from attrlib.config import Config
from attrlib.data import ImageDataset, load_study_data
from attrlib.errors import ConfigError
from attrlib.techniques import REGISTRY, available, build_technique, get
from attrlib.techniques.gradient_reversal import grad_reverse

from attrlib.techniques import ORDER


@pytest.fixture(scope="module")
def tiny(tiny_data):
    data = load_study_data(tiny_data)
    ds = ImageDataset(data.split("train"), data, size=32, train=True)
    g = torch.Generator().manual_seed(0)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=12, shuffle=True, generator=g)))
    return data, batch


def _config(name: str, **kw) -> Config:
    return Config(technique=name, image_size=32, batch_size=12, steps=5, **kw)


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def test_registry_lists_all_nine_with_descriptions():
    techniques = available()
    assert tuple(techniques)[:len(ORDER)] == ORDER  # the seeds' and the literature's nine first, any new one after
    assert all(isinstance(d, str) and d for d in techniques.values())
    with pytest.raises(ConfigError, match="valid techniques: baseline"):
        get("erm")


@pytest.mark.parametrize("name", [n for n, c in REGISTRY.items() if not c.assembled])  # ensemble: no model
def test_technique_inits_updates_predicts_and_round_trips(name, tiny, tmp_path):
    data, batch = tiny
    torch.manual_seed(0)
    t = build_technique(_config(name), data)
    t.train()
    t.progress = 1.0  # the engine sets it before every epoch
    stats = t.update(batch)
    assert stats and all(isinstance(v, float) and math.isfinite(v) for v in stats.values()), stats
    t.eval()
    logits = t.predict(batch["x"])
    assert logits.shape == (len(batch["x"]), data.n_generators) and torch.isfinite(logits).all()
    frame = data.split(t.train_split)
    w = t.sampler_weights(frame)
    assert w is None or (len(w) == len(frame) and (np.asarray(w) > 0).all())

    # checkpoint round trip: same predictions, and the next step (optimiser state included) is the same
    gen = torch.Generator().manual_seed(1)
    runfolder.write_checkpoint(tmp_path, training.checkpoint_state(t, 0, gen))
    torch.manual_seed(123)
    u = build_technique(_config(name), data)
    assert training.load_checkpoint(tmp_path, u, torch.Generator()) == 1
    u.eval()
    assert torch.equal(t.predict(batch["x"]), u.predict(batch["x"]))
    t.train(), u.train()
    u.progress = 1.0  # the engine sets it before every epoch, resumed or not
    torch.manual_seed(7)
    a = t.update(batch)
    torch.manual_seed(7)
    b = u.update(batch)
    assert a == b


def test_unknown_technique_parameter_lists_valid_ones(tiny):
    data, _ = tiny
    with pytest.raises(ConfigError, match="eta"):
        build_technique(_config("group_dro", technique_params={"etta": 1.0}), data)


def test_weighted_sampler_is_seed002_formula(tiny):
    data, _ = tiny
    t = build_technique(_config("weighted_sampling"), data)
    frame = pd.DataFrame({"generator": ["a"] * 6 + ["b"] * 3 + ["c"] * 1, "subclass": "x"})
    w = t.sampler_weights(frame)
    K = t.n_generators  # the number of classes of the study (6), as §3.2 defines K
    expected = np.array([1 / (K * 6)] * 6 + [1 / (K * 3)] * 3 + [1 / (K * 1)])
    assert np.allclose(w, expected)
    # on the real training split: every generator gets probability 1/K in total
    frame = data.split("train")
    w = t.sampler_weights(frame)
    per_gen = pd.Series(w).groupby(frame["generator"].to_numpy()).sum()
    assert np.allclose(per_gen.to_numpy(), 1 / K) and np.isclose(w.sum(), 1.0)


def test_group_balanced_sampler_is_uniform_over_cells(tiny):
    data, _ = tiny
    t = build_technique(_config("group_balanced"), data)
    frame = data.split("train")
    w = t.sampler_weights(frame)
    cells = pd.Series(w).groupby([frame["generator"].to_numpy(), frame["subclass"].to_numpy()]).sum()
    assert np.allclose(cells.to_numpy(), 1 / len(cells))


def test_adversarial_debiasing_step3_changes_only_the_backbone(tiny):
    data, batch = tiny
    torch.manual_seed(0)
    t = build_technique(_config("adversarial_debiasing"), data)
    t.train()
    t.update(batch)  # gives every optimiser a state
    before = _params(t.model)
    t.adversary_step(batch["x"], batch["subclass"])
    after = _params(t.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not {k for k in changed if k.startswith(("generator_head", "subclass_head"))}
    assert {k for k in changed if k.startswith("backbone")}
    assert changed <= {k for k in before if k.startswith(("backbone", "stem"))}


def test_adversarial_debiasing_step3_maximises_the_subclass_loss(tiny):
    data, batch = tiny
    torch.manual_seed(0)
    t = build_technique(_config("adversarial_debiasing", lr=1e-2), data)
    t.train()
    t.update(batch)
    t.eval()  # compare losses without BatchNorm batch statistics moving
    with torch.no_grad():
        l0 = torch.nn.functional.cross_entropy(t.model.subclass_logits(batch["x"]), batch["subclass"])
    t.train()
    for _ in range(3):
        t.adversary_step(batch["x"], batch["subclass"])
    t.eval()
    with torch.no_grad():
        l1 = torch.nn.functional.cross_entropy(t.model.subclass_logits(batch["x"]), batch["subclass"])
    assert l1 > l0


def test_fine_tuning_trains_only_the_classification_layer(tiny):
    data, batch = tiny
    t = build_technique(_config("fine_tuning"), data)
    assert t.uses_target_data and t.starts_from == "baseline" and t.train_split == "ft_train"
    assert t.steps == 2700 and t.batch_size == 4 and isinstance(t.optimizer, torch.optim.SGD)
    assert t.optimizer.param_groups[0]["lr"] == 1e-3 and t.optimizer.param_groups[0]["momentum"] == 0.9
    t.train()
    buffers = {k: v.clone() for k, v in t.model.state_dict().items() if "running" in k}
    before = _params(t.model)
    t.update(batch)
    after = _params(t.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"generator_head.weight", "generator_head.bias"}
    assert all(torch.equal(v, t.model.state_dict()[k]) for k, v in buffers.items())  # frozen BatchNorm too


def test_group_dro_weights_move_to_the_worst_group(tiny):
    data, batch = tiny
    t = build_technique(_config("group_dro", technique_params={"eta": 1.0}), data)
    t.train()
    t.update(batch)
    assert torch.isclose(t.q.sum(), torch.tensor(1.0))
    present = torch.unique(batch["group"])
    assert (t.q[present] > 1 / t.n_groups).any() and "q" in t.state_dict()


def test_gradient_reversal_layer_negates_and_scales_the_gradient():
    x = torch.ones(3, requires_grad=True)
    (grad_reverse(x, 0.5) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(x.grad, torch.tensor([-0.5, -1.0, -1.5]))


def test_runtime_adversarial_perturbation_is_bounded_and_confuses_the_subclass_classifier(tiny):
    data, batch = tiny
    torch.manual_seed(0)
    t = build_technique(_config("runtime_adversarial", technique_params={"eps": 8 / 255, "step_size": 2 / 255}), data)
    t.train()
    for _ in range(5):
        t.update(batch)
    t.eval()
    x = batch["x"]
    x_adv = t.perturb(x)
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        entropy = [(-torch.softmax(t.subclass_model(v), 1) * torch.log_softmax(t.subclass_model(v), 1)).sum(1).mean()
                   for v in (x, x_adv)]
    assert entropy[1] > entropy[0]
    assert not any(p.grad is not None for p in t.subclass_model.parameters())
    # predict, Grad-CAM and content reliance all see the attacked images; other techniques the images themselves
    assert torch.equal(t.test_inputs(x), x_adv)
    with torch.no_grad():
        assert torch.allclose(t.predict(x), t.model(x_adv))
    plain = build_technique(_config("baseline"), data)
    assert plain.test_inputs(x) is x
