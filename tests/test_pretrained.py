"""Pretrained features: EfficientNet-Lite0's packaged ImageNet weights load strictly, the backbone takes any patch
size, and `freeze_backbone` trains the heads alone (a linear probe) while fine-tuning moves everything."""
from __future__ import annotations

import json
import math

import pytest
import torch

from attrlib import cli
from attrlib.config import Config
from attrlib.data import ImageDataset, load_study_data
from attrlib.errors import CheckpointError, ConfigError
from attrlib.models import build_model, load_local_weights
from attrlib.models.backbones import build_backbone
from attrlib.models.weights import pretrained_path
from attrlib.techniques import REGISTRY, build_technique
from conftest import TINY_HELDOUT

EFFNET = dict(backbone="efficientnet_lite0", pretrained="imagenet")


@pytest.fixture(scope="module")
def imagenet_state():
    return torch.load(pretrained_path("efficientnet_lite0", "imagenet"), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def tiny(tiny_data):
    data = load_study_data(tiny_data)
    ds = ImageDataset(data.split("train"), data, size=32, train=True)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=12, shuffle=True,
                                                  generator=torch.Generator().manual_seed(0))))
    return data, batch


def test_imagenet_weights_load_with_no_missing_and_no_unexpected_key(imagenet_state):
    model = build_model(Config(**EFFNET), 5)
    own = model.backbone.state_dict()
    classifier = {k for k in imagenet_state if k.startswith("_fc.")}
    assert classifier == {"_fc.weight", "_fc.bias"}  # the ImageNet classifier, replaced by the study's heads
    assert set(own) == set(imagenet_state) - classifier  # every key of the file used, every key of the backbone given
    for k, v in own.items():
        assert torch.equal(v, imagenet_state[k]), k
    assert tuple(model.stem.normalize.mean.flatten().tolist()) == pytest.approx((0.485, 0.456, 0.406))


def test_a_missing_or_an_unexpected_key_is_refused_and_named(imagenet_state, tmp_path):
    backbone = build_backbone("efficientnet_lite0")
    missing = {k: v for k, v in imagenet_state.items() if k != "_blocks.3._bn1.running_var"}
    torch.save(missing, tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match=r"missing 1 \(_blocks\.3\._bn1\.running_var\), unexpected 0"):
        load_local_weights(backbone, tmp_path / "missing.pt")
    torch.save({**imagenet_state, "_blocks.3._se_reduce.weight": torch.zeros(6, 144, 1, 1)}, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match=r"missing 0, unexpected 1 \(_blocks\.3\._se_reduce\.weight\)"):
        load_local_weights(backbone, tmp_path / "extra.pt")
    with pytest.raises(ConfigError, match="has no packaged weights"):
        build_model(Config(backbone="compact", pretrained="imagenet"), 5)


@pytest.mark.parametrize("side", [64, 224])
def test_forward_on_native_resolution_patches(side):
    model = build_model(Config(**EFFNET), 5).eval()
    with torch.no_grad():
        features, logits = model.features(torch.rand(2, 3, side, side)), model(torch.rand(2, 3, side, side))
    assert features.shape == (2, 1280) and logits.shape == (2, 5) and torch.isfinite(logits).all()


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("frozen", [True, False])
def test_frozen_backbone_stays_pretrained_while_the_head_learns(frozen, tiny):
    data, batch = tiny
    torch.manual_seed(0)
    t = build_technique(Config(**EFFNET, freeze_backbone=frozen, image_size=32, batch_size=12, steps=2), data)
    before_body, before_head = _state(t.model.backbone), _state(t.model.generator_head)
    t.train()
    for _ in range(2):
        t.update(batch)
    body, head = _state(t.model.backbone), _state(t.model.generator_head)
    assert any(not torch.equal(head[k], before_head[k]) for k in head)
    body_changed = {k for k in body if not torch.equal(body[k], before_body[k])}
    if frozen:  # weights and batch-norm statistics alike
        assert not body_changed
        assert not t.model.backbone.training and t.model.generator_head.training
    else:  # fine-tuning: the convolutions and the running statistics move
        assert any(k.endswith("conv.weight") for k in body_changed)
        assert any(k.endswith("running_mean") for k in body_changed)


def test_freezing_enters_the_run_identity_only_when_set():
    assert "freeze_backbone" not in Config().identity()  # runs made before the field keep their ids
    assert Config(freeze_backbone=True).identity()["freeze_backbone"] is True
    with pytest.raises(ConfigError, match="freeze_backbone"):
        Config(freeze_backbone="yes")


@pytest.mark.parametrize("name", [n for n, c in REGISTRY.items() if not c.assembled])  # ensemble: no model
def test_every_technique_steps_on_frozen_pretrained_features(name, tiny):
    data, batch = tiny
    torch.manual_seed(0)
    t = build_technique(Config(technique=name, **EFFNET, freeze_backbone=True, image_size=32, batch_size=12,
                               steps=2), data)
    t.train()
    t.progress = 1.0
    stats = t.update(batch)
    assert stats and all(math.isfinite(v) for v in stats.values()), stats
    t.eval()
    logits = t.predict(batch["x"])
    assert logits.shape == (len(batch["x"]), data.n_generators) and torch.isfinite(logits).all()


@pytest.mark.parametrize("args, message", [
    (["--backbone", "compact", "--pretrained", "imagenet"], "backbone 'compact' has no packaged weights"),
    (["--backbone", "efficientnet_lite0", "--pretrained", "nowhere.pt"], "pretrained weights 'nowhere.pt' do not exist"),
])
def test_wrong_pretrained_weights_fail_before_any_work(tiny_data, tmp_path, capsys, args, message):
    runs = tmp_path / "runs"
    rc = cli.main(["train", "--data", str(tiny_data), "--runs", str(runs), "--profile", "quick",
                   "--heldout", TINY_HELDOUT, "--technique", "baseline", *args])
    assert rc == 2 and message in capsys.readouterr().err
    assert not runs.exists()


def test_the_cli_trains_a_linear_probe_on_the_packaged_weights(tiny_data, tmp_path, one_torch_thread):
    runs = tmp_path / "runs"
    assert cli.main(["train", "--data", str(tiny_data), "--runs", str(runs), "--profile", "quick", "--steps", "1",
                     "--heldout", TINY_HELDOUT, "--technique", "baseline", "--backbone", "efficientnet_lite0",
                     "--pretrained", "imagenet", "--freeze-backbone"]) == 0
    (config,) = [json.loads(p.read_text()) for p in runs.glob("baseline/*/config.json")]
    assert (config["backbone"], config["pretrained"], config["freeze_backbone"]) == ("efficientnet_lite0", "imagenet", True)
