"""Models: stems, single/dual heads, the head selector, local weights."""
from __future__ import annotations

import pickle

import pytest
import torch

from attrlib.config import Config
from attrlib.errors import CheckpointError, ConfigError
from attrlib.models import HeadSelector, NPRStem, Stem, build_backbone, build_model, load_local_weights


def test_normalisation_is_the_seeds():
    stem = Stem("none")
    x = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(stem(x).flatten(), torch.tensor([-1.0, 0.0, 1.0]))


def test_npr_is_zero_on_2x2_constant_blocks():
    x = torch.rand(2, 3, 4, 4).repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    stem = NPRStem()
    stem.norm.eval()
    residual = (x - torch.nn.functional.interpolate(
        torch.nn.functional.interpolate(x, scale_factor=0.5, mode="nearest"), size=x.shape[-2:], mode="nearest"))
    assert residual.abs().max() == 0
    assert stem(x).abs().max() < 1e-5


@pytest.mark.parametrize("kind", ["none", "srm", "npr"])
def test_stem_stays_float32_under_bf16_autocast(kind):
    stem = Stem(kind)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = stem(torch.rand(2, 3, 16, 16))
    assert y.dtype == torch.float32 and y.shape == (2, 3, 16, 16)


def test_unknown_stem_and_backbone_list_valid_choices():
    with pytest.raises(ConfigError, match="npr"):
        Stem("fft")
    with pytest.raises(ConfigError, match="resnet18"):
        build_backbone("vgg16")


@pytest.mark.parametrize("backbone", ["compact", "resnet18"])
def test_single_and_dual_head(backbone):
    single = build_model(Config(backbone=backbone), n_generators=6)
    dual = build_model(Config(backbone=backbone, stem="srm"), n_generators=6, n_subclasses=7, dual_head=True)
    x = torch.rand(2, 3, 32, 32)
    assert single(x).shape == (2, 6) and not single.dual_head
    assert dual(x).shape == (2, 6)
    dual.eval()
    feats = dual.features(x)
    assert torch.allclose(dual.subclass_logits(feats), dual.subclass_logits(x), atol=1e-6)
    with pytest.raises(RuntimeError, match="single"):
        single.subclass_logits(x)


def test_head_selector_exposes_one_head():
    model = build_model(Config(), 6, 7, dual_head=True).eval()
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(HeadSelector(model, "generator")(x), model(x))
    assert torch.equal(HeadSelector(model, "subclass")(x), model.subclass_logits(x))
    with pytest.raises(ValueError):
        HeadSelector(build_model(Config(), 6), "subclass")


def test_bf16_model_returns_float32_logits():
    model = build_model(Config(bf16=True), 6)
    assert model(torch.rand(2, 3, 32, 32)).dtype == torch.float32


def test_local_weights_round_trip_and_unsafe_file_refused(tmp_path):
    src = build_model(Config(), 6)
    torch.save({"model": {f"backbone.{k}": v for k, v in src.backbone.state_dict().items()}}, tmp_path / "w.pt")
    dst = build_model(Config(pretrained=str(tmp_path / "w.pt")), 6)
    for (k, a), b in zip(src.backbone.state_dict().items(), dst.backbone.state_dict().values()):
        assert torch.equal(a, b), k

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"state_dict": Payload()}, protocol=2))
    with pytest.raises(CheckpointError, match="safely"):
        load_local_weights(src.backbone, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="do not exist"):
        load_local_weights(src.backbone, tmp_path / "missing.pt")
